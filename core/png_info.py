"""Reading generation parameters back from a PNG: this studio's own (`diffusion_studio` JSON beside the plain
`parameters` text) and the plain-text `parameters` chunk the common Stable Diffusion web UIs write:

    a lighthouse at dusk, oil painting
    Negative prompt: blurry
    Steps: 20, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, Seed: 42, Size: 512x768, Model: v1-5

No library reads that format (it is a convention, not a spec), so it is parsed here, in one linear pass: the
text comes from anyone who can upload a file.
"""

from __future__ import annotations

import json
import os
import re
import struct
import zlib
from typing import Any, BinaryIO

from PIL import Image, UnidentifiedImageError

from core import schedulers
from core.errors import InvalidRequest
from core.tasks import TASKS

MAX_TEXT_BYTES = 64 * 1024  # a parameters block is a few KB; anything longer is refused before it is parsed
_KEY = re.compile(r"[A-Za-z][\w \-/()]*")
_KEY_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_ -/()")
_NEGATIVE = "Negative prompt:"
_READ = ("parameters", "diffusion_studio")  # the chunks we parse; the others are not read at all
_PNG = b"\x89PNG\r\n\x1a\n"


def read_png_info(source: Image.Image | str | os.PathLike) -> dict[str, Any]:
    """The parameters stored in an image (an opened one, or a file, whose pixels are never decoded): `found`
    (`diffusion-studio`, `web-ui` or None), the raw `text`, the `fields` our tabs take (prompt, negative_prompt,
    steps, guidance_scale, seed, width, height, scheduler, strength), the `task` to send them to, and `other`
    settings we show but don't use (model hash, clip skip...)."""
    chunks = text_chunks(source)
    for key in _READ:
        if len(chunks.get(key, "")) > MAX_TEXT_BYTES:
            raise InvalidRequest(
                f"The image's {key} text is over {MAX_TEXT_BYTES // 1024} KB, far longer than any generation's "
                "parameters; it was not read."
            )
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
    """`Key: value, Key: "quoted, value", ...` in one pass over `line` (a regular expression with a lazy key
    scanned it again from every character: 48,000 characters took 18 s). Text before a key that can't be part of
    one is skipped; a quoted value may hold commas."""
    pairs, i, n = [], 0, len(line)
    colon = comma = -1  # the next ':' and ',' at or after i, found again only once i has passed them
    while i < n:
        if colon < i:
            colon = line.find(":", i)
            if colon == -1:
                break
        if comma < i:
            comma = line.find(",", i)
            comma = n if comma == -1 else comma
        if comma < colon:  # no key in this segment
            i = comma + 1
            continue
        start = colon
        while start > i and line[start - 1] in _KEY_CHARS:
            start -= 1
        key = _KEY.search(line, start, colon)
        value_at = colon + 1
        while value_at < n and line[value_at] == " ":
            value_at += 1
        end, value = _value(line, value_at, comma)
        i = end + 1
        if key is not None:
            pairs.append((key.group().strip(), value))
    return pairs


def _value(line: str, at: int, comma: int) -> tuple[int, str]:
    """The value starting at `at` and where it ends (the comma after it, or the line's end)."""
    if at < len(line) and line[at] == '"':
        k = at + 1
        while k < len(line) and line[k] != '"':
            k += 2 if line[k] == "\\" else 1
        if k < len(line):  # a closed quote; what follows up to the next comma is dropped
            quoted = line[at : k + 1]
            after = line.find(",", k + 1)
            value = json.loads(quoted) if "\\" in quoted else quoted[1:-1]
            return (len(line) if after == -1 else after), value
    return comma, line[at:comma].strip()


def text_chunks(source: Image.Image | str | os.PathLike) -> dict[str, str]:
    """An image's text metadata by key: a PNG file's tEXt, zTXt and iTXt chunks (read without decoding the pixels),
    another file's or an opened image's `info` strings. Each text is cut at MAX_TEXT_BYTES + 1 characters, so a
    longer one is known to be too long without being unpacked."""
    if isinstance(source, Image.Image):
        found = dict(getattr(source, "text", None) or {})
        found.update({k: v for k, v in source.info.items() if isinstance(v, str) and k not in found})
        return found
    try:
        with open(source, "rb") as fp:
            if fp.read(8) == _PNG:
                return _png_text(fp)
        with Image.open(source) as image:  # the header and metadata segments only; no pixels
            return {k: v[: MAX_TEXT_BYTES + 1] for k, v in image.info.items() if isinstance(v, str)}
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise InvalidRequest("That file is not an image this studio can read; upload a PNG.") from e


def _png_text(fp: BinaryIO) -> dict[str, str]:
    """Walk a PNG's chunks and read its text ones.

    Pillow reaches text chunks stored after the pixel data only by decoding the pixels (`load()`), which a file
    of a few hundred bytes can make cost gigabytes; the chunk layout is simple enough to walk here (PNG spec,
    section 5: length, type, data, CRC)."""
    found: dict[str, str] = {}
    for _ in range(100_000):  # a bound on the walk; real PNGs have dozens of chunks
        head = fp.read(8)
        if len(head) < 8:
            break
        length, kind = struct.unpack(">I4s", head)
        if kind == b"IEND":
            break
        if kind in (b"tEXt", b"zTXt", b"iTXt") and length <= 16 * MAX_TEXT_BYTES:
            key, text = _text_chunk(kind, fp.read(length))
            if key:
                found.setdefault(key, text)
            fp.seek(4, os.SEEK_CUR)  # the CRC
        else:
            fp.seek(length + 4, os.SEEK_CUR)
    return found


def _text_chunk(kind: bytes, data: bytes) -> tuple[str, str]:
    key, _, rest = data.partition(b"\0")
    try:
        if kind == b"tEXt":
            return key.decode("latin-1"), rest[: MAX_TEXT_BYTES + 1].decode("latin-1")
        if kind == b"zTXt":
            return key.decode("latin-1"), _inflate(rest[1:]).decode("latin-1")
        compressed, rest = rest[:1] == b"\1", rest[2:]  # iTXt: flag, method, language\0, translated key\0, text
        _language, _, rest = rest.partition(b"\0")
        _translated, _, text = rest.partition(b"\0")
        return key.decode("latin-1"), (_inflate(text) if compressed else text[: MAX_TEXT_BYTES + 1]).decode(
            "utf-8", errors="replace"
        )
    except zlib.error:
        return "", ""  # a damaged chunk is skipped, as Pillow does


def _inflate(data: bytes) -> bytes:
    """At most MAX_TEXT_BYTES + 1 bytes of a zlib stream: a 185-byte chunk can unpack to megabytes."""
    return zlib.decompressobj().decompress(data, MAX_TEXT_BYTES + 1)


def _scheduler(sampler: str, schedule: str) -> str | None:
    """A web UI sampler name -> this studio's scheduler name (the catalog uses the same names), or None."""
    names = {c.name.lower(): c.name for c in schedulers.CATALOG}
    sampler = sampler.strip()
    if schedule.strip().lower() == "karras" and f"{sampler} karras".lower() in names:
        return names[f"{sampler} karras".lower()]
    return names.get(sampler.lower())


def sends_image(task: str | None) -> bool:
    """Whether Send hands `task`'s tab the image as well as the settings."""
    return task in TASKS and TASKS[task].png_info_sends_image
