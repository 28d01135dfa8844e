"""AUTOMATIC1111's steps around an img2img run, for the studio's API to do as A1111 does: its resize modes, and for
a mask its blur and invert, the "fill" of the masked area, the "only masked" crop, and the paste of the result back
over the original (outside the mask the original's pixels come back unchanged)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from PIL import Image, ImageFilter, ImageOps

LANCZOS = Image.Resampling.LANCZOS


def resize_image(mode: int, image: Image.Image, width: int, height: int) -> Image.Image:
    """A1111's resize modes: 0 just resize, 1 crop and resize (keep the shape, crop the overflow), 2 resize and
    fill (keep the shape, stretch the edges into the gap)."""
    if image.size == (width, height):
        return image.copy()
    if mode == 0:
        return image.resize((width, height), LANCZOS)
    if mode == 1:
        return ImageOps.fit(image, (width, height), LANCZOS)
    scale = min(width / image.width, height / image.height)
    inner = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))), LANCZOS)
    canvas = Image.new(image.mode, (width, height))
    x, y = (width - inner.width) // 2, (height - inner.height) // 2
    canvas.paste(inner, (x, y))
    if y > 0:  # stretch the first and last rows into the bands above and below
        canvas.paste(inner.crop((0, 0, inner.width, 1)).resize((width, y)), (0, 0))
        rest = height - y - inner.height
        canvas.paste(
            inner.crop((0, inner.height - 1, inner.width, inner.height)).resize((width, rest)), (0, y + inner.height)
        )
    if x > 0:
        canvas.paste(inner.crop((0, 0, 1, inner.height)).resize((x, height)), (0, 0))
        rest = width - x - inner.width
        canvas.paste(
            inner.crop((inner.width - 1, 0, inner.width, inner.height)).resize((rest, height)), (x + inner.width, 0)
        )
    return canvas


def fill_masked(image: Image.Image, mask: Image.Image) -> Image.Image:
    """A1111's `fill` (inpainting_fill 0): the masked area painted with the colours around it, blurred from wide to
    narrow, so the run starts from the surroundings instead of what was there. Blurring premultiplied colours
    (`RGBa`) lets only the unmasked pixels spread."""
    kept = Image.new("RGBa", image.size)
    kept.paste(image.convert("RGBA").convert("RGBa"), mask=ImageOps.invert(mask))
    filled = Image.new("RGBA", image.size)
    for radius, times in ((256, 1), (64, 1), (16, 2), (4, 4), (2, 2), (0, 1)):
        layer = kept.filter(ImageFilter.GaussianBlur(radius)).convert("RGBA")
        for _ in range(times):
            filled.alpha_composite(layer)
    return filled.convert("RGB")


def crop_region(mask: Image.Image, padding: int, width: int, height: int) -> tuple[int, int, int, int] | None:
    """A1111's "only masked" region: the mask's bounding box with `padding`, grown to the run's shape
    (width:height) within the image; None for an empty mask."""
    box = mask.point(lambda v: 255 if v else 0).getbbox()
    if box is None:
        return None
    x1, y1 = max(box[0] - padding, 0), max(box[1] - padding, 0)
    x2, y2 = min(box[2] + padding, mask.width), min(box[3] + padding, mask.height)
    ratio = width / height
    if (x2 - x1) / (y2 - y1) > ratio:
        y1, y2 = _grow(y1, y2, round((x2 - x1) / ratio), mask.height)
    else:
        x1, x2 = _grow(x1, x2, round((y2 - y1) * ratio), mask.width)
    return x1, y1, x2, y2


def _grow(low: int, high: int, wanted: int, limit: int) -> tuple[int, int]:
    """[low, high) grown evenly to `wanted`, shifted back inside [0, limit)."""
    extra = min(wanted, limit) - (high - low)
    low, high = low - extra // 2, high + extra - extra // 2
    if low < 0:
        low, high = 0, high - low
    if high > limit:
        low, high = max(low - (high - limit), 0), limit
    return low, high


@dataclass(frozen=True)
class MaskSettings:
    """A1111's inpainting fields, read: mask_blur_x/_y, inpainting_mask_invert, inpaint_full_res (only masked) and
    its padding, inpainting_fill, resize_mode."""

    blur: tuple[float, float]
    invert: bool
    only_masked: bool
    padding: int
    fill: int  # 0 fill, 1 original
    resize_mode: int


def prepare_inpaint(
    image: Image.Image, mask: Image.Image, width: int, height: int, how: MaskSettings
) -> tuple[Image.Image, Image.Image, Callable[[Image.Image], Image.Image]]:
    """(image, mask) at the run's size, as A1111 prepares them, and the step that pastes a result back over the
    original: outside the mask the original's pixels come back unchanged, as A1111 gives them."""
    if mask.size != image.size:
        mask = mask.resize(image.size, LANCZOS)
    if how.invert:
        mask = ImageOps.invert(mask)
    if any(how.blur):
        mask = mask.filter(ImageFilter.GaussianBlur(how.blur))
    region = crop_region(mask, how.padding, width, height) if how.only_masked else None
    if region is not None:
        x1, y1, x2, y2 = region
        run_image = image.crop(region).resize((width, height), LANCZOS)
        run_mask = mask.crop(region).resize((width, height), LANCZOS)
        original, paste_mask = image, mask

        def finish(result: Image.Image) -> Image.Image:
            canvas = original.copy()
            canvas.paste(result.convert("RGB").resize((x2 - x1, y2 - y1), LANCZOS), (x1, y1))
            return Image.composite(canvas, original, paste_mask)

    else:
        run_image = resize_image(how.resize_mode, image, width, height)
        run_mask = resize_image(how.resize_mode, mask, width, height)
        original = run_image
        paste_mask = run_mask.point(lambda v: min(255, 2 * v))  # A1111 pastes with the mask doubled

        def finish(result: Image.Image) -> Image.Image:
            return Image.composite(result.convert("RGB"), original, paste_mask)

    if how.fill == 0:
        run_image = fill_masked(run_image, run_mask)
    return run_image, run_mask, finish
