"""Tabs for tasks with a companion checkpoint: depth to image, variation, upscale, RGB + depth.

Each handler's parameter names are its API's (`/depth2img(image, depth_map, prompt, ...)`); keep them stable.
"""

from __future__ import annotations

import gradio as gr

from core.generation import GenerationRequest
from ui.common import AppContext, session_of, user_errors
from ui.companion_box import build_companion_box
from ui.controls import (
    GPU,
    ImageUpload,
    prompts,
    run_buttons,
    seed_and_count,
    size_sliders,
    steps_guidance,
    whole,
    wire_stop,
)
from ui.model_panel import ModelPanel
from ui.results import build_results, run_request, shown, wire_notice


def build_depth_tab(ctx: AppContext, panel: ModelPanel) -> None:
    build_companion_box(ctx, ("depth",), "Stable Diffusion 2 depth (a 5-channel UNet and a DPT depth estimator).")
    with gr.Row():
        with gr.Column():
            with gr.Row():
                image = ImageUpload(
                    label="Input image", type="pil", image_mode="RGB", format="png", elem_id="depth2img-image"
                )
                depth_in = ImageUpload(
                    what="depth map",
                    label="Depth map (optional; white = near)",
                    type="pil",
                    image_mode="L",
                    format="png",
                )
            prompt, negative = prompts("depth2img")
            strength = gr.Slider(0.01, 1.0, value=0.8, step=0.01, label="Strength")
            steps, guidance = steps_guidance()
            seed, num = seed_and_count(ctx, "depth2img")
            generate, stop = run_buttons("depth2img")
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
            steps=whole(steps),
            guidance_scale=guidance_scale,
            seed=whole(seed),
            scheduler=scheduler,
            num_images=whole(num_images),
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
    wire_stop(ctx, stop, event, "depth2img")


def build_variation_tab(ctx: AppContext, panel: ModelPanel) -> None:
    build_companion_box(ctx, ("variation",), "an image-variation checkpoint (a CLIP image encoder instead of text).")
    with gr.Row():
        with gr.Column():
            image = ImageUpload(
                label="Image to vary", type="pil", image_mode="RGB", format="png", elem_id="variation-image"
            )
            steps, guidance = steps_guidance(guidance=3.0)
            seed, num = seed_and_count(ctx, "variation")
            generate, stop = run_buttons("variation")
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
            steps=whole(steps),
            guidance_scale=guidance_scale,
            seed=whole(seed),
            scheduler=scheduler,
            num_images=whole(num_images),
            safety_checker=safety_checker,
        )
        result = run_request(ctx, req, session_of(request), progress)
        return shown(result), result.info

    inputs = [image, steps, guidance, seed, panel.scheduler, num, panel.safety_checker]
    event = generate.click(variation, inputs, [results.gallery, results.info], api_name="variation", **GPU)
    wire_notice(event, results)
    wire_stop(ctx, stop, event, "variation")


def build_upscale_tab(ctx: AppContext, panel: ModelPanel) -> gr.Image:
    """The Upscale tab; returns its input image so other tabs can send a result here."""
    build_companion_box(
        ctx, ("upscale_x4", "upscale_x2"), "the x4 image upscaler and/or the x2 latent upscaler (load the one you use)."
    )
    with gr.Row():
        with gr.Column():
            image = ImageUpload(
                label="Image to upscale", type="pil", image_mode="RGB", format="png", elem_id="upscale-image"
            )
            prompt, negative = prompts("upscale")
            with gr.Row():
                upscaler = gr.Radio(["x4", "x2"], value="x4", label="Upscaler")
                noise = gr.Slider(0, 350, value=20, step=1, label="Noise level (x4)")
            steps, guidance = steps_guidance(steps=20, guidance=0.0)
            seed, _ = seed_and_count(ctx, "upscale", count=False)
            generate, stop = run_buttons("upscale", "Upscale")
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
            noise_level=whole(noise_level),
            steps=whole(steps),
            guidance_scale=guidance_scale,
            seed=whole(seed),
            scheduler=scheduler,
            safety_checker=safety_checker,
        )
        result = run_request(ctx, req, session_of(request), progress)
        return shown(result), result.info

    inputs = [image, prompt, negative, upscaler, noise, steps, guidance, seed, panel.scheduler, panel.safety_checker]
    event = generate.click(upscale, inputs, [results.gallery, results.info], api_name="upscale", **GPU)
    wire_notice(event, results)
    wire_stop(ctx, stop, event, "upscale")
    return image


def build_rgbd_tab(ctx: AppContext, panel: ModelPanel) -> None:
    build_companion_box(ctx, ("ldm3d",), "LDM3D, whose VAE decodes an image and its depth map together.")
    with gr.Row():
        with gr.Column():
            prompt, negative = prompts("rgbd")
            steps, guidance = steps_guidance()
            width, height = size_sliders(ctx)
            seed, num = seed_and_count(ctx, "rgbd")
            generate, stop = run_buttons("rgbd")
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
            steps=whole(steps),
            guidance_scale=guidance_scale,
            width=whole(width),
            height=whole(height),
            seed=whole(seed),
            scheduler=scheduler,
            num_images=whole(num_images),
            safety_checker=safety_checker,
        )
        result = run_request(ctx, req, session_of(request), progress)
        return shown(result), result.extras.get("depth", []), result.info

    inputs = [prompt, negative, steps, guidance, width, height, seed, panel.scheduler, num, panel.safety_checker]
    event = generate.click(rgbd, inputs, [results.gallery, depth, results.info], api_name="rgbd", **GPU)
    wire_notice(event, results)
    wire_stop(ctx, stop, event, "rgbd")
