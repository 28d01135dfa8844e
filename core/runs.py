"""Running one pipeline call: progress and Stop for both callback styles, and each task's call arguments."""

from __future__ import annotations

import inspect
import threading
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from diffusers import DiffusionPipeline
from PIL import Image

StepCallback = Callable[[int, int], None]  # (steps done, steps in all)
PreviewCallback = Callable[[int, Any], None]  # (steps done, the latents then)


class _Stopped(Exception):
    """Raised inside a legacy step callback to end a pipeline that has no interrupt flag."""


def run_pipeline(
    pipe: DiffusionPipeline,
    arguments: dict[str, Any],
    *,
    steps: int,
    on_step: StepCallback | None,
    cancel: threading.Event | None,
    on_latents: PreviewCallback | None = None,
) -> tuple[Any | None, int | None]:
    """Call `pipe(**arguments)` reporting each step (and its latents, to `on_latents`) and honouring `cancel`;
    returns (output, the step a Stop ended it at, or None when it ran every step).

    Pipelines with `callback_on_step_end` are interrupted the documented way (their loop skips the remaining
    steps and still decodes). Older ones only have `callback(step, timestep, latents)`: Stop raises out of it,
    so they return no output.
    """
    # SAG and PAG swap attention processors on the shared UNet for the length of a call and put them back at
    # its end; a run ended by Stop (or an error) would skip that and change every other view. Put them back here.
    unet = getattr(pipe, "unet", None)
    processors = dict(unet.attn_processors) if unet is not None and hasattr(unet, "attn_processors") else None
    try:
        return _run(pipe, arguments, steps=steps, on_step=on_step, cancel=cancel, on_latents=on_latents)
    finally:
        if processors is not None and dict(unet.attn_processors) != processors:
            unet.set_attn_processor(processors)


def _run(
    pipe: DiffusionPipeline,
    arguments: dict[str, Any],
    *,
    steps: int,
    on_step: StepCallback | None,
    cancel: threading.Event | None,
    on_latents: PreviewCallback | None,
) -> tuple[Any | None, int | None]:
    accepted = inspect.signature(pipe.__call__).parameters
    if "callback_on_step_end" in accepted:
        skipped: list[int] = []  # the step a Stop ended the loop at; a Stop after the last step skips nothing

        def step_end(p: DiffusionPipeline, step: int, timestep: Any, tensors: dict) -> dict:
            total = getattr(p, "num_timesteps", None) or steps
            if on_step is not None:
                on_step(step + 1, total)
            if on_latents is not None and "latents" in tensors:
                on_latents(step + 1, tensors["latents"])
            if cancel is not None and cancel.is_set() and step + 1 < total:
                p._interrupt = True
                skipped.append(step + 1)
            return tensors

        output = pipe(**arguments, callback_on_step_end=step_end)
        return output, (skipped[0] if skipped else None)

    total = _legacy_total_steps(pipe, arguments, steps)

    stopped_at: list[int] = []

    def legacy(step: int, timestep: Any, latents: torch.Tensor) -> None:
        if on_step is not None:
            on_step(step + 1, total)
        if on_latents is not None:
            on_latents(step + 1, latents)
        if cancel is not None and cancel.is_set() and step + 1 < total:
            stopped_at.append(step + 1)
            raise _Stopped

    try:
        return pipe(**arguments, callback=legacy, callback_steps=1), None
    except _Stopped:
        return None, stopped_at[0]


def _legacy_total_steps(pipe: DiffusionPipeline, arguments: dict[str, Any], steps: int) -> int:
    # Legacy pipelines don't expose num_timesteps; ask a copy of the scheduler, as their loop would.
    scheduler = pipe.scheduler.__class__.from_config(pipe.scheduler.config)
    scheduler.set_timesteps(steps)
    total = len(scheduler.timesteps)
    strength = arguments.get("strength")
    if strength is not None and "image" in arguments:
        total = min(int(steps * strength), steps)
    return max(total, 1)


def depth_preview(depth: torch.Tensor) -> Image.Image:
    """A depth tensor (..., H, W) as an 8-bit grey image, near = bright."""
    d = depth.detach().float().squeeze()
    while d.dim() > 2:
        d = d[0]
    d = (d - d.min()) / (d.max() - d.min() + 1e-8)
    return Image.fromarray((d.cpu().numpy() * 255).round().astype("uint8"), mode="L")


def to_grey(image: Image.Image | Any) -> Image.Image:
    """A depth output (PIL in any mode, or an array) as an 8-bit grey image for display and PNG."""
    if not isinstance(image, Image.Image):
        return depth_preview(torch.as_tensor(image))
    if image.mode in ("I", "I;16", "F"):
        return depth_preview(torch.as_tensor(np.asarray(image, dtype=np.float32)))
    return image.convert("L")


def call_arguments(request: Any, pipe: DiffusionPipeline, seeds: list[int], multiple: int = 8) -> dict[str, Any]:
    """The keyword arguments of the pipeline call for `request` (a GenerationRequest) on `pipe`; sizes taken
    from an input image are rounded down to `multiple` (the model family's size rule)."""
    task = request.task
    args: dict[str, Any] = {}
    if task != "variation":
        args["prompt"] = request.prompt
        args["negative_prompt"] = request.negative_prompt or None
    args["num_inference_steps"] = request.steps
    args["guidance_scale"] = request.guidance_scale
    args["generator"] = [torch.Generator("cpu").manual_seed(s) for s in seeds]
    count = "num_videos_per_prompt" if task == "animate" else "num_images_per_prompt"
    if count in inspect.signature(pipe.__call__).parameters:
        args[count] = request.num_images
    if task in ("text2img", "safe_text2img", "rgbd", "animate"):
        args.update(width=request.width, height=request.height)
    if task == "text2img" and request.sag_scale > 0:
        args["sag_scale"] = request.sag_scale
    if task == "text2img" and request.pag_scale > 0:
        args["pag_scale"] = request.pag_scale
    if task == "text2img" and request.refiner_switch > 0:  # the first stage hands its latents to the refiner
        args.update(denoising_end=request.refiner_switch, output_type="latent")
    if task == "safe_text2img":
        from diffusers.pipelines.deprecated.stable_diffusion_safe import SafetyConfig

        args.update(getattr(SafetyConfig, request.safety_preset.upper()))
    if task == "animate":
        args["num_frames"] = request.num_frames
    if request.ip_adapter_image is not None:
        args["ip_adapter_image"] = request.ip_adapter_image.convert("RGB")
    if request.image is not None and task not in ("text2img", "safe_text2img", "rgbd", "animate"):
        image = request.image.convert("RGB")
        args["image"] = image
        if task in ("img2img", "inpaint", "depth2img"):
            args["strength"] = request.strength
        if task == "inpaint":
            args["mask_image"] = request.mask.convert("L")
        accepted = inspect.signature(pipe.__call__).parameters
        if task in ("img2img", "inpaint", "variation") and "width" in accepted:
            # Pipelines that take a size default to the model's native one (SD3: 1024), not the image's.
            args.update(width=image.width - image.width % multiple, height=image.height - image.height % multiple)
        if task == "upscale" and "noise_level" in inspect.signature(pipe.__call__).parameters:
            args["noise_level"] = request.noise_level
        if task == "depth2img":
            args["depth_map"] = estimate_depth(pipe, image) if request.depth_map is None else _depth_tensor(request)
    return args


def refine(
    refiner: DiffusionPipeline,
    request: Any,
    latents: torch.Tensor,
    seeds: list[int],
    *,
    on_step: StepCallback | None,
    cancel: threading.Event | None,
    on_latents: PreviewCallback | None = None,
) -> tuple[Any, dict[str, Any], bool]:
    """SDXL's second stage: the refiner denoises the base's latents from `refiner_switch` on (the "ensemble of
    expert denoisers" split). Returns (output, its call arguments, the step of both stages a Stop ended it at or
    None); a Stop during the first stage
    ends this one after its first step, so the images are still decoded."""
    args: dict[str, Any] = {
        "prompt": request.prompt,
        "negative_prompt": request.negative_prompt or None,
        "image": latents,
        "num_inference_steps": request.steps,
        "denoising_start": request.refiner_switch,
        "guidance_scale": request.guidance_scale,
        "generator": [torch.Generator("cpu").manual_seed(s) for s in seeds],
        "num_images_per_prompt": len(seeds),
    }
    first = round(request.steps * request.refiner_switch)

    def report(done: int, _total: int) -> None:
        if on_step is not None:
            on_step(min(first + done, request.steps), request.steps)

    def latents_at(done: int, latents: Any) -> None:
        if on_latents is not None:
            on_latents(first + done, latents)

    output, stopped_at = run_pipeline(
        refiner, args, steps=request.steps, on_step=report, cancel=cancel, on_latents=latents_at
    )
    return output, args, (None if stopped_at is None else first + stopped_at)


def estimate_depth(pipe: DiffusionPipeline, image: Image.Image) -> torch.Tensor:
    """The depth the depth-to-image pipeline would estimate itself, computed once so the page can show it."""
    pixels = pipe.feature_extractor(images=image, return_tensors="pt").pixel_values
    module = pipe.depth_estimator
    # The pipeline's execution device, not the module's: under sequential offload its weights sit on `meta` and
    # accelerate's hooks move them to the GPU for each call.
    pixels = pixels.to(device=pipe._execution_device, dtype=next(module.parameters()).dtype)
    with torch.no_grad():
        return module(pixels).predicted_depth


def _depth_tensor(request: Any) -> torch.Tensor:
    grey = np.asarray(request.depth_map.convert("L").resize(request.image.size), dtype=np.float32) / 255.0
    return torch.from_numpy(grey)[None]


def collect(request: Any, output: Any, arguments: dict[str, Any]) -> tuple[list[Image.Image], dict[str, Any]]:
    """The images a run produced, and its other outputs by name (depth maps, animation frames)."""
    if output is None:
        return [], {}
    extras: dict[str, Any] = {}
    if request.task == "rgbd":
        extras["depth"] = [to_grey(d) for d in output.depth]
        return list(output.rgb), extras
    if request.task == "animate":
        frames = [list(video) for video in output.frames]
        extras["frames"] = frames
        return [video[0] for video in frames], extras
    if request.task == "depth2img":
        size = output.images[0].size  # the estimator works at its own resolution; show it at the image's
        extras["depth"] = [depth_preview(arguments["depth_map"]).resize(size, Image.Resampling.BICUBIC)]
    return list(output.images), extras


def ldm3d_image_processor(vae_scale_factor: int) -> Any:
    """LDM3D's image processor with a depth conversion that works under Pillow 12.

    diffusers 0.42 hands `Image.fromarray(..., mode="I;16")` arrays Pillow 12 refuses (a (H, W, 1) array, or
    int32), so every LDM3D call fails, even with output_type="np" when the safety checker runs. Only our own
    per-request view gets this subclass; the library is not patched.
    """
    from diffusers.image_processor import VaeImageProcessorLDM3D

    class _Processor(VaeImageProcessorLDM3D):
        def numpy_to_depth(self, images: np.ndarray) -> list[Image.Image]:
            if images.ndim == 3:
                images = images[None, ...]
            depth = images[:, :, :, 3:]
            if images.shape[-1] == 6:
                maps = [self.rgblike_to_depthmap((d * 255).round().astype("uint8")) for d in depth]
            else:
                maps = [(d[..., 0] * 65535.0).round() for d in depth]
            return [Image.fromarray(np.asarray(m).astype(np.uint16)) for m in maps]  # 2-D uint16 -> "I;16"

    return _Processor(vae_scale_factor=vae_scale_factor)
