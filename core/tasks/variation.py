"""Image variation: new images like the input, from its CLIP image embedding (no prompt)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from core.tasks.base import NUM_IMAGES, SAFETY_CHECKER, SCHEDULER, SEED, TaskSpec, guidance, image, steps


class Variation(TaskSpec):
    name, label, kind, order = "variation", "Image variation", "companion", 60
    sizes_follow_image = True
    pipeline_class = "StableDiffusionImageVariationPipeline"
    table_shares = "companion: `lambdalabs/sd-image-variations-diffusers`"
    companions = ("variation",)
    companion_pipelines: ClassVar[Mapping[str, str]] = {"variation": "StableDiffusionImageVariationPipeline"}
    tab_label = "Variation"
    description = "New images in the spirit of the given one (no prompt: the image is the prompt)."
    companion_note = "an image-variation checkpoint (a CLIP image encoder instead of text)."
    params = (image("Image to vary"), steps(), guidance(3.0), SEED, SCHEDULER, NUM_IMAGES, SAFETY_CHECKER)


SPEC = Variation()
