"""Step caching (DeepCache): a cached run is DeepCache's own on plain diffusers, pixel for pixel; it runs the deep
blocks only at its full steps; and the shared UNet is whole again after every run, stopped or not."""

from __future__ import annotations

import contextlib
import runpy
import threading
from collections.abc import Iterator

import numpy as np
import pytest
from PIL import Image

from core.errors import InvalidRequest
from core.generation import GenerationRequest
from core.studio import Studio, StudioOptions


@pytest.fixture(scope="module")
def studio() -> Studio:
    studio = Studio(StudioOptions(device="cpu", offline=True))
    studio.load("demo", variant="default", dtype="float32")
    return studio


@contextlib.contextmanager
def deep_calls(unet) -> Iterator[list[int]]:
    """A counter of the runs of the UNet's mid block (its first resnet, under DeepCache's block wrapper)."""
    calls = [0]
    hook = unet.mid_block.resnets[0].register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    try:
        yield calls
    finally:
        hook.remove()


def request(task: str, **fields) -> GenerationRequest:
    picture = Image.new("RGB", (64, 64), (200, 120, 40))
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (16, 16, 48, 48))
    inputs = {
        "img2img": {"image": picture, "strength": 1.0},
        "inpaint": {"image": picture, "mask": mask, "strength": 1.0},
    }
    fields = {"scheduler": "Euler", **inputs.get(task, {}), **fields}
    return GenerationRequest(
        task=task, prompt="a lighthouse", steps=6, width=64, height=64, seed=11, safety_checker=False, **fields
    )


def whole(unet) -> bool:
    """Whether no module of the UNet still has a forward of its own (DeepCache's wrappers, or their leftovers)."""
    return not [name for name, m in unet.named_modules() if "forward" in vars(m)]


@pytest.mark.parametrize("task", ["text2img", "img2img", "inpaint"])
def test_a_cached_run_is_deepcache_on_plain_diffusers_and_skips_the_deep_blocks(studio, task, tmp_path, monkeypatch):
    unet = studio.pool.components["unet"]
    with deep_calls(unet) as calls:
        full = studio.generate(request(task))
        assert calls[0] == 6, "the whole UNet at each of the 6 steps"
        calls[0] = 0
        cached = studio.generate(request(task, step_cache=3))
        assert calls[0] == 2, "the deep blocks ran at steps 1 and 4 only"
    assert cached.info["step_cache"] == 3 and "step_cache" not in full.info
    a, b = (np.asarray(r.images[0], dtype=np.int16) for r in (full, cached))
    assert np.abs(a - b).max() > 0, "the cached steps changed the image"
    assert whole(unet), "the shared UNet is unwrapped after the run"
    again = studio.generate(request(task))
    assert again.images[0].tobytes() == full.images[0].tobytes(), "the next run without caching is the full one"

    # The run's script does the same with DeepCache's helper on plain diffusers, and gets the same pixels.
    assert "helper.set_params(cache_interval=3, cache_branch_id=0)" in cached.info["code"]
    (tmp_path / "reproduce.py").write_text(cached.info["code"])
    inputs = request(task)
    for name, picture in (("input.png", inputs.image), ("mask.png", inputs.mask)):
        if picture is not None:
            picture.save(tmp_path / name)
    monkeypatch.chdir(tmp_path)
    runpy.run_path(str(tmp_path / "reproduce.py"), run_name="__main__")
    assert Image.open(tmp_path / "image.png").tobytes() == cached.images[0].tobytes()


def test_a_stopped_cached_run_leaves_the_unet_whole(studio):
    unet = studio.pool.components["unet"]
    full = studio.generate(request("text2img"))
    cancel = threading.Event()

    def on_step(done: int, _total: int) -> None:
        if done == 2:
            cancel.set()

    stopped = studio.generate(request("text2img", step_cache=2), on_step=on_step, cancel=cancel)
    assert stopped.info["stopped_at_step"] == 2
    assert whole(unet)
    assert studio.generate(request("text2img")).images[0].tobytes() == full.images[0].tobytes()


def test_what_step_caching_cannot_do_is_refused_before_the_run(studio):
    with pytest.raises(InvalidRequest, match="self-attention guidance"):
        studio.generate(request("text2img", step_cache=3, sag_scale=0.5))
    with pytest.raises(InvalidRequest, match="step_cache must be between 1 and 5"):
        studio.generate(request("text2img", step_cache=9))
    assert whole(studio.pool.components["unet"])
    assert "step_cache" in studio.model_info()["options"]


def test_sdxl_caches_its_unet_too_and_a_transformer_model_is_told_no():
    studio = Studio(StudioOptions(device="cpu", offline=True))
    studio.load("demo-sdxl", variant="default", dtype="float32")
    with deep_calls(studio.pool.components["unet"]) as calls:
        result = studio.generate(request("text2img", step_cache=3))
    assert calls[0] == 2 and result.info["step_cache"] == 3
    studio.load("demo-sd3", variant="default", dtype="float32")
    assert "step_cache" not in studio.model_info()["options"]
    with pytest.raises(InvalidRequest, match="Step caching works on Stable Diffusion and SDXL"):
        studio.generate(request("text2img", step_cache=3, scheduler="default"))
