"""Single-file checkpoints (original layout, as the web UIs share them) through diffusers' single-file loader."""

from __future__ import annotations

import runpy
import shutil

import pytest
import torch
from huggingface_hub import constants
from PIL import Image

from core.errors import InvalidRequest, LoadError
from core.generation import GenerationRequest
from core.studio import Studio, StudioOptions
from tests.ldm_checkpoint import write_ldm_checkpoint

REQUEST = dict(prompt="a windmill", steps=3, width=64, height=64, seed=21, scheduler="Euler a")


@pytest.fixture(scope="module")
def single_file(demo_dir, tmp_path_factory):
    """The demo checkpoint as one original-layout file, with its diffusers configs next to it (`model/`)."""
    folder = tmp_path_factory.mktemp("single")
    target = write_ldm_checkpoint(demo_dir, folder / "model.safetensors")
    shutil.copytree(demo_dir, folder / "model", ignore=shutil.ignore_patterns("*.fp16.*", "*.non_ema.*"))
    for weights in (folder / "model").glob("[utv]*/*.safetensors"):  # unet, text_encoder, vae: only in the file
        weights.unlink()
    return target


def test_a_single_file_loads_with_the_configs_beside_it_and_matches_the_folder(
    single_file, demo_dir, tmp_path, monkeypatch
):
    studio = Studio(StudioOptions(outputs_dir=tmp_path))
    info = studio.load(str(single_file), dtype="float32")
    assert info["pipeline"] == "StableDiffusionPipeline" and info["model_path"] == str(single_file)
    assert info["safety_checker"], "the checker comes from the config folder, which has its weights"
    from_file = studio.generate(GenerationRequest(task="text2img", **REQUEST))

    folder = Studio()
    folder.load(str(demo_dir), variant="default", dtype="float32")
    from_folder = folder.generate(GenerationRequest(task="text2img", **REQUEST))
    assert from_file.images[0].tobytes() == from_folder.images[0].tobytes()
    for name in ("unet", "vae", "text_encoder"):
        ours, theirs = studio.pool.base.components[name], folder.pool.base.components[name]
        assert ours is not theirs  # loaded from the file, not shared by the folder's fingerprints
        assert all(
            torch.equal(a, b) for a, b in zip(ours.state_dict().values(), theirs.state_dict().values(), strict=True)
        )

    # Every task view works from it, and the snippet loads the file itself.
    image = from_file.images[0]
    img2img = studio.generate(GenerationRequest(task="img2img", image=image, strength=0.5, **REQUEST))
    code = img2img.info["code"]
    assert f"StableDiffusionPipeline.from_single_file({str(single_file)!r}" in code
    assert "AutoPipelineForImage2Image.from_pipe(pipe)" in code
    (tmp_path / "reproduce.py").write_text(code)
    image.save(tmp_path / "input.png")
    monkeypatch.chdir(tmp_path)
    runpy.run_path(str(tmp_path / "reproduce.py"), run_name="__main__")
    assert Image.open(tmp_path / "image.png").tobytes() == img2img.images[0].tobytes()


def test_without_local_configs_it_says_which_model_it_needs(single_file, tmp_path, monkeypatch):
    alone = tmp_path / "lonely.safetensors"
    shutil.copy(single_file, alone)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(LoadError, match=r"looks like a stable-diffusion-v1-5/stable-diffusion-v1-5 checkpoint"):
        Studio(StudioOptions(offline=True)).load(str(alone), dtype="float32")


def test_the_inferred_models_configs_from_the_cache_are_enough(single_file, demo_dir, tmp_path, monkeypatch, hub_cache):
    alone = tmp_path / "cached.safetensors"
    shutil.copy(single_file, alone)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "cache"))
    hub_cache(demo_dir, "stable-diffusion-v1-5/stable-diffusion-v1-5")  # as if loaded once online
    studio = Studio(StudioOptions(offline=True))
    info = studio.load(str(alone), dtype="float32")
    assert info["pipeline"] == "StableDiffusionPipeline"
    code = studio.generate(GenerationRequest(task="text2img", **REQUEST)).info["code"]
    assert "config='stable-diffusion-v1-5/stable-diffusion-v1-5'" in code


def test_a_damaged_or_foreign_file_is_refused_clearly(tmp_path):
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"not safetensors")
    with pytest.raises(LoadError, match="not a single-file checkpoint diffusers recognises"):
        Studio().load(str(broken), dtype="float32")


def test_the_files_own_vae_comes_back_after_another(single_file, demo_dir):
    studio = Studio()
    studio.load(str(single_file), dtype="float32")
    before = studio.generate(GenerationRequest(task="text2img", **REQUEST)).images[0].tobytes()
    own = studio.pool.base.vae
    assert studio.set_vae(str(demo_dir / "vae"))["vae"] == str(demo_dir / "vae")
    assert studio.set_vae("default")["vae"] == "default"
    assert studio.pool.base.vae is not own  # read from the single file again
    assert studio.generate(GenerationRequest(task="text2img", **REQUEST)).images[0].tobytes() == before


def test_preflight_of_a_single_file_counts_its_tensors(single_file):
    from safetensors import safe_open

    with safe_open(str(single_file), framework="pt") as f:
        numel = sum(_numel(f.get_slice(k).get_shape()) for k in f.keys())  # noqa: SIM118
    report = Studio().preflight(str(single_file), dtype="bfloat16")
    assert report["files"] == [{"file": "model.safetensors", "bytes": single_file.stat().st_size, "cached": True}]
    assert report["download_bytes"] == 0 and report["memory_bytes"] == 2 * numel
    assert report["pipeline"] == "StableDiffusionPipeline" and report["verdict"] == "fits"


def _numel(shape) -> int:
    n = 1
    for dim in shape:
        n *= dim
    return n


def test_a_missing_single_file_is_called_a_file(tmp_path):
    with pytest.raises(LoadError, match="neither an existing file nor a Hub id"):
        Studio().load(str(tmp_path / "gone.safetensors"))


def test_saving_a_single_file_as_a_variant_makes_a_diffusers_folder_of_it(single_file, tmp_path):
    studio = Studio()
    studio.load(str(single_file), dtype="float32")
    with pytest.raises(InvalidRequest, match="give a folder"):
        studio.save_variant("", "fp32", "float32")  # never into the config folder beside it
    before = studio.generate(GenerationRequest(task="text2img", **REQUEST)).images[0].tobytes()
    studio.save_variant(str(tmp_path / "as-diffusers"), "fp32", "float32")

    again = Studio()
    info = again.load(str(tmp_path / "as-diffusers"), variant="fp32", dtype="float32")
    assert info["variants"] == ["fp32"] and info["model_path"] == str(tmp_path / "as-diffusers")
    assert again.generate(GenerationRequest(task="text2img", **REQUEST)).images[0].tobytes() == before
