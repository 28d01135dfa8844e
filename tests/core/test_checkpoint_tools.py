"""The local Hub cache browser and saving the loaded checkpoint as another variant (round trip)."""

from __future__ import annotations

import hashlib
import shutil

import pytest
import torch

from core.errors import InvalidRequest
from core.studio import Studio, StudioOptions


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_cache_lists_checkpoints_with_variants_and_deletes_only_what_is_not_loaded(demo_dir, hub_cache):
    hub_cache(demo_dir, "cachetest/browse")
    studio = Studio(StudioOptions(offline=True))
    row = next(r for r in studio.cached_checkpoints() if r["id"] == "cachetest/browse")
    assert row["kind"] == "StableDiffusionPipeline"
    assert row["variants"] == ["default", "fp16", "non_ema"]
    on_disk = sum(p.stat().st_size for p in demo_dir.rglob("*") if p.is_file())
    assert row["bytes"] == on_disk

    studio.load("cachetest/browse", variant="fp16", dtype="float32")
    with pytest.raises(InvalidRequest, match="loaded now"):
        studio.delete_cached("cachetest/browse")
    assert any(r["id"] == "cachetest/browse" for r in studio.cached_checkpoints())

    studio.load("demo", variant="default", dtype="float32")
    assert studio.delete_cached("cachetest/browse")["freed_bytes"] == on_disk
    assert all(r["id"] != "cachetest/browse" for r in studio.cached_checkpoints())
    with pytest.raises(InvalidRequest, match="not in the local Hugging Face cache"):
        studio.delete_cached("cachetest/browse")


def test_public_server_offers_no_cache_browser_or_saving():
    studio = Studio(StudioOptions(public=True))
    with pytest.raises(InvalidRequest, match="not available on a public server"):
        studio.cached_checkpoints()
    with pytest.raises(InvalidRequest, match="not available on a public server"):
        studio.delete_cached("anything/here")
    with pytest.raises(InvalidRequest, match="not available on a public server"):
        studio.save_variant("", "fp16", "float16")


def test_save_a_bf16_variant_next_to_the_originals_and_load_it_back(demo_dir, tmp_path):
    folder = tmp_path / "checkpoint"
    shutil.copytree(demo_dir, folder)
    originals = {p: _sha(p) for p in folder.rglob("*.safetensors")}
    studio = Studio()
    studio.load(str(folder), variant="default", dtype="float32")
    unet = {k: v.clone() for k, v in studio.pool.base.unet.state_dict().items()}

    saved = studio.save_variant("", "bf16", "bfloat16")

    assert saved["folder"] == str(folder.resolve())
    assert "unet/diffusion_pytorch_model.bf16.safetensors" in saved["files"]
    assert any(f.startswith("text_encoder/") for f in saved["files"])
    assert all(_sha(p) == digest for p, digest in originals.items())  # the original files are untouched
    assert studio.model_info()["model"] == str(folder)  # and the loaded pool is unchanged, still float32
    assert studio.pool.base.unet.dtype == torch.float32

    again = Studio()
    info = again.load(str(folder), variant="bf16", dtype="float32")
    assert "bf16" in info["variants"] and info["variant"] == "bf16"
    reloaded = again.pool.base.unet.state_dict()
    for key, value in unet.items():
        assert torch.equal(reloaded[key], value.to(torch.bfloat16).to(torch.float32)), key


def test_save_a_demo_as_fp16_into_a_new_folder_then_load_only_that(tmp_path):
    studio = Studio()
    studio.load("demo", variant="default", dtype="float32")
    with pytest.raises(InvalidRequest, match="give a folder"):
        studio.save_variant("", "fp16", "float16")
    with pytest.raises(InvalidRequest, match="variant name"):
        studio.save_variant(str(tmp_path / "x"), "../evil", "float16")

    saved = studio.save_variant(str(tmp_path / "fp16-copy"), "fp16", "float16")
    assert (tmp_path / "fp16-copy" / "model_index.json").is_file()
    assert saved["bytes"] > 0 and all(".fp16." in f for f in saved["files"])

    again = Studio()
    info = again.load(str(tmp_path / "fp16-copy"), variant="fp16", dtype="float32")
    assert info["variants"] == ["fp16"]
    image = again.generate(_request()).images[0]
    assert image.size == (64, 64)


def test_save_refuses_with_adapters_loaded():
    studio = Studio()
    studio.load("demo", variant="default", dtype="float32")
    studio.load_lora("demo-lora", 1.0)
    with pytest.raises(InvalidRequest, match="Unload the LoRAs"):
        studio.save_variant("/tmp/never-written", "fp16", "float16")


def test_save_after_a_lora_came_and_went_writes_the_plain_weights_and_loads_back(tmp_path):
    """peft's wrapper layers stayed after an unload, so the saved UNet held `...base_layer.weight` keys and
    loading it back failed with "Cannot copy out of meta tensor"."""
    from safetensors import safe_open

    studio = Studio()
    studio.load("demo", variant="default", dtype="float32")
    plain = studio.generate(_request()).images[0].tobytes()
    studio.load_lora("demo-lora", 1.0)
    studio.unload_lora("demo_lora")
    assert studio.generate(_request()).images[0].tobytes() == plain
    studio.save_variant(str(tmp_path / "copy"), "fp32", "float32")
    with safe_open(tmp_path / "copy" / "unet" / "diffusion_pytorch_model.fp32.safetensors", "pt") as f:
        keys = list(f.keys())
    assert keys and not [k for k in keys if "base_layer" in k or "lora" in k]
    again = Studio()
    again.load(str(tmp_path / "copy"), variant="fp32", dtype="float32")
    assert again.generate(_request()).images[0].tobytes() == plain


def _request():
    from core.generation import GenerationRequest

    return GenerationRequest(task="text2img", prompt="a lighthouse", steps=2, width=64, height=64, seed=3)


def test_hf_hub_offline_alone_is_enough_to_load_from_the_cache(demo_dir, hub_cache, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # the environment variable, without --offline
    hub_cache(demo_dir, "cachetest/env-offline")
    assert (
        Studio().load("cachetest/env-offline", variant="default", dtype="float32")["model"] == "cachetest/env-offline"
    )


def test_deleting_a_repo_leaves_one_that_shares_its_commits(demo_dir, hub_cache):
    # put_in_hub_cache gives every repo the same commit hash, as a mirror or copy of a repo has on the real Hub.
    hub_cache(demo_dir, "cachetest/original")
    hub_cache(demo_dir, "cachetest/mirror")
    studio = Studio(StudioOptions(offline=True))
    studio.delete_cached("cachetest/original")
    listed = {r["id"] for r in studio.cached_checkpoints()}
    assert "cachetest/original" not in listed and "cachetest/mirror" in listed
    assert studio.load("cachetest/mirror", variant="default", dtype="float32")["model"] == "cachetest/mirror"
