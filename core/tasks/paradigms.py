"""Parallel sampling (ParaDiGMS): denoise a window of steps at once from a guess of their latents, and slide the
window on as far as the guesses agree with what sequential sampling would give (within `tolerance`). The same
image as sequential DDIM within that tolerance, in fewer rounds of UNet calls: each round is a batch of `parallel`
steps, which a GPU with spare compute runs in about the time of one; a CPU gains nothing. A `from_pipe` view over
the loaded SD checkpoint with DDIM's parallel variant."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import diffusers
from diffusers import DiffusionPipeline

from core.errors import InvalidRequest
from core.tasks.base import (
    NUM_IMAGES,
    SAFETY_CHECKER,
    SEED,
    SIZE,
    STEPS_GUIDANCE,
    TEXT,
    Param,
    Serving,
    TaskSpec,
    checker_overrides,
)

if TYPE_CHECKING:
    from core.generation import GenerationRequest, Limits
    from core.pool import Pool
    from core.snippet import Snippet

PARALLEL_SCHEDULER = "DDIMParallelScheduler"  # DDIM's step on a batch of timesteps at once


class Paradigms(TaskSpec):
    name, label, kind, order = "paradigms", "Parallel sampling", "feature", 41
    pipeline_class = "StableDiffusionParadigmsPipeline"
    table_pipeline = "`StableDiffusionParadigmsPipeline` (ParaDiGMS) with `DDIMParallelScheduler`"
    table_shares = "everything (a `from_pipe` view, with DDIM's parallel variant)"
    description = (
        "Text to image by parallel sampling (ParaDiGMS): windows of `parallel` steps denoised at once, the same "
        "image as sequential DDIM within `tolerance`, in fewer rounds on a GPU with spare compute."
    )
    note = (
        "ParaDiGMS (`from_pipe` over the loaded checkpoint: no extra memory) runs a window of steps as one batch and "
        "moves it on while its guesses hold; on a GPU that finishes in fewer rounds, on a CPU it is slower. DDIM."
    )
    fixed: ClassVar[Mapping[str, Any]] = {"scheduler": "DDIM"}

    # diffusers 0.42 indexes its window's timesteps by the global step in the callback (IndexError once the window
    # has moved); its progress bar counts the steps the window moves on, so progress and Stop go through that.
    def progress_bars(self, request: GenerationRequest) -> int:
        return 1

    params = (
        *TEXT,
        Param("parallel", "slider", "Steps at once", 10, minimum=1, maximum="max_frames", step=1, whole=True,
              row="parallel"),
        Param("tolerance", "slider", "Tolerance", 0.1, minimum=0.01, maximum=1.0, step=0.01, row="parallel",
              info="how far from sequential sampling a window may be and still move on"),
        *STEPS_GUIDANCE,
        *SIZE,
        SEED,
        NUM_IMAGES,
        SAFETY_CHECKER,
    )  # fmt: skip

    def check(self, request: GenerationRequest, limits: Limits) -> None:
        # A round denoises `parallel` latents per image at once: a batch as large as a clip of that many frames.
        if request.parallel * request.num_images > limits.max_frames:
            raise InvalidRequest(
                f"{request.parallel} steps at once for {request.num_images} images is a batch of "
                f"{request.parallel * request.num_images} latents per round; this app runs at most "
                f"{limits.max_frames}. Lower the steps at once or the image count."
            )
        # A round may move its window on by one step only: at worst `parallel` UNet calls per step. Within the
        # largest single generation's work, as a compare grid is.
        work = request.steps * request.parallel * request.num_images * request.width * request.height
        if work > limits.max_work:
            raise InvalidRequest(
                f"At worst {request.steps} steps x {request.parallel} at once x {request.num_images} images at "
                f"{request.width}x{request.height} is {work / limits.max_work:.1f}x the largest single generation "
                "this app makes. Lower the steps at once, the steps, the size or the image count."
            )

    def views_over(self, base_class: str, family: str | None) -> dict[str, type]:
        if base_class != "StableDiffusionPipeline":
            return {}
        return {self.name: diffusers.StableDiffusionParadigmsPipeline}

    def prepare(self, request: GenerationRequest, serving: Serving, pool: Pool) -> GenerationRequest:
        return dataclasses.replace(request, scheduler="DDIM")

    def view(
        self, pool: Pool, request: GenerationRequest, scheduler: Any, run_checker: bool, serving: Serving
    ) -> DiffusionPipeline:
        parallel = getattr(diffusers, PARALLEL_SCHEDULER).from_config(scheduler.config)
        return pool.view_as(self.name, scheduler=parallel, **checker_overrides(pool, run_checker))

    def arguments(self, request: GenerationRequest, pipe: DiffusionPipeline, args: dict[str, Any]) -> dict[str, Any]:
        return {"parallel": int(request.parallel), "tolerance": float(request.tolerance)}

    def info_fields(self, request: GenerationRequest, serving: Serving) -> dict[str, Any]:
        return {"parallel": int(request.parallel), "tolerance": float(request.tolerance)}

    def add_to_snippet(
        self, snippet: Snippet, request: GenerationRequest, seeds: list[int], serving: Serving, load: dict[str, Any]
    ) -> None:
        snippet.scheduler_class = PARALLEL_SCHEDULER


SPEC = Paradigms()
