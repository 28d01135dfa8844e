"""Reading generation parameters back from an image: this studio's own (`diffusion_studio` JSON beside the plain
`parameters` text), the plain-text infotext AUTOMATIC1111's web UI and its kin write (in a PNG chunk, or in a JPEG's
or WebP's EXIF comment), and the other tools' formats (core.metadata_formats):

    a lighthouse at dusk, oil painting <lora:ink:0.8>
    Negative prompt: blurry
    Steps: 20, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, Seed: 42, Size: 512x768, Model: v1-5

No library reads that format in full (it is a convention, not a spec; sd-parsers splits it on every comma and loses
quoted values), so it is parsed here, in one linear pass: the text comes from anyone who can upload a file.
"""

from __future__ import annotations

import json
import math
import os
import re
import struct
import zlib
from typing import Any, BinaryIO

from PIL import Image, UnidentifiedImageError

from core import infotext, metadata_formats, schedulers
from core.errors import InvalidRequest
from core.tasks import TASKS

MAX_TEXT_BYTES = metadata_formats.MAX_TEXT_BYTES  # one cap for every chunk, ours and the other tools'
_KEY = re.compile(r"[A-Za-z][\w \-/()]*")
_KEY_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_ -/()")
_NEGATIVE = "Negative prompt:"
_READ = ("parameters", "diffusion_studio")  # the chunks we parse; the others are not read at all
_PNG = b"\x89PNG\r\n\x1a\n"


def read_png_info(source: Image.Image | str | os.PathLike) -> dict[str, Any]:
    """The parameters stored in an image (an opened one, or a file, whose pixels are never decoded):

    - `found`: `diffusion-studio`, `web-ui` (A1111's infotext), one of core.metadata_formats' tools, or None;
      `tool`: who made it, in words; `text`: the raw metadata;
    - `fields`: what our tabs take (prompt, negative_prompt, steps, guidance_scale, seed, width, height, scheduler,
      strength), `task`: the tab to send them to, `loras`: the LoRAs it used (name, weight, hash, source if known);
    - `other`: the settings shown but not used (model hash, clip skip...), `unmapped`: what could not be mapped,
      said plainly (an unknown sampler is named), `problems`: damaged or oversized chunks that were skipped.

    A damaged chunk never hides a good one beside it."""
    chunks = text_chunks(source)
    problems = []
    for key in list(chunks):
        if len(chunks[key]) > MAX_TEXT_BYTES:
            problems.append(
                f"The image's {key} text is over {MAX_TEXT_BYTES // 1024} KB, far longer than any generation's "
                "parameters; it was not read."
            )
            del chunks[key]
    text = chunks.get("parameters", "")
    ours = chunks.get("diffusion_studio")
    if ours:
        try:
            info = json.loads(ours)
            if not isinstance(info, dict):
                raise ValueError("not an object")
            return {"found": "diffusion-studio", "tool": "Diffusion Studio", "text": text, "problems": problems,
                    **_from_our_info(info)}  # fmt: skip
        except (ValueError, TypeError, AttributeError) as e:
            problems.append(
                f"The image's diffusion_studio data is damaged ({e}); its parameters text was read instead."
            )
    foreign, foreign_problems = metadata_formats.read_foreign(chunks)
    problems += foreign_problems
    if foreign is not None:
        return {"loras": [], "unmapped": [], "other": {}, **foreign, "problems": problems}
    if not text or text.lstrip().startswith("{"):  # JSON in `parameters` is a foreign tool's, read above or damaged
        if problems:  # nothing readable was left: what was wrong with it is the answer
            raise InvalidRequest(" ".join(problems))
        return {**_NOTHING, "problems": problems}
    return {"found": "web-ui", "tool": _a1111_tool(text), "text": text, "problems": problems, **parse_parameters(text)}


_NOTHING = {"found": None, "tool": None, "text": "", "fields": {}, "task": None, "other": {}, "loras": [],
            "unmapped": []}  # fmt: skip


def _a1111_tool(text: str) -> str:
    """AUTOMATIC1111's web UI or a kin that writes its format and names itself in `Version` (Forge: `f2.0.1...`)."""
    version = dict(_pairs(text.strip().splitlines()[-1])).get("Version", "") if text.strip() else ""
    if version.startswith("f"):
        return f"Stable Diffusion WebUI Forge ({version})"
    if version == "diffusion-studio":
        return "Diffusion Studio (its text only)"
    return "AUTOMATIC1111's web UI" + (f" ({version})" if version else "") + " or a tool writing its format"


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
    loras = [
        {"name": str(lora.get("name")), "weight": lora.get("weight"), "hash": lora.get("hash"),
         "source": lora.get("source")}
        for lora in (info.get("loras") or [])[:32] if isinstance(lora, dict)
    ]  # fmt: skip
    found = {
        "fields": {k: v for k, v in fields.items() if v is not None},
        "task": task,
        "other": other,
        "loras": loras,
        "unmapped": [],
    }
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
    """A1111's infotext -> fields, task, LoRAs, other settings and what could not be mapped."""
    lines = text.strip().splitlines()
    settings_at = next((i for i in range(len(lines) - 1, -1, -1) if _is_settings_line(lines[i])), None)
    settings = dict(_pairs(lines[settings_at])) if settings_at is not None else {}
    head = lines[:settings_at] if settings_at is not None else lines
    prompt_lines, negative_lines, in_negative = [], [], False
    for line in head:
        if line.startswith(_NEGATIVE):
            in_negative, line = True, line[len(_NEGATIVE) :].strip()
        (negative_lines if in_negative else prompt_lines).append(line)
    prompt, loras, unmapped = _networks("\n".join(prompt_lines).strip(), settings.get("Lora hashes", ""))
    fields: dict[str, Any] = {"prompt": prompt, "negative_prompt": "\n".join(negative_lines).strip()}
    used = {"Lora hashes"} if loras else set()
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
    sampler = settings.get("Sampler", "").strip()
    if sampler:
        scheduler, schedule = schedulers.from_a1111(sampler, settings.get("Schedule type"))
        if scheduler:
            fields["scheduler"] = scheduler
            used.update({"Sampler", "Schedule type"})
            if "Schedule type" not in settings and sampler in schedulers.A1111_AUTOMATIC:
                unmapped.append(
                    f"No schedule type is written (A1111 before 1.9): read as {scheduler}, as those versions ran "
                    "it; A1111 1.9 and later would run it with its automatic schedule "
                    f"({schedulers.A1111_AUTOMATIC[sampler]})."
                )
        else:
            unmapped.append(
                f"Sampler {sampler!r} with schedule {schedule!r} has no match among this studio's schedulers; the "
                "scheduler was left as it is."
            )
    task = "img2img" if "strength" in fields else "text2img"
    hires = [key for key in settings if key.startswith("Hires ")]
    if hires:  # a text-to-image run, upscaled and denoised again: the strength is the second pass's
        task = "text2img"
        if "strength" in fields:
            fields.pop("strength")
            used.discard("Denoising strength")
        unmapped.append(
            "Hires fix (" + ", ".join(f"{key[6:].lower()} {settings[key]}" for key in hires) + ") has no match here: "
            "the settings make its first pass, at the size written."
        )
    elif any(key in settings for key in _INPAINT_KEYS):
        task = "inpaint"
        unmapped.append(
            "It was inpainted: send it with its original image and paint the mask again (no mask is stored)."
        )
    other = {k: v for k, v in settings.items() if k not in used}
    return {"fields": fields, "task": task, "other": other, "loras": loras, "unmapped": unmapped}


_INPAINT_KEYS = ("Mask blur", "Inpaint area", "Masked content", "Mask mode", "Inpaint padding", "Mask area padding")


def _networks(prompt: str, hashes_text: str) -> tuple[str, list[dict[str, Any]], list[str]]:
    """A1111 prompt's network tags out of the prompt: (the prompt without them, its LoRAs with their weights and,
    from `Lora hashes`, hashes; what else it named). `<lora:name>` is weight 1, as A1111 reads it."""
    hashes = {}
    for part in hashes_text.split(",")[:64]:  # `name: hash, name: hash`
        name, _, value = part.partition(":")
        if value.strip():
            hashes[name.strip()] = value.strip()
    cleaned, tags = infotext.network_tags(prompt)
    loras, unmapped = [], []
    for _tag, kind, (name, *args) in tags:
        if kind not in ("lora", "lyco"):
            unmapped.append(f"{kind.capitalize()} {name!r} has no match here; it was left out.")
            continue
        weight = 1.0
        if args:
            try:
                weight = float(args[0].strip().removeprefix("te="))
                if not math.isfinite(weight):
                    raise ValueError(args[0])
            except ValueError:
                weight = 1.0
                unmapped.append(f"LoRA {name!r}: its weight {args[0]!r} is not a number; weight 1 was assumed.")
        lora = {"name": name.strip(), "weight": weight}
        if hashes.get(name.strip()):
            lora["hash"] = hashes[name.strip()]
        loras.append(lora)
    return cleaned, loras, unmapped


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
            found = {k: v[: MAX_TEXT_BYTES + 1] for k, v in image.info.items() if isinstance(v, str)}
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise InvalidRequest("That file is not an image this studio can read; upload a PNG, JPEG or WebP.") from e
    if "parameters" not in found:
        # A JPEG's or WebP's parameters sit in its EXIF comment (A1111's infotext; Fooocus' and SwarmUI's JSON).
        comment = metadata_formats.exif_user_comment(source)
        if comment:
            found["parameters"] = comment
    return found


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


def sends_image(task: str | None) -> bool:
    """Whether Send hands `task`'s tab the image as well as the settings."""
    return task in TASKS and TASKS[task].png_info_sends_image
