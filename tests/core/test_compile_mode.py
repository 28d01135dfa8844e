"""The compiled-UNet mode: the shared UNet's repeated blocks run compiled in every view, a run that paid a compile
says so, the images are the uncompiled ones, and turning it off (or loading another checkpoint) does what it says.
Compiled here with torch.compile's `eager` backend (tests/conftest.py): the wrapping is the same, inductor's code
generation is what the bench measures."""

from __future__ import annotations

import pytest

from core import compile_mode
from core.errors import InvalidRequest
from core.generation import GenerationRequest
from core.studio import Studio, StudioOptions


def request(**fields) -> GenerationRequest:
    base = dict(prompt="a lighthouse", steps=3, width=64, height=64, seed=4, safety_checker=False, scheduler="Euler")
    return GenerationRequest(**{**base, **fields})


def test_the_compiled_unet_serves_every_view_with_the_same_images_until_turned_off():
    studio = Studio(StudioOptions(device="cpu", offline=True))
    studio.load("demo", variant="default", dtype="float32")
    plain = studio.generate(request())
    unet = studio.pool.components["unet"]
    blocks = sum(1 for m in unet.modules() if type(m).__name__ == "BasicTransformerBlock")

    info = studio.set_compile(True)
    assert info["compiled"] and info["compiled_blocks"] == blocks > 0, "every transformer block, nothing else"
    assert studio.model_info()["compiled"] is True
    first = studio.generate(request())
    assert first.info["compiled"] is True
    assert any("compiled for this size and batch" in w for w in first.info["warnings"]), "the first run says so"
    again = studio.generate(request())
    assert not any("compiled for" in w for w in again.info["warnings"]), "the same size again: no compile"
    assert first.images[0].tobytes() == again.images[0].tobytes() == plain.images[0].tobytes()
    other = studio.generate(request(width=96))
    assert any("compiled for" in w for w in other.info["warnings"]), "a new size compiles again"
    assert "pipe.unet.compile_repeated_blocks()" in first.info["code"]

    picture = plain.images[0]
    img2img = studio.generate(request(task="img2img", image=picture, strength=0.5))
    assert img2img.info["compiled"] is True, "another view over the same UNet runs compiled"

    studio.load("demo-sdxl", variant="default", dtype="float32")
    assert studio.compile_info()["compiled_blocks"] > 0, "a checkpoint loaded while on is compiled too"
    studio.load("demo", variant="default", dtype="float32")
    assert studio.set_compile(False) == {"compiled": False, "compiled_blocks": 0, "backend": "eager"}
    after = studio.generate(request())
    assert "compiled" not in after.info and after.images[0].tobytes() == plain.images[0].tobytes()
    assert compile_mode.compiled_blocks(studio.pool.components["unet"]) == 0
    with pytest.raises(InvalidRequest, match="on must be true or false"):
        studio.set_compile("yes")
