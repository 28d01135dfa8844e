"""Depth to image: Stable Diffusion 2's depth-conditioned checkpoint keeps the input's layout. The depth it
estimates is computed once here, so the page can show it; an uploaded depth map replaces it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch
from diffusers import DiffusionPipeline
from PIL import Image

from core.tasks.base import (
    RUN,
    STEPS_GUIDANCE,
    TEXT,
    Output,
    Param,
    TaskSpec,
    image,
    strength,
)
from core.tasks.depth import depth_preview

if TYPE_CHECKING:
    from core.generation import GenerationRequest, GenerationResult


class Depth2Img(TaskSpec):
    name, label, kind, order = "depth2img", "Depth to image", "companion", 50
    pipeline_class = "StableDiffusionDepth2ImgPipeline"
    table_shares = "companion: `stabilityai/stable-diffusion-2-depth`"
    companions = ("depth",)
    companion_pipelines: ClassVar[Mapping[str, str]] = {"depth": "StableDiffusionDepth2ImgPipeline"}
    description = "Repaint an image following the prompt while keeping its depth (estimated, or the depth_map given)."
    companion_note = "Stable Diffusion 2 depth (a 5-channel UNet and a DPT depth estimator)."
    params = (
        image("Input image"),
        Param("depth_map", "image", "Depth map (optional; white = near)", mode="L", row="images"),
        *TEXT,
        strength(0.8),
        *STEPS_GUIDANCE,
        *RUN,
    )
    outputs = (Output("depth", "image", "The depth map the model used"),)

    def output_values(self, result: GenerationResult) -> dict[str, Any]:
        return {"depth": (result.extras.get("depth") or [None])[0]}  # none when a Stop left no output

    def arguments(self, request: GenerationRequest, pipe: DiffusionPipeline, args: dict[str, Any]) -> dict[str, Any]:
        given = request.depth_map is not None
        return {"depth_map": _depth_tensor(request) if given else estimate_depth(pipe, args["image"])}

    def collect(self, output: Any, arguments: dict[str, Any]) -> tuple[list[Image.Image], dict[str, Any]]:
        size = output.images[0].size  # the estimator works at its own resolution; show it at the image's
        depth = depth_preview(arguments["depth_map"]).resize(size, Image.Resampling.BICUBIC)
        return list(output.images), {"depth": [depth]}


def estimate_depth(pipe: DiffusionPipeline, image: Image.Image) -> torch.Tensor:
    """The depth the depth-to-image pipeline would estimate itself."""
    pixels = pipe.feature_extractor(images=image, return_tensors="pt").pixel_values
    module = pipe.depth_estimator
    # The pipeline's execution device, not the module's: under sequential offload its weights sit on `meta` and
    # accelerate's hooks move them to the GPU for each call.
    pixels = pixels.to(device=pipe._execution_device, dtype=next(module.parameters()).dtype)
    with torch.no_grad():
        return module(pixels).predicted_depth


def _depth_tensor(request: GenerationRequest) -> torch.Tensor:
    grey = np.asarray(request.depth_map.convert("L").resize(request.image.size), dtype=np.float32) / 255.0
    return torch.from_numpy(grey)[None]


SPEC = Depth2Img()
