"""Image variation: new images like the input, from its CLIP image embedding (no prompt)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from core.tasks.base import TaskSpec


class Variation(TaskSpec):
    name, label, kind, order = "variation", "Image variation", "companion", 60
    needs_image = True
    uses_prompt = False
    sizes_follow_image = True
    pipeline_class = "StableDiffusionImageVariationPipeline"
    companions = ("variation",)
    companion_pipelines: ClassVar[Mapping[str, str]] = {"variation": "StableDiffusionImageVariationPipeline"}


SPEC = Variation()
