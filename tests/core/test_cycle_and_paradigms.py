"""Cycle Diffusion and ParaDiGMS over the loaded SD checkpoint (core/tasks/cycle.py, core/tasks/paradigms.py):
`from_pipe` views that run like the plain diffusers call, on DDIM whatever the picker says, and whose snippets make
the same image again."""

from __future__ import annotations

import runpy
import threading

import numpy as np
import pytest
import torch
from diffusers import CycleDiffusionPipeline, DDIMScheduler
from PIL import Image

from core.errors import InvalidRequest
from core.generation import GenerationRequest
from core.studio import Studio, StudioOptions

SIZE = dict(width=64, height=64)


@pytest.fixture(scope="module")
def studio(tmp_path_factory) -> Studio:
    studio = Studio(StudioOptions(device="cpu", offline=True, outputs_dir=tmp_path_factory.mktemp("outputs")))
    studio.load("demo", variant="default", dtype="float32")
    return studio


def reproduce(result, tmp_path, monkeypatch, inputs=None) -> Image.Image:
    monkeypatch.chdir(tmp_path)
    for name, picture in (inputs or {}).items():
        picture.save(tmp_path / name)
    (tmp_path / "reproduce.py").write_text(result.info["code"])
    runpy.run_path(str(tmp_path / "reproduce.py"), run_name="__main__")
    return Image.open(tmp_path / "image.png")


def test_parallel_sampling_makes_sequential_ddims_image_within_its_tolerance(studio, tmp_path, monkeypatch):
    before = studio.pool.unique_bytes()
    sequential = studio.generate(
        GenerationRequest(task="text2img", prompt="a red barn", steps=8, seed=3, scheduler="DDIM", **SIZE)
    )
    progress = []
    result = studio.generate(
        GenerationRequest(
            task="paradigms", prompt="a red barn", steps=8, seed=3, parallel=4, tolerance=0.01, scheduler="Euler",
            **SIZE,
        ),
        on_step=lambda done, total: progress.append((done, total)),
    )  # fmt: skip
    assert result.info["pipeline"] == "StableDiffusionParadigmsPipeline" and result.info["scheduler"] == "DDIM"
    assert (result.info["parallel"], result.info["tolerance"]) == (4, 0.01)
    ours, theirs = (np.asarray(r.images[0]).astype(int) for r in (result, sequential))
    assert np.abs(ours - theirs).max() <= 2, "parallel sampling strayed from sequential DDIM"
    assert [d for d, _ in progress] == sorted(d for d, _ in progress) and progress[-1] == (8, 8)
    assert studio.pool.unique_bytes() == before
    assert "DDIMParallelScheduler" in result.info["code"]
    assert reproduce(result, tmp_path, monkeypatch).tobytes() == result.images[0].tobytes()


def test_a_stopped_parallel_run_keeps_the_studio_serving(studio):
    cancel = threading.Event()
    stopped = studio.generate(
        GenerationRequest(task="paradigms", prompt="a red barn", steps=12, seed=3, parallel=2, **SIZE),
        on_step=lambda done, total: cancel.set(),
        cancel=cancel,
    )
    assert stopped.info["interrupted"] is True and stopped.info["stopped_at_step"] < 12
    again = studio.generate(GenerationRequest(task="paradigms", prompt="a red barn", steps=4, seed=3, **SIZE))
    assert len(again.images) == 1
    with pytest.raises(InvalidRequest, match="a batch of 40 latents per round; this app runs at most 32"):
        studio.generate(GenerationRequest(task="paradigms", prompt="a", steps=4, parallel=10, num_images=4, **SIZE))
    with pytest.raises(InvalidRequest, match=r"At worst 150 steps x 32 at once x 1 images at 2048x2048 is 4\.0x"):
        big = dict(width=2048, height=2048)
        studio.generate(GenerationRequest(task="paradigms", prompt="a", steps=150, parallel=32, **big))


def test_cycle_edit_runs_like_the_plain_call_on_ddim(studio, demo_dir, tmp_path, monkeypatch):
    start = studio.generate(GenerationRequest(task="text2img", prompt="a red barn", steps=4, seed=3, **SIZE)).images[0]
    request = GenerationRequest(
        task="cycle", prompt="a blue barn", source_prompt="a red barn", image=start, steps=8, seed=3, strength=0.8,
        guidance_scale=2.0, source_guidance_scale=1.5, scheduler="Euler",
    )  # fmt: skip
    result = studio.generate(request)
    assert result.info["pipeline"] == "CycleDiffusionPipeline" and result.info["scheduler"] == "DDIM"
    assert result.info["source_prompt"] == "a red barn" and result.images[0].size == (64, 64)
    assert result.images[0].tobytes() != start.tobytes(), "the edit changed nothing"

    plain = CycleDiffusionPipeline.from_pretrained(demo_dir, torch_dtype=torch.float32, safety_checker=None)
    plain.scheduler = DDIMScheduler.from_config(plain.scheduler.config)
    plain.set_progress_bar_config(disable=True)
    theirs = plain(
        prompt="a blue barn", source_prompt="a red barn", image=start, num_inference_steps=8, strength=0.8,
        guidance_scale=2.0, source_guidance_scale=1.5, generator=torch.Generator("cpu").manual_seed(3),
    ).images[0]  # fmt: skip
    assert np.abs(np.asarray(theirs).astype(int) - np.asarray(result.images[0]).astype(int)).max() <= 1
    again = reproduce(result, tmp_path, monkeypatch, {"input.png": start})
    assert again.tobytes() == result.images[0].tobytes()


def test_cycle_edit_needs_both_prompts(studio):
    start = Image.new("RGB", (64, 64), "red")
    with pytest.raises(InvalidRequest, match="Cycle edit needs both prompts"):
        studio.generate(GenerationRequest(task="cycle", prompt="a blue barn", image=start, steps=4))
    with pytest.raises(InvalidRequest, match="source_prompt must be text"):
        studio.generate(GenerationRequest(task="cycle", prompt="a", source_prompt="x" * 100_000, image=start))
