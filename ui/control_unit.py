"""A control image with its preprocessor's map beside it: "Preview map" shows what the model will see (the map can
be downloaded from its corner), "Use the map as is" puts the map in the control image and sets the preprocessor to
`none`, so a map can be touched up elsewhere and brought back, or kept for the next runs.

A unit is a `control` param of a task spec; its preprocessor is the spec's choice param named like it
(`control_image_2` -> `preprocessor_2`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gradio as gr

from core.errors import InvalidRequest
from core.tasks import TaskSpec
from core.tasks.base import Param
from ui.common import GPU_QUEUE, AppContext, user_errors
from ui.controls import ImageUpload, whole


@dataclass
class ControlUnit:
    param: Param
    preview: gr.Image
    show: gr.Button
    use: gr.Button


def preprocessor_of(name: str) -> str:
    return name.replace("control_image", "preprocessor")


def control_unit(task: str, p: Param, c: dict[str, Any]) -> ControlUnit:
    """The unit's controls (its preprocessor choice comes with the spec's other choices)."""
    elem = p.elem_id or f"{task}-{p.name.replace('_', '-')}"
    with gr.Row(equal_height=True):
        c[p.name] = ImageUpload(
            what=p.label.lower().removesuffix(" (optional)"), label=p.label, type="pil", image_mode="RGB",
            format="png", elem_id=elem, height=220,
        )  # fmt: skip
        preview = gr.Image(
            label="Map",
            type="pil",
            format="png",
            interactive=False,
            elem_id=f"{elem}-map",
            height=220,
        )
    with gr.Row():
        show = gr.Button("Preview map", size="sm", elem_id=f"{elem}-preview")
        use = gr.Button("Use the map as is", size="sm", elem_id=f"{elem}-use")
    return ControlUnit(p, preview, show, use)


def wire_control_unit(ctx: AppContext, spec: TaskSpec, unit: ControlUnit, c: dict[str, Any]) -> None:
    params = {p.name: p for p in spec.params}
    preprocessor = preprocessor_of(unit.param.name)
    checked = [params[preprocessor], params["canny_low"], params["canny_high"]]
    limits = ctx.settings.limits

    @user_errors
    def make_map(image: Any, name: str, low: Any, high: Any) -> Any:
        """The control map `preprocessor` makes of `image` (canny uses the two thresholds), as a ControlNet run
        would use it."""
        if image is None:
            raise InvalidRequest("Upload a control image first (a photo, a drawing, or a ready map).")
        low, high = whole(low), whole(high)
        for param, value in zip(checked, (name, low, high), strict=True):
            param.check(value, limits)
        return ctx.worker.call(ctx.studio.control_map, image, name, low, high)

    first = unit.param.api_default is not None  # the first unit's map is the `/control_map` endpoint
    inputs = [c[unit.param.name], c[preprocessor], c["canny_low"], c["canny_high"]]
    unit.show.click(
        make_map,
        inputs,
        unit.preview,
        api_name="control_map" if first else None,
        api_visibility="public" if first else "private",
        concurrency_id=GPU_QUEUE,
    )

    def use_map(picture: Any) -> tuple:
        if picture is None:
            raise gr.Error("Preview the map first; then it can be used as the control image.", print_exception=False)
        return picture, "none"

    # Queued (with no limit), so its message shows: Gradio's page drops an unqueued event's errors.
    unit.use.click(
        use_map, unit.preview, [c[unit.param.name], c[preprocessor]], api_visibility="private",
        concurrency_limit=None,
    )  # fmt: skip
