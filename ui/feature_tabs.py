"""Tabs over the loaded checkpoint's own components: safe latent diffusion, and AnimateDiff (plus its motion
adapter). Each handler's parameter names are its API's; keep them stable."""

from __future__ import annotations

import gradio as gr

from core.generation import GenerationRequest
from core.tasks.safe_text2img import SAFETY_PRESETS
from ui.common import AppContext, session_of, user_errors
from ui.companion_box import build_companion_box
from ui.controls import GPU, prompts, run_buttons, seed_and_count, size_sliders, steps_guidance, whole, wire_stop
from ui.model_panel import ModelPanel
from ui.results import build_results, run_request, shown, wire_notice


def build_safe_tab(ctx: AppContext, panel: ModelPanel) -> None:
    gr.Markdown(
        "Safe latent diffusion (`StableDiffusionPipelineSafe`, built with `from_pipe` over the loaded checkpoint: "
        "no extra memory) steers each step away from unsafe concepts; the presets are diffusers' `SafetyConfig`."
    )
    with gr.Row():
        with gr.Column():
            prompt, negative = prompts("safe_text2img")
            preset = gr.Radio(list(SAFETY_PRESETS), value="medium", label="Safety preset")
            steps, guidance = steps_guidance()
            width, height = size_sliders(ctx)
            seed, num = seed_and_count(ctx, "safe_text2img")
            generate, stop = run_buttons("safe_text2img")
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
        ip_adapter_image=None,
        request: gr.Request = None,
        progress=gr.Progress(),
    ):
        """Text to image with safe latent diffusion at a preset strength (weak, medium, strong, max)."""
        req = GenerationRequest(
            task="safe_text2img",
            prompt=prompt,
            negative_prompt=negative_prompt,
            safety_preset=safety_preset,
            steps=whole(steps),
            guidance_scale=guidance_scale,
            width=whole(width),
            height=whole(height),
            seed=whole(seed),
            scheduler=scheduler,
            num_images=whole(num_images),
            safety_checker=safety_checker,
            ip_adapter_image=ip_adapter_image,
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
        panel.image_prompt,
    ]
    event = generate.click(safe_text2img, inputs, [results.gallery, results.info], api_name="safe_text2img", **GPU)
    wire_notice(event, results)
    wire_stop(ctx, stop, event, "safe_text2img")


def build_animate_tab(ctx: AppContext, panel: ModelPanel) -> None:
    build_companion_box(
        ctx, ("motion_adapter",), "a motion adapter; the loaded checkpoint's components are reused with `from_pipe`."
    )
    with gr.Row():
        with gr.Column():
            prompt, negative = prompts("animate")
            with gr.Row():
                frames = gr.Slider(1, ctx.settings.limits.max_frames, value=16, step=1, label="Frames")
                fps = gr.Slider(1, 30, value=8, step=1, label="Frames per second")
            steps, guidance = steps_guidance()
            width, height = size_sliders(ctx)
            seed, _ = seed_and_count(ctx, "animate", count=False)
            generate, stop = run_buttons("animate")
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
        ip_adapter_image=None,
        request: gr.Request = None,
        progress=gr.Progress(),
    ):
        """Animate a prompt with AnimateDiff over the loaded checkpoint: returns a GIF, an MP4 and the info."""
        req = GenerationRequest(
            task="animate",
            prompt=prompt,
            negative_prompt=negative_prompt,
            num_frames=whole(num_frames),
            fps=whole(fps),
            steps=whole(steps),
            guidance_scale=guidance_scale,
            width=whole(width),
            height=whole(height),
            seed=whole(seed),
            scheduler=scheduler,
            safety_checker=False,
            ip_adapter_image=ip_adapter_image,
        )
        result = run_request(ctx, req, session_of(request), progress)
        return result.files.get("gif"), result.files.get("mp4"), shown(result), result.info

    inputs = [prompt, negative, frames, fps, steps, guidance, width, height, seed, panel.scheduler, panel.image_prompt]
    event = generate.click(animate, inputs, [gif, mp4, results.gallery, results.info], api_name="animate", **GPU)
    wire_notice(event, results)
    wire_stop(ctx, stop, event, "animate")
