"""The generation tabs: Text to image, Image to image, Inpaint. One builder, one endpoint per task."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import gradio as gr
import numpy as np
from PIL import Image

from core.generation import GenerationRequest, GenerationResult
from ui.common import GPU_QUEUE, AppContext, session_of, user_errors
from ui.companion_box import build_companion_box
from ui.controls import ImageUpload, prompts, steps_guidance, whole, wire_stop
from ui.model_panel import ModelPanel
from ui.results import build_results, shown, stream_request, wire_notice


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


def build_generate_tab(ctx: AppContext, panel: ModelPanel, task: str) -> tuple[Any, ...]:
    """The tab for `task` (`text2img`, `img2img` or `inpaint`); returns its gallery (for the history to follow),
    its "upscale the selected image" button, the selected image, (text2img) the controls that follow the
    model family: width, height, SAG and PAG sliders, the refiner box; and its inputs by name (for PNG info)."""
    limits = ctx.settings.limits
    with gr.Row():
        with gr.Column(scale=1):
            image = mask_upload = editor = None
            if task == "img2img":
                image = ImageUpload(
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
                mask_upload = ImageUpload(
                    what="mask",
                    label="…or upload a mask (white = repaint)",
                    type="pil",
                    image_mode="L",
                    format="png",
                    elem_id="inpaint-mask",
                    height=160,
                )
            c: dict[str, Any] = {}
            c["prompt"], c["negative_prompt"] = prompts(task)
            c["steps"], c["guidance_scale"] = steps_guidance()
            with gr.Row():
                if task == "text2img":
                    c["width"] = gr.Slider(limits.min_side, limits.max_side, value=512, step=8, label="Width")
                    c["height"] = gr.Slider(limits.min_side, limits.max_side, value=512, step=8, label="Height")
                else:
                    c["strength"] = gr.Slider(
                        0.01, 1.0, value=0.75 if task == "img2img" else 1.0, step=0.01, label="Strength"
                    )
            if task == "text2img":
                with gr.Accordion("Guidance features (same memory, built with from_pipe)", open=False), gr.Row():
                    c["sag_scale"] = gr.Slider(
                        0, 10, value=0, step=0.05, label="Self-attention guidance (SAG) scale", info="0 = off"
                    )
                    c["pag_scale"] = gr.Slider(
                        0, 10, value=0, step=0.1, label="Perturbed-attention guidance (PAG) scale", info="0 = off"
                    )
                with gr.Accordion("SDXL refiner (second stage)", open=False, visible=False) as c["refiner_box"]:
                    c["refiner_switch"] = gr.Slider(
                        0,
                        0.95,
                        value=0,
                        step=0.05,
                        label="Refiner takes over at",
                        info="the fraction of the steps the base does; 0 = off, 0.8 is usual",
                        elem_id="refiner-switch",
                    )
                    build_companion_box(
                        ctx,
                        ("refiner",),
                        "SDXL's refiner does the last, low-noise steps; it shares the base's second text encoder and "
                        "VAE.",
                    )
            with gr.Row(equal_height=True):
                c["seed"] = gr.Number(value=-1, label="Seed (-1 = random)", precision=0, minimum=-1, scale=3)
                random_seed = gr.Button("🎲", scale=0, min_width=40, elem_id=f"{task}-random-seed")
                reuse_seed = gr.Button("♻️", scale=0, min_width=40)
                c["num_images"] = gr.Slider(
                    1, limits.max_images, value=1, step=1, label="Images", scale=3, elem_id=f"{task}-num-images"
                )
            c["preview_every"] = gr.Slider(
                0,
                20,
                value=5,
                step=1,
                label="Live preview every N steps",
                info="0 = off; a quick look at the latents, no VAE decode",
                elem_id=f"{task}-preview-every",
            )
            with gr.Row():
                generate = gr.Button("Generate", variant="primary", elem_id=f"{task}-generate")
                stop = gr.Button("Stop", variant="stop", elem_id=f"{task}-stop")
        with gr.Column(scale=1):
            results = build_results(task)
            gallery, info = results.gallery, results.info
            send_to_upscale = gr.Button("Upscale the selected image", size="sm", elem_id=f"{task}-send-upscale")

    shared = [panel.scheduler, c["num_images"], panel.safety_checker]
    # What img2img and inpaint take after their image(s), in their API's order.
    after_image = (
        [
            *(c[k] for k in ("prompt", "negative_prompt", "strength", "steps", "guidance_scale", "seed")),
            *shared,
            panel.image_prompt,
            c["preview_every"],
        ]
        if task != "text2img"
        else []
    )

    def stream(req: GenerationRequest, request: gr.Request | None, progress: Any) -> Iterator[tuple]:
        """The gallery shows live previews while the run goes on, then the saved images and their info."""
        for item in stream_request(ctx, req, session_of(request), progress):
            if isinstance(item, GenerationResult):
                yield shown(item), item.info
            else:
                yield item, gr.skip()

    # The progress bar sits on the notice line, so the gallery stays clear for the live previews.
    progress_on = dict(show_progress_on=[results.notice])
    tail = dict(api_name=task, concurrency_id=GPU_QUEUE, concurrency_limit=1, **progress_on)
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
            sag_scale=0.0,
            pag_scale=0.0,
            refiner_switch=0.0,
            ip_adapter_image=None,
            preview_every=0,
            request: gr.Request = None,
            progress=gr.Progress(),
        ):
            """Make images from a prompt; sag_scale > 0 adds self-attention guidance, pag_scale > 0
            perturbed-attention guidance (one at a time); refiner_switch > 0 hands SDXL's last steps to the
            loaded refiner; ip_adapter_image is the image prompt of a loaded IP-Adapter."""
            req = GenerationRequest(
                task="text2img",
                prompt=prompt,
                negative_prompt=negative_prompt,
                steps=whole(steps),
                guidance_scale=guidance_scale,
                width=whole(width),
                height=whole(height),
                seed=whole(seed),
                scheduler=scheduler,
                num_images=whole(num_images),
                safety_checker=safety_checker,
                sag_scale=sag_scale,
                pag_scale=pag_scale,
                refiner_switch=refiner_switch,
                ip_adapter_image=ip_adapter_image,
                preview_every=whole(preview_every),
            )
            yield from stream(req, request, progress)

        inputs = [
            c["prompt"],
            c["negative_prompt"],
            c["steps"],
            c["guidance_scale"],
            c["width"],
            c["height"],
            c["seed"],
            *shared,
            c["sag_scale"],
            c["pag_scale"],
            c["refiner_switch"],
            panel.image_prompt,
            c["preview_every"],
        ]
        # One chain for Enter and the button: both get the notice, Stop and the outputs (Enter once skipped them).
        event = gr.on([generate.click, c["prompt"].submit], text2img, inputs, [gallery, info], **tail)
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
            ip_adapter_image=None,
            preview_every=0,
            request: gr.Request = None,
            progress=gr.Progress(),
        ):
            """Make images from an image and a prompt; strength is how much of the image is repainted."""
            req = GenerationRequest(
                task="img2img",
                image=image,
                prompt=prompt,
                negative_prompt=negative_prompt,
                strength=strength,
                steps=whole(steps),
                guidance_scale=guidance_scale,
                seed=whole(seed),
                scheduler=scheduler,
                num_images=whole(num_images),
                safety_checker=safety_checker,
                ip_adapter_image=ip_adapter_image,
                preview_every=whole(preview_every),
            )
            yield from stream(req, request, progress)

        event = gr.on([generate.click, c["prompt"].submit], img2img, [image, *after_image], [gallery, info], **tail)
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
            ip_adapter_image=None,
            preview_every=0,
            request: gr.Request = None,
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
                steps=whole(steps),
                guidance_scale=guidance_scale,
                seed=whole(seed),
                scheduler=scheduler,
                num_images=whole(num_images),
                safety_checker=safety_checker,
                ip_adapter_image=ip_adapter_image,
                preview_every=whole(preview_every),
            )
            yield from stream(req, request, progress)

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
            ip_adapter_image=None,
            preview_every=0,
            request: gr.Request = None,
            progress=gr.Progress(),
        ):
            background = editor.get("background") if editor else None
            mask = mask_upload if mask_upload is not None else mask_from_editor(editor)
            yield from inpaint(
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
                ip_adapter_image,
                preview_every,
                request,
                progress,
            )

        rest = after_image
        # The page paints the mask on the image (gr.ImageMask); API callers send image and mask as two files.
        event = gr.on(
            [generate.click, c["prompt"].submit],
            inpaint_from_editor,
            [editor, mask_upload, *rest],
            [gallery, info],
            api_visibility="private",
            concurrency_id=GPU_QUEUE,
            concurrency_limit=1,
            **progress_on,
        )
        api_image = ImageUpload(what="input image", type="pil", image_mode="RGB", visible=False)
        api_mask = ImageUpload(what="mask", type="pil", image_mode="L", visible=False)
        api_button = gr.Button(visible=False)
        api_button.click(inpaint, [api_image, api_mask, *rest], [gallery, info], **tail)

    wire_notice(event, results)

    wire_stop(ctx, stop, event, task, results)
    random_seed.click(lambda: -1, None, c["seed"], api_visibility="private", queue=False)
    reuse_seed.click(lambda i: (i or {}).get("seeds", [-1])[0], info, c["seed"], api_visibility="private", queue=False)
    selected = gr.State(None)  # the index of the clicked image; its file is looked up in ctx.shown

    def remember(evt: gr.SelectData) -> Any:
        return evt.index if isinstance(evt.index, int) and not isinstance(evt.index, bool) else None

    gallery.select(remember, None, selected, api_visibility="private", queue=False)
    if task == "inpaint":
        build_companion_box(ctx, ("inpaint",), "optional: a 9-channel inpainting checkpoint repaints better.")
    family = (c["width"], c["height"], c["sag_scale"], c["pag_scale"], c["refiner_box"]) if task == "text2img" else None
    return gallery, send_to_upscale, selected, family, {**c, "image": image or editor}
