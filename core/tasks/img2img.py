"""Image to image: the loaded checkpoint redraws an input image, as far from it as `strength` says."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, ClassVar

from diffusers import AutoPipelineForImage2Image
from diffusers.pipelines.auto_pipeline import AUTO_IMAGE2IMAGE_PIPELINES_MAPPING

from core.tasks.base import (
    IMAGE_PROMPT,
    PREVIEW,
    RUN,
    SPEED,
    STEP_CACHE,
    STEPS_GUIDANCE,
    TEXT,
    Group,
    TaskSpec,
    extra_input_channels,
    image,
    strength,
)

if TYPE_CHECKING:
    from core.pool import Pool


class Img2Img(TaskSpec):
    name, label, kind, order = "img2img", "Image to image", "auto", 20
    auto_class = AutoPipelineForImage2Image
    mapping = AUTO_IMAGE2IMAGE_PIPELINES_MAPPING
    sizes_follow_image = True
    groups: ClassVar[Mapping[str, Group]] = {"speed": SPEED}
    description = "Make images from an image and a prompt; strength is how much of the image is repainted."
    params = (
        image("Input image"),
        *TEXT,
        strength(0.75),
        *STEPS_GUIDANCE,
        *RUN,
        IMAGE_PROMPT,
        PREVIEW,
        STEP_CACHE,
    )

    def unfit(self, pool: Pool) -> str | None:
        return extra_input_channels(pool)


SPEC = Img2Img()
