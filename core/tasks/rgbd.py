"""RGB + depth: LDM3D makes an image and its depth map from one prompt."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from diffusers import DiffusionPipeline
from PIL import Image

from core.tasks.base import (
    RUN,
    SIZE,
    STEPS_GUIDANCE,
    TEXT,
    Output,
    Serving,
    TaskSpec,
)
from core.tasks.depth import to_grey

if TYPE_CHECKING:
    from core.generation import GenerationRequest, GenerationResult
    from core.pool import Pool
    from core.snippet import Snippet


class Rgbd(TaskSpec):
    name, label, kind, order = "rgbd", "RGB + depth", "companion", 80
    pipeline_class = "StableDiffusionLDM3DPipeline"
    table_shares = "companion: `Intel/ldm3d`"
    companions = ("ldm3d",)
    companion_pipelines: ClassVar[Mapping[str, str]] = {"ldm3d": "StableDiffusionLDM3DPipeline"}
    output = "rgbd"
    description = "An image and its depth map from a prompt (LDM3D)."
    companion_note = "LDM3D, whose VAE decodes an image and its depth map together."
    params = (
        *TEXT,
        *STEPS_GUIDANCE,
        *SIZE,
        *RUN,
    )
    outputs = (Output("depth", "gallery", "Depth maps"),)
    results_label = "Images"

    def output_values(self, result: GenerationResult) -> dict[str, Any]:
        return {"depth": result.extras.get("depth", [])}

    def view(
        self, pool: Pool, request: GenerationRequest, scheduler: Any, run_checker: bool, serving: Serving
    ) -> DiffusionPipeline:
        pipe = super().view(pool, request, scheduler, run_checker, serving)
        pipe.image_processor = ldm3d_image_processor(pipe.vae_scale_factor)
        return pipe

    def collect(self, output: Any, arguments: dict[str, Any]) -> tuple[list[Image.Image], dict[str, Any]]:
        return list(output.rgb), {"depth": [to_grey(d) for d in output.depth]}

    def add_to_snippet(
        self, snippet: Snippet, request: GenerationRequest, seeds: list[int], serving: Serving, load: dict[str, Any]
    ) -> None:
        load["safety_checker"] = None
        snippet.call_arguments["output_type"] = "np"


def ldm3d_image_processor(vae_scale_factor: int) -> Any:
    """LDM3D's image processor with a depth conversion that works under Pillow 12.

    diffusers 0.42 hands `Image.fromarray(..., mode="I;16")` arrays Pillow 12 refuses (a (H, W, 1) array, or
    int32), so every LDM3D call fails, even with output_type="np" when the safety checker runs. Only our own
    per-request view gets this subclass; the library is not patched.
    """
    from diffusers.image_processor import VaeImageProcessorLDM3D

    class _Processor(VaeImageProcessorLDM3D):
        def numpy_to_depth(self, images: np.ndarray) -> list[Image.Image]:
            if images.ndim == 3:
                images = images[None, ...]
            depth = images[:, :, :, 3:]
            if images.shape[-1] == 6:
                maps = [self.rgblike_to_depthmap((d * 255).round().astype("uint8")) for d in depth]
            else:
                maps = [(d[..., 0] * 65535.0).round() for d in depth]
            return [Image.fromarray(np.asarray(m).astype(np.uint16)) for m in maps]  # 2-D uint16 -> "I;16"

    return _Processor(vae_scale_factor=vae_scale_factor)


SPEC = Rgbd()
