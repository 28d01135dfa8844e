"""Stable unCLIP text to image: a prior turns the prompt into a CLIP image embedding, and the unCLIP decoder makes
images from it (with the prompt too), through a checkpoint that carries both (e.g. `fusing/stable-unclip-2-1-l`:
Karlo's prior with SD 2.1 unCLIP), loaded as a companion."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from diffusers import DiffusionPipeline

from core.tasks.base import RUN, SIZE, TEXT, Param, Serving, TaskSpec, guidance, steps
from core.tasks.unclip import EMBEDDING_NOISE

if TYPE_CHECKING:
    from core.generation import GenerationRequest


class UnClipText2Img(TaskSpec):
    name, label, kind, order = "unclip_text2img", "Stable unCLIP text to image", "companion", 66
    tab_label = "unCLIP text"
    pipeline_class = "StableUnCLIPPipeline"
    table_shares = "companion: `fusing/stable-unclip-2-1-l` (a prior and the unCLIP decoder)"
    companions = ("unclip_text2img",)
    companion_pipelines: ClassVar[Mapping[str, str]] = {"unclip_text2img": "StableUnCLIPPipeline"}
    description = (
        "Images from a prompt through an image embedding: the prior makes it from the prompt (prior_steps), the "
        "unCLIP decoder the images; unclip_noise_level (0-1000) noises the embedding first."
    )
    companion_note = "Stable unCLIP with its prior: the prompt becomes a CLIP image embedding, then images."
    params = (
        *TEXT,
        Param("prior_steps", "slider", "Prior steps", 25, minimum=1, maximum="max_steps", step=1, whole=True),
        EMBEDDING_NOISE,
        steps(20),
        guidance(10.0),
        *SIZE,
        *RUN,
    )

    def arguments(self, request: GenerationRequest, pipe: DiffusionPipeline, args: dict[str, Any]) -> dict[str, Any]:
        return {"noise_level": request.unclip_noise_level, "prior_num_inference_steps": request.prior_steps}

    def info_fields(self, request: GenerationRequest, serving: Serving) -> dict[str, Any]:
        return {"noise_level": request.unclip_noise_level, "prior_steps": request.prior_steps}


SPEC = UnClipText2Img()
