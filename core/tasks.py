"""The tasks the studio serves and the diffusers pipeline class behind each, per checkpoint family."""

from __future__ import annotations

from dataclasses import dataclass

from diffusers import AutoPipelineForImage2Image, AutoPipelineForInpainting, AutoPipelineForText2Image
from diffusers.pipelines.auto_pipeline import (
    AUTO_IMAGE2IMAGE_PIPELINES_MAPPING,
    AUTO_INPAINT_PIPELINES_MAPPING,
    AUTO_TEXT2IMAGE_PIPELINES_MAPPING,
)

from core.errors import InvalidRequest


@dataclass(frozen=True)
class Task:
    """One thing a user can do: its API name, its label in the UI, and what it needs."""

    name: str
    label: str
    auto_class: type
    mapping: dict
    needs_image: bool = False
    needs_mask: bool = False


TASKS: dict[str, Task] = {
    t.name: t
    for t in (
        Task("text2img", "Text to image", AutoPipelineForText2Image, AUTO_TEXT2IMAGE_PIPELINES_MAPPING),
        Task("img2img", "Image to image", AutoPipelineForImage2Image, AUTO_IMAGE2IMAGE_PIPELINES_MAPPING, True),
        Task("inpaint", "Inpaint", AutoPipelineForInpainting, AUTO_INPAINT_PIPELINES_MAPPING, True, True),
    )
}
_ALL_MAPPINGS = (AUTO_TEXT2IMAGE_PIPELINES_MAPPING, AUTO_IMAGE2IMAGE_PIPELINES_MAPPING, AUTO_INPAINT_PIPELINES_MAPPING)


def get_task(name: str) -> Task:
    """The task called `name`, or a clear error listing the tasks there are."""
    try:
        return TASKS[name]
    except KeyError:
        raise InvalidRequest(f"Unknown task {name!r}; choose one of {', '.join(TASKS)}.") from None


def family_of(pipeline_class_name: str) -> str | None:
    """The AutoPipeline family key ('stable-diffusion', 'stable-diffusion-xl', ...) a pipeline class belongs to."""
    for mapping in _ALL_MAPPINGS:
        for family, cls in mapping.items():
            if cls.__name__ == pipeline_class_name:
                return family
    return None


def pipeline_class_for(task: Task, pipeline_class_name: str) -> type | None:
    """The diffusers class that runs `task` for a checkpoint whose pipeline class is given, if any."""
    family = family_of(pipeline_class_name)
    return task.mapping.get(family) if family else None
