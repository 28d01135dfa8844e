"""The tiny VAE (AutoencoderTiny, TAESD's layout): live previews as pictures of the image's size, decoded the way
the pipeline decodes; Text to image's fast decode, which is plain diffusers with `pipe.vae = AutoencoderTiny`; and
the pool's own VAE untouched throughout."""

from __future__ import annotations

import gc
import runpy
import weakref

import pytest
import torch
from PIL import Image

from core.errors import InvalidRequest, NotLoaded
from core.generation import GenerationRequest
from core.studio import Studio, StudioOptions


@pytest.fixture(scope="module")
def studio() -> Studio:
    studio = Studio(StudioOptions(device="cpu", offline=True))
    studio.load("demo", variant="default", dtype="float32")
    return studio


def request(**fields) -> GenerationRequest:
    base = dict(prompt="a lighthouse", steps=4, width=64, height=64, seed=3, safety_checker=False, scheduler="Euler")
    return GenerationRequest(**{**base, **fields})


def test_previews_fast_decode_and_its_script_with_a_tiny_vae(studio, tmp_path, monkeypatch):
    shown: list = []
    plain = studio.generate(request(preview_every=1), on_preview=shown.append)
    assert [p[0].size for p in shown] == [(8, 8)] * 4, "without a tiny VAE: the latents' colours at 1/8 size"
    with pytest.raises(NotLoaded, match="tiny VAE needs one loaded"):
        studio.generate(request(tiny_decode=True))

    assert studio.load_companion("tiny_vae", "demo-tiny-vae")["companions"]["tiny_vae"] == "demo-tiny-vae"
    try:
        assert "tiny_vae" in {row["name"] for row in studio.memory_report()["components"]}
        shown.clear()
        same = studio.generate(request(preview_every=1), on_preview=shown.append)
        assert [p[0].size for p in shown] == [(64, 64)] * 4, "with one: pictures of the image's size"
        assert same.images[0].tobytes() == plain.images[0].tobytes(), "the final image still comes from the VAE"

        shown.clear()
        fast = studio.generate(request(preview_every=1, tiny_decode=True), on_preview=shown.append)
        assert fast.info["tiny_vae"] == "demo-tiny-vae" and "tiny_vae" not in same.info
        assert fast.images[0].tobytes() != plain.images[0].tobytes(), "decoded by the tiny VAE"
        # The last step's preview is the final latents through the tiny VAE, as the pipeline's own decode does.
        assert shown[-1][0].tobytes() == fast.images[0].tobytes()
        assert type(studio.pool.base.vae).__name__ == "AutoencoderKL", "the pool keeps its VAE"
        after = studio.generate(request())
        assert after.images[0].tobytes() == plain.images[0].tobytes()

        # Its script is plain diffusers with `pipe.vae = AutoencoderTiny...`, and makes the same pixels.
        assert "pipe.vae = AutoencoderTiny.from_pretrained(" in fast.info["code"]
        (tmp_path / "reproduce.py").write_text(fast.info["code"])
        monkeypatch.chdir(tmp_path)
        runpy.run_path(str(tmp_path / "reproduce.py"), run_name="__main__")
        assert Image.open(tmp_path / "image.png").tobytes() == fast.images[0].tobytes()

        with pytest.raises(InvalidRequest, match="tiny_decode must be true or false"):
            studio.generate(request(tiny_decode="yes"))
    finally:
        tiny = weakref.ref(studio.tiny_vae.vae)
        studio.unload_companion("tiny_vae")
    gc.collect()
    assert tiny() is None, "unloading frees it"
    shown.clear()
    studio.generate(request(preview_every=2), on_preview=shown.append)
    assert [p[0].size for p in shown] == [(8, 8)] * 2


def test_a_fast_decode_leaves_the_pools_modules_in_their_dtype():
    """from_pipe casts to float32 unless told the dtype: a bfloat16 pool's shared UNet came out of a tiny-decode run in
    float32, and the next plain run failed in its VAE."""
    studio = Studio(StudioOptions(device="cpu", offline=True))
    studio.load("demo", variant="default", dtype="bfloat16")
    studio.load_companion("tiny_vae", "demo-tiny-vae")
    studio.generate(request(tiny_decode=True, steps=2))
    dtypes = {name: m.dtype for name, m in studio.pool.components.items() if isinstance(m, torch.nn.Module)}
    assert set(dtypes.values()) == {torch.bfloat16}, dtypes
    assert studio.generate(request(steps=2)).images[0].size == (64, 64)


def test_the_refiner_and_another_familys_latents_are_told_no():
    studio = Studio(StudioOptions(device="cpu", offline=True))
    studio.load("demo-sdxl", variant="default", dtype="float32")
    studio.load_companion("tiny_vae", "demo-tiny-vae")
    with pytest.raises(InvalidRequest, match="turn off the tiny VAE decode"):
        studio.generate(request(tiny_decode=True, refiner_switch=0.8))
    studio.load("demo-sd3", variant="default", dtype="float32")
    with pytest.raises(InvalidRequest, match="reads 4-channel latents"):
        studio.generate(request(tiny_decode=True, scheduler="default"))
    shown: list = []
    studio.generate(request(preview_every=2, scheduler="default"), on_preview=shown.append)
    assert shown and shown[0][0].size == (8, 8), "SD3's 16-channel latents: the linear preview, not the tiny VAE"
