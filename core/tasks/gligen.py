"""GLIGEN: text to image with each phrase placed in its box ("a cat" left, "a lamp" top right), through GLIGEN's own
checkpoint (SD 1.4 with gated self-attention layers that read the boxes), loaded as a companion; its text encoder
and VAE are SD's, shared where byte-identical.

In the page the boxes are drawn on a canvas, one colour per phrase (the first in red, the second in green, ...);
the API takes them as text, `x0,y0,x1,y1` per box in fractions of the width and height, `;` between boxes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from diffusers import DiffusionPipeline

from core.errors import InvalidRequest
from core.tasks.base import RUN, SIZE, STEPS_GUIDANCE, TEXT, Param, Serving, TaskSpec
from core.tasks.params import BOX_COLOURS

MAX_BOXES = len(BOX_COLOURS)

if TYPE_CHECKING:
    from core.generation import GenerationRequest, Limits


def phrases_of(text: str) -> list[str]:
    return [p.strip() for p in text.replace("\n", ";").split(";") if p.strip()]


def parse_boxes(text: str) -> list[list[float]]:
    """`x0,y0,x1,y1; ...` (fractions) as lists of four floats; InvalidRequest saying what is wrong otherwise."""
    boxes = []
    for part in (p for p in text.split(";") if p.strip()):
        try:
            box = [float(v) for v in part.split(",")]
        except ValueError:
            box = []
        if len(box) != 4 or not (0 <= box[0] < box[2] <= 1 and 0 <= box[1] < box[3] <= 1):
            raise InvalidRequest(
                f"Box {part.strip()!r} is not x0,y0,x1,y1 with 0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1 (fractions of "
                "the width and height, left to right and top to bottom)."
            )
        boxes.append(box)
    return boxes


class Gligen(TaskSpec):
    name, label, kind, order = "gligen", "GLIGEN (phrases in boxes)", "companion", 48
    tab_label = "GLIGEN"
    pipeline_class = "StableDiffusionGLIGENPipeline"
    table_shares = (
        "companion: `masterful/gligen-1-4-generation-text-box` (text encoder and VAE shared where byte-identical)"
    )
    companions = ("gligen",)
    companion_pipelines: ClassVar[Mapping[str, str]] = {"gligen": "StableDiffusionGLIGENPipeline"}
    description = (
        "Text to image with each of gligen_phrases (separated by ;) placed in its box of gligen_boxes "
        "(x0,y0,x1,y1 fractions per box, ; between boxes)."
    )
    companion_note = "GLIGEN: SD 1.4 with gated self-attention layers that place phrases in boxes."
    params = (
        *TEXT,
        Param(
            "gligen_phrases",
            "text",
            "Phrases, one per box",
            "",
            row="above-prompt",
            info="separated by ; (e.g. a cat; a lamp): the first goes in the red box, then green, blue, orange",
        ),
        Param("gligen_boxes", "boxes", "Boxes: draw one per phrase, in its colour"),
        Param(
            "gligen_beta",
            "slider",
            "Box guidance (share of the run)",
            0.3,
            minimum=0.0,
            maximum=1.0,
            step=0.05,
            info="the boxes steer this first part of the run (GLIGEN's scheduled sampling)",
        ),
        *STEPS_GUIDANCE,
        *SIZE,
        *RUN,
    )

    def check(self, request: GenerationRequest, limits: Limits) -> None:
        for name in ("gligen_phrases", "gligen_boxes"):
            value = getattr(request, name)
            if not isinstance(value, str) or len(value) > limits.max_prompt_chars:
                raise InvalidRequest(f"{name} must be text of at most {limits.max_prompt_chars} characters.")
        phrases, boxes = phrases_of(request.gligen_phrases), parse_boxes(request.gligen_boxes)
        if not phrases or len(phrases) != len(boxes) or len(phrases) > MAX_BOXES:
            raise InvalidRequest(
                f"GLIGEN needs one box per phrase (1 to {MAX_BOXES}); got {len(phrases)} phrases and "
                f"{len(boxes)} boxes."
            )

    def arguments(self, request: GenerationRequest, pipe: DiffusionPipeline, args: dict[str, Any]) -> dict[str, Any]:
        return {
            "gligen_phrases": phrases_of(request.gligen_phrases),
            "gligen_boxes": parse_boxes(request.gligen_boxes),
            "gligen_scheduled_sampling_beta": float(request.gligen_beta),
        }

    def info_fields(self, request: GenerationRequest, serving: Serving) -> dict[str, Any]:
        return {
            "gligen_phrases": phrases_of(request.gligen_phrases),
            "gligen_boxes": parse_boxes(request.gligen_boxes),
            "gligen_beta": request.gligen_beta,
        }


SPEC = Gligen()
