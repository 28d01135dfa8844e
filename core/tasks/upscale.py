"""Upscale: the x4 image upscaler (with its noise level) or the x2 latent upscaler, each its own checkpoint."""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from diffusers import DiffusionPipeline

from core.errors import InvalidRequest
from core.tasks.base import (
    SAFETY_CHECKER,
    SCHEDULER,
    SEED,
    TEXT,
    Param,
    Serving,
    TaskSpec,
    guidance,
    image,
    steps,
)

if TYPE_CHECKING:
    from core.generation import GenerationRequest, Limits
    from core.pool import Pool

UPSCALERS = {"x4": 4, "x2": 2}


class Upscale(TaskSpec):
    name, label, kind, order = "upscale", "Upscale", "companion", 70
    pipeline_class = "StableDiffusionUpscalePipeline"
    table_pipeline = "`StableDiffusionUpscalePipeline` (x4), `StableDiffusionLatentUpscalePipeline` (x2)"
    table_shares = "companions: `stabilityai/stable-diffusion-x4-upscaler`, `stabilityai/sd-x2-latent-upscaler`"
    companions = ("upscale_x4", "upscale_x2")
    companion_pipelines: ClassVar[Mapping[str, str]] = {
        "upscale_x4": "StableDiffusionUpscalePipeline",
        "upscale_x2": "StableDiffusionLatentUpscalePipeline",
    }
    fits_inputs = False  # its input is small by nature; the output's size is what is checked
    run_label = "Upscale"
    description = (
        "Upscale an image x4 (image upscaler, with noise_level) or x2 (latent upscaler), guided by the prompt."
    )
    companion_note = "the x4 image upscaler and/or the x2 latent upscaler (load the one you use)."
    params = (
        image("Image to upscale"),
        *TEXT,
        Param("upscaler", "choice", "Upscaler", "x4", choices=tuple(UPSCALERS), row="upscaler"),
        Param(
            "noise_level", "slider", "Noise level (x4)", 20, minimum=0, maximum=350, step=1, whole=True, row="upscaler"
        ),
        steps(20),
        guidance(0.0),
        SEED,
        SCHEDULER,
        SAFETY_CHECKER,
    )

    def companion_kind(self, request: GenerationRequest, companions: Mapping[str, Pool]) -> str | None:
        return f"upscale_{request.upscaler}"

    def check_input_size(self, request: GenerationRequest, limits: Limits) -> None:
        (width, height), factor = request.image.size, UPSCALERS.get(request.upscaler, 4)
        if max(width, height) * factor > limits.max_side:
            raise InvalidRequest(
                f"Upscaling {width}x{height} {request.upscaler} would give {width * factor}x{height * factor}, "
                f"above this app's {limits.max_side} px; crop or shrink the image first."
            )
        if min(width, height) < 16:
            raise InvalidRequest(f"The input image is {width}x{height}; upscaling needs at least 16 px a side.")

    def arguments(self, request: GenerationRequest, pipe: DiffusionPipeline, args: dict[str, Any]) -> dict[str, Any]:
        if "noise_level" in inspect.signature(pipe.__call__).parameters:
            return {"noise_level": request.noise_level}
        return {}

    def info_fields(self, request: GenerationRequest, serving: Serving) -> dict[str, Any]:
        fields: dict[str, Any] = {"upscaler": request.upscaler}
        if request.upscaler == "x4":
            fields["noise_level"] = request.noise_level
        return fields


SPEC = Upscale()
