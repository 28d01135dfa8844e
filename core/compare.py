"""Compare: one prompt and seed over a grid of schedulers x steps (or x guidance), with each cell's time."""

from __future__ import annotations

import dataclasses
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from PIL import Image, ImageDraw

from core.errors import InvalidRequest
from core.generation import GenerationRequest

if TYPE_CHECKING:
    from core.studio import Studio

AXES = ("steps", "guidance_scale")
MAX_CELLS = 36


@dataclass
class CompareResult:
    """The labelled grid, each cell's image (row by row), and what each cell was."""

    grid: Image.Image
    images: list[Image.Image]
    cells: list[dict[str, Any]]
    info: dict[str, Any]


def parse_values(axis: str, text: str) -> list[float]:
    """`"10, 20, 30"` -> [10, 20, 30]; whole numbers for steps."""
    if axis not in AXES:
        raise InvalidRequest(f"axis must be one of {', '.join(AXES)}, got {axis!r}.")
    try:
        values = [float(v) for v in str(text).replace(";", ",").split(",") if v.strip()]
    except ValueError:
        raise InvalidRequest(f"Values must be numbers separated by commas, e.g. 10, 20, 30; got {text!r}.") from None
    if not values:
        raise InvalidRequest("Give at least one value for the axis, e.g. 10, 20, 30.")
    if axis == "steps":
        if any(v != int(v) for v in values):
            raise InvalidRequest(f"Steps must be whole numbers, got {text!r}.")
        return [int(v) for v in values]
    return values


def compare(
    studio: Studio,
    base: GenerationRequest,
    schedulers: list[str],
    axis: str,
    values: list[float],
    *,
    session: str = "local",
    on_cell: Any = None,
    cancel: threading.Event | None = None,
) -> CompareResult:
    """Run `base` once per (scheduler, value) with the same seed; stop early if `cancel` is set."""
    if not schedulers:
        raise InvalidRequest("Pick at least one scheduler to compare.")
    if len(schedulers) * len(values) > MAX_CELLS:
        raise InvalidRequest(
            f"{len(schedulers)} schedulers x {len(values)} values is {len(schedulers) * len(values)} images; "
            f"keep it to {MAX_CELLS} or fewer."
        )
    limits = studio.options.limits
    sized = isinstance(base.width, int) and isinstance(base.height, int)  # else each cell's validation says why
    pixels = base.width * base.height if sized else 0
    steps = [int(v) if axis == "steps" else base.steps for v in values] * len(schedulers)
    work = sum(s for s in steps if isinstance(s, int)) * pixels
    if work > limits.max_work:
        raise InvalidRequest(
            f"This grid is {work / limits.max_work:.1f}x the largest single generation this app makes "
            f"({limits.max_images} images x {limits.max_steps} steps at {limits.max_side} px); use fewer "
            "schedulers, values or steps, or a smaller size."
        )
    seed = base.resolved_seeds()[0]
    cells, images = [], []
    total = len(schedulers) * len(values)
    for row, scheduler in enumerate(schedulers):
        for col, value in enumerate(values):
            if cancel is not None and cancel.is_set():
                break
            request = dataclasses.replace(base, scheduler=scheduler, seed=seed, num_images=1, **{axis: value})
            result = studio.generate(request, session=session)
            images.append(result.images[0])
            cells.append(
                {
                    "row": row,
                    "col": col,
                    "scheduler": scheduler,
                    axis: value,
                    "seconds": round(result.info["timings"]["generate_ms"] / 1000, 3),
                }
            )
            if on_cell is not None:
                on_cell(len(cells), total)
    grid = draw_grid(images, schedulers, values, axis, cells)
    info = {
        "seeds": [seed],
        "task": "compare",
        "seed": seed,
        "axis": axis,
        "values": values,
        "schedulers": schedulers,
        "cells": cells,
        "steps": base.steps,  # each cell's own where steps is the axis
        "guidance_scale": base.guidance_scale,
        "prompt": base.prompt,
        "interrupted": len(cells) < total,
    }
    if studio.outputs is not None:
        info["grid_path"] = studio.outputs.save([grid], info, session)[0]
    return CompareResult(grid, images, cells, info)


def draw_grid(
    images: list[Image.Image], rows: list[str], values: list[float], axis: str, cells: list[dict[str, Any]]
) -> Image.Image:
    """Images in a rows x values grid, with the scheduler names on the left, values on top, times under each."""
    if not images:
        return Image.new("RGB", (256, 64), "white")
    w, h = images[0].size
    left, top, under = 150, 28, 18
    grid = Image.new("RGB", (left + w * len(values), top + (h + under) * len(rows)), "white")
    draw = ImageDraw.Draw(grid)
    label = "steps" if axis == "steps" else "guidance"
    for col, value in enumerate(values):
        draw.text((left + col * w + 6, 8), f"{label} {value:g}", fill="black")
    for row, name in enumerate(rows):
        draw.text((6, top + row * (h + under) + h // 2), name, fill="black")
    for image, cell in zip(images, cells, strict=True):
        x, y = left + cell["col"] * w, top + cell["row"] * (h + under)
        grid.paste(image.convert("RGB"), (x, y))
        draw.text((x + 4, y + h + 3), f"{cell['seconds']:.2f} s", fill="black")
    return grid
