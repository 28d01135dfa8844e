"""Loading checkpoints: variants, dtypes, Hub ids from the cache, and failures that leave the old pool serving."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from core.devices import cpu_supports_bf16
from core.errors import InvalidRequest, LoadError
from core.generation import GenerationRequest
from core.studio import Studio, StudioOptions

TINY = dict(prompt="a cat", steps=2, width=64, height=64, seed=1)


@pytest.fixture
def studio(tmp_path) -> Studio:
    studio = Studio(StudioOptions(device="cpu", offline=True))
    studio.load("demo", variant="default", dtype="float32")
    return studio


def test_core_imports_no_ui_library():
    code = (
        "import sys, core.studio, core.demo.checkpoint, core.pool, core.generation, core.outputs;"
        "bad = [m for m in ('gradio', 'spaces') if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_demo_lists_its_variants_before_loading(demo_dir):
    from core.checkpoints import resolve

    files = resolve("demo")
    assert files.path == demo_dir
    assert files.pipeline_class == "StableDiffusionPipeline"
    assert files.variants == ("default", "fp16", "non_ema")
    assert files.has_safetensors and not files.has_pickle


def test_load_reports_what_was_loaded(studio):
    info = studio.model_info()
    assert info["pipeline"] == "StableDiffusionPipeline"
    assert info["variant"] == "default" and info["dtype"] == "float32" and info["device"] == "cpu"
    assert info["tasks"] == [
        "text2img", "img2img", "inpaint", "controlnet", "safe_text2img", "paradigms", "attend_excite", "semantic",
        "panorama", "diffedit", "cycle", "pix2pix_zero", "model_editing", "animate", "video_zero",
    ]  # fmt: skip
    assert info["task_pipelines"]["inpaint"] == "StableDiffusionInpaintPipeline"
    assert info["is_demo"] is True and info["load_seconds"] > 0


def test_auto_dtype_and_variant_on_this_cpu():
    studio = Studio(StudioOptions(device="cpu", offline=True))
    info = studio.load("demo")
    if cpu_supports_bf16():
        assert (info["dtype"], info["variant"]) == ("bfloat16", "fp16")
    else:
        assert (info["dtype"], info["variant"]) == ("float32", "default")
    assert studio.pool.components["unet"].dtype == getattr(torch, info["dtype"])


def test_fp16_variant_loads_the_fp16_files(demo_dir):
    studio = Studio(StudioOptions(device="cpu", offline=True))
    studio.load("demo", variant="fp16", dtype="float32")
    fp16 = load_file(demo_dir / "unet" / "diffusion_pytorch_model.fp16.safetensors")
    name, stored = next(iter(fp16.items()))
    loaded = dict(studio.pool.components["unet"].named_parameters())[name]
    assert stored.dtype == torch.float16 and loaded.dtype == torch.float32
    assert torch.equal(loaded.detach(), stored.float())


def test_non_ema_variant_loads_other_unet_weights(demo_dir):
    studio = Studio(StudioOptions(device="cpu", offline=True))
    studio.load("demo", variant="non_ema", dtype="float32")
    non_ema = load_file(demo_dir / "unet" / "diffusion_pytorch_model.non_ema.safetensors")
    default = load_file(demo_dir / "unet" / "diffusion_pytorch_model.safetensors")
    params = dict(studio.pool.components["unet"].named_parameters())
    differing = [k for k in non_ema if not torch.equal(non_ema[k], default[k])]
    assert differing, "the demo's non_ema UNet must differ from the default one"
    assert all(torch.equal(params[k].detach(), non_ema[k]) for k in differing)


def test_missing_variant_names_the_ones_there(tmp_path, demo_dir):
    folder = tmp_path / "only-default"
    shutil.copytree(demo_dir, folder)
    for f in folder.rglob("*.fp16.safetensors"):
        f.unlink()
    studio = Studio(StudioOptions(device="cpu", offline=True))
    studio.load("demo", variant="default", dtype="float32")
    before = studio.pool
    with pytest.raises(LoadError, match=r"no 'fp16' variant\. It has: default, non_ema"):
        studio.load(str(folder), variant="fp16", dtype="float32")
    assert studio.pool is before and studio.generate(GenerationRequest(**TINY)).images, "the demo still serves"


def test_float16_on_cpu_is_refused_with_advice():
    studio = Studio(StudioOptions(device="cpu", offline=True))
    with pytest.raises(InvalidRequest, match="use bfloat16 or float32"):
        studio.load("demo", dtype="float16")


def test_hub_id_loads_from_the_offline_cache(demo_dir, hub_cache):
    hub_cache(demo_dir, "studio-tests/tiny-sd")
    studio = Studio(StudioOptions(device="cpu", offline=True))
    info = studio.load("studio-tests/tiny-sd", variant="auto", dtype="float32")
    assert info["model"] == "studio-tests/tiny-sd"
    assert info["variants"] == ["default", "fp16", "non_ema"]
    assert info["variant"] == "default"


def _corrupt_copy(demo_dir: Path, tmp_path: Path) -> str:
    folder = tmp_path / "corrupt"
    shutil.copytree(demo_dir, folder)
    target = folder / "unet" / "diffusion_pytorch_model.safetensors"
    target.write_bytes(target.read_bytes()[:1000])
    return str(folder)


def _pickle_only_copy(demo_dir: Path, tmp_path: Path) -> str:
    folder = tmp_path / "pickle-only"
    shutil.copytree(demo_dir, folder)
    for f in folder.rglob("*.safetensors"):
        f.with_name(f.name.replace(".safetensors", ".bin")).write_bytes(b"not really a pickle")
        f.unlink()
    return str(folder)


def _not_a_checkpoint(demo_dir: Path, tmp_path: Path) -> str:
    folder = tmp_path / "empty"
    folder.mkdir()
    return str(folder)


def _value_guided_planner(demo_dir: Path, tmp_path: Path) -> str:
    """A checkpoint of diffusers.experimental's ValueGuidedRLPipeline, as bglick13/hopper-medium-v2-value-function-
    hor32 lays it out (its UNets' weights don't matter: the class is what is refused)."""
    folder = tmp_path / "value-guided"
    shutil.copytree(demo_dir, folder)
    index = {"_class_name": "ValueGuidedRLPipeline", "_diffusers_version": "0.11.0"}
    index.update(scheduler=["diffusers", "DDPMScheduler"], unet=["diffusers", "UNet1DModel"])
    (folder / "model_index.json").write_text(json.dumps({**index, "value_function": ["diffusers", "UNet1DModel"]}))
    return str(folder)


FAILURES = [
    ("unknown hub id", lambda d, t: "nobody-here/no-such-model", r"not in the local cache"),
    ("missing folder", lambda d, t: str(t / "does-not-exist"), r"neither an existing folder nor a Hub id"),
    ("not a checkpoint", _not_a_checkpoint, r"no model_index.json"),
    ("corrupt safetensors", _corrupt_copy, r"failed: .*damaged"),
    ("pickle only", _pickle_only_copy, r"only pickle .* --allow-unsafe"),
    ("value-guided planner", _value_guided_planner, r"ValueGuidedRLPipeline, which diffusers .* gym environment"),
]


@pytest.mark.parametrize(("kind", "make_source", "message"), FAILURES, ids=[f[0] for f in FAILURES])
def test_failed_load_keeps_the_previous_checkpoint_serving(studio, demo_dir, tmp_path, kind, make_source, message):
    before = studio.pool
    expected = studio.generate(GenerationRequest(**TINY)).images[0]
    with pytest.raises(LoadError, match=message):
        studio.load(make_source(demo_dir, tmp_path), variant="auto", dtype="float32")
    assert studio.pool is before
    again = studio.generate(GenerationRequest(**TINY)).images[0]
    assert again.tobytes() == expected.tobytes()


def test_a_new_load_replaces_the_pool_and_frees_the_old_one():
    import gc
    import weakref

    studio = Studio(StudioOptions(device="cpu", offline=True))
    studio.load("demo", variant="default", dtype="float32")
    old_unet = weakref.ref(studio.pool.components["unet"])
    studio.load("demo", variant="non_ema", dtype="float32")
    gc.collect()
    assert old_unet() is None
    assert studio.model_info()["variant"] == "non_ema"


def test_only_diffusers_variant_file_names_make_variants(tmp_path, demo_dir):
    """A repo's single-file checkpoints beside its folders (SDXL's `sd_xl_base_1.0.safetensors`,
    `sd_xl_refiner_1.0_0.9vae.safetensors`) once showed up as variants `0` and `9vae`."""
    from core.checkpoints import scan_folder

    names = [
        "unet/diffusion_pytorch_model.safetensors",
        "unet/diffusion_pytorch_model.fp16.safetensors",
        "text_encoder/model.fp16-00001-of-00002.safetensors",
        "sd_xl_base_1.0.safetensors",
        "sd_xl_refiner_1.0_0.9vae.safetensors",
        "unet/diffusion_pytorch_model.safetensors.index.fp16.json",
    ]
    files = scan_folder(demo_dir, source="demo", file_names=names)
    assert files.variants == ("default", "fp16")
