"""Hub, cache and variants through the API of the running app: preflight, a download with a progress bar, the
cache browser, saving a variant. The Hub is a fake one on 127.0.0.1 (tests/fake_hub.py)."""

from __future__ import annotations

import shutil
import time

import pytest
from gradio_client import handle_file
from gradio_client.exceptions import AppError

from tests.fake_hub import serving

T2I = dict(
    prompt="a harbour",
    negative_prompt="",
    steps=2,
    guidance_scale=7.0,
    width=64,
    height=64,
    seed=4,
    scheduler="default",
    num_images=1,
    safety_checker=False,
)


@pytest.fixture
def back_to_demo(client):
    yield
    client.predict("demo", "default", "float32", api_name="/load_model")


def test_preflight_then_load_shows_download_progress_then_the_cache_has_it(client, demo_dir, monkeypatch, back_to_demo):
    with serving({"fakeapi/sd": demo_dir}, monkeypatch, bytes_per_second=1_500_000) as fake:
        report = client.predict("fakeapi/sd", "fp16", "float32", api_name="/preflight")
        assert report["pipeline"] == "StableDiffusionPipeline" and report["variant"] == "fp16"
        assert report["download_bytes"] > 1_000_000 and report["verdict"] == "fits"
        assert not [n for n in fake.downloaded() if n.endswith(".safetensors")]  # nothing heavy fetched yet

        job = client.submit("fakeapi/sd", "fp16", "float32", api_name="/load_model")
        descriptions = set()
        while not job.done():
            for unit in job.status().progress_data or []:
                descriptions.add(unit.desc or "")
            time.sleep(0.05)
        info = job.result()
    assert info["model"] == "fakeapi/sd" and info["variant"] == "fp16"
    assert any(d.startswith("Downloading fakeapi/sd:") and " of " in d for d in descriptions), descriptions

    listed = client.predict(api_name="/cached_checkpoints")
    row = next(r for r in listed if r["id"] == "fakeapi/sd")
    assert row["variants"] == ["fp16"] and row["kind"] == "StableDiffusionPipeline"  # only what was downloaded
    with pytest.raises(AppError, match="loaded now"):
        client.predict("fakeapi/sd", api_name="/delete_cached")

    client.predict("demo", "default", "float32", api_name="/load_model")
    freed = client.predict("fakeapi/sd", api_name="/delete_cached")
    assert freed["freed_bytes"] == row["bytes"]
    assert all(r["id"] != "fakeapi/sd" for r in client.predict(api_name="/cached_checkpoints"))


def test_preflight_of_an_unknown_repo_says_so(client, demo_dir, monkeypatch):
    with serving({"fakeapi/known": demo_dir}, monkeypatch), pytest.raises(AppError, match="no repository"):
        client.predict("fakeapi/nothing-here", "auto", "float32", api_name="/preflight")


def test_save_a_variant_and_load_it_back(client, tmp_path, back_to_demo):
    saved = client.predict(str(tmp_path / "bf16"), "bf16", "bfloat16", api_name="/save_variant")
    assert saved["variant"] == "bf16" and saved["files"]
    info = client.predict(str(tmp_path / "bf16"), "bf16", "float32", api_name="/load_model")
    assert info["variants"] == ["bf16"] and info["variant"] == "bf16"
    images, run = client.predict(**T2I, api_name="/text2img")
    assert run["variant"] == "bf16" and len(images) == 1


def test_png_info_reads_back_a_generated_image(client):
    request = {**T2I, "prompt": "a quiet harbour", "seed": 1234, "scheduler": "Euler a"}
    images, _info = client.predict(**request, api_name="/text2img")
    found = client.predict(handle_file(images[0]["image"]), api_name="/png_info")
    assert found["found"] == "diffusion-studio" and found["task"] == "text2img"
    assert found["fields"]["prompt"] == "a quiet harbour" and found["fields"]["seed"] == 1234
    assert found["fields"]["scheduler"] == "Euler a"
    assert "Seed: 1234" in found["text"]


def test_png_info_of_a_file_that_is_not_an_image(client, tmp_path):
    junk = tmp_path / "notes.png"
    junk.write_text("not a png at all")
    with pytest.raises(AppError, match="not an image"):
        client.predict(handle_file(str(junk)), api_name="/png_info")


def test_a_single_file_checkpoint_through_the_api(client, demo_dir, tmp_path, back_to_demo):
    from tests.ldm_checkpoint import write_ldm_checkpoint

    target = write_ldm_checkpoint(demo_dir, tmp_path / "webui-model.safetensors")
    shutil.copytree(demo_dir, tmp_path / "webui-model")  # its configs, beside it
    info = client.predict(str(target), "auto", "float32", api_name="/load_model")
    assert info["pipeline"] == "StableDiffusionPipeline" and info["model_path"] == str(target)
    images, run = client.predict(**{**T2I, "safety_checker": True}, api_name="/text2img")
    assert len(images) == 1 and ".from_single_file(" in run["code"]
