"""Inpaint: image to image that repaints only where the mask is white. A 9-channel inpainting checkpoint, loaded as
a companion, does better than the base UNet and serves the task when it is there."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from diffusers import AutoPipelineForInpainting, DiffusionPipeline
from diffusers.pipelines.auto_pipeline import AUTO_INPAINT_PIPELINES_MAPPING

from core.errors import InvalidRequest
from core.tasks.base import IMAGE_PROMPT, PREVIEW, RUN, STEP_CACHE, STEPS_GUIDANCE, TEXT, Param, image, strength
from core.tasks.img2img import Img2Img

if TYPE_CHECKING:
    from core.generation import GenerationRequest, Limits
    from core.pool import Pool


class Inpaint(Img2Img):
    name, label, kind, order = "inpaint", "Inpaint", "auto", 30
    auto_class = AutoPipelineForInpainting
    table_pipeline = "`AutoPipelineForInpainting` (or a loaded 9-channel inpainting companion)"
    mapping = AUTO_INPAINT_PIPELINES_MAPPING
    description = "Repaint the white part of `mask` (an image of the same size) in `image`, following the prompt."
    companions = ("inpaint",)
    companion_pipelines: ClassVar[Mapping[str, str]] = {"inpaint": "StableDiffusionInpaintPipeline"}
    companion_note = "optional: a 9-channel inpainting checkpoint repaints better."
    params = (
        image("Image: paint over what to repaint"),
        Param("mask", "mask", "…or upload a mask (white = repaint)", mode="L"),
        *TEXT,
        strength(1.0),
        *STEPS_GUIDANCE,
        *RUN,
        IMAGE_PROMPT,
        PREVIEW,
        STEP_CACHE,
    )

    def unfit(self, pool: Pool) -> str | None:
        # Kandinsky's inpaint pipelines hand the UNet the mask and the masked image's latents beside the noise:
        # only the family's inpainting decoder (9 input channels) takes them. SD's also run a 4-channel UNet.
        if pool.family in ("kandinsky", "kandinsky22") and pool.components["unet"].config.in_channels != 9:
            return (
                "Kandinsky inpaints only with its inpainting decoder (a UNet with 9 input channels, e.g. "
                "kandinsky-community/kandinsky-2-2-decoder-inpaint); this one has 4."
            )
        return None

    def companion_kind(self, request: GenerationRequest, companions: Mapping[str, Pool]) -> str | None:
        return "inpaint" if "inpaint" in companions else None

    def check_input_size(self, request: GenerationRequest, limits: Limits) -> None:
        super().check_input_size(request, limits)
        if request.mask is None:
            raise InvalidRequest("Inpainting needs a mask: paint over the image or upload a mask (white = repaint).")
        if request.mask.size != request.image.size:
            (mw, mh), (w, h) = request.mask.size, request.image.size
            raise InvalidRequest(f"The mask is {mw}x{mh} but the image is {w}x{h}; they must be the same size.")

    def arguments(self, request: GenerationRequest, pipe: DiffusionPipeline, args: dict[str, Any]) -> dict[str, Any]:
        return {"mask_image": request.mask.convert("L")}


SPEC = Inpaint()
