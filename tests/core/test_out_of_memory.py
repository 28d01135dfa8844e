"""Out of memory, injected where it happens (a UNet step, the VAE decode, a load): the user is told what to try,
the run's tensors are freed, and the loaded model keeps serving the same images."""

from __future__ import annotations

import gc
import weakref

import pytest
import torch

from core.errors import LoadError, OutOfMemory
from core.generation import GenerationRequest
from core.studio import Studio, StudioOptions

T2I = dict(prompt="a lamp", steps=3, width=64, height=64, seed=17, safety_checker=False)


@pytest.fixture
def studio() -> Studio:
    studio = Studio(StudioOptions(device="cpu", offline=True))
    studio.load("demo", variant="default", dtype="float32")
    return studio


def first_image(studio: Studio, **fields) -> bytes:
    return studio.generate(GenerationRequest(**{**T2I, **fields})).images[0].tobytes()


@pytest.mark.parametrize("where", ["unet", "vae"])
def test_a_run_out_of_memory_is_explained_freed_and_the_model_keeps_serving(studio, monkeypatch, where):
    before, pool = first_image(studio), studio.pool
    module = pool.components[where]
    held: list[weakref.ref] = []
    original = module.forward if where == "unet" else module.decode

    def exhausted(*args, **kwargs):
        scratch = torch.empty(4_000_000)  # what the failing step had allocated when it ran out
        held.append(weakref.ref(scratch))
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(module, "forward" if where == "unet" else "decode", exhausted)
    with pytest.raises(OutOfMemory) as caught:
        studio.generate(GenerationRequest(**{**T2I, "num_images": 2, "width": 128, "height": 128}))
    message = str(caught.value)
    assert message.startswith("Out of memory on this machine while making 2 image(s) of 128x128")
    assert "fewer images at once (you asked for 2)" in message and "a smaller size" in message
    assert "VAE tiling" in message and "lower dtype" in message
    assert caught.value.__context__ is None, "raised outside the except block: no traceback keeps the run alive"
    gc.collect()
    assert held and held[0]() is None, "the failed run's tensors are freed"

    monkeypatch.setattr(module, "forward" if where == "unet" else "decode", original)
    assert studio.pool is pool and first_image(studio) == before


def test_advice_follows_what_the_run_used(studio, monkeypatch):
    from core.memory_modes import MemoryModes, oom_advice

    request = GenerationRequest(**T2I)
    gpu = oom_advice(request, torch.float16, torch.device("cuda"), MemoryModes())
    assert gpu.startswith("Out of memory on the GPU") and "model CPU offload" in gpu and "fewer images" not in gpu
    assert "lower dtype" not in gpu, "already half precision"
    tiled = oom_advice(request, torch.float16, torch.device("cuda"), MemoryModes(offload="model", vae_tiling=True))
    assert "offload" not in tiled and "tiling" not in tiled and "smaller size" in tiled


def test_a_load_out_of_memory_leaves_the_previous_model_serving(studio, monkeypatch):
    from diffusers import DiffusionPipeline

    before, pool = first_image(studio), studio.pool
    held: list[weakref.ref] = []
    real = DiffusionPipeline.from_pretrained.__func__

    def exhausted(cls, *args, **kwargs):
        half_done = real(cls, *args, **kwargs)  # every module loaded, then the move to the device runs out
        held.append(weakref.ref(half_done.unet))
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 3.00 GiB")

    monkeypatch.setattr(DiffusionPipeline, "from_pretrained", classmethod(exhausted))
    with pytest.raises(LoadError, match=r"Not enough cpu memory to load 'demo-sdxl'.*half-precision dtype") as caught:
        studio.load("demo-sdxl", dtype="float32")
    assert caught.value.__context__ is None and caught.value.__cause__ is None, "no traceback keeps the modules"
    gc.collect()
    assert held and held[0]() is None, "the half-loaded checkpoint is freed"
    assert studio.pool is pool and first_image(studio) == before


def test_out_of_memory_while_swapping_the_vae_keeps_the_current_one(studio, monkeypatch, demo_dir):
    import diffusers

    before, pool = first_image(studio), studio.pool
    held: list[weakref.ref] = []

    def exhausted(*args, **kwargs):
        scratch = torch.empty(4_000_000)  # what the half-done load held
        held.append(weakref.ref(scratch))
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 160.00 MiB")

    monkeypatch.setattr(diffusers.AutoencoderKL, "from_pretrained", exhausted)
    with pytest.raises(OutOfMemory, match=r"load .*; the current VAE stays in use\. Free some") as caught:
        studio.set_vae(str(demo_dir / "vae"))
    assert caught.value.__context__ is None
    gc.collect()
    assert held and held[0]() is None
    assert studio.pool is pool and studio.model_info()["vae"] == "default" and first_image(studio) == before
