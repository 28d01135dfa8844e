"""Tabs for the other Stable Diffusion tasks: safe SD, depth to image, variation, upscale, RGB + depth, animate.

Each handler's parameter names are its API's (`/depth2img(image, depth_map, prompt, ...)`), so keep them stable.
"""

from __future__ import annotations

from typing import Any

import gradio as gr

from core.generation import SAFETY_PRESETS, GenerationRequest
from ui.common import GPU_QUEUE, AppContext, session_of, user_errors
from ui.companion_box import build_companion_box
from ui.model_panel import ModelPanel
from ui.results import build_results, run_request, shown, wire_notice


def _prompts(task: str) -> tuple[gr.Textbox, gr.Textbox]:
    prompt = gr.Textbox(label="Prompt", lines=2, elem_id=f"{task}-prompt")
    negative = gr.Textbox(label="Negative prompt", lines=1)
    return prompt, negative


def _steps_guidance(steps: int = 25, guidance: float = 7.5) -> tuple[gr.Slider, gr.Slider]:
    with gr.Row():
        return (
            gr.Slider(1, 150, value=steps, step=1, label="Steps"),
            gr.Slider(0, 30, value=guidance, step=0.5, label="Guidance scale"),
        )


def _size(ctx: AppContext, default: int = 512) -> tuple[gr.Slider, gr.Slider]:
    limits = ctx.settings.limits
    with gr.Row():
        return (
            gr.Slider(limits.min_side, limits.max_side, value=default, step=8, label="Width"),
            gr.Slider(limits.min_side, limits.max_side, value=default, step=8, label="Height"),
        )


def _seed_count(ctx: AppContext, task: str, count: bool = True) -> tuple[gr.Number, gr.Slider | None]:
    with gr.Row():
        seed = gr.Number(value=-1, label="Seed (-1 = random)", precision=0, minimum=-1, elem_id=f"{task}-seed")
        num = gr.Slider(1, ctx.settings.limits.max_images, value=1, step=1, label="Images") if count else None
    return seed, num


def _buttons(task: str, label: str = "Generate") -> tuple[gr.Button, gr.Button]:
    with gr.Row():
        return (
            gr.Button(label, variant="primary", elem_id=f"{task}-generate"),
            gr.Button("Stop", variant="stop", elem_id=f"{task}-stop"),
        )


def _wire_stop(ctx: AppContext, stop: gr.Button, event: Any, task: str) -> None:
    def stop_job(request: gr.Request) -> None:
        ctx.cancel_flags.cancel(session_of(request))

    stop.click(stop_job, None, None, cancels=[event], api_name=f"stop_{task}", queue=False)


def _i(value: Any) -> Any:
    return int(value) if isinstance(value, float) and value.is_integer() else value


GPU = dict(concurrency_id=GPU_QUEUE, concurrency_limit=1)


def build_safe_tab(ctx: AppContext, panel: ModelPanel) -> None:
    gr.Markdown(
        "Safe latent diffusion (`StableDiffusionPipelineSafe`, built with `from_pipe` over the loaded checkpoint: "
        "no extra memory) steers each step away from unsafe concepts; the presets are diffusers' `SafetyConfig`."
    )
    with gr.Row():
        with gr.Column():
            prompt, negative = _prompts("safe_text2img")
            preset = gr.Radio(list(SAFETY_PRESETS), value="medium", label="Safety preset")
            steps, guidance = _steps_guidance()
            width, height = _size(ctx)
            seed, num = _seed_count(ctx, "safe_text2img")
            generate, stop = _buttons("safe_text2img")
        with gr.Column():
            results = build_results("safe_text2img")

    @user_errors
    def safe_text2img(
        prompt,
        negative_prompt,
        safety_preset,
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
        """Text to image with safe latent diffusion at a preset strength (weak, medium, strong, max)."""
        req = GenerationRequest(
            task="safe_text2img",
            prompt=prompt,
            negative_prompt=negative_prompt,
            safety_preset=safety_preset,
            steps=_i(steps),
            guidance_scale=guidance_scale,
            width=_i(width),
            height=_i(height),
            seed=_i(seed),
            scheduler=scheduler,
            num_images=_i(num_images),
            safety_checker=safety_checker,
        )
        result = run_request(ctx, req, session_of(request), progress)
        return shown(result), result.info

    inputs = [
        prompt,
        negative,
        preset,
        steps,
        guidance,
        width,
        height,
        seed,
        panel.scheduler,
        num,
        panel.safety_checker,
    ]
    event = generate.click(safe_text2img, inputs, [results.gallery, results.info], api_name="safe_text2img", **GPU)
    wire_notice(event, results)
    _wire_stop(ctx, stop, event, "safe_text2img")


def build_depth_tab(ctx: AppContext, panel: ModelPanel) -> None:
    build_companion_box(ctx, ("depth",), "Stable Diffusion 2 depth (a 5-channel UNet and a DPT depth estimator).")
    with gr.Row():
        with gr.Column():
            with gr.Row():
                image = gr.Image(
                    label="Input image", type="pil", image_mode="RGB", format="png", elem_id="depth2img-image"
                )
                depth_in = gr.Image(
                    label="Depth map (optional; white = near)", type="pil", image_mode="L", format="png"
                )
            prompt, negative = _prompts("depth2img")
            strength = gr.Slider(0.01, 1.0, value=0.8, step=0.01, label="Strength")
            steps, guidance = _steps_guidance()
            seed, num = _seed_count(ctx, "depth2img")
            generate, stop = _buttons("depth2img")
        with gr.Column():
            results = build_results("depth2img")
            depth_out = gr.Image(
                label="The depth map the model used", format="png", elem_id="depth2img-depth", height=240
            )

    @user_errors
    def depth2img(
        image,
        depth_map,
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
        """Repaint an image following the prompt while keeping its depth (estimated, or the depth_map given)."""
        req = GenerationRequest(
            task="depth2img",
            image=image,
            depth_map=depth_map,
            prompt=prompt,
            negative_prompt=negative_prompt,
            strength=strength,
            steps=_i(steps),
            guidance_scale=guidance_scale,
            seed=_i(seed),
            scheduler=scheduler,
            num_images=_i(num_images),
            safety_checker=safety_checker,
        )
        result = run_request(ctx, req, session_of(request), progress)
        return shown(result), result.extras["depth"][0], result.info

    inputs = [
        image,
        depth_in,
        prompt,
        negative,
        strength,
        steps,
        guidance,
        seed,
        panel.scheduler,
        num,
        panel.safety_checker,
    ]
    event = generate.click(depth2img, inputs, [results.gallery, depth_out, results.info], api_name="depth2img", **GPU)
    wire_notice(event, results)
    _wire_stop(ctx, stop, event, "depth2img")


def build_variation_tab(ctx: AppContext, panel: ModelPanel) -> None:
    build_companion_box(ctx, ("variation",), "an image-variation checkpoint (a CLIP image encoder instead of text).")
    with gr.Row():
        with gr.Column():
            image = gr.Image(
                label="Image to vary", type="pil", image_mode="RGB", format="png", elem_id="variation-image"
            )
            steps, guidance = _steps_guidance(guidance=3.0)
            seed, num = _seed_count(ctx, "variation")
            generate, stop = _buttons("variation")
        with gr.Column():
            results = build_results("variation")

    @user_errors
    def variation(
        image,
        steps,
        guidance_scale,
        seed,
        scheduler,
        num_images,
        safety_checker,
        request: gr.Request,
        progress=gr.Progress(),
    ):
        """New images in the spirit of the given one (no prompt: the image is the prompt)."""
        req = GenerationRequest(
            task="variation",
            image=image,
            steps=_i(steps),
            guidance_scale=guidance_scale,
            seed=_i(seed),
            scheduler=scheduler,
            num_images=_i(num_images),
            safety_checker=safety_checker,
        )
        result = run_request(ctx, req, session_of(request), progress)
        return shown(result), result.info

    inputs = [image, steps, guidance, seed, panel.scheduler, num, panel.safety_checker]
    event = generate.click(variation, inputs, [results.gallery, results.info], api_name="variation", **GPU)
    wire_notice(event, results)
    _wire_stop(ctx, stop, event, "variation")


def build_upscale_tab(ctx: AppContext, panel: ModelPanel) -> gr.Image:
    """The Upscale tab; returns its input image so other tabs can send a result here."""
    build_companion_box(
        ctx, ("upscale_x4", "upscale_x2"), "the x4 image upscaler and/or the x2 latent upscaler (load the one you use)."
    )
    with gr.Row():
        with gr.Column():
            image = gr.Image(
                label="Image to upscale", type="pil", image_mode="RGB", format="png", elem_id="upscale-image"
            )
            prompt, negative = _prompts("upscale")
            with gr.Row():
                upscaler = gr.Radio(["x4", "x2"], value="x4", label="Upscaler")
                noise = gr.Slider(0, 350, value=20, step=1, label="Noise level (x4)")
            steps, guidance = _steps_guidance(steps=20, guidance=0.0)
            seed, _ = _seed_count(ctx, "upscale", count=False)
            generate, stop = _buttons("upscale", "Upscale")
        with gr.Column():
            results = build_results("upscale")

    @user_errors
    def upscale(
        image,
        prompt,
        negative_prompt,
        upscaler,
        noise_level,
        steps,
        guidance_scale,
        seed,
        scheduler,
        safety_checker,
        request: gr.Request,
        progress=gr.Progress(),
    ):
        """Upscale an image x4 (image upscaler, with noise_level) or x2 (latent upscaler), guided by the prompt."""
        req = GenerationRequest(
            task="upscale",
            image=image,
            prompt=prompt,
            negative_prompt=negative_prompt,
            upscaler=upscaler,
            noise_level=_i(noise_level),
            steps=_i(steps),
            guidance_scale=guidance_scale,
            seed=_i(seed),
            scheduler=scheduler,
            safety_checker=safety_checker,
        )
        result = run_request(ctx, req, session_of(request), progress)
        return shown(result), result.info

    inputs = [image, prompt, negative, upscaler, noise, steps, guidance, seed, panel.scheduler, panel.safety_checker]
    event = generate.click(upscale, inputs, [results.gallery, results.info], api_name="upscale", **GPU)
    wire_notice(event, results)
    _wire_stop(ctx, stop, event, "upscale")
    return image


def build_rgbd_tab(ctx: AppContext, panel: ModelPanel) -> None:
    build_companion_box(ctx, ("ldm3d",), "LDM3D, whose VAE decodes an image and its depth map together.")
    with gr.Row():
        with gr.Column():
            prompt, negative = _prompts("rgbd")
            steps, guidance = _steps_guidance()
            width, height = _size(ctx)
            seed, num = _seed_count(ctx, "rgbd")
            generate, stop = _buttons("rgbd")
        with gr.Column():
            results = build_results("rgbd", label="Images")
            depth = gr.Gallery(label="Depth maps", format="png", columns=2, height=240, elem_id="rgbd-depth")

    @user_errors
    def rgbd(
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
        """An image and its depth map from a prompt (LDM3D)."""
        req = GenerationRequest(
            task="rgbd",
            prompt=prompt,
            negative_prompt=negative_prompt,
            steps=_i(steps),
            guidance_scale=guidance_scale,
            width=_i(width),
            height=_i(height),
            seed=_i(seed),
            scheduler=scheduler,
            num_images=_i(num_images),
            safety_checker=safety_checker,
        )
        result = run_request(ctx, req, session_of(request), progress)
        return shown(result), result.extras.get("depth", []), result.info

    inputs = [prompt, negative, steps, guidance, width, height, seed, panel.scheduler, num, panel.safety_checker]
    event = generate.click(rgbd, inputs, [results.gallery, depth, results.info], api_name="rgbd", **GPU)
    wire_notice(event, results)
    _wire_stop(ctx, stop, event, "rgbd")


def build_animate_tab(ctx: AppContext, panel: ModelPanel) -> None:
    build_companion_box(
        ctx, ("motion_adapter",), "a motion adapter; the loaded checkpoint's components are reused with `from_pipe`."
    )
    with gr.Row():
        with gr.Column():
            prompt, negative = _prompts("animate")
            with gr.Row():
                frames = gr.Slider(1, ctx.settings.limits.max_frames, value=16, step=1, label="Frames")
                fps = gr.Slider(1, 30, value=8, step=1, label="Frames per second")
            steps, guidance = _steps_guidance()
            width, height = _size(ctx)
            seed, _ = _seed_count(ctx, "animate", count=False)
            generate, stop = _buttons("animate")
        with gr.Column():
            gif = gr.Image(label="GIF", format="gif", elem_id="animate-gif", height=320)
            mp4 = gr.Video(label="MP4", elem_id="animate-mp4", height=320)
            results = build_results("animate", label="First frame")

    @user_errors
    def animate(
        prompt,
        negative_prompt,
        num_frames,
        fps,
        steps,
        guidance_scale,
        width,
        height,
        seed,
        scheduler,
        request: gr.Request,
        progress=gr.Progress(),
    ):
        """Animate a prompt with AnimateDiff over the loaded checkpoint: returns a GIF, an MP4 and the info."""
        req = GenerationRequest(
            task="animate",
            prompt=prompt,
            negative_prompt=negative_prompt,
            num_frames=_i(num_frames),
            fps=_i(fps),
            steps=_i(steps),
            guidance_scale=guidance_scale,
            width=_i(width),
            height=_i(height),
            seed=_i(seed),
            scheduler=scheduler,
            safety_checker=False,
        )
        result = run_request(ctx, req, session_of(request), progress)
        return result.files.get("gif"), result.files.get("mp4"), shown(result), result.info

    inputs = [prompt, negative, frames, fps, steps, guidance, width, height, seed, panel.scheduler]
    event = generate.click(animate, inputs, [gif, mp4, results.gallery, results.info], api_name="animate", **GPU)
    wire_notice(event, results)
    _wire_stop(ctx, stop, event, "animate")
