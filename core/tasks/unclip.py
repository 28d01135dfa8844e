"""Stable unCLIP: new images from an image's CLIP embedding, optionally steered by a prompt (image variation with
text), through Stable Diffusion 2.1 unCLIP's own checkpoint, a companion; noise_level is how much the embedding
is noised first (more: freer variations)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from diffusers import DiffusionPipeline

from core.tasks.base import RUN, TEXT, Param, Serving, TaskSpec, guidance, image, steps

if TYPE_CHECKING:
    from core.generation import GenerationRequest


# How much the image embedding is noised before decoding: unCLIP's own knob, shared by both unCLIP tasks.
EMBEDDING_NOISE = Param(
    "unclip_noise_level", "slider", "Embedding noise", 0, minimum=0, maximum=1000, step=10, whole=True,
    info="0 = closest to the embedding (the image's, or the prior's)",
)  # fmt: skip


class UnClip(TaskSpec):
    name, label, kind, order = "unclip", "Stable unCLIP", "companion", 65
    tab_label = "unCLIP"
    pipeline_class = "StableUnCLIPImg2ImgPipeline"
    table_shares = "companion: `stabilityai/stable-diffusion-2-1-unclip`"
    companions = ("unclip",)
    companion_pipelines: ClassVar[Mapping[str, str]] = {"unclip": "StableUnCLIPImg2ImgPipeline"}
    sizes_follow_image = True
    description = (
        "Variations of image from its CLIP image embedding, steered by the prompt if one is given; noise_level "
        "(0-1000) noises the embedding first for freer variations."
    )
    companion_note = "Stable unCLIP 2.1: an SD 2.1 UNet conditioned on a CLIP image embedding."
    params = (
        image("Image to vary"),
        *TEXT,
        EMBEDDING_NOISE,
        steps(20),
        guidance(10.0),
        *RUN,
    )

    def arguments(self, request: GenerationRequest, pipe: DiffusionPipeline, args: dict[str, Any]) -> dict[str, Any]:
        return {"noise_level": request.unclip_noise_level, "prompt": request.prompt or ""}

    def info_fields(self, request: GenerationRequest, serving: Serving) -> dict[str, Any]:
        return {"noise_level": request.unclip_noise_level}


SPEC = UnClip()
