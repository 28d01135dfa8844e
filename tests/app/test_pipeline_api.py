"""`/pipeline` through gradio_client on the launched app: a pipeline no spec serves, run from its signature, with its
outputs in the endpoint's answer (a WAV for audio, images in the gallery); the demo is loaded back after each."""

from __future__ import annotations

import json
import wave

import pytest

from core.outputs import wav_comment


@pytest.fixture
def reload_demo(client):
    yield
    client.predict(source="demo", variant="default", dtype="float32", api_name="/load_model")


def test_an_audio_pipeline_answers_with_a_wav(client, reload_demo):
    info = client.predict(source="demo-dance-diffusion", variant="auto", dtype="auto", api_name="/load_model")
    assert info["tasks"] == ["pipeline"] and info["signature"]["output"] == "audio"
    audio, video, mesh, gallery, run = client.predict(steps=3, audio_seconds=0.25, seed=9, api_name="/pipeline")
    assert video is None and mesh is None and gallery == []
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
    _audio, _video, mesh, gallery, run = client.predict(
        prompt="a lamp", steps=2, seed=4, mesh=True, api_name="/pipeline"
    )
    assert gallery == [] and run["output"] == "mesh" and run["seeds"] == [4] and mesh.endswith(".glb")
    with open(mesh, "rb") as f:
        assert f.read(4) == b"glTF", "the viewer's file: binary glTF"
