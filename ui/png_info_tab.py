"""The PNG info tab: drop a PNG made by this studio or a Stable Diffusion web UI, read its parameters, and send
them (and, for image-to-image and inpainting, the image itself) to a task tab."""

from __future__ import annotations

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


def build_png_info_tab(ctx: AppContext, panel: ModelPanel, tabs: gr.Tabs, inputs: dict[str, dict]) -> None:
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

    upload.upload(png_info, upload, found, api_name="png_info").success(
        shown,
        [upload, found],
        [preview, summary, text, whole_batch, *send_buttons.values()],
        api_visibility="private",
    )

    for task, button in send_buttons.items():
        fields = inputs[task]
        targets = [fields.get(name) for name in SENT]
        present = [(name, comp) for name, comp in zip(SENT, targets, strict=True) if comp is not None]

        def send(
            result: dict | None, path: str | None, whole: bool, _task=task, _present=present, fields=fields
        ) -> tuple:
            if not result or not result.get("found"):
                raise gr.Error("Upload a PNG with parameters first.")
            values = request_fields(result, whole_batch=bool(whole))
            updates = [gr.update(value=values[name]) if name in values else gr.update() for name, _ in _present]
            scheduler = values.get("scheduler")
            usable = ctx.studio.model_info()["schedulers"] if ctx.studio.is_loaded else []
            images = []
            if fields.get("image") is not None:  # image to image and inpainting also get the image itself
                editor = isinstance(fields["image"], gr.ImageMask)
                value = {"background": path, "layers": [], "composite": path} if editor else path
                images.append(gr.update(value=value) if path else gr.update())
            scheduler_update = gr.update(value=scheduler) if scheduler in usable else gr.update()
            return (*updates, scheduler_update, *images, gr.Tabs(selected=_task))

        image_output = [fields["image"]] if fields.get("image") is not None else []
        outputs = [comp for _, comp in present] + [panel.scheduler, *image_output, tabs]
        # Queued (no limit): a non-queued event's error never reached the page.
        button.click(send, [found, upload, whole_batch], outputs, api_visibility="private", concurrency_limit=None)
