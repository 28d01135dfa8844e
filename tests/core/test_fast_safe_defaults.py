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


def test_every_attention_layer_uses_sdpa(studio):
    kinds = {type(p).__name__ for p in studio.pool.base.unet.attn_processors.values()}
    assert kinds == {"AttnProcessor2_0"}, "torch's scaled_dot_product_attention, the fastest backend it offers"


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


def test_channels_last_only_where_it_was_measured_to_help(studio):
    from core.devices import prefers_channels_last

    assert prefers_channels_last(torch.device("cuda")) and not prefers_channels_last(torch.device("cpu"))
    conv = studio.pool.base.unet.conv_in.weight
    assert conv.is_contiguous() and not conv.is_contiguous(memory_format=torch.channels_last)
