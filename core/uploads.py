"""Reading the images a request brings (uploads arrive as file paths), with a clear error for anything that is not
an image and a note for what had to be adapted (an animation's first frame, a 16-bit image scaled to 8 bits)."""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from core.errors import InvalidRequest
from core.tasks import get_task

# The request's image fields, what to call each in a message, and the mode the pipelines take it in.
IMAGE_FIELDS = {
    "image": ("input image", "RGB"),
    "mask": ("mask", "L"),
    "depth_map": ("depth map", "L"),
    "ip_adapter_image": ("image prompt", "RGB"),
    "control_image": ("control image", "RGB"),
    "control_image_2": ("second control image", "RGB"),
    "example_image": ("example image", "RGB"),
}
_HIGH_DEPTH = {"I;16": 65535.0, "I;16B": 65535.0, "I;16L": 65535.0, "I;16N": 65535.0}


def read_request_images(request: Any, max_pixels: int | None = None) -> tuple[Any, list[str]]:
    """The request with every image field as a PIL image in its mode, and notes on what was adapted."""
    changes, notes = {}, []
    for name, (label, mode) in IMAGE_FIELDS.items():
        value = getattr(request, name)
        if value is not None:
            changes[name], note = read_image(value, label, mode, max_pixels)
            notes += note
    return (dataclasses.replace(request, **changes) if changes else request), notes


def read_image(value: Any, label: str, mode: str, max_pixels: int | None = None) -> tuple[Image.Image, list[str]]:
    """`value` (a path or a PIL image) as a PIL image in `mode`. A file's size is checked from its header against
    `max_pixels` (default: Pillow's `Image.MAX_IMAGE_PIXELS`, which app.py sets to the app's limit) before any
    pixel is decoded: a few hundred bytes of PNG can unpack to gigabytes."""
    notes: list[str] = []
    limit = max_pixels or Image.MAX_IMAGE_PIXELS
    if isinstance(value, (str, os.PathLike)):
        try:
            image = Image.open(value)  # reads the header only
        except Image.DecompressionBombError as e:  # Pillow's own check, at twice its limit, while opening
            raise InvalidRequest(f"The {label} is too large to open safely; {_shrink(limit)}.") from e
        except (UnidentifiedImageError, OSError, ValueError) as e:
            raise _unreadable(label) from e
        if limit and image.width * image.height > limit:
            image.close()
            raise InvalidRequest(_too_large(label, image.size, limit))
        try:
            image.load()
        except (OSError, ValueError) as e:
            raise _unreadable(label) from e
    elif isinstance(value, Image.Image):
        image = value
        if "studio_notes" in image.info:  # already read by the page's upload (ui.controls): don't note it twice
            return (image if image.mode == mode else image.convert(mode)), list(image.info["studio_notes"])
    else:
        raise InvalidRequest(f"The {label} must be an image file, got {type(value).__name__}.")
    if getattr(image, "n_frames", 1) > 1:
        image.seek(0)
        notes.append(f"The {label} is animated ({image.n_frames} frames); its first frame was used.")
    if image.mode in _HIGH_DEPTH or image.mode in ("I", "F"):
        pixels = np.asarray(image, dtype=np.float64)
        top = _HIGH_DEPTH.get(image.mode) or max(float(pixels.max()), 1.0)
        image = Image.fromarray(np.clip(pixels / top * 255.0, 0, 255).round().astype(np.uint8), mode="L")
        notes.append(f"The {label} has more than 8 bits per channel; it was scaled to 8 bits.")
    if image.mode != mode:
        image = image.convert(mode)
    return image, notes


def _unreadable(label: str) -> InvalidRequest:
    return InvalidRequest(
        f"The {label} could not be read as an image (damaged, or not an image file); upload a PNG, JPEG or WebP."
    )


def _shrink(limit: int) -> str:
    side = int(limit**0.5)
    return f"resize it to at most {limit / 1_000_000:.1f} MP (e.g. {side}x{side}) and upload it again"


def _too_large(label: str, size: tuple[int, int], limit: int) -> str:
    return f"The {label} is {size[0]}x{size[1]}, larger than this app accepts; {_shrink(limit)}."


def fit_request_images(request: Any, max_side: int) -> tuple[Any, list[str]]:
    """The request with its input images scaled down (keeping their shape) to at most `max_side` a side: an
    image-to-image run costs what its input's size costs, so inputs count against the same limit as a text to
    image size. The mask and depth map follow the image; upscaling is left alone (it checks its output size)."""
    if not get_task(request.task).fits_inputs:
        return request, []
    changes, notes = {}, []
    for name, (label, _mode) in IMAGE_FIELDS.items():
        image = getattr(request, name)
        if not isinstance(image, Image.Image) or max(image.size) <= max_side:
            continue
        scale = max_side / max(image.size)
        size = (max(1, int(image.width * scale)), max(1, int(image.height * scale)))
        changes[name] = image.resize(size, Image.Resampling.LANCZOS)
        notes.append(
            f"The {label} was {image.width}x{image.height}; this app makes at most {max_side} px a side, so it was "
            f"scaled to {size[0]}x{size[1]}."
        )
    return (dataclasses.replace(request, **changes) if changes else request), notes
