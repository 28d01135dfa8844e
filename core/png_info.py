"""Reading generation parameters back from a PNG: this studio's own (`diffusion_studio` JSON beside the plain
`parameters` text) and the plain-text `parameters` chunk the common Stable Diffusion web UIs write:

    a lighthouse at dusk, oil painting
    Negative prompt: blurry
    Steps: 20, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, Seed: 42, Size: 512x768, Model: v1-5

No library reads that format (it is a convention, not a spec), so it is parsed here.
"""

from __future__ import annotations

import json
import re
from typing import Any

from PIL import Image

from core import schedulers
from core.errors import InvalidRequest

# `Key: value` pairs of the settings line; a quoted value may hold commas (e.g. `Lora hashes: "a: 1, b: 2"`).
_PAIR = re.compile(r'\s*([A-Za-z][\w \-/()]*?):\s*("(?:\\.|[^\\"])*"|[^,]*)(?:,|$)')
_NEGATIVE = "Negative prompt:"
_TASKS_WITH_AN_IMAGE = ("img2img", "inpaint")


def read_png_info(image: Image.Image) -> dict[str, Any]:
    """The parameters stored in `image`: `found` (`diffusion-studio`, `web-ui` or None), the raw `text`, the
    `fields` our tabs take (prompt, negative_prompt, steps, guidance_scale, seed, width, height, scheduler,
    strength), the `task` to send them to, and `other` settings we show but don't use (model hash, clip skip...)."""
    chunks = dict(getattr(image, "text", None) or {})
    for key, value in image.info.items():  # PNG zTXt/iTXt and other formats' comments land in info
        if isinstance(value, str):
            chunks.setdefault(key, value)
    text = chunks.get("parameters", "")
    ours = chunks.get("diffusion_studio")
    if ours:
        try:
            info = json.loads(ours)
        except ValueError as e:
            raise InvalidRequest(f"The image's diffusion_studio data is damaged ({e}).") from e
        return {"found": "diffusion-studio", "text": text, **_from_our_info(info)}
    if not text:
        return {"found": None, "text": "", "fields": {}, "task": None, "other": {}}
    return {"found": "web-ui", "text": text, **parse_parameters(text)}


def _from_our_info(info: dict[str, Any]) -> dict[str, Any]:
    index = int(info.get("image_index", 0) or 0)
    seeds = info.get("seeds") or []
    fields = {
        "prompt": info.get("prompt", ""),
        "negative_prompt": info.get("negative_prompt", ""),
        "steps": info.get("steps"),
        "guidance_scale": info.get("guidance_scale"),
        "seed": seeds[index] if index < len(seeds) else None,
        "width": info.get("width"),
        "height": info.get("height"),
        "scheduler": info.get("scheduler"),
        "strength": info.get("strength"),
    }
    other = {k: info[k] for k in ("model", "variant", "dtype", "pipeline", "vae") if info.get(k) is not None}
    task = info.get("task")
    found = {"fields": {k: v for k, v in fields.items() if v is not None}, "task": task, "other": other}
    if len(seeds) > 1 and _whole(seeds[0]):
        # Made alone from its own seed, an image of a batch comes out near-identical, not byte-identical (see
        # core.generation.ALONE_TOLERANCE); the batch made again gives its exact pixels.
        found["batch"] = {"size": len(seeds), "index": index, "first_seed": seeds[0]}
    return found


def request_fields(found: dict[str, Any], *, whole_batch: bool = False) -> dict[str, Any]:
    """The request fields a send writes: the image's own and one image, or, for an image of a batch when asked,
    the whole batch again (its first seed and size), which gives the image's exact pixels."""
    values = {**found.get("fields", {}), "num_images": 1}
    batch = found.get("batch")
    if whole_batch and batch:
        values.update(seed=batch["first_seed"], num_images=batch["size"])
    return values


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def parse_parameters(text: str) -> dict[str, Any]:
    """The web UIs' plain-text block -> fields, task and other settings."""
    lines = text.strip().splitlines()
    settings_at = next((i for i in range(len(lines) - 1, -1, -1) if _is_settings_line(lines[i])), None)
    settings = dict(_pairs(lines[settings_at])) if settings_at is not None else {}
    head = lines[:settings_at] if settings_at is not None else lines
    prompt_lines, negative_lines, in_negative = [], [], False
    for line in head:
        if line.startswith(_NEGATIVE):
            in_negative, line = True, line[len(_NEGATIVE) :].strip()
        (negative_lines if in_negative else prompt_lines).append(line)
    fields: dict[str, Any] = {
        "prompt": "\n".join(prompt_lines).strip(),
        "negative_prompt": "\n".join(negative_lines).strip(),
    }
    used = set()
    for key, name, convert in (
        ("Steps", "steps", int),
        ("CFG scale", "guidance_scale", float),
        ("Seed", "seed", int),
        ("Denoising strength", "strength", float),
    ):
        if key in settings:
            try:
                fields[name] = convert(settings[key])
                used.add(key)
            except ValueError:
                pass  # shown among the other settings instead
    size = re.fullmatch(r"(\d+)x(\d+)", settings.get("Size", ""))
    if size:
        fields["width"], fields["height"] = int(size[1]), int(size[2])
        used.add("Size")
    scheduler = _scheduler(settings.get("Sampler", ""), settings.get("Schedule type", ""))
    if scheduler:
        fields["scheduler"] = scheduler
        used.update({"Sampler", "Schedule type"})
    task = "img2img" if "strength" in fields else "text2img"
    other = {k: v for k, v in settings.items() if k not in used}
    return {"fields": fields, "task": task, "other": other}


def _is_settings_line(line: str) -> bool:
    keys = {k for k, _ in _pairs(line)}
    return "Steps" in keys and ("Sampler" in keys or "Seed" in keys or "CFG scale" in keys)


def _pairs(line: str) -> list[tuple[str, str]]:
    pairs = []
    for key, value in _PAIR.findall(line):
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = json.loads(value) if "\\" in value else value[1:-1]
        pairs.append((key.strip(), value))
    return pairs


def _scheduler(sampler: str, schedule: str) -> str | None:
    """A web UI sampler name -> this studio's scheduler name (the catalog uses the same names), or None."""
    names = {c.name.lower(): c.name for c in schedulers.CATALOG}
    sampler = sampler.strip()
    if schedule.strip().lower() == "karras" and f"{sampler} karras".lower() in names:
        return names[f"{sampler} karras".lower()]
    return names.get(sampler.lower())


def sends_image(task: str | None) -> bool:
    return task in _TASKS_WITH_AN_IMAGE
