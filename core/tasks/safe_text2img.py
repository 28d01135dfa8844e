"""Safe text to image: safe latent diffusion (StableDiffusionPipelineSafe) over the loaded SD checkpoint's modules,
steering away from unsafe content as strongly as its preset says."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import diffusers
from diffusers import DiffusionPipeline

from core.tasks.base import (
    IMAGE_PROMPT,
    RUN,
    SIZE,
    STEPS_GUIDANCE,
    TEXT,
    Param,
    Serving,
    TaskSpec,
)

if TYPE_CHECKING:
    from core.generation import GenerationRequest

SAFETY_PRESETS = ("weak", "medium", "strong", "max")  # diffusers' SafetyConfig presets


class SafeText2Img(TaskSpec):
    name, label, kind, order = "safe_text2img", "Safe text to image", "feature", 40
    pipeline_class = "StableDiffusionPipelineSafe"
    table_pipeline = "`StableDiffusionPipelineSafe` with `SafetyConfig` presets"
    description = "Text to image with safe latent diffusion at a preset strength (weak, medium, strong, max)."
    note = (
        "Safe latent diffusion (`StableDiffusionPipelineSafe`, built with `from_pipe` over the loaded checkpoint: "
        "no extra memory) steers each step away from unsafe concepts; the presets are diffusers' `SafetyConfig`."
    )
    params = (
        *TEXT,
        Param("safety_preset", "choice", "Safety preset", "medium", choices=SAFETY_PRESETS),
        *STEPS_GUIDANCE,
        *SIZE,
        *RUN,
        IMAGE_PROMPT,
    )

    def views_over(self, base_class: str, family: str | None) -> dict[str, type]:
        if base_class != "StableDiffusionPipeline":
            return {}
        return {self.name: diffusers.StableDiffusionPipelineSafe}

    def arguments(self, request: GenerationRequest, pipe: DiffusionPipeline, args: dict[str, Any]) -> dict[str, Any]:
        from diffusers.pipelines.deprecated.stable_diffusion_safe import SafetyConfig

        return dict(getattr(SafetyConfig, request.safety_preset.upper()))

    def info_fields(self, request: GenerationRequest, serving: Serving) -> dict[str, Any]:
        return {"safety_preset": request.safety_preset}


SPEC = SafeText2Img()
