"""The PNG info tab: drop a PNG made by this studio or a Stable Diffusion web UI, read its parameters, and send
them (and, for image-to-image and inpainting, the image itself) to a task tab."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gradio as gr

from core.errors import InvalidRequest
from core.png_info import read_png_info, request_fields
from ui.common import AppContext, user_errors
from ui.model_panel import ModelPanel

TARGETS = (("text2img", "Text to image"), ("img2img", "Image to image"), ("inpaint", "Inpaint"))
# The inputs a PNG's parameters fill, in the order the send buttons write them.
SENT = ("prompt", "negative_prompt", "steps", "guidance_scale", "seed", "width", "height", "strength", "num_images")


def batch_note(found: dict[str, Any]) -> str:
    batch = found.get("batch")
    if not batch:
        return ""
    return (
        f"Image {batch['index'] + 1} of a batch of {batch['size']} (first seed {batch['first_seed']}). Sent alone, "
        "from its own seed, it comes out near-identical but not byte-identical (batched math rounds differently: "
        "about a level of 255 in float32, a few in bfloat16). For the exact pixels, remake the whole batch."
    )


def summary_markdown(found: dict[str, Any]) -> str:
    if not found.get("found"):
        return "This image carries no generation parameters (no `parameters` text chunk)."
    source = "this studio" if found["found"] == "diffusion-studio" else "a Stable Diffusion web UI"
    f = found["fields"]
    parts = [f"Made by **{source}**" + (f" ({found['task']})" if found.get("task") else "") + "."]
    if f.get("prompt"):
        parts.append(f"Prompt: *{f['prompt']}*")
    keys = ("steps", "guidance_scale", "seed", "scheduler", "width", "height", "strength")
    parts.append(" · ".join(f"{k} **{f[k]}**" for k in keys if k in f))
    if found.get("batch"):
        parts.append(batch_note(found))
    return "\n\n".join(parts)


@dataclass
class PngInfoTab:
    """What the History tab needs to hand PNG info a saved image: the outputs `open` fills (the tab selected too),
    and the outputs `send_to_its_tab` fills (every target tab's fields, the scheduler, the tabs)."""

    open_outputs: list[Any]
    open: Callable[[str], tuple]
    send_outputs: list[Any]
    send_to_its_tab: Callable[[str], tuple]


def build_png_info_tab(ctx: AppContext, panel: ModelPanel, tabs: gr.Tabs, inputs: dict[str, dict]) -> PngInfoTab:
    """`inputs`: each generate tab's input components by name (ui.task_tab.TaskTab.inputs)."""
    with gr.Row():
        with gr.Column(scale=1):
            upload = gr.File(label="A PNG with parameters", file_types=["image"], elem_id="png-info-upload")
            preview = gr.Image(label="Image", interactive=False, height=260)
        with gr.Column(scale=1):
            summary = gr.Markdown(elem_id="png-info-summary")
            text = gr.Textbox(label="parameters", lines=4, interactive=False, buttons=["copy"])
            found = gr.JSON(label="Read as", elem_id="png-info-json")
            whole_batch = gr.Checkbox(
                label="Remake its whole batch (exact pixels)", visible=False, elem_id="png-info-whole-batch"
            )
            with gr.Row():
                send_buttons = {
                    task: gr.Button(f"Send to {label}", elem_id=f"png-info-to-{task}") for task, label in TARGETS
                }

    @user_errors
    def png_info(image: str | None) -> dict[str, Any]:
        """The generation parameters in a PNG (this studio's, or a web UI's plain-text `parameters`)."""
        if not image:
            raise InvalidRequest("Upload a PNG first.")
        return read_png_info(image)  # the file's text chunks; its pixels are never decoded

    def shown(path: str | None, result: dict) -> tuple:
        # The tab the image was made in gets the primary button.
        buttons = [gr.update(variant="primary" if task == result.get("task") else "secondary") for task in send_buttons]
        batch = gr.update(visible=bool(result.get("batch")), value=False)
        return path, summary_markdown(result), result.get("text", ""), batch, *buttons

    shown_outputs = [preview, summary, text, whole_batch, *send_buttons.values()]
    upload.upload(png_info, upload, found, api_name="png_info").success(
        shown, [upload, found], shown_outputs, api_visibility="private"
    )

    def send_values(task: str, result: dict | None, path: str | None, whole: bool) -> tuple:
        """The values of `task`'s fields (then the scheduler and, for image tasks, the image) from a PNG's info."""
        if not result or not result.get("found"):
            raise gr.Error("Upload a PNG with parameters first.", print_exception=False)
        fields = inputs[task]
        values = request_fields(result, whole_batch=bool(whole))
        present = [name for name in SENT if fields.get(name) is not None]
        updates = [gr.update(value=values[name]) if name in values else gr.update() for name in present]
        scheduler = values.get("scheduler")
        usable = ctx.studio.model_info()["schedulers"] if ctx.studio.is_loaded else []
        images = []
        if fields.get("image") is not None:  # image to image and inpainting also get the image itself
            editor = isinstance(fields["image"], gr.ImageMask)
            value = {"background": path, "layers": [], "composite": path} if editor else path
            images.append(gr.update(value=value) if path else gr.update())
        scheduler_update = gr.update(value=scheduler) if scheduler in usable else gr.update()
        return (*updates, scheduler_update, *images)

    def task_outputs(task: str) -> list[Any]:
        fields = inputs[task]
        image = [fields["image"]] if fields.get("image") is not None else []
        return [fields[name] for name in SENT if fields.get(name) is not None] + [panel.scheduler, *image]

    for task, button in send_buttons.items():

        def send(result: dict | None, path: str | None, whole: bool, _task=task) -> tuple:
            return (*send_values(_task, result, path, whole), gr.Tabs(selected=_task))

        # Queued (no limit): a non-queued event's error never reached the page.
        outputs = [*task_outputs(task), tabs]
        button.click(send, [found, upload, whole_batch], outputs, api_visibility="private", concurrency_limit=None)

    def open_saved(path: str) -> tuple:
        result = read_png_info(path)
        return (path, result, *shown(path, result), gr.Tabs(selected="png_info"))

    # One event can fill any of the target tabs: its outputs are all of theirs (the scheduler once).
    every_output = list(dict.fromkeys(c for task in send_buttons for c in task_outputs(task)))

    def send_saved(path: str) -> tuple:
        result = read_png_info(path)
        task = result.get("task")
        if task not in send_buttons:
            raise gr.Error(
                f"This image was made by {task or 'another tool'}; open it in PNG info instead.", print_exception=False
            )
        sent = dict(zip(task_outputs(task), send_values(task, result, path, False), strict=True))
        return (*(sent.get(c, gr.update()) for c in every_output), gr.Tabs(selected=task))

    return PngInfoTab(
        open_outputs=[upload, found, *shown_outputs, tabs],
        open=open_saved,
        send_outputs=[*every_output, tabs],
        send_to_its_tab=send_saved,
    )
