"""The PNG info tab: drop an image made by this studio or another tool (AUTOMATIC1111 and Forge, ComfyUI, InvokeAI,
NovelAI, Fooocus, SwarmUI), read its parameters, send them (and, for image-to-image and inpainting, the image itself)
to a task tab, and load the LoRAs it used."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gradio as gr

from core.errors import InvalidRequest
from core.png_info import read_png_info, request_fields
from ui.common import GPU_QUEUE, AppContext, change_shared, user_errors
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
    problems = [f"- {problem}" for problem in found.get("problems") or []]
    if not found.get("found"):
        lines = ["This image carries no generation parameters this studio can read (no text chunk or EXIF comment "
                 "in a format it knows)."]  # fmt: skip
        return "\n\n".join(lines + (["Skipped:\n" + "\n".join(problems)] if problems else []))
    f = found["fields"]
    tool = found.get("tool") or ("this studio" if found["found"] == "diffusion-studio" else "another tool")
    parts = [f"Made by **{tool}**" + (f" ({found['task']})" if found.get("task") else "") + "."]
    if f.get("prompt"):
        parts.append(f"Prompt: *{f['prompt']}*")
    keys = ("steps", "guidance_scale", "seed", "scheduler", "width", "height", "strength")
    parts.append(" · ".join(f"{k} **{f[k]}**" for k in keys if k in f))
    if found.get("loras"):
        parts.append("LoRAs: " + ", ".join(f"**{lora['name']}** at {lora['weight']:g}" for lora in found["loras"]))
    if found.get("batch"):
        parts.append(batch_note(found))
    if found.get("unmapped"):
        parts.append("Not carried over:\n" + "\n".join(f"- {line}" for line in found["unmapped"]))
    if problems:
        parts.append("Skipped:\n" + "\n".join(problems))
    return "\n\n".join(parts)


def lora_loads(found: dict[str, Any] | None, loaded: dict[str, Any]) -> tuple[list[tuple[str, float]], list[str]]:
    """What "Load its LoRAs" does with an image's LoRAs: the (source, weight) pairs to load, and a sentence for
    each it can't (one loaded already; an A1111 image names only a file, which may be anywhere)."""
    todo, notes = [], []
    loaded_sources = {lora["source"] for lora in loaded.values()}
    for lora in (found or {}).get("loras") or []:
        source = lora.get("source")
        if not source:
            notes.append(
                f"{lora['name']}: the image names only its file; load it from LoRA adapters with its path or Hub id "
                f"(weight {lora['weight']:g})."
            )
        elif source in loaded_sources:
            notes.append(f"{lora['name']} is loaded already.")
        else:
            todo.append((source, float(lora["weight"])))
    return todo, notes


@dataclass
class PngInfoTab:
    """What the History tab needs to hand PNG info a saved image: the outputs `open` fills (the tab selected too),
    and the outputs `send_to_its_tab` fills (every target tab's fields, the scheduler, the tabs)."""

    open_outputs: list[Any]
    open: Callable[[str], tuple]
    send_outputs: list[Any]
    send_to_its_tab: Callable[[str], tuple]


def build_png_info_tab(
    ctx: AppContext, panel: ModelPanel, tabs: gr.Tabs, inputs: dict[str, dict], loras: gr.JSON
) -> PngInfoTab:
    """`inputs`: each generate tab's input components by name (ui.task_tab.TaskTab.inputs); `loras`: the LoRA
    panel's answer (the loaded LoRAs), which loading an image's LoRAs updates."""
    with gr.Row():
        with gr.Column(scale=1):
            upload = gr.File(
                label="An image with parameters (PNG, JPEG or WebP)", file_types=["image"], elem_id="png-info-upload"
            )
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
            # LoRAs change what every visitor gets: a public server's owner loads them from the LoRA panel.
            load_loras = gr.Button("Load its LoRAs", visible=False, elem_id="png-info-load-loras")
            lora_note = gr.Markdown(elem_id="png-info-lora-note")

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
        offer = gr.update(visible=bool(result.get("loras")) and not ctx.settings.public)
        return path, summary_markdown(result), result.get("text", ""), batch, offer, "", *buttons

    shown_outputs = [preview, summary, text, whole_batch, load_loras, lora_note, *send_buttons.values()]
    upload.upload(png_info, upload, found, api_name="png_info").success(
        shown, [upload, found], shown_outputs, api_visibility="private"
    )

    @user_errors
    def load_its_loras(result: dict | None, request: gr.Request = None) -> tuple:
        """Load the LoRAs the image names with a source (this studio's images record it) at their weights."""
        loaded = ctx.studio.loras.info(ctx.studio.pool)["loras"] if ctx.studio.is_loaded else {}
        todo, notes = lora_loads(result, loaded)
        answer = None
        for source, weight in todo:
            answer = change_shared(ctx, request, "Loading a LoRA", ctx.studio.load_lora, source, weight)
            notes.append(f"Loaded {source} at {weight:g}.")
        return (gr.update(value=answer) if answer is not None else gr.update()), "\n\n".join(notes)

    load_loras.click(load_its_loras, found, [loras, lora_note], api_visibility="private", concurrency_id=GPU_QUEUE)

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
