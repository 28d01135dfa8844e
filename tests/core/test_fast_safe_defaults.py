"""Device-aware defaults: PyTorch's fused attention (SDPA) everywhere, and an all-black image (a VAE overflowing in
float16) explained instead of passed off as a result."""

from __future__ import annotations

import types

import pytest
import torch
from PIL import Image

from core.describe import black_image_warnings
from core.generation import GenerationRequest
from core.studio import Studio, StudioOptions

T2I = dict(prompt="a lamp", steps=2, width=64, height=64, seed=17, safety_checker=False)


@pytest.fixture(scope="module")
def studio() -> Studio:
    studio = Studio(StudioOptions(device="cpu", offline=True))
    studio.load("demo", variant="default", dtype="float32")
    return studio


def test_fused_attention_comes_back_after_everything_that_swaps_it(studio):
    """diffusers starts every layer on torch's fused attention (SDPA); attention slicing, SAG and a Stop in a
    PAG run swap processors on the shared UNet, and the studio must put SDPA back after each."""
    import threading

    unet = studio.pool.base.unet

    def kinds() -> set[str]:
        return {type(p).__name__ for p in unet.attn_processors.values()}

    assert kinds() == {"AttnProcessor2_0"}
    studio.set_memory_modes(attention_slicing=True)
    assert kinds() == {"SlicedAttnProcessor"}
    studio.set_memory_modes(attention_slicing=False)
    assert kinds() == {"AttnProcessor2_0"}
    studio.generate(GenerationRequest(**T2I, sag_scale=0.75))
    assert kinds() == {"AttnProcessor2_0"}
    cancel, swapped = threading.Event(), []

    def stop(done: int, _total: int) -> None:
        swapped.append(kinds())
        cancel.set()

    result = studio.generate(GenerationRequest(**{**T2I, "steps": 4}, pag_scale=2.0), on_step=stop, cancel=cancel)
    assert result.info["interrupted"] and swapped[0] != {"AttnProcessor2_0"}, "PAG ran on its own processors"
    assert kinds() == {"AttnProcessor2_0"}


def test_an_all_black_image_gets_a_warning_that_says_what_to_do(studio, monkeypatch):
    vae = studio.pool.components["vae"]
    decode = vae.decode

    def overflowing(latents, *args, **kwargs):  # what an fp16 VAE that overflows hands back
        out = decode(latents, *args, **kwargs)
        return (torch.full_like(out[0], float("nan")),)

    monkeypatch.setattr(vae, "decode", overflowing)
    result = studio.generate(GenerationRequest(**T2I, num_images=2))
    assert result.images[0].getextrema() == ((0, 0), (0, 0), (0, 0))
    assert any("Image 1, 2 came out all black" in w for w in result.info["warnings"])
    monkeypatch.undo()
    assert not any("black" in w for w in studio.generate(GenerationRequest(**T2I)).info["warnings"])


def test_in_float16_the_warning_names_the_fp16_fixed_vae():
    black, grey = Image.new("RGB", (8, 8)), Image.new("RGB", (8, 8), (90, 90, 90))
    half = types.SimpleNamespace(dtype=torch.float16)
    (warning,) = black_image_warnings(half, [grey, black], nsfw=None)
    assert warning.startswith("Image 2 came out all black") and "sdxl-vae-fp16-fix" in warning
    assert black_image_warnings(half, [black], nsfw=[True]) == [], "the safety checker's black-out says so itself"


def test_channels_last_is_set_at_load_where_the_device_prefers_it(studio, monkeypatch):
    """Where the device prefers it (CUDA), the loaded UNet's convolutions are channels_last; here (a CPU, where it
    was measured not to help) they are not. The layout changes no image."""
    from core import devices

    conv = studio.pool.base.unet.conv_in.weight
    assert conv.is_contiguous() and not conv.is_contiguous(memory_format=torch.channels_last)
    plain = studio.generate(GenerationRequest(**T2I)).images[0]
    monkeypatch.setattr(devices, "prefers_channels_last", lambda device: True)
    other = Studio(StudioOptions(device="cpu", offline=True))
    other.load("demo", variant="default", dtype="float32")
    conv = other.pool.base.unet.conv_in.weight
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    laid_out = other.generate(GenerationRequest(**T2I)).images[0]
    diff = max(abs(a - b) for a, b in zip(plain.tobytes(), laid_out.tobytes(), strict=True))
    assert diff <= 1, "the same image, up to rounding"
