"""A generation request, checked before any work, and its result with everything needed to reproduce it."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from core.errors import InvalidRequest
from core.tasks import get_task

MAX_SEED = 2**32 - 1


@dataclass(frozen=True)
class Limits:
    """Bounds a request must stay within; public deployments tighten them."""

    min_side: int = 64
    max_side: int = 2048
    max_steps: int = 150
    max_guidance: float = 30.0
    max_images: int = 8
    max_image_pixels: int = 4096 * 4096  # an uploaded image larger than this is refused, not resized


@dataclass
class GenerationRequest:
    """Everything one run needs. Images are PIL images; `mask` is white where the image is repainted."""

    task: str = "text2img"
    prompt: str = ""
    negative_prompt: str = ""
    image: Image.Image | None = None
    mask: Image.Image | None = None
    strength: float = 0.75
    steps: int = 25
    guidance_scale: float = 7.5
    width: int = 512
    height: int = 512
    seed: int = -1
    scheduler: str = "default"
    num_images: int = 1
    safety_checker: bool = True

    def validate(self, limits: Limits, *, size_multiple: int = 8) -> None:
        """Raise `InvalidRequest` with what to change if any field is out of range or missing."""
        task = get_task(self.task)
        if not isinstance(self.prompt, str) or not isinstance(self.negative_prompt, str):
            raise InvalidRequest("The prompt and negative prompt must be text.")
        if task.name == "text2img":
            for label, value in (("width", self.width), ("height", self.height)):
                _check_int(label, value)
                if not limits.min_side <= value <= limits.max_side:
                    raise InvalidRequest(
                        f"{label} must be between {limits.min_side} and {limits.max_side} pixels, got {value}."
                    )
                if value % size_multiple:
                    lower = value - value % size_multiple
                    raise InvalidRequest(
                        f"{label} must be a multiple of {size_multiple}, got {value}; "
                        f"try {lower} or {lower + size_multiple}."
                    )
        _check_int("steps", self.steps)
        if not 1 <= self.steps <= limits.max_steps:
            raise InvalidRequest(f"steps must be between 1 and {limits.max_steps}, got {self.steps}.")
        if not _is_number(self.guidance_scale) or not 0 <= self.guidance_scale <= limits.max_guidance:
            raise InvalidRequest(
                f"guidance_scale must be a number between 0 and {limits.max_guidance}, got {self.guidance_scale}."
            )
        _check_int("num_images", self.num_images)
        if not 1 <= self.num_images <= limits.max_images:
            raise InvalidRequest(f"num_images must be between 1 and {limits.max_images}, got {self.num_images}.")
        _check_int("seed", self.seed)
        if not (self.seed == -1 or 0 <= self.seed <= MAX_SEED - self.num_images):
            raise InvalidRequest(f"seed must be -1 (random) or between 0 and {MAX_SEED - self.num_images}.")
        if task.needs_image:
            self._check_images(task.needs_mask, limits)

    def _check_images(self, needs_mask: bool, limits: Limits) -> None:
        if not _is_number(self.strength) or not 0 < self.strength <= 1:
            raise InvalidRequest(f"strength must be above 0 and at most 1, got {self.strength}.")
        if self.image is None:
            raise InvalidRequest(f"{get_task(self.task).label} needs an input image: upload one.")
        if not isinstance(self.image, Image.Image):
            raise InvalidRequest("The input image could not be read as an image; upload a PNG, JPEG or WebP.")
        width, height = self.image.size
        if width * height > limits.max_image_pixels:
            raise InvalidRequest(
                f"The input image is {width}x{height}, larger than this app accepts; resize it below "
                f"{limits.max_image_pixels // 1_000_000} megapixels."
            )
        if min(width, height) < limits.min_side:
            raise InvalidRequest(
                f"The input image is {width}x{height}; it must be at least {limits.min_side} px on each side."
            )
        if needs_mask:
            if self.mask is None:
                raise InvalidRequest(
                    "Inpainting needs a mask: paint over the image or upload a mask (white = repaint)."
                )
            if self.mask.size != self.image.size:
                raise InvalidRequest(
                    f"The mask is {self.mask.size[0]}x{self.mask.size[1]} but the image is {width}x{height}; "
                    "they must be the same size."
                )

    def resolved_seeds(self) -> list[int]:
        """One seed per image: `seed + i`, after picking `seed` at random when it is -1."""
        first = random.randint(0, MAX_SEED - self.num_images) if self.seed == -1 else self.seed
        return [first + i for i in range(self.num_images)]


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_int(label: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidRequest(f"{label} must be a whole number, got {value!r}.")


@dataclass
class GenerationResult:
    """The images of one run and its `info` (see DESIGN.md, "Public surfaces")."""

    images: list[Image.Image]
    info: dict[str, Any]
    paths: list[str] = field(default_factory=list)  # where the images were saved, if they were


def reproduction_code(info: dict[str, Any], *, scheduler_class: str, scheduler_overrides: dict[str, Any]) -> str:
    """A short script using diffusers alone that makes the first image of the run described by `info`."""
    task = get_task(info["task"])
    auto = task.auto_class.__name__
    lines = ["import torch", f"from diffusers import {auto}, {scheduler_class}"]
    if task.needs_image:
        lines.append("from diffusers.utils import load_image")
    lines.append("")
    load_args = [repr(info["model_path"]), f"dtype=torch.{info['dtype']}", "use_safetensors=True"]
    if info["variant"] != "default":
        load_args.append(f"variant={info['variant']!r}")
    if info["nsfw"] is None and info.get("has_safety_checker"):
        load_args.append("safety_checker=None")
    if info["vae"] != "default":
        lines[1] += ", AutoencoderKL"
        lines.append(f"vae = AutoencoderKL.from_pretrained({info['vae_path']!r}, dtype=torch.{info['dtype']})")
        load_args.append("vae=vae")
    overrides = "".join(f", {k}={v!r}" for k, v in scheduler_overrides.items())
    model = repr(info["model_path"])
    lines.append(f"scheduler = {scheduler_class}.from_pretrained({model}, subfolder='scheduler'{overrides})")
    load_args.append("scheduler=scheduler")
    lines.append(f"pipe = {auto}.from_pretrained(" + ", ".join(load_args) + ")")
    lines.append(f"pipe = pipe.to({info['device']!r})")
    call = [f"prompt={info['prompt']!r}"]
    if info["negative_prompt"]:
        call.append(f"negative_prompt={info['negative_prompt']!r}")
    if task.needs_image:
        lines.append("image = load_image('input.png')  # the image you gave the app")
        call.append("image=image")
        if task.needs_mask:
            lines.append("mask = load_image('mask.png')  # white = repaint")
            call.append("mask_image=mask")
        call.append(f"strength={info['strength']}")
    else:
        call += [f"width={info['width']}", f"height={info['height']}"]
    call += [
        f"num_inference_steps={info['steps']}",
        f"guidance_scale={info['guidance_scale']}",
        f"generator=torch.Generator('cpu').manual_seed({info['seeds'][0]})",
    ]
    lines.append("image = pipe(" + ", ".join(call) + ").images[0]")
    lines.append("image.save('image.png')")
    return "\n".join(lines) + "\n"
