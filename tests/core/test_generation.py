"""Generation: validation, seeds, parity with plain diffusers, the reproduction snippet, safety, cancel."""

from __future__ import annotations

import math
import runpy
import threading

import numpy as np
import pytest
import torch
from diffusers import StableDiffusionPipeline
from PIL import Image

from core.errors import InvalidRequest
from core.generation import ALONE_TOLERANCE, GenerationRequest, Limits
from core.studio import Studio, StudioOptions


@pytest.fixture(scope="module")
def studio() -> Studio:
    studio = Studio(StudioOptions(device="cpu", offline=True))
    studio.load("demo", variant="default", dtype="float32")
    return studio


def gray(size=(64, 64), value=128) -> Image.Image:
    return Image.new("RGB", size, (value, value // 2, 255 - value))


def test_text2img_returns_images_and_full_info(studio):
    result = studio.generate(
        GenerationRequest(
            prompt="a red fox",
            negative_prompt="blurry",
            steps=3,
            width=96,
            height=64,
            seed=7,
            num_images=2,
            scheduler="Euler a",
        )
    )
    assert [im.size for im in result.images] == [(96, 64), (96, 64)]
    info = result.info
    for key in (
        "task",
        "pipeline",
        "model",
        "variant",
        "dtype",
        "device",
        "scheduler",
        "scheduler_class",
        "seeds",
        "steps",
        "guidance_scale",
        "width",
        "height",
        "nsfw",
        "timings",
        "code",
    ):
        assert key in info, key
    assert info["seeds"] == [7, 8] and info["nsfw"] == [False, False]
    assert (
        info["pipeline"] == "StableDiffusionPipeline" and info["scheduler_class"] == "EulerAncestralDiscreteScheduler"
    )
    assert info["timings"]["total_ms"] >= info["timings"]["generate_ms"] > 0


def test_random_seed_is_reported_and_reproduces(studio):
    first = studio.generate(GenerationRequest(prompt="x", steps=2, width=64, height=64, seed=-1))
    seed = first.info["seeds"][0]
    assert 0 <= seed < 2**32
    again = studio.generate(GenerationRequest(prompt="x", steps=2, width=64, height=64, seed=seed))
    assert again.images[0].tobytes() == first.images[0].tobytes()


def test_each_image_of_a_batch_can_be_made_alone_near_identically(studio):
    batch = studio.generate(GenerationRequest(prompt="x", steps=3, width=64, height=64, seed=40, num_images=3))
    alone = studio.generate(GenerationRequest(prompt="x", steps=3, width=64, height=64, seed=42))
    a, b = np.asarray(batch.images[2], dtype=int), np.asarray(alone.images[0], dtype=int)
    assert np.abs(a - b).max() <= ALONE_TOLERANCE["float32"]  # batched products may round differently
    assert np.abs(a - b).mean() < 0.05, "a level here and there, not a different image"
    same = studio.generate(GenerationRequest(prompt="x", steps=3, width=64, height=64, seed=40, num_images=3))
    assert [im.tobytes() for im in same.images] == [im.tobytes() for im in batch.images]


def test_same_pixels_as_a_plain_diffusers_call(studio, demo_dir):
    result = studio.generate(
        GenerationRequest(
            prompt="a lighthouse",
            negative_prompt="fog",
            steps=4,
            guidance_scale=6.0,
            width=64,
            height=80,
            seed=1234,
            scheduler="DPM++ 2M Karras",
            safety_checker=True,
        )
    )
    from diffusers import DPMSolverMultistepScheduler

    scheduler = DPMSolverMultistepScheduler.from_pretrained(
        demo_dir, subfolder="scheduler", algorithm_type="dpmsolver++", use_karras_sigmas=True
    )
    pipe = StableDiffusionPipeline.from_pretrained(
        demo_dir, dtype=torch.float32, use_safetensors=True, scheduler=scheduler
    )
    expected = pipe(
        prompt="a lighthouse",
        negative_prompt="fog",
        num_inference_steps=4,
        guidance_scale=6.0,
        width=64,
        height=80,
        generator=torch.Generator("cpu").manual_seed(1234),
    ).images[0]
    assert result.images[0].tobytes() == expected.tobytes()


@pytest.mark.parametrize("scheduler", ["default", "Euler a", "DPM++ 2M SDE Karras"])
def test_reproduction_snippet_gives_the_same_pixels(studio, tmp_path, monkeypatch, scheduler):
    result = studio.generate(
        GenerationRequest(
            prompt='it\'s a "test"', steps=3, width=64, height=64, seed=99, scheduler=scheduler, safety_checker=False
        )
    )
    script = tmp_path / "reproduce.py"
    script.write_text(result.info["code"])
    monkeypatch.chdir(tmp_path)
    runpy.run_path(str(script), run_name="__main__")
    made = Image.open(tmp_path / "image.png")
    assert "diffusers" in result.info["code"] and "core" not in result.info["code"]
    assert made.tobytes() == result.images[0].tobytes()


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_the_snippet_of_a_batch_makes_every_image_byte_identical(tmp_path, monkeypatch, dtype):
    studio = Studio(StudioOptions(device="cpu", offline=True))
    studio.load("demo", variant="default", dtype=dtype)
    result = studio.generate(
        GenerationRequest(prompt="a boat", steps=3, width=64, height=72, seed=11, scheduler="Euler a", num_images=2)
    )
    code = result.info["code"]
    assert "num_images_per_prompt=2" in code and "(11, 12)" in code
    (tmp_path / "reproduce.py").write_text(code)
    monkeypatch.chdir(tmp_path)
    runpy.run_path(str(tmp_path / "reproduce.py"), run_name="__main__")
    made = [Image.open(tmp_path / f"image-{i}.png") for i in (1, 2)]
    assert [im.tobytes() for im in made] == [im.tobytes() for im in result.images]


def test_img2img_and_inpaint_use_the_input_size(studio):
    image = gray((96, 72))
    out = studio.generate(GenerationRequest(task="img2img", prompt="x", image=image, strength=0.5, steps=4, seed=3))
    assert out.images[0].size == (96, 72) and out.info["pipeline"] == "StableDiffusionImg2ImgPipeline"
    mask = Image.new("L", (96, 72), 0)
    mask.paste(255, (20, 20, 60, 50))
    out = studio.generate(
        GenerationRequest(task="inpaint", prompt="x", image=image, mask=mask, strength=1.0, steps=4, seed=3)
    )
    assert out.images[0].size == (96, 72) and out.info["pipeline"] == "StableDiffusionInpaintPipeline"


def test_safety_checker_runs_or_is_skipped(flagging_demo_dir):
    studio = Studio(StudioOptions(device="cpu", offline=True))
    studio.load(str(flagging_demo_dir), variant="default", dtype="float32")
    base = dict(prompt="x", steps=2, width=64, height=64, seed=1, num_images=2)
    flagged = studio.generate(GenerationRequest(**base, safety_checker=True))
    assert flagged.info["nsfw"] == [True, True]
    assert all(np.asarray(im).max() == 0 for im in flagged.images), "flagged images are blacked out"
    skipped = studio.generate(GenerationRequest(**base, safety_checker=False))
    assert skipped.info["nsfw"] is None
    assert all(np.asarray(im).std() > 0 for im in skipped.images)
    assert studio.pool.has_safety_checker, "skipping the checker once does not unload it"


def test_public_mode_refuses_to_skip_the_checker():
    studio = Studio(StudioOptions(device="cpu", offline=True, public=True))
    studio.load("demo", variant="default", dtype="float32")
    with pytest.raises(InvalidRequest, match="can't be turned off on a public server"):
        studio.generate(GenerationRequest(prompt="x", steps=2, width=64, height=64, safety_checker=False))


def test_long_prompt_is_reported_as_truncated(studio):
    words = " ".join(["castle"] * 120)
    result = studio.generate(GenerationRequest(prompt=words, steps=2, width=64, height=64, seed=1))
    assert any("only the first 77" in w for w in result.info["warnings"])
    short = studio.generate(GenerationRequest(prompt="castle", steps=2, width=64, height=64, seed=1))
    assert short.info["warnings"] == []


def test_progress_is_reported_each_step_and_cancel_stops_within_a_step(studio):
    seen: list[tuple[int, int]] = []
    request = GenerationRequest(prompt="x", steps=5, width=64, height=64, seed=1, scheduler="DDIM")
    studio.generate(request, on_step=lambda i, n: seen.append((i, n)))
    assert seen == [(i, 5) for i in range(1, 6)]
    # PLMS (the SD 1.5 default) runs one extra timestep and Heun nearly two per step; the bar counts the steps
    # asked for (it once said "Step 6 of 6" for 5, and "of 7" for Heun's 4).
    for scheduler, asked, calls in (("default", 5, 6), ("Heun", 4, 7)):
        seen.clear()
        request = GenerationRequest(prompt="x", steps=asked, width=64, height=64, seed=1, scheduler=scheduler)
        studio.generate(request, on_step=lambda i, n: seen.append((i, n)))
        assert len(seen) == calls, scheduler
        assert {n for _i, n in seen} == {asked} and seen[0] == (1, asked) and seen[-1] == (asked, asked)
        assert [i for i, _n in seen] == sorted(i for i, _n in seen), "never goes back"

    cancel = threading.Event()
    calls: list[int] = []

    def stop_after_two(i: int, n: int) -> None:
        calls.append(i)
        if i == 2:
            cancel.set()

    result = studio.generate(
        GenerationRequest(prompt="x", steps=50, width=64, height=64, seed=1), on_step=stop_after_two, cancel=cancel
    )
    assert result.info["interrupted"] is True
    assert calls == [1, 2], "no step runs after the one that saw the cancel"
    assert len(result.images) == 1


def test_a_stop_after_the_last_step_does_not_mark_a_finished_image_stopped(studio):
    """`interrupted` once came from the flag: a Stop during the VAE decode marked a finished image "Stopped early"."""
    request = GenerationRequest(prompt="x", steps=4, width=64, height=64, seed=3, scheduler="DDIM")
    full = studio.generate(request)
    cancel = threading.Event()

    def stop_at_the_end(i: int, n: int) -> None:
        if i == n:
            cancel.set()  # as a Stop arriving while the image is decoded

    late = studio.generate(request, on_step=stop_at_the_end, cancel=cancel)
    assert late.info["interrupted"] is False
    assert late.images[0].tobytes() == full.images[0].tobytes()


INVALID = [
    (dict(width=67), "width must be a multiple of 8, got 67; try 64 or 72"),
    (dict(height=4096), "height must be between 64 and 2048"),
    (dict(width=32), "width must be between 64 and 2048"),
    (dict(steps=0), "steps must be between 1 and 150"),
    (dict(steps=10_000), "steps must be between 1 and 150"),
    (dict(steps=2.5), "steps must be a whole number"),
    (dict(guidance_scale=math.nan), "guidance_scale must be a number between 0 and 30"),
    (dict(guidance_scale=-1.0), "guidance_scale must be a number between 0 and 30"),
    (dict(num_images=0), "num_images must be between 1 and 8"),
    (dict(seed=-5), "seed must be -1"),
    (dict(task="img2img"), "Image to image needs an input image"),
    (dict(task="img2img", image=gray(), strength=0.0), "strength must be a number above 0 and at most 1"),
    (dict(task="img2img", image=gray(), strength=1.5), "strength must be a number above 0 and at most 1"),
    (dict(task="inpaint", image=gray()), "Inpainting needs a mask"),
    (dict(task="inpaint", image=gray(), mask=Image.new("L", (32, 64))), "The mask is 32x64 but the image is 64x64"),
    (dict(task="paint_by_numbers"), "Unknown task 'paint_by_numbers'"),
    (dict(prompt=None), "must be text"),
    (dict(scheduler=[]), "scheduler must be a scheduler's name"),
]


@pytest.mark.parametrize(("fields", "message"), INVALID, ids=[m for _f, m in INVALID])
def test_invalid_requests_say_what_to_do(studio, fields, message):
    request = GenerationRequest(**{"prompt": "x", "steps": 2, "width": 64, "height": 64, **fields})
    with pytest.raises(InvalidRequest, match=message.replace("(", r"\(").replace(")", r"\)")):
        studio.generate(request)


def test_limits_are_configurable():
    with pytest.raises(InvalidRequest, match="steps must be between 1 and 10"):
        GenerationRequest(prompt="x", steps=11).validate(Limits(max_steps=10))
