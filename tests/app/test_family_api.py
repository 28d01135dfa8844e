"""The image families beyond SD through the API, as a script would use them: load a twin with /load_model, run its
tasks by endpoint; the answer's info says which pipeline ran and the family's rules (core.pool, core.few_step)."""

from __future__ import annotations

import pytest
from gradio_client import handle_file
from PIL import Image

RUN = dict(prompt="a lighthouse", negative_prompt="", steps=2, guidance_scale=4.0, seed=7, scheduler="default")


@pytest.fixture
def reload_demo(client):
    yield
    client.predict(source="demo", variant="default", dtype="float32", api_name="/load_model")


def test_a_combined_and_a_flow_family_run_their_tasks_through_the_api(client, reload_demo, tmp_path):
    picture = tmp_path / "input.png"
    Image.new("RGB", (128, 128), (40, 90, 160)).save(picture)
    info = client.predict(source="demo-kandinsky22", variant="default", dtype="float32", api_name="/load_model")
    assert info["size_multiple"] == 64 and info["few_step"]["name"] == "Kandinsky 2.2"
    gallery, run = client.predict(
        **RUN, width=128, height=128, num_images=1, safety_checker=False, api_name="/text2img"
    )
    assert run["pipeline"] == "KandinskyV22CombinedPipeline" and "prior_num_inference_steps=2" in run["code"]
    assert Image.open(gallery[0]["image"]).size == (128, 128)
    with pytest.raises(Exception, match="width must be a multiple of 64, got 96"):
        client.predict(**RUN, width=96, height=128, num_images=1, safety_checker=False, api_name="/text2img")

    info = client.predict(source="demo-flux", variant="default", dtype="float32", api_name="/load_model")
    assert info["tasks"][:3] == ["text2img", "img2img", "inpaint"] and info["default_size"] == 1024
    gallery, run = client.predict(
        image=handle_file(str(picture)), **RUN, strength=0.6, num_images=1, safety_checker=False, api_name="/img2img"
    )
    assert run["pipeline"] == "FluxImg2ImgPipeline" and Image.open(gallery[0]["image"]).size == (128, 128)
