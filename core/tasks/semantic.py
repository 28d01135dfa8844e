"""Semantic guidance (SEGA): the loaded SD checkpoint's text to image, pushed towards or away from up to two more
concepts ("+ sunglasses", "- crowd") with their own strength, in the same run. A `from_pipe` view: no memory."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import diffusers
from diffusers import DiffusionPipeline

from core.errors import InvalidRequest
from core.tasks.base import RUN, SIZE, STEPS_GUIDANCE, TEXT, Group, Param, Serving, TaskSpec

if TYPE_CHECKING:
    from core.generation import GenerationRequest, Limits

DIRECTIONS = ("add", "remove")


def _edit(n: int, prompt: str) -> tuple[Param, ...]:
    row = f"edit{n}"
    return (
        Param(f"edit_prompt_{n}", "text", f"Concept {n}", prompt, api_default="", row=f"{row}-text", group="edits"),
        Param(
            f"edit_direction_{n}",
            "choice",
            "Direction",
            "add",
            api_default="add",
            choices=DIRECTIONS,
            row=row,
            group="edits",
        ),
        Param(
            f"edit_scale_{n}",
            "slider",
            "Strength",
            5.0,
            api_default=5.0,
            minimum=0.0,
            maximum=20.0,
            step=0.5,
            row=row,
            group="edits",
        ),
    )


class Semantic(TaskSpec):
    name, label, kind, order = "semantic", "Semantic guidance", "feature", 43
    tab_label = "SEGA"
    pipeline_class = "SemanticStableDiffusionPipeline"
    table_shares = "everything (a `from_pipe` view)"
    description = (
        "Text to image with semantic guidance: edit_prompt_1/2 are concepts added to or removed from the image "
        "(edit_direction), each with its strength, after edit_warmup_steps."
    )
    note = (
        "Semantic guidance (SEGA, `from_pipe` over the loaded checkpoint: no extra memory) adds or removes concepts "
        "while the image forms, without changing the prompt: keep a seed and try a concept on and off."
    )
    groups: ClassVar[Mapping[str, Group]] = {"edits": Group("Concepts to add or remove")}
    params = (
        *TEXT,
        *STEPS_GUIDANCE,
        *SIZE,
        *RUN,
        *_edit(1, ""),
        *_edit(2, ""),
        Param(
            "edit_warmup_steps",
            "slider",
            "Start after N steps",
            10,
            api_default=10,
            minimum=0,
            maximum="max_steps",
            step=1,
            whole=True,
            group="edits",
        ),
        Param(
            "edit_threshold",
            "slider",
            "Threshold",
            0.9,
            api_default=0.9,
            minimum=0.0,
            maximum=1.0,
            step=0.01,
            below=True,
            group="edits",
            info="the share of the image left alone by each concept",
        ),
    )

    def views_over(self, base_class: str, family: str | None) -> dict[str, type]:
        if base_class != "StableDiffusionPipeline":
            return {}
        return {self.name: diffusers.SemanticStableDiffusionPipeline}

    @staticmethod
    def edits(request: GenerationRequest) -> list[tuple[str, str, float]]:
        pairs = []
        for n in (1, 2):
            text = getattr(request, f"edit_prompt_{n}")
            if text.strip():
                pairs.append(
                    (text.strip(), getattr(request, f"edit_direction_{n}"), getattr(request, f"edit_scale_{n}"))
                )
        return pairs

    def check(self, request: GenerationRequest, limits: Limits) -> None:
        for n in (1, 2):
            text = getattr(request, f"edit_prompt_{n}")
            if not isinstance(text, str) or len(text) > limits.max_prompt_chars:
                raise InvalidRequest(f"edit_prompt_{n} must be text of at most {limits.max_prompt_chars} characters.")

    def arguments(self, request: GenerationRequest, pipe: DiffusionPipeline, args: dict[str, Any]) -> dict[str, Any]:
        edits = self.edits(request)
        if not edits:
            return {}
        return {
            "editing_prompt": [text for text, _d, _s in edits],
            "reverse_editing_direction": [direction == "remove" for _t, direction, _s in edits],
            "edit_guidance_scale": [float(scale) for _t, _d, scale in edits],
            "edit_warmup_steps": request.edit_warmup_steps,
            "edit_threshold": float(request.edit_threshold),
        }

    def info_fields(self, request: GenerationRequest, serving: Serving) -> dict[str, Any]:
        edits = [{"prompt": t, "direction": d, "scale": s} for t, d, s in self.edits(request)]
        return {
            "edits": edits,
            "edit_warmup_steps": request.edit_warmup_steps,
            "edit_threshold": request.edit_threshold,
        }


SPEC = Semantic()
