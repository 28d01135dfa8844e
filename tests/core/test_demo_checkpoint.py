"""The offline demo checkpoint: SD 1.5's layout and configs, its variants, determinism, and the CLI."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys

import torch
from diffusers import DiffusionPipeline, PNDMScheduler, StableDiffusionPipeline
from safetensors import safe_open

from core.demo.checkpoint import demo_checkpoint_path, write_demo_checkpoint

COMPONENTS = ["unet", "vae", "text_encoder", "tokenizer", "scheduler", "safety_checker", "feature_extractor"]


def digests(folder) -> dict[str, str]:
    return {
        str(f.relative_to(folder)): hashlib.sha256(f.read_bytes()).hexdigest() for f in folder.rglob("*") if f.is_file()
    }


def test_layout_is_sd15s(demo_dir):
    index = json.loads((demo_dir / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusionPipeline"
    assert index["feature_extractor"] == ["transformers", "CLIPImageProcessor"]
    for name in COMPONENTS:
        assert (demo_dir / name).is_dir(), name
    for name in ["unet", "vae", "text_encoder", "safety_checker"]:
        weights = sorted(f.name for f in (demo_dir / name).glob("*.safetensors"))
        stem = "diffusion_pytorch_model" if name in ("unet", "vae") else "model"
        expected = [f"{stem}.fp16.safetensors", f"{stem}.safetensors"]
        if name == "unet":
            expected.insert(1, f"{stem}.non_ema.safetensors")
        assert weights == expected, name
    assert not list(demo_dir.rglob("*.bin")), "safetensors only"
    assert sum(f.stat().st_size for f in demo_dir.rglob("*") if f.is_file()) < 12 * 1024 * 1024
    extractor = json.loads((demo_dir / "feature_extractor" / "preprocessor_config.json").read_text())
    assert extractor["image_processor_type"] == "CLIPImageProcessor"


def test_it_loads_as_sd15_with_sd15s_scheduler_config(demo_dir):
    pipe = DiffusionPipeline.from_pretrained(demo_dir, use_safetensors=True)
    assert isinstance(pipe, StableDiffusionPipeline)
    assert pipe.vae_scale_factor == 8 and pipe.unet.config.sample_size == 64
    assert pipe.tokenizer.model_max_length == 77
    assert len(pipe.tokenizer("word " * 200, truncation=True).input_ids) == 77
    scheduler = pipe.scheduler
    assert isinstance(scheduler, PNDMScheduler)
    config = dict(scheduler.config)
    assert config["beta_schedule"] == "scaled_linear" and config["beta_start"] == 0.00085
    assert config["beta_end"] == 0.012 and config["steps_offset"] == 1 and config["skip_prk_steps"] is True
    assert config["clip_sample"] is False and config["set_alpha_to_one"] is False


def test_fp16_files_hold_float16(demo_dir):
    with safe_open(demo_dir / "unet" / "diffusion_pytorch_model.fp16.safetensors", "pt") as f:
        assert {f.get_slice(k).get_dtype() for k in f.keys()} == {"F16"}  # noqa: SIM118 (safe_open is not iterable)
    with safe_open(demo_dir / "unet" / "diffusion_pytorch_model.safetensors", "pt") as f:
        assert {f.get_slice(k).get_dtype() for k in f.keys()} == {"F32"}  # noqa: SIM118
    pipe = DiffusionPipeline.from_pretrained(demo_dir, variant="fp16", torch_dtype=torch.float16, use_safetensors=True)
    assert pipe.unet.dtype == torch.float16 and pipe.text_encoder.dtype == torch.float16


def test_writing_is_deterministic(tmp_path):
    a = write_demo_checkpoint(tmp_path / "a")
    b = write_demo_checkpoint(tmp_path / "b")
    assert digests(a) == digests(b)


def test_flag_all_checker_flags_and_default_one_does_not(demo_dir, flagging_demo_dir):
    for folder, expected in ((demo_dir, [False]), (flagging_demo_dir, [True])):
        pipe = StableDiffusionPipeline.from_pretrained(folder, use_safetensors=True)
        out = pipe("x", num_inference_steps=2, width=64, height=64, generator=torch.Generator().manual_seed(0))
        assert out.nsfw_content_detected == expected
        assert out.images[0].size == (64, 64)


def test_demo_path_is_written_once(tmp_path):
    first = demo_checkpoint_path(tmp_path)
    stamp = (first / "unet" / "diffusion_pytorch_model.safetensors").stat().st_mtime_ns
    second = demo_checkpoint_path(tmp_path)
    assert second == first
    assert (second / "unet" / "diffusion_pytorch_model.safetensors").stat().st_mtime_ns == stamp
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".demo-")], "no temporary folder left behind"


def test_command_line_writes_a_checkpoint(tmp_path):
    target = tmp_path / "cli-demo"
    result = subprocess.run([sys.executable, "-m", "core.demo_checkpoint", str(target)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(target)
    assert (target / "model_index.json").is_file()
