"""Paint by example: repaint the masked part of an image with what an example image shows (no prompt: the example
is the prompt), through Paint by Example's own checkpoint (a CLIP image encoder and a 9-channel UNet), loaded as a
companion; its VAE is SD 1.5's, so the pool takes it from memory where it is byte-identical."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from diffusers import DiffusionPipeline

from core.errors import InvalidRequest
from core.tasks.base import (
    NUM_IMAGES,
    SAFETY_CHECKER,
    SCHEDULER,
    SEED,
    Param,
    Serving,
    TaskSpec,
    guidance,
    image,
    steps,
)

if TYPE_CHECKING:
    from core.generation import GenerationRequest, Limits
    from core.snippet import Snippet


class PaintByExample(TaskSpec):
    name, label, kind, order = "paint_by_example", "Paint by example", "companion", 47
    tab_label = "Paint by example"
    pipeline_class = "PaintByExamplePipeline"
    table_shares = "companion: `Fantasy-Studio/Paint-by-Example` (its VAE shared where byte-identical)"
    companions = ("paint_by_example",)
    companion_pipelines: ClassVar[Mapping[str, str]] = {"paint_by_example": "PaintByExamplePipeline"}
    sizes_follow_image = True
    run_label = "Paint"
    description = (
        "Repaint the white part of mask in image with what example_image shows (no prompt: the example is the prompt)."
    )
    companion_note = "Paint by Example: a CLIP image encoder and an inpainting UNet conditioned on an example image."
    params = (
        image("Image: paint over what to replace"),
        Param("mask", "mask", "…or upload a mask (white = repaint)", mode="L"),
        Param("example_image", "image", "Example (what to paint there)"),
        steps(25),
        guidance(5.0),
        SEED,
        SCHEDULER,
        NUM_IMAGES,
        SAFETY_CHECKER,
    )

    def check_input_size(self, request: GenerationRequest, limits: Limits) -> None:
        super().check_input_size(request, limits)
        if request.mask is None:
            raise InvalidRequest(
                "Paint by example needs a mask: paint over the image or upload a mask (white = repaint)."
            )
        if request.mask.size != request.image.size:
            (mw, mh), (w, h) = request.mask.size, request.image.size
            raise InvalidRequest(f"The mask is {mw}x{mh} but the image is {w}x{h}; they must be the same size.")
        if request.example_image is None:
            raise InvalidRequest("Paint by example needs an example image: upload what to paint into the mask.")

    def add_to_snippet(
        self, snippet: Snippet, request: GenerationRequest, seeds: list[int], serving: Serving, load: dict[str, Any]
    ) -> None:
        # What core.checkpoints.loading does for this checkpoint: its model_index.json names the module's old place.
        snippet.before_load += [
            "import diffusers.pipelines.deprecated.paint_by_example",
            "# model_index.json names the encoder's module where it was before diffusers moved it:",
            "diffusers.pipelines.paint_by_example = diffusers.pipelines.deprecated.paint_by_example",
        ]

    def arguments(self, request: GenerationRequest, pipe: DiffusionPipeline, args: dict[str, Any]) -> dict[str, Any]:
        return {"mask_image": request.mask.convert("L"), "example_image": request.example_image.convert("RGB")}


SPEC = PaintByExample()
