"""Cycle Diffusion: edit an image by naming what it shows and what it should show. The image is noised to the
strength's step with DDIM's own noise record (the latents are the "random seed" the image came from), then denoised
toward the new prompt while the source prompt keeps what both share. No mask, no inversion pass. A `from_pipe`
view over the loaded SD checkpoint: no memory. Its loop needs DDIM, so the run is DDIM whatever the picker says."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import diffusers
from diffusers import DiffusionPipeline

from core.errors import InvalidRequest
from core.tasks.base import (
    SAFETY_CHECKER,
    SEED,
    Param,
    Serving,
    TaskSpec,
    guidance,
    image,
    steps,
    strength,
)

if TYPE_CHECKING:
    from core.generation import GenerationRequest, Limits
    from core.pool import Pool


class Cycle(TaskSpec):
    name, label, kind, order = "cycle", "Cycle edit", "feature", 49
    pipeline_class = "CycleDiffusionPipeline"
    table_shares = "everything (a `from_pipe` view, with DDIM)"
    sizes_follow_image = True
    run_label = "Edit"
    description = (
        "Edit image from source_prompt (what it shows) to prompt (what it should show), keeping what both share "
        "(Cycle Diffusion: DDIM's noise record of the image is its seed); strength is how far it is redrawn."
    )
    note = (
        "Cycle Diffusion (`from_pipe` over the loaded checkpoint: no extra memory) redraws the image toward the new "
        "prompt from the noise that would have made it; the source guidance keeps it close to what it shows. It "
        "runs DDIM."
    )
    # One image per run: its loop takes the image's batch for the prompt's (a list of generators fails).
    fixed: ClassVar[Mapping[str, Any]] = {"scheduler": "DDIM", "negative_prompt": "", "num_images": 1}
    params = (
        image("Image to edit"),
        Param("source_prompt", "text", "What the image shows", "", info="e.g. a black horse", row="above-prompt"),
        Param("prompt", "prompt", "What it should show"),
        Param(
            "source_guidance_scale", "slider", "Source guidance", 1.0, minimum=0.0, maximum=10.0, step=0.1,
            info="how strongly the source prompt holds what the two share",
        ),
        strength(0.8),
        steps(50),
        guidance(2.0),
        SEED,
        SAFETY_CHECKER,
    )  # fmt: skip

    def views_over(self, base_class: str, family: str | None) -> dict[str, type]:
        return {self.name: diffusers.CycleDiffusionPipeline} if base_class == "StableDiffusionPipeline" else {}

    def check(self, request: GenerationRequest, limits: Limits) -> None:
        if not request.source_prompt.strip() or not request.prompt.strip():
            raise InvalidRequest(
                "Cycle edit needs both prompts: what the image shows (source_prompt) and what it should show (prompt)."
            )

    def prepare(self, request: GenerationRequest, serving: Serving, pool: Pool) -> GenerationRequest:
        """DDIM whatever was asked: the loop reads DDIM's variance to rebuild the image's noise."""
        return dataclasses.replace(request, scheduler="DDIM")

    def arguments(self, request: GenerationRequest, pipe: DiffusionPipeline, args: dict[str, Any]) -> dict[str, Any]:
        args.pop("negative_prompt", None)  # it has none: the source prompt is its other branch
        return {"source_prompt": request.source_prompt, "source_guidance_scale": float(request.source_guidance_scale)}

    def info_fields(self, request: GenerationRequest, serving: Serving) -> dict[str, Any]:
        return {"source_prompt": request.source_prompt, "source_guidance_scale": float(request.source_guidance_scale)}


SPEC = Cycle()
