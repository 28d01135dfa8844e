"""The tasks the studio serves and the diffusers pipeline behind each.

Three kinds of task:
- `auto`: served from the loaded checkpoint through diffusers' AutoPipeline maps (any family they know);
- `feature`: another pipeline class over the loaded checkpoint's components (`from_pipe`), e.g. safe latent
  diffusion; self-attention and perturbed-attention guidance are options of text2img of this kind;
- `companion`: a task that needs its own checkpoint (depth, variation, upscalers, RGB+depth), loaded into the
  pool beside the main one on demand; `animate` needs a motion adapter on top of the loaded checkpoint.
"""

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
    """One thing a user can do: its API name, its label in the UI, what it needs and what runs it."""

    name: str
    label: str
    kind: str  # auto | feature | companion | animate
    needs_image: bool = False
    needs_mask: bool = False
    auto_class: type | None = None
    mapping: dict | None = None
    pipeline_class: str | None = None  # for feature and companion tasks: the diffusers class that runs them
    companions: tuple[str, ...] = ()  # companion kinds that can serve it (see core.demo_companions)
    uses_prompt: bool = True
    sizes_from_request: bool = False  # width/height come from the request (else from the input image)


TASKS: dict[str, Task] = {
    t.name: t
    for t in (
        Task(
            "text2img",
            "Text to image",
            "auto",
            auto_class=AutoPipelineForText2Image,
            mapping=AUTO_TEXT2IMAGE_PIPELINES_MAPPING,
            companions=("refiner",),  # SDXL's refiner, as an optional second stage
            sizes_from_request=True,
        ),
        Task(
            "img2img",
            "Image to image",
            "auto",
            needs_image=True,
            auto_class=AutoPipelineForImage2Image,
            mapping=AUTO_IMAGE2IMAGE_PIPELINES_MAPPING,
        ),
        Task(
            "inpaint",
            "Inpaint",
            "auto",
            needs_image=True,
            needs_mask=True,
            auto_class=AutoPipelineForInpainting,
            mapping=AUTO_INPAINT_PIPELINES_MAPPING,
            companions=("inpaint",),
        ),
        Task(
            "safe_text2img",
            "Safe text to image",
            "feature",
            pipeline_class="StableDiffusionPipelineSafe",
            sizes_from_request=True,
        ),
        Task(
            "depth2img",
            "Depth to image",
            "companion",
            needs_image=True,
            pipeline_class="StableDiffusionDepth2ImgPipeline",
            companions=("depth",),
        ),
        Task(
            "variation",
            "Image variation",
            "companion",
            needs_image=True,
            uses_prompt=False,
            pipeline_class="StableDiffusionImageVariationPipeline",
            companions=("variation",),
        ),
        Task(
            "upscale",
            "Upscale",
            "companion",
            needs_image=True,
            pipeline_class="StableDiffusionUpscalePipeline",
            companions=("upscale_x4", "upscale_x2"),
        ),
        Task(
            "rgbd",
            "RGB + depth",
            "companion",
            pipeline_class="StableDiffusionLDM3DPipeline",
            companions=("ldm3d",),
            sizes_from_request=True,
        ),
        Task(
            "animate",
            "Animate",
            "animate",
            pipeline_class="AnimateDiffPipeline",
            companions=("motion_adapter",),
            sizes_from_request=True,
        ),
    )
}
BASE_TASKS = tuple(name for name, t in TASKS.items() if t.kind == "auto")
_ALL_MAPPINGS = (AUTO_TEXT2IMAGE_PIPELINES_MAPPING, AUTO_IMAGE2IMAGE_PIPELINES_MAPPING, AUTO_INPAINT_PIPELINES_MAPPING)
# The pipeline class each companion checkpoint loads as, to check a companion is what its task needs.
COMPANION_PIPELINES = {
    "inpaint": "StableDiffusionInpaintPipeline",
    "depth": "StableDiffusionDepth2ImgPipeline",
    "variation": "StableDiffusionImageVariationPipeline",
    "upscale_x4": "StableDiffusionUpscalePipeline",
    "upscale_x2": "StableDiffusionLatentUpscalePipeline",
    "ldm3d": "StableDiffusionLDM3DPipeline",
    "refiner": "StableDiffusionXLImg2ImgPipeline",
}


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
    """The diffusers class that runs an `auto` task for a checkpoint whose pipeline class is given, if any."""
    if task.mapping is None:
        return None
    family = family_of(pipeline_class_name)
    return task.mapping.get(family) if family else None
