"""The generation tabs: Text to image, Image to image, Inpaint. One builder, one endpoint per task."""

from __future__ import annotations

from typing import Any

import gradio as gr
import numpy as np
from PIL import Image

from core.generation import GenerationRequest, GenerationResult
from ui.common import GPU_QUEUE, AppContext, session_of, user_errors
from ui.model_panel import ModelPanel

OutputList = tuple[list[str] | list[Image.Image], dict[str, Any]]


def _run(ctx: AppContext, request: GenerationRequest, session: str, progress: gr.Progress) -> OutputList:
    """Run one request with progress and this visitor's Stop flag; return the saved files and the info."""
    flag = ctx.cancel_flags.start(session)
    try:
        progress(0, desc="Starting…")
        result: GenerationResult = ctx.studio.generate(
            request,
            session=session,
            on_step=lambda i, n: progress((i, n), desc=f"Step {i} of {n}", unit="steps"),
            cancel=flag,
        )
    finally:
        ctx.cancel_flags.finish(session, flag)
    return (result.paths or result.images), result.info


def mask_from_editor(editor: dict | None) -> Image.Image | None:
    """The mask painted in `gr.ImageMask`: white where any layer has paint, black elsewhere."""
    if not editor or editor.get("background") is None:
        return None
    background = editor["background"]
    mask = np.zeros((background.height, background.width), dtype=np.uint8)
    for layer in editor.get("layers") or []:
        if layer is None:
            continue
        alpha = np.asarray(layer.convert("RGBA"))[..., 3]
        mask[alpha > 0] = 255
    return Image.fromarray(mask, mode="L") if mask.any() else None


def notice_markdown(info: dict | None) -> str:
    """What the user must notice about a run: flagged images, a stop, a truncated prompt."""
    if not info:
        return ""
    notes = []
    if info.get("nsfw") and any(info["nsfw"]):
        flagged = [str(i + 1) for i, f in enumerate(info["nsfw"]) if f]
        notes.append(f"⚠️ The safety checker flagged image {', '.join(flagged)}; it was replaced by a black image.")
    if info.get("interrupted"):
        notes.append("⏹️ Stopped early: the image shows where denoising had got to.")
    notes += [f"ℹ️ {w}" for w in info.get("warnings", [])]
    timings = info.get("timings", {})
    notes.append(
        f"Seeds {info['seeds']} · {info['scheduler']} ({info['scheduler_class']}) · {info['steps']} steps · "
        f"{info['width']}x{info['height']} · {timings.get('generate_ms', 0) / 1000:.2f} s "
        f"(pipeline switch {timings.get('switch_ms', 0):.1f} ms)"
    )
    return "\n\n".join(notes)


def _common_controls(task: str) -> dict[str, gr.components.Component]:
    c: dict[str, gr.components.Component] = {}
    c["prompt"] = gr.Textbox(
        label="Prompt", lines=3, placeholder="a watercolor lighthouse at dawn", elem_id=f"{task}-prompt"
    )
    c["negative_prompt"] = gr.Textbox(label="Negative prompt", lines=1, placeholder="blurry, low quality")
    with gr.Row():
        c["steps"] = gr.Slider(1, 150, value=25, step=1, label="Steps")
        c["guidance_scale"] = gr.Slider(0, 30, value=7.5, step=0.5, label="Guidance scale")
    return c


def build_generate_tab(ctx: AppContext, panel: ModelPanel, task: str) -> gr.Gallery:
    """The tab for `task` (`text2img`, `img2img` or `inpaint`); returns its gallery for the history to follow."""
    limits = ctx.settings.limits
    with gr.Row():
        with gr.Column(scale=1):
            image = mask_upload = editor = None
            if task == "img2img":
                image = gr.Image(
                    label="Input image", type="pil", image_mode="RGB", format="png", elem_id="img2img-image"
                )
            elif task == "inpaint":
                editor = gr.ImageMask(
                    label="Image: paint over what to repaint",
                    type="pil",
                    format="png",
                    elem_id="inpaint-editor",
                    brush=gr.Brush(colors=["#ffffff"], color_mode="fixed"),
                )
                mask_upload = gr.Image(
                    label="…or upload a mask (white = repaint)",
                    type="pil",
                    image_mode="L",
                    format="png",
                    elem_id="inpaint-mask",
                    height=160,
                )
            c = _common_controls(task)
            with gr.Row():
                if task == "text2img":
                    c["width"] = gr.Slider(limits.min_side, limits.max_side, value=512, step=8, label="Width")
                    c["height"] = gr.Slider(limits.min_side, limits.max_side, value=512, step=8, label="Height")
                else:
                    c["strength"] = gr.Slider(
                        0.01, 1.0, value=0.75 if task == "img2img" else 1.0, step=0.01, label="Strength"
                    )
            with gr.Row(equal_height=True):
                c["seed"] = gr.Number(value=-1, label="Seed (-1 = random)", precision=0, minimum=-1, scale=3)
                random_seed = gr.Button("🎲", scale=0, min_width=40, elem_id=f"{task}-random-seed")
                reuse_seed = gr.Button("♻️", scale=0, min_width=40)
                c["num_images"] = gr.Slider(1, limits.max_images, value=1, step=1, label="Images", scale=3)
            with gr.Row():
                generate = gr.Button("Generate", variant="primary", elem_id=f"{task}-generate")
                stop = gr.Button("Stop", variant="stop", elem_id=f"{task}-stop")
        with gr.Column(scale=1):
            gallery = gr.Gallery(label="Results", format="png", columns=2, height=440, elem_id=f"{task}-gallery")
            notice = gr.Markdown(elem_id=f"{task}-notice")
            with gr.Accordion("Reproduce in Python", open=False):
                code = gr.Code(language="python", label="diffusers only", elem_id=f"{task}-code")
            with gr.Accordion("Info", open=False):
                info = gr.JSON(label="info", elem_id=f"{task}-info")

    shared = [panel.scheduler, c["num_images"], panel.safety_checker]
    tail = dict(api_name=task, concurrency_id=GPU_QUEUE, concurrency_limit=1)
    if task == "text2img":

        @user_errors
        def text2img(
            prompt,
            negative_prompt,
            steps,
            guidance_scale,
            width,
            height,
            seed,
            scheduler,
            num_images,
            safety_checker,
            request: gr.Request,
            progress=gr.Progress(),
        ):
            """Make images from a prompt."""
            req = GenerationRequest(
                task="text2img",
                prompt=prompt,
                negative_prompt=negative_prompt,
                steps=_int(steps),
                guidance_scale=guidance_scale,
                width=_int(width),
                height=_int(height),
                seed=_int(seed),
                scheduler=scheduler,
                num_images=_int(num_images),
                safety_checker=safety_checker,
            )
            return _run(ctx, req, session_of(request), progress)

        inputs = [
            c["prompt"],
            c["negative_prompt"],
            c["steps"],
            c["guidance_scale"],
            c["width"],
            c["height"],
            c["seed"],
            *shared,
        ]
        event = generate.click(text2img, inputs, [gallery, info], **tail)
        c["prompt"].submit(text2img, inputs, [gallery, info], api_visibility="private", concurrency_id=GPU_QUEUE)
    elif task == "img2img":

        @user_errors
        def img2img(
            image,
            prompt,
            negative_prompt,
            strength,
            steps,
            guidance_scale,
            seed,
            scheduler,
            num_images,
            safety_checker,
            request: gr.Request,
            progress=gr.Progress(),
        ):
            """Make images from an image and a prompt; strength is how much of the image is repainted."""
            req = GenerationRequest(
                task="img2img",
                image=image,
                prompt=prompt,
                negative_prompt=negative_prompt,
                strength=strength,
                steps=_int(steps),
                guidance_scale=guidance_scale,
                seed=_int(seed),
                scheduler=scheduler,
                num_images=_int(num_images),
                safety_checker=safety_checker,
            )
            return _run(ctx, req, session_of(request), progress)

        inputs = [
            image,
            c["prompt"],
            c["negative_prompt"],
            c["strength"],
            c["steps"],
            c["guidance_scale"],
            c["seed"],
            *shared,
        ]
        event = generate.click(img2img, inputs, [gallery, info], **tail)
    else:

        @user_errors
        def inpaint(
            image,
            mask,
            prompt,
            negative_prompt,
            strength,
            steps,
            guidance_scale,
            seed,
            scheduler,
            num_images,
            safety_checker,
            request: gr.Request,
            progress=gr.Progress(),
        ):
            """Repaint the white part of `mask` (an image of the same size) in `image`, following the prompt."""
            req = GenerationRequest(
                task="inpaint",
                image=image,
                mask=mask,
                prompt=prompt,
                negative_prompt=negative_prompt,
                strength=strength,
                steps=_int(steps),
                guidance_scale=guidance_scale,
                seed=_int(seed),
                scheduler=scheduler,
                num_images=_int(num_images),
                safety_checker=safety_checker,
            )
            return _run(ctx, req, session_of(request), progress)

        def inpaint_from_editor(
            editor,
            mask_upload,
            prompt,
            negative_prompt,
            strength,
            steps,
            guidance_scale,
            seed,
            scheduler,
            num_images,
            safety_checker,
            request: gr.Request,
            progress=gr.Progress(),
        ):
            background = editor.get("background") if editor else None
            mask = mask_upload if mask_upload is not None else mask_from_editor(editor)
            return inpaint(
                background,
                mask,
                prompt,
                negative_prompt,
                strength,
                steps,
                guidance_scale,
                seed,
                scheduler,
                num_images,
                safety_checker,
                request,
                progress,
            )

        rest = [c["prompt"], c["negative_prompt"], c["strength"], c["steps"], c["guidance_scale"], c["seed"], *shared]
        # The page paints the mask on the image (gr.ImageMask); API callers send image and mask as two files.
        event = generate.click(
            inpaint_from_editor,
            [editor, mask_upload, *rest],
            [gallery, info],
            api_visibility="private",
            concurrency_id=GPU_QUEUE,
            concurrency_limit=1,
        )
        api_image = gr.Image(type="pil", image_mode="RGB", visible=False)
        api_mask = gr.Image(type="pil", image_mode="L", visible=False)
        api_button = gr.Button(visible=False)
        api_button.click(inpaint, [api_image, api_mask, *rest], [gallery, info], **tail)

    event.then(
        lambda i: (notice_markdown(i), (i or {}).get("code", "")), info, [notice, code], api_visibility="private"
    )

    def stop_job(request: gr.Request) -> None:
        ctx.cancel_flags.cancel(session_of(request))

    stop.click(stop_job, None, None, cancels=[event], api_name=f"stop_{task}", queue=False)
    random_seed.click(lambda: -1, None, c["seed"], api_visibility="private", queue=False)
    reuse_seed.click(lambda i: (i or {}).get("seeds", [-1])[0], info, c["seed"], api_visibility="private", queue=False)
    return gallery


def _int(value: Any) -> Any:
    """Sliders and numbers arrive as floats; whole floats become ints, anything else is left for validation."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value
