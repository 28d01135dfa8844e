"""Edit by instruction: InstructPix2Pix repaints an image as a sentence says ("make it winter"). Its own 8-channel
UNet (the noisy latents beside the input image's) is a companion checkpoint; its text encoder and VAE are SD 1.5's,
so the pool takes them from memory where they are byte-identical to the loaded checkpoint's."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from diffusers import DiffusionPipeline

from core.tasks.base import PREVIEW, RUN, Param, Serving, TaskSpec, guidance, image, negative, steps

if TYPE_CHECKING:
    from core.generation import GenerationRequest


class Instruct(TaskSpec):
    name, label, kind, order = "instruct", "Edit by instruction", "companion", 45
    tab_label = "Instruct edit"
    pipeline_class = "StableDiffusionInstructPix2PixPipeline"
    table_shares = "companion: `timbrooks/instruct-pix2pix` (its text encoder and VAE shared where byte-identical)"
    companions = ("instruct",)
    companion_pipelines: ClassVar[Mapping[str, str]] = {"instruct": "StableDiffusionInstructPix2PixPipeline"}
    sizes_follow_image = True
    run_label = "Edit"
    description = (
        "Edit image as the instruction (prompt) says; image_guidance_scale is how closely the result keeps to the "
        "image, guidance_scale how strongly it follows the instruction."
    )
    companion_note = "InstructPix2Pix, an SD 1.5 model trained to follow edit instructions."
    params = (
        image("Image to edit"),
        Param("prompt", "prompt", "Instruction"),
        negative(),
        Param(
            "image_guidance_scale",
            "slider",
            "Image guidance",
            1.5,
            minimum=1.0,
            maximum=5.0,
            step=0.05,
            info="how closely the result keeps to the image (1 = not at all)",
        ),
        steps(20),
        guidance(7.5),
        *RUN,
        PREVIEW,
    )

    def arguments(self, request: GenerationRequest, pipe: DiffusionPipeline, args: dict[str, Any]) -> dict[str, Any]:
        return {"image_guidance_scale": float(request.image_guidance_scale)}

    def info_fields(self, request: GenerationRequest, serving: Serving) -> dict[str, Any]:
        return {"image_guidance_scale": request.image_guidance_scale}


SPEC = Instruct()
