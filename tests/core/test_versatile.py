"""Versatile Diffusion (core/tasks/versatile.py, twin core/demo/versatile.py): one checkpoint whose combined pipeline
has only methods. Each mode runs as a view over the loaded modules and makes the combined pipeline's own method's
image at the same seed, which its snippet makes again; the modes that move the shared UNets' attention blocks put
them back after the run, a Stop and an error too.

No `from __future__ import annotations` here: diffusers' `from_pipe` matches components by their real type hints.
"""

import runpy
import threading

import numpy as np
import pytest
import torch
from diffusers import VersatileDiffusionPipeline
from diffusers.models import DualTransformer2DModel
from PIL import Image

from core.checkpoints import loading
from core.demo.companions import companion_path
from core.errors import InvalidRequest
from core.generation import GenerationRequest
from core.studio import Studio, StudioOptions

PICTURE = Image.new("RGB", (64, 64), (120, 40, 200))
PICTURE.paste((250, 220, 30), (16, 16, 48, 48))
SIZE = dict(width=64, height=96)  # not square: each side is the one asked for
# mode: (the combined pipeline's method, the request's fields, the method's arguments besides the shared ones)
MODES = {
    "text to image": (
        "text_to_image",
        dict(prompt="a red car", negative_prompt="blurry"),
        dict(prompt="a red car", negative_prompt="blurry"),
    ),
    "image variation": ("image_variation", dict(image=PICTURE), dict(image=PICTURE)),
    "dual guided": (
        "dual_guided",
        dict(prompt="a red car", image=PICTURE, dual_strength=0.7, num_images=2),
        dict(prompt="a red car", image=PICTURE, text_to_image_strength=0.7, num_images_per_prompt=2),
    ),
}


@pytest.fixture(scope="module")
def studio(tmp_path_factory):
    # The twin names its text UNet's library `versatile_diffusion` (now under deprecated/), as the Hub's does.
    assert "versatile_diffusion" in loading.MOVED_LIBRARIES
    studio = Studio(StudioOptions(device="cpu", offline=True, outputs_dir=tmp_path_factory.mktemp("outputs")))
    info = studio.load("demo-versatile", variant="default", dtype="float32")
    assert info["pipeline"] == "VersatileDiffusionPipeline" and info["tasks"] == ["versatile"]
    return studio


@pytest.fixture(scope="module")
def plain(studio):
    pipe = VersatileDiffusionPipeline.from_pretrained(companion_path("versatile"), torch_dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def without_encoder_mask(monkeypatch):
    """What the snippet does to its pipeline's blocks, for the combined pipeline's method (which builds them)."""
    forward = DualTransformer2DModel.forward
    monkeypatch.setattr(
        DualTransformer2DModel, "forward", lambda self, *a, encoder_attention_mask=None, **k: forward(self, *a, **k)
    )


def placement(studio):
    """Every module of both UNets, where it sits, and the weights' bytes: what a run must leave as it found it."""
    unets = {name: studio.pool.components[name] for name in ("image_unet", "text_unet")}
    where = {(u, name, id(m), type(m).__name__) for u, unet in unets.items() for name, m in unet.named_modules()}
    return where, unets["image_unet"].config.dual_cross_attention, studio.pool.unique_bytes()


@pytest.mark.parametrize("mode", list(MODES))
def test_each_mode_makes_the_combined_pipelines_image_and_its_snippet_makes_it_again(
    studio, plain, mode, tmp_path, monkeypatch
):
    method, fields, call = MODES[mode]
    result = studio.generate(
        GenerationRequest(task="versatile", versatile_mode=mode, steps=2, seed=7, **fields, **SIZE)
    )
    count = fields.get("num_images", 1)
    assert [image.size for image in result.images] == [(64, 96)] * count
    assert len({image.tobytes() for image in result.images}) == count and len(set(result.images[0].getdata())) > 16
    pipeline = {"text_to_image": "TextToImage", "image_variation": "ImageVariation", "dual_guided": "DualGuided"}
    assert result.info["pipeline"] == f"VersatileDiffusion{pipeline[method]}Pipeline"
    assert result.info["versatile_mode"] == mode and result.info["seeds"] == [7 + i for i in range(count)]

    if mode == "dual guided":
        without_encoder_mask(monkeypatch)
    generators = [torch.Generator("cpu").manual_seed(7 + i) for i in range(count)]
    theirs = getattr(plain, method)(**call, **SIZE, num_inference_steps=2, generator=generators).images
    for ours, them in zip(result.images, theirs, strict=True):
        assert np.abs(np.asarray(ours).astype(int) - np.asarray(them).astype(int)).max() <= 1

    monkeypatch.undo()
    monkeypatch.chdir(tmp_path)
    PICTURE.save(tmp_path / "input.png")
    (tmp_path / "reproduce.py").write_text(result.info["code"])
    runpy.run_path(str(tmp_path / "reproduce.py"), run_name="__main__")
    saved = "image.png" if count == 1 else "image-1.png"
    assert Image.open(tmp_path / saved).tobytes() == result.images[0].tobytes()


def test_the_shared_unets_are_as_they_were_after_a_run_a_stop_and_an_error(studio):
    before = placement(studio)
    during = []

    def look(done, total):  # mid-run: the image UNet's blocks are wrapped, over the very same weights
        unet = studio.pool.components["image_unet"]
        during.append((any(isinstance(m, DualTransformer2DModel) for m in unet.modules()), studio.pool.unique_bytes()))

    dual = dict(versatile_mode="dual guided", prompt="a red car", image=PICTURE, steps=3, seed=1, **SIZE)
    studio.generate(GenerationRequest(task="versatile", **dual), on_step=look)
    assert during and all(wrapped and size == before[2] for wrapped, size in during)
    assert placement(studio) == before
    swapped = studio.generate(GenerationRequest(task="versatile", prompt="a red car", steps=2, seed=1, **SIZE))
    assert len(swapped.images) == 1 and placement(studio) == before

    cancel = threading.Event()
    stopped = studio.generate(
        GenerationRequest(task="versatile", **{**dual, "steps": 6}), on_step=lambda *_: cancel.set(), cancel=cancel
    )
    assert stopped.info["interrupted"] is True and stopped.info["stopped_at_step"] < 6
    assert placement(studio) == before

    def fail(done, total):
        raise RuntimeError("the run broke")

    for mode in ("dual guided", "text to image"):
        with pytest.raises(RuntimeError, match="the run broke"):
            studio.generate(GenerationRequest(task="versatile", **{**dual, "versatile_mode": mode}), on_step=fail)
        assert placement(studio) == before, mode


def test_each_mode_asks_for_what_it_reads(studio):
    with pytest.raises(InvalidRequest, match="image variation needs an input image: upload one"):
        studio.generate(GenerationRequest(task="versatile", versatile_mode="image variation", steps=2, **SIZE))
    with pytest.raises(InvalidRequest, match="dual guided needs an input image"):
        studio.generate(GenerationRequest(task="versatile", versatile_mode="dual guided", prompt="a car", steps=2))
    with pytest.raises(InvalidRequest, match="text to image needs a prompt"):
        studio.generate(GenerationRequest(task="versatile", image=PICTURE, steps=2, **SIZE))
    with pytest.raises(InvalidRequest, match="versatile_mode must be one of text to image, image variation, dual"):
        studio.generate(GenerationRequest(task="versatile", versatile_mode="image to text", prompt="a", steps=2))
    # What a mode doesn't read is left out of the run, its info and its snippet.
    varied = studio.generate(
        GenerationRequest(
            task="versatile", versatile_mode="image variation", prompt="ignored", image=PICTURE, steps=2, seed=2,
            **SIZE,
        )
    )  # fmt: skip
    assert varied.info["prompt"] == "" and "ignored" not in varied.info["code"]


def test_diffusers_dual_guided_run_still_needs_the_mend(studio):
    """diffusers 0.42 (issue 13651): when this fails, the studio's and the snippet's mend can go."""
    pipe = VersatileDiffusionPipeline.from_pretrained(companion_path("versatile"), torch_dtype=torch.float32)
    with pytest.raises(TypeError, match="encoder_attention_mask"):
        pipe.dual_guided(prompt="a", image=PICTURE, num_inference_steps=1, **SIZE)
