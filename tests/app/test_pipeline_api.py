"""`/pipeline` through gradio_client on the launched app: a pipeline no spec serves, run from its signature, with its
outputs in the endpoint's answer (a WAV for audio, images in the gallery); the demo is loaded back after each."""

from __future__ import annotations

import json
import wave

import pytest
from gradio_client import handle_file
from PIL import Image

from core.outputs import wav_comment


@pytest.fixture
def reload_demo(client):
    yield
    client.predict(source="demo", variant="default", dtype="float32", api_name="/load_model")


def test_an_audio_pipeline_answers_with_a_wav(client, reload_demo):
    info = client.predict(source="demo-dance-diffusion", variant="auto", dtype="auto", api_name="/load_model")
    assert info["tasks"] == ["pipeline"] and info["signature"]["output"] == "audio"
    audio, video, mesh, text, gallery, run = client.predict(steps=3, audio_seconds=0.25, seed=9, api_name="/pipeline")
    assert video is None and mesh is None and text is None and gallery == []
    with wave.open(audio) as f:
        assert (f.getnchannels(), f.getframerate(), f.getnframes()) == (2, 16000, 4000)
    assert json.loads(wav_comment(audio))["seeds"] == [9] == run["seeds"]
    assert run["arguments"] == ["audio_length_in_s", "batch_size", "num_inference_steps"]


def test_class_labels_and_other_parameters_through_the_api(client, reload_demo):
    client.predict(source="demo-dit", variant="auto", dtype="auto", api_name="/load_model")
    *_media, gallery, run = client.predict(class_labels="goldfish; 0", steps=2, seed=3, api_name="/pipeline")
    assert len(gallery) == 2 and run["class_labels"] == [1, 0] and run["seeds"] == [3, 4]
    with pytest.raises(Exception, match="no other parameter 'eta'"):
        client.predict(class_labels="0", steps=2, other_parameters='{"eta": 1}', api_name="/pipeline")
    with pytest.raises(Exception, match="can't do Any pipeline"):
        client.predict(source="demo", variant="default", dtype="float32", api_name="/load_model")
        client.predict(steps=2, api_name="/pipeline")


def test_a_3d_mesh_comes_back_as_a_glb_file(client, reload_demo):
    client.predict(source="demo-shap-e", variant="auto", dtype="auto", api_name="/load_model")
    _audio, _video, mesh, _text, gallery, run = client.predict(
        prompt="a lamp", steps=2, seed=4, mesh=True, api_name="/pipeline"
    )
    assert gallery == [] and run["output"] == "mesh" and run["seeds"] == [4] and mesh.endswith(".glb")
    with open(mesh, "rb") as f:
        assert f.read(4) == b"glTF", "the viewer's file: binary glTF"


def test_unidiffuser_captions_an_image_and_makes_one_from_a_prompt(client, reload_demo, tmp_path):
    info = client.predict(source="demo-unidiffuser", variant="auto", dtype="auto", api_name="/load_model")
    assert info["signature"]["makes_text"] and {"prompt", "image"} <= set(info["signature"]["offered"])
    picture = tmp_path / "picture.png"
    Image.new("RGB", (64, 64), (200, 40, 40)).save(picture)
    *_media, text, gallery, run = client.predict(image=handle_file(str(picture)), steps=2, seed=3, api_name="/pipeline")
    assert gallery == [] and run["output"] == "text" and text == run["text"][0] and len(text) > 0
    size = info["default_size"]
    *_media, text, gallery, run = client.predict(
        prompt="a red barn", width=size, height=size, steps=2, seed=3, api_name="/pipeline"
    )
    assert len(gallery) == 1 and "text" not in run and text is None
