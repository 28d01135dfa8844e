"""Know before you download: preflight and variant-only downloads against a fake Hub on 127.0.0.1."""

from __future__ import annotations

import shutil

import pytest
import torch
from safetensors import safe_open

from core import devices
from core.checkpoints import hub
from core.devices import DeviceMemory
from core.errors import LoadError
from core.studio import Studio, StudioOptions
from tests.fake_hub import serving


def _numel(path) -> int:
    with safe_open(str(path), framework="pt") as f:
        return sum(f.get_tensor(k).numel() for k in f.keys())  # noqa: SIM118


def test_preflight_reads_headers_only_and_counts_the_chosen_variant(demo_dir, monkeypatch):
    with serving({"fakehub/preflight": demo_dir}, monkeypatch) as fake:
        report = Studio().preflight("fakehub/preflight", variant="fp16", dtype="bfloat16")
        downloaded = fake.downloaded()

    assert report["pipeline"] == "StableDiffusionPipeline"
    assert set(report["variants"]) == {"default", "fp16", "non_ema"}
    fp16_files = sorted(str(p.relative_to(demo_dir)) for p in demo_dir.rglob("*.fp16.safetensors"))
    weights = sorted(f["file"] for f in report["files"] if f["file"].endswith(".safetensors"))
    assert weights == fp16_files  # not the default, non_ema or pickle copies
    # Nothing but small config files was fetched whole; the weights were only peeked at (ranged reads).
    assert downloaded and all(name.endswith((".json", ".txt")) for name in downloaded), downloaded
    on_disk = {str(p.relative_to(demo_dir)): p.stat().st_size for p in demo_dir.rglob("*") if p.is_file()}
    assert report["download_bytes"] == sum(on_disk[f["file"]] for f in report["files"] if not f["cached"])
    assert report["total_bytes"] == sum(on_disk[f["file"]] for f in report["files"])
    # fp16 weights loaded as bfloat16: two bytes per parameter, counted independently from the files themselves.
    assert report["memory_bytes"] == 2 * sum(_numel(demo_dir / f) for f in fp16_files)


def test_memory_need_follows_the_dtype_and_the_verdict_the_free_memory(demo_dir, monkeypatch):
    studio = Studio()
    with serving({"fakehub/verdict": demo_dir}, monkeypatch):
        half = studio.preflight("fakehub/verdict", variant="fp16", dtype="bfloat16")
        full = studio.preflight("fakehub/verdict", variant="fp16", dtype="float32")
        assert full["memory_bytes"] == 2 * half["memory_bytes"]

        need = full["memory_bytes"]
        for free, verdict in ((need * 2, "fits"), (int(need * 1.1), "tight"), (need // 2, "does not fit")):
            fake = DeviceMemory("cpu", "fake", need * 4, free, 0, 0, 0, 0)
            monkeypatch.setattr(devices, "read_memory", lambda device, fake=fake: fake)
            assert studio.preflight("fakehub/verdict", variant="fp16", dtype="float32")["verdict"] == verdict


def test_load_downloads_only_the_variant_with_byte_progress_then_uses_the_cache(demo_dir, monkeypatch):
    studio = Studio()
    seen: list[tuple[int, int]] = []
    with serving({"fakehub/download": demo_dir}, monkeypatch, bytes_per_second=4_000_000) as fake:
        report = studio.preflight("fakehub/download", variant="fp16", dtype="float32")
        info = studio.load(
            "fakehub/download", variant="fp16", dtype="float32", on_progress=lambda d, t: seen.append((d, t))
        )
        weights = {n for n in fake.downloaded() if n.endswith(".safetensors")}
        assert weights == {
            f"fakehub/download/{f['file']}" for f in report["files"] if f["file"].endswith(".safetensors")
        }
        assert info["variant"] == "fp16" and info["model"] == "fakehub/download"
        # The bar moved through the bytes and ended full, over what preflight said would be downloaded.
        assert len(seen) > 3 and seen[-1][0] == seen[-1][1]
        assert seen[-1][1] == sum(f["bytes"] for f in report["files"] if not f["cached"] and "/" in f["file"])
        assert [d for d, _ in seen] == sorted(d for d, _ in seen)

        again = studio.preflight("fakehub/download", variant="fp16", dtype="float32")
        assert again["download_bytes"] == 0 and all(f["cached"] for f in again["files"])
        before = len(fake.downloaded())
        studio.load("fakehub/download", variant="fp16", dtype="float32")
        assert all(n.endswith((".json", ".txt")) for n in fake.downloaded()[before:])  # no weights fetched again

    # Offline afterwards, the cached variant still loads (and preflight reads the cached headers).
    offline = Studio(StudioOptions(offline=True))
    assert offline.preflight("fakehub/download", variant="fp16", dtype="float32")["download_bytes"] == 0
    assert offline.load("fakehub/download", variant="fp16", dtype="float32")["variant"] == "fp16"
    image = offline.generate(_request(offline)).images[0]
    assert image.size == (64, 64)


def _request(studio):
    from core.generation import GenerationRequest

    return GenerationRequest(task="text2img", prompt="a lighthouse", steps=2, width=64, height=64, seed=3)


def test_unknown_repo_and_missing_variant_say_what_to_do(demo_dir, monkeypatch, tmp_path):
    shutil.copytree(demo_dir, tmp_path / "repo", ignore=shutil.ignore_patterns("*.fp16.*"))
    studio = Studio()
    with serving({"fakehub/known": tmp_path / "repo"}, monkeypatch):
        with pytest.raises(LoadError, match="no repository"):
            studio.preflight("fakehub/unknown")
        with pytest.raises(LoadError, match=r"no 'fp16' variant\. It has: default, non_ema"):
            studio.preflight("fakehub/known", variant="fp16")


def test_weight_files_fall_back_to_default_per_component():
    names = [
        "unet/diffusion_pytorch_model.fp16.safetensors",
        "unet/diffusion_pytorch_model.safetensors",
        "vae/diffusion_pytorch_model.safetensors",
        "vae/diffusion_pytorch_model.bin",
        "text_encoder/model.fp16-00001-of-00002.safetensors",
        "text_encoder/model.fp16-00002-of-00002.safetensors",
        "safety_checker/pytorch_model.bin",
    ]
    chosen = hub.weight_files(names, ["unet", "vae", "text_encoder", "safety_checker", "tokenizer"], "fp16")
    assert chosen == {
        "unet": ["unet/diffusion_pytorch_model.fp16.safetensors"],
        "vae": ["vae/diffusion_pytorch_model.safetensors"],  # no fp16 file: the default one, never the pickle copy
        "text_encoder": [
            "text_encoder/model.fp16-00001-of-00002.safetensors",
            "text_encoder/model.fp16-00002-of-00002.safetensors",
        ],
        "safety_checker": ["safety_checker/pytorch_model.bin"],  # pickle only when there is nothing else
    }


def test_tensor_bytes_casts_floats_only():
    counts = {"F32": 10, "F16": 6, "I64": 2}
    assert hub._tensor_bytes(counts, torch.float16) == 16 * 2 + 2 * 8
    assert hub._tensor_bytes(counts, torch.float32) == 16 * 4 + 2 * 8
