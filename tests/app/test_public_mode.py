"""Public mode between visitors who don't know each other: each gets their own images, and no one can fetch
another's saved file by its path."""

from __future__ import annotations

import httpx
import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError
from PIL import Image

from tests.launch import start_app

T2I = dict(
    prompt="a quiet harbour",
    negative_prompt="",
    steps=2,
    guidance_scale=7.0,
    width=64,
    height=64,
    seed=11,
    scheduler="default",
    num_images=1,
    safety_checker=True,
)


@pytest.fixture(scope="module")
def public_app(tmp_path_factory):
    app = start_app(tmp_path_factory.mktemp("public-outputs"), "--public")
    yield app
    app.app.close()


def test_no_visitor_can_fetch_another_visitors_saved_image_by_its_path(public_app):
    alice, bob = Client(public_app.url, verbose=False), Client(public_app.url, verbose=False)
    gallery, _info = alice.predict(**T2I, api_name="/text2img")
    with Image.open(gallery[0]["image"]) as image:
        assert "diffusion_studio" in image.text, "alice's copy keeps its metadata"
    saved = list(public_app.outputs.rglob("*.png"))
    assert saved, "the image was saved"
    for path in saved:
        response = httpx.get(f"{public_app.url}gradio_api/file={path}")
        assert response.status_code == 403, f"{path} must not be served by its path"
    assert bob.predict(**{**T2I, "seed": 12}, api_name="/text2img")[1]["seeds"] == [12]


def test_public_mode_keeps_the_checker_and_the_curated_models(public_app):
    client = Client(public_app.url, verbose=False)
    with pytest.raises(AppError, match="safety checker can't be turned off on a public server"):
        client.predict(**{**T2I, "safety_checker": False}, api_name="/text2img")
    with pytest.raises(AppError, match=r"/etc is not in the list of choices: \['stable-diffusion-v1-5"):
        client.predict(source="/etc", variant="auto", dtype="auto", api_name="/load_model")
    with pytest.raises(AppError, match="only loads these adapters"):
        client.predict(source="demo-lora", weight=1.0, api_name="/load_lora")
