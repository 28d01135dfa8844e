"""Depth maps as pictures, for the tasks that make or use one (depth to image, RGB + depth)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from PIL import Image


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
