"""Panorama: MultiDiffusion denoises overlapping 512 px windows of a wide (or tall) image and averages them at every
step, so the loaded SD checkpoint makes one seamless panorama; `circular_padding` joins the two ends for a 360°
view. A `from_pipe` view: no memory beyond the run's latents."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import diffusers
from diffusers import DiffusionPipeline

from core.tasks.base import RUN, STEPS_GUIDANCE, TEXT, Param, Serving, TaskSpec, size

if TYPE_CHECKING:
    from core.generation import GenerationRequest


class Panorama(TaskSpec):
    name, label, kind, order = "panorama", "Panorama", "feature", 44
    pipeline_class = "StableDiffusionPanoramaPipeline"
    table_pipeline = "`StableDiffusionPanoramaPipeline` (MultiDiffusion)"
    table_shares = "everything (a `from_pipe` view)"
    description = (
        "A wide (or tall) seamless image from overlapping windows (MultiDiffusion); circular_padding wraps it."
    )
    note = (
        "MultiDiffusion (`from_pipe` over the loaded checkpoint: no extra memory) makes wide images from overlapping "
        "windows of the model's own size; each window is a step's work, so a 2048 px panorama costs about seven."
    )
    params = (
        *TEXT,
        *STEPS_GUIDANCE,
        Param("width", "size", "Width", 2048, minimum="min_side", maximum="max_side", step=8, whole=True),
        size("height"),
        *RUN,
        Param("circular_padding", "check", "Wrap around (360°)", False, api_default=False),
    )

    def views_over(self, base_class: str, family: str | None) -> dict[str, type]:
        if base_class != "StableDiffusionPipeline":
            return {}
        return {self.name: diffusers.StableDiffusionPanoramaPipeline}

    def arguments(self, request: GenerationRequest, pipe: DiffusionPipeline, args: dict[str, Any]) -> dict[str, Any]:
        return {"circular_padding": bool(request.circular_padding)}

    def info_fields(self, request: GenerationRequest, serving: Serving) -> dict[str, Any]:
        return {"circular_padding": bool(request.circular_padding)}


SPEC = Panorama()
