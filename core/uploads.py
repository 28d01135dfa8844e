"""Reading the images a request brings (uploads arrive as file paths), with a clear error for anything that is not
an image and a note for what had to be adapted (an animation's first frame, a 16-bit image scaled to 8 bits)."""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from core.errors import InvalidRequest

# The request's image fields, what to call each in a message, and the mode the pipelines take it in.
IMAGE_FIELDS = {
    "image": ("input image", "RGB"),
    "mask": ("mask", "L"),
    "depth_map": ("depth map", "L"),
    "ip_adapter_image": ("image prompt", "RGB"),
}
_HIGH_DEPTH = {"I;16": 65535.0, "I;16B": 65535.0, "I;16L": 65535.0, "I;16N": 65535.0}


def read_request_images(request: Any) -> tuple[Any, list[str]]:
    """The request with every image field as a PIL image in its mode, and notes on what was adapted."""
    changes, notes = {}, []
    for name, (label, mode) in IMAGE_FIELDS.items():
        value = getattr(request, name)
        if value is not None:
            changes[name], note = read_image(value, label, mode)
            notes += note
    return (dataclasses.replace(request, **changes) if changes else request), notes


def read_image(value: Any, label: str, mode: str) -> tuple[Image.Image, list[str]]:
    """`value` (a path or a PIL image) as a PIL image in `mode`."""
    notes: list[str] = []
    if isinstance(value, (str, os.PathLike)):
        try:
            image = Image.open(value)
            image.load()
        except Image.DecompressionBombError as e:
            raise InvalidRequest(f"The {label} is too large to open safely; shrink it below 4096x4096.") from e
        except (UnidentifiedImageError, OSError, ValueError) as e:
            raise InvalidRequest(
                f"The {label} could not be read as an image (damaged, or not an image file); upload a PNG, "
                "JPEG or WebP."
            ) from e
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
