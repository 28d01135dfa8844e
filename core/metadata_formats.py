"""Generation parameters other tools store in an image, read into this studio's fields: ComfyUI's graph, InvokeAI's
three formats, NovelAI's, Fooocus' and SwarmUI's JSON (PNG text chunks), and the EXIF UserComment in which
AUTOMATIC1111, Forge and Fooocus keep theirs in a JPEG or WebP.

Each format is documented only by the tool's own source, cited at its reader. sd-parsers reads most of them, but
into each tool's own names (its ComfyUI walk is recursive and needs the UI graph too); this studio needs its own
fields, scheduler names and task, so the mapping is here. Everything comes from anonymous uploads: text is capped
before it is parsed, a graph walk visits each node once, and whatever goes wrong in one chunk becomes a problem
sentence, never an exception.
"""

from __future__ import annotations

import json
import math
import os
import re
import struct
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

from PIL import Image, UnidentifiedImageError

from core import schedulers
from core.errors import InvalidRequest

# A metadata text is a few KB; anything longer is refused before it is parsed (core.png_info reads this cap).
MAX_TEXT_BYTES = 64 * 1024
SHOWN_CHARS = 8 * 1024  # of the raw metadata shown beside the fields
MAX_OTHER, MAX_VALUE_CHARS, MAX_NOTES, MAX_LORAS = 50, 500, 50, 50
MAX_SEED = 2**64 - 1
_WALK_LIMIT = 1000  # nodes one prompt, latent or model walk visits; a real chain is a few dozen long


class _Skipped(Exception):
    """A chunk that can't be read; the message is the sentence for the problems list."""


def read_foreign(chunks: dict[str, str]) -> tuple[dict[str, Any] | None, list[str]]:
    """The parameters another tool stored in an image's text chunks, as `found`, `tool`, `text`, `fields`, `task`,
    `other`, `loras` and `unmapped`, with sentences about damaged chunks that were skipped; None for the result when
    no such format is there (read the AUTOMATIC1111 text then). A plain-text `parameters` chunk is read before a
    ComfyUI graph beside it: the tools that write both write the text for readers like this one."""
    problems: list[str] = []
    has_text = _is_text(chunks.get("parameters"))
    for reader in _READERS:
        if not reader.present(chunks) or (reader.after_text and has_text):
            continue
        try:
            return reader.read(chunks), problems
        except _Skipped as skipped:
            problems.append(str(skipped))
        except Exception as error:
            # The shape of uploaded metadata is anyone's choice; a case no reader foresaw costs this chunk only.
            problems.append(
                f"The image's `{reader.key}` chunk ({reader.tool}) could not be read ({type(error).__name__}); "
                "it was skipped."
            )
    return None, problems


def exif_user_comment(source: Image.Image | str | os.PathLike) -> str | None:
    """The EXIF UserComment of an image (a JPEG's or WebP's, where AUTOMATIC1111, Forge and Fooocus write their
    parameters), read from its metadata without decoding the pixels; None when it has none. Its 8-byte charset
    header is honoured (UNICODE, as UTF-16 in either byte order; ASCII; none). Raises InvalidRequest for a comment
    longer than MAX_TEXT_BYTES, EXIF Pillow can't parse (it passes over most damage), or a file that is not an
    image."""
    try:
        if isinstance(source, Image.Image):
            raw = _raw_user_comment(source)
        else:
            with Image.open(source) as image:
                raw = _raw_user_comment(image)
    except (UnidentifiedImageError, Image.DecompressionBombError) as e:
        raise InvalidRequest("That file is not an image this studio can read; upload a PNG, JPEG or WebP.") from e
    except (
        OSError,
        SyntaxError,
        ValueError,
        KeyError,
        IndexError,
        TypeError,
        struct.error,
    ) as e:  # Pillow's EXIF parser
        raise InvalidRequest(
            f"The image's EXIF data is damaged ({type(e).__name__}); its parameters can't be read."
        ) from e
    too_long = InvalidRequest(
        f"The image's EXIF UserComment is over {MAX_TEXT_BYTES // 1024} KB, far longer than any generation's "
        "parameters; it was not read."
    )
    if isinstance(raw, bytes):
        if len(raw) > 2 * MAX_TEXT_BYTES + 8:  # longer than any text of MAX_TEXT_BYTES characters: not decoded
            raise too_long
        raw = _decode_user_comment(raw)
    if not isinstance(raw, str):
        return None
    text = raw.rstrip("\0")
    if len(text) > MAX_TEXT_BYTES:
        raise too_long
    return text or None


def _raw_user_comment(image: Image.Image) -> bytes | str | None:
    # Without an `exif` entry Pillow's PNG getexif() decodes the pixels to reach a late eXIf chunk: don't ask.
    if not image.info.get("exif"):
        return None
    exif = image.getexif()
    found = exif.get_ifd(0x8769).get(0x9286)  # the Exif IFD's UserComment, where the EXIF spec puts it
    return found if found is not None else exif.get(0x9286)  # Fooocus (meta_parser.get_exif) writes it in IFD0


def _decode_user_comment(raw: bytes) -> str:
    head, body = raw[:8], raw[8:]
    if head == b"UNICODE\0":
        if body[:2] in (b"\xfe\xff", b"\xff\xfe"):
            order, body = ("be" if body[:2] == b"\xfe\xff" else "le"), body[2:]
        else:  # piexif writes big-endian, others the EXIF's byte order: the high bytes of Latin text are zeros
            sample = body[:512]
            order = "le" if sample[1::2].count(0) > sample[0::2].count(0) else "be"
        return body[: len(body) // 2 * 2].decode(f"utf-16-{order}", errors="replace")
    if head == b"ASCII\0\0\0":
        return body.decode("ascii", errors="replace")
    if head == b"\0" * 8:  # "undefined" charset
        return body.decode("utf-8", errors="replace")
    return raw.decode("utf-8", errors="replace")  # no header at all


# -- building one result ---------------------------------------------------------------------------------------------


class _Found:
    """One format's result as it is built: each value is checked as it is put, and what doesn't fit is said."""

    def __init__(self, found: str, tool: str, shown: str):
        self.found, self.tool, self.shown = found, tool, shown
        self.fields: dict[str, Any] = {}
        self.other: dict[str, str] = {}
        self.loras: list[dict[str, Any]] = []
        self.unmapped: list[str] = []
        self.task = "text2img"

    def result(self) -> dict[str, Any]:
        return {
            "found": self.found,
            "tool": self.tool,
            "text": self.shown,
            "fields": self.fields,
            "task": self.task,
            "other": self.other,
            "loras": self.loras,
            "unmapped": self.unmapped,
        }

    def note(self, sentence: str) -> None:
        if len(self.unmapped) < MAX_NOTES:
            self.unmapped.append(sentence)

    def show(self, key: str, value: Any) -> None:
        if value is None or value == "" or value == [] or value == {}:
            return
        if len(self.other) < MAX_OTHER:
            self.other[_cut(key, 80)] = _display(value)
        elif "…" not in self.other:
            self.other["…"] = "more settings than are shown here"

    def rest(self, data: dict[str, Any], used: set[str], labels: dict[str, str]) -> None:
        for key, value in data.items():
            if key not in used:
                self.show(labels.get(key, key), value)

    def text(self, field: str, value: Any, label: str) -> None:
        if value is None:
            return
        if isinstance(value, str):
            self.fields[field] = value
        else:
            self.note(f"The {label} ({self.tool}) is not text; it was left as it is.")

    def whole(self, field: str, value: Any, label: str, low: int, high: int) -> None:
        if value is None or value == "":
            return
        number = _as_int(value)
        if number is not None and low <= number <= high:
            self.fields[field] = number
        else:
            self.note(
                f"{label} {_quoted(value)} ({self.tool}) is not a whole number from {low} to {high}; "
                "it was left as it is."
            )

    def real(self, field: str, value: Any, label: str, low: float, high: float) -> None:
        if value is None or value == "":
            return
        number = _as_float(value)
        if number is not None and low <= number <= high:
            self.fields[field] = number
        else:
            self.note(
                f"{label} {_quoted(value)} ({self.tool}) is not a number from {low:g} to {high:g}; "
                "it was left as it is."
            )

    def common(
        self, seed: Any = None, steps: Any = None, guidance: Any = None, width: Any = None, height: Any = None
    ) -> None:
        self.whole("seed", seed, "Seed", 0, MAX_SEED)
        self.whole("steps", steps, "Steps", 1, 10_000)
        self.real("guidance_scale", guidance, "Guidance scale", 0, 100)
        self.whole("width", width, "Width", 1, 16_384)
        self.whole("height", height, "Height", 1, 16_384)

    def strength(self, task: str, value: Any) -> None:
        self.task = task
        if task != "text2img":
            self.real("strength", value, "Strength", 0, 1)

    def sampler(self, sampler: Any, schedule: Any, a1111: tuple[str, str] | None) -> None:
        """`a1111`: the (Sampler, Schedule type) AUTOMATIC1111 calls the tool's sampler, which the catalog knows."""
        if sampler is None or sampler == "":
            return
        name = schedulers.from_a1111(*a1111)[0] if a1111 else None
        if name:
            self.fields["scheduler"] = name
            return
        written = f"Sampler {_quoted(sampler)}" + (f" with scheduler {_quoted(schedule)}" if schedule else "")
        self.note(
            f"{written} ({self.tool}) has no match among this studio's schedulers; the scheduler was left as it is."
        )
        self.show("Sampler", sampler)
        self.show("Scheduler", schedule)

    def lora(self, name: Any, weight: Any, hash_: Any = None) -> None:
        number = _as_float(weight)
        if not isinstance(name, str) or not name:
            self.note(f"A LoRA without a name ({self.tool}) was left out.")
        elif number is None or not -100 <= number <= 100:
            self.note(
                f"LoRA {_quoted(name)} has weight {_quoted(weight)} ({self.tool}), not a number from -100 to 100; "
                "it was left out."
            )
        elif len(self.loras) < MAX_LORAS:
            entry: dict[str, Any] = {"name": _cut(_stem(name), 200), "weight": number}
            if isinstance(hash_, str) and hash_:
                entry["hash"] = _cut(hash_, 100)
            self.loras.append(entry)


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if value.is_integer() else None
    if isinstance(value, str) and len(value) <= 40 and re.fullmatch(r"\s*[+-]?\d+\s*", value):
        return int(value)
    return None


def _as_float(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        if isinstance(value, int | float) or (isinstance(value, str) and len(value) <= 40):
            number = float(value)
            return number if math.isfinite(number) else None
    except (ValueError, OverflowError):
        pass
    return None


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _display(value: Any) -> str:
    """A value as the page shows it among the other settings: text as it is, a model reference by its name."""
    if isinstance(value, dict) and isinstance(value.get("name") or value.get("model_name"), str):
        value = value.get("name") or value.get("model_name")
    if isinstance(value, str | int | float):
        return _cut(str(value), MAX_VALUE_CHARS)
    try:
        return _cut(json.dumps(value, ensure_ascii=False), MAX_VALUE_CHARS)
    except (ValueError, TypeError, RecursionError):
        return "…"


def _quoted(value: Any) -> str:
    return repr(_cut(value, 60)) if isinstance(value, str) else _cut(_display(value), 60)


def _shown(parsed: Any, raw: str) -> str:
    try:
        text = json.dumps(parsed, indent=2, ensure_ascii=False)
    except (ValueError, TypeError, RecursionError):
        text = raw
    return text if len(text) <= SHOWN_CHARS else text[:SHOWN_CHARS] + "\n…"


def _stem(name: str) -> str:
    """A model file's name without its folder and extension ("loras\\film.safetensors" -> "film")."""
    base = re.split(r"[\\/]", name)[-1] or name
    stem, dot, extension = base.rpartition(".")
    return stem if dot and stem and extension.lower() in {"safetensors", "ckpt", "pt", "pth", "bin", "gguf"} else base


def _is_text(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip()) and not value.lstrip().startswith("{")


def _is_json_text(value: Any) -> bool:
    return isinstance(value, str) and value.lstrip().startswith("{")


def _capped(chunks: dict[str, str], key: str, tool: str) -> str:
    text = chunks.get(key)
    if not isinstance(text, str):
        raise _Skipped(f"The image's `{key}` chunk ({tool}) is not text; it was skipped.")
    if len(text) > MAX_TEXT_BYTES:
        raise _Skipped(
            f"The image's `{key}` chunk ({tool}) is over {MAX_TEXT_BYTES // 1024} KB, far longer than any "
            "generation's parameters; it was skipped."
        )
    return text


def _json_object(chunks: dict[str, str], key: str, tool: str) -> tuple[dict[str, Any], str]:
    text = _capped(chunks, key, tool)
    try:
        value = json.loads(text)
    except (ValueError, RecursionError) as e:
        raise _Skipped(
            f"The image's `{key}` chunk ({tool}) is not valid JSON ({_cut(str(e), 120)}); it was skipped."
        ) from e
    if not isinstance(value, dict):
        raise _Skipped(f"The image's `{key}` chunk ({tool}) is JSON but not the object {tool} writes; it was skipped.")
    return value, text


# -- sampler names, as AUTOMATIC1111 calls the same sampler and schedule (the catalog knows those) -------------------

# ComfyUI's comfy/samplers.py KSAMPLER_NAMES + SAMPLER_NAMES; the pairs are Fooocus' modules/flags.py KSAMPLER table.
# Left out: the ones A1111 or the catalog lacks (dpmpp_2s_ancestral, dpm_fast, ipndm, res_multistep...) and deis,
# which ComfyUI runs at order 3 in its "tab" mode, not as diffusers' DEIS.
_COMFY_SAMPLERS = {
    "euler": "Euler", "euler_ancestral": "Euler a", "heun": "Heun", "dpm_2": "DPM2", "dpm_2_ancestral": "DPM2 a",
    "lms": "LMS", "dpmpp_2m": "DPM++ 2M", "dpmpp_sde": "DPM++ SDE",
    "dpmpp_sde_gpu": "DPM++ SDE",  # _gpu: the same sampler, its Brownian noise drawn on the GPU
    "dpmpp_2m_sde": "DPM++ 2M SDE", "dpmpp_2m_sde_gpu": "DPM++ 2M SDE", "dpmpp_3m_sde": "DPM++ 3M SDE",
    "dpmpp_3m_sde_gpu": "DPM++ 3M SDE", "ddim": "DDIM", "ddpm": "DDPM", "uni_pc": "UniPC", "uni_pc_bh2": "UniPC",
    "lcm": "LCM",
}  # fmt: skip
# ComfyUI's "normal" spaces the model's own sigmas evenly in time, as A1111's "Uniform" does.
_COMFY_SCHEDULES = {"normal": "Uniform", "karras": "Karras", "exponential": "Exponential"}
# NovelAI's (Comment "sampler" and "noise_schedule"; "native" is the model's own schedule).
_NOVELAI_SAMPLERS = {
    "k_euler": "Euler", "k_euler_ancestral": "Euler a", "k_heun": "Heun", "k_dpm_2": "DPM2",
    "k_dpm_2_ancestral": "DPM2 a", "k_lms": "LMS", "k_dpmpp_2m": "DPM++ 2M", "k_dpmpp_sde": "DPM++ SDE",
    "k_dpmpp_2m_sde": "DPM++ 2M SDE", "ddim": "DDIM", "ddim_v3": "DDIM", "plms": "PLMS",
}  # fmt: skip
_NOVELAI_SCHEDULES = {"native": "Uniform", "karras": "Karras", "exponential": "Exponential"}
# InvokeAI 3+ (invokeai/backend/stable_diffusion/schedulers/schedulers.py SCHEDULER_MAP; "_k" adds Karras sigmas).
# Left out: dpmpp_2s (single-step), dpmpp_3m (not SDE), er_sde, tcd.
_INVOKEAI_SCHEDULERS = {
    "ddim": "DDIM", "ddpm": "DDPM", "deis": "DEIS", "lms": "LMS", "pndm": "PLMS", "heun": "Heun", "euler": "Euler",
    "euler_a": "Euler a", "kdpm_2": "DPM2", "kdpm_2_a": "DPM2 a", "dpmpp_2m": "DPM++ 2M",
    "dpmpp_2m_sde": "DPM++ 2M SDE", "dpmpp_sde": "DPM++ SDE", "unipc": "UniPC", "lcm": "LCM",
}  # fmt: skip
# InvokeAI 1 and 2 (ldm/invoke/args.py SAMPLER_CHOICES, ldm/generate.py _set_scheduler).
_INVOKEAI_LEGACY_SAMPLERS = {
    "ddim": "DDIM", "plms": "PLMS", "pndm": "PLMS", "k_lms": "LMS", "k_euler": "Euler", "k_euler_a": "Euler a",
    "k_heun": "Heun", "k_dpm_2": "DPM2", "k_dpm_2_a": "DPM2 a", "k_dpmpp_2": "DPM++ 2M",
}  # fmt: skip
_KARRAS_BELOW = 30  # InvokeAI 2's ldm/models/diffusion/ksampler.py STEP_THRESHOLD


def _comfy_a1111(sampler: Any, schedule: Any) -> tuple[str, str] | None:
    if not isinstance(sampler, str) or not isinstance(schedule, str):
        return None
    sampler = sampler.removeprefix("sample_")  # early ComfyUI named them after k-diffusion's functions
    if sampler == "ddim" and schedule == "ddim_uniform":  # DDIM's own timesteps
        schedule = "normal"
    if sampler in _COMFY_SAMPLERS and schedule in _COMFY_SCHEDULES:
        return _COMFY_SAMPLERS[sampler], _COMFY_SCHEDULES[schedule]
    return None


def _named(table: dict[str, str], sampler: Any, schedules: dict[str, str], schedule: Any) -> tuple[str, str] | None:
    if isinstance(sampler, str) and isinstance(schedule, str) and sampler in table and schedule in schedules:
        return table[sampler], schedules[schedule]
    return None


def _invokeai_a1111(scheduler: Any) -> tuple[str, str] | None:
    if not isinstance(scheduler, str):
        return None
    base = scheduler.removesuffix("_k")
    return (
        (_INVOKEAI_SCHEDULERS[base], "Karras" if base != scheduler else "Uniform")
        if base in _INVOKEAI_SCHEDULERS
        else None
    )


def _legacy_sampler(found: _Found, sampler: Any) -> None:
    steps = found.fields.get("steps")
    if isinstance(sampler, str) and sampler.startswith("k_") and (steps is None or steps < _KARRAS_BELOW):
        found.note(
            f"Sampler {_quoted(sampler)} ({found.tool}) ran on Karras sigmas below {_KARRAS_BELOW} steps with .ckpt "
            "models and on the model's own with diffusers ones, and the image doesn't say which; the scheduler was "
            "left as it is."
        )
        found.show("Sampler", sampler)
        return
    known = isinstance(sampler, str) and sampler in _INVOKEAI_LEGACY_SAMPLERS
    found.sampler(sampler, None, (_INVOKEAI_LEGACY_SAMPLERS[sampler], "Uniform") if known else None)


# -- ComfyUI: the API graph in `prompt` (comfy_extras / nodes.py SaveImage writes it beside the UI graph) ------------

_SAMPLER_SEEDS = {"KSampler": "seed", "KSamplerAdvanced": "noise_seed"}
_TEXT_INPUTS = {"CLIPTextEncode": "text", "CLIPTextEncodeSDXL": "text_g", "CLIPTextEncodeSDXLRefiner": "text"}
_CONDITIONING = ("conditioning", "conditioning_1", "conditioning_2", "conditioning_to", "conditioning_from")
_NOT_LATENT = {"model", "clip", "vae", "control_net", "clip_vision", "clip_vision_output", "positive", "negative"}
_INPAINT_NODES = {"VAEEncodeForInpaint", "SetLatentNoiseMask", "InpaintModelConditioning", "LoadImageMask"}
_IMAGE_NODES = {"VAEEncode", "VAEEncodeTiled", "LoadImage"}
_LORA_NODES = {"LoraLoader", "LoraLoaderModelOnly"}


def _is_link(value: Any) -> bool:
    """An input wired to another node's output: [node id, output index]."""
    return (
        isinstance(value, list)
        and len(value) == 2
        and isinstance(value[0], str | int)
        and not isinstance(value[0], bool)
        and isinstance(value[1], int)
        and not isinstance(value[1], bool)
    )


def _inputs(node: dict[str, Any]) -> dict[str, Any]:
    inputs = node.get("inputs")
    return inputs if isinstance(inputs, dict) else {}


def _links(node: dict[str, Any], names: Collection[str] | None = None, skip: Collection[str] = ()) -> list[list]:
    return [v for k, v in _inputs(node).items() if (names is None or k in names) and k not in skip and _is_link(v)]


Follow = Callable[[dict[str, Any], int], list[list]]


def _walk(graph: dict[str, dict], starts: list[list], follow: Follow, limit: int) -> list[tuple[str, dict, int]]:
    """(id, node, output index) of the nodes reached from the links `starts`, depth first in input order, each once
    and at most `limit` of them: an uploaded graph may hold cycles or thousands of nodes."""
    stack, seen, reached = list(reversed(starts)), set(), []
    while stack and len(reached) < limit:
        node_id, output = stack.pop()
        node_id = str(node_id)
        if node_id in seen or node_id not in graph:
            continue
        seen.add(node_id)
        reached.append((node_id, graph[node_id], output))
        stack.extend(reversed(follow(graph[node_id], output)))
    return reached


def _value(graph: dict[str, dict], value: Any, name: str) -> Any:
    """An input's value; one wired to a primitive node (PrimitiveInt, a seed node) is read from it, a few hops at
    most. None when the value sits in a node this can't read."""
    for _ in range(4):
        if not _is_link(value):
            return value
        inputs = _inputs(graph.get(str(value[0])) or {})
        if name in inputs or "value" in inputs:
            value = inputs.get(name, inputs.get("value"))
        elif len(inputs) == 1:
            value = next(iter(inputs.values()))
        else:
            return None
    return None if _is_link(value) else value


def _read_comfyui(chunks: dict[str, str]) -> dict[str, Any]:
    graph, raw = _json_object(chunks, "prompt", "ComfyUI")
    nodes = {str(k): v for k, v in graph.items() if isinstance(v, dict) and isinstance(v.get("class_type"), str)}
    if not nodes:
        raise _Skipped("The image's `prompt` chunk (ComfyUI) is JSON but holds no ComfyUI nodes; it was skipped.")
    found = _Found("comfyui", "ComfyUI", _shown(graph, raw))
    samplers = [i for i, n in nodes.items() if n["class_type"] in _SAMPLER_SEEDS]
    if not samplers:
        found.note(
            "The graph has no KSampler or KSamplerAdvanced node, the samplers this studio reads; nothing was mapped."
        )
        return found.result()
    saves = [[i, 0] for i, n in nodes.items() if "save" in n["class_type"].lower()]
    saved = {i for i, _, _ in _walk(nodes, saves, lambda n, _: _links(n), len(nodes))}
    chosen = next((i for i in samplers if i in saved), samplers[0])
    if len(samplers) > 1:
        which = "the first that feeds a SaveImage" if chosen in saved else "the first"
        found.note(
            f"The graph has {len(samplers)} samplers; node {chosen} ({nodes[chosen]['class_type']}), {which}, was "
            "read and the others were ignored."
        )
    _read_comfy_sampler(found, nodes, chosen)
    return found.result()


def _read_comfy_sampler(found: _Found, nodes: dict[str, dict], chosen: str) -> None:
    node, kind = nodes[chosen], nodes[chosen]["class_type"]
    inputs = _inputs(node)

    def value(name: str) -> Any:
        resolved = _value(nodes, inputs.get(name), name)
        if _is_link(inputs.get(name)) and resolved is None:
            found.note(f"The sampler's {name} comes from a node this studio can't read; it was left as it is.")
        return resolved

    found.common(seed=value(_SAMPLER_SEEDS[kind]), steps=value("steps"), guidance=value("cfg"))
    sampler, schedule = value("sampler_name"), value("scheduler")
    found.sampler(sampler, schedule, _comfy_a1111(sampler, schedule))
    inpaint = False
    for field, name in (("prompt", "positive"), ("negative_prompt", "negative")):
        if _is_link(inputs.get(name)):
            texts, inpainting = _conditioning_texts(nodes, inputs[name])
            inpaint |= inpainting
            if texts:
                found.text(field, texts[0], f"{name} prompt")
            else:
                found.note(f"The {name} prompt comes from nodes this studio doesn't read; it was left as it is.")
            if len(texts) > 1:
                found.note(f"The {name} conditioning combines {len(texts)} prompts; the first one was taken.")
    image = sized = False
    latent = [inputs["latent_image"]] if _is_link(inputs.get("latent_image")) else []
    for _, upstream, _ in _walk(nodes, latent, lambda n, _: _links(n, skip=_NOT_LATENT), _WALK_LIMIT):
        up_kind, up_inputs = upstream["class_type"], _inputs(upstream)
        inpaint |= up_kind in _INPAINT_NODES or _is_link(up_inputs.get("mask"))
        image |= up_kind in _IMAGE_NODES
        if not sized and up_kind.startswith("Empty") and "Latent" in up_kind and "width" in up_inputs:
            sized = True
            found.common(width=_value(nodes, up_inputs.get("width"), "width"))
            found.common(height=_value(nodes, up_inputs.get("height"), "height"))
            found.show("Batch size", _value(nodes, up_inputs.get("batch_size"), "batch_size"))
    strength = _comfy_strength(found, kind, value)
    task = "inpaint" if inpaint else "img2img" if image and strength is not None and strength < 1 else "text2img"
    found.strength(task, strength)
    if task == "text2img" and strength not in (None, 1.0):
        found.show("Denoise", strength)
    if _is_link(inputs.get("model")):
        chain = _walk(nodes, [inputs["model"]], lambda n, _: _links(n, names=("model",)), _WALK_LIMIT)
        for _, upstream, _ in reversed(chain):  # the loader nearest the checkpoint was applied first
            up = _inputs(upstream)
            if upstream["class_type"] in _LORA_NODES:
                found.lora(
                    _value(nodes, up.get("lora_name"), "lora_name"),
                    _value(nodes, up.get("strength_model"), "strength_model"),
                )
            for key in ("ckpt_name", "unet_name"):
                if key in up:
                    found.show("Model", _value(nodes, up[key], key))


def _comfy_strength(found: _Found, kind: str, value: Callable[[str], Any]) -> float | None:
    if kind == "KSamplerAdvanced":
        # Starting at step s of n runs the last n - s steps of an n-step schedule: diffusers' strength (n - s) / n.
        start, steps = _as_int(value("start_at_step")), found.fields.get("steps")
        for name in ("add_noise", "start_at_step", "end_at_step"):
            found.show(name.replace("_", " ").capitalize(), value(name))
        return (steps - start) / steps if start is not None and steps and 0 <= start < steps else None
    denoise = value("denoise")
    strength = _as_float(denoise)
    if denoise is not None and (strength is None or not 0 < strength <= 1):
        found.note(f"Denoise {_quoted(denoise)} (ComfyUI) is not a number above 0 and at most 1; it was left as it is.")
        return None
    return strength


def _conditioning_texts(nodes: dict[str, dict], link: list) -> tuple[list[str], bool]:
    """The prompts that feed one conditioning input, in input order, and whether an inpainting node is on the way."""

    def follow(node: dict[str, Any], output: int) -> list[list]:
        if node["class_type"] in _TEXT_INPUTS:
            return []
        inputs = _inputs(node)
        if "positive" in inputs and "negative" in inputs:  # ControlNetApplyAdvanced & co: output 0 positive, 1 negative
            return _links(node, names=("positive",) if output == 0 else ("negative",) if output == 1 else ())
        return _links(node, names=_CONDITIONING)

    texts, inpaint = [], False
    for _, node, _ in _walk(nodes, [link], follow, _WALK_LIMIT):
        inpaint |= node["class_type"] in _INPAINT_NODES
        if node["class_type"] in _TEXT_INPUTS:
            text = _value(nodes, _inputs(node).get(_TEXT_INPUTS[node["class_type"]]), "text")
            if isinstance(text, str):
                texts.append(text)
    return texts, inpaint


def _read_comfyui_workflow(chunks: dict[str, str]) -> dict[str, Any]:
    workflow, raw = _json_object(chunks, "workflow", "ComfyUI")
    found = _Found("comfyui", "ComfyUI", _shown(workflow, raw))
    if "prompt" in chunks:
        found.note(
            "The image's API graph (`prompt`) could not be read, and its UI graph (`workflow`) alone doesn't give "
            "the parameters here; nothing was mapped."
        )
    else:
        found.note(
            "The image holds ComfyUI's UI graph (`workflow`) only, not the API graph (`prompt`) its parameters are "
            "read from; nothing was mapped."
        )
    return found.result()


# -- InvokeAI: `invokeai_metadata` (3+), `sd-metadata` (2), `Dream` (1) --------------------------------------------

_INVOKEAI_LABELS = {
    "vae": "VAE", "clip_skip": "Clip skip", "cfg_rescale_multiplier": "CFG rescale", "rand_device": "Noise device",
    "refiner_model": "Refiner", "refiner_steps": "Refiner steps", "refiner_cfg_scale": "Refiner CFG scale",
    "refiner_scheduler": "Refiner scheduler", "refiner_start": "Refiner start",
    "positive_style_prompt": "Style prompt", "negative_style_prompt": "Negative style prompt",
    "app_version": "Version", "init_image": "Init image", "controlnets": "ControlNets", "ipAdapters": "IP Adapters",
    "t2iAdapters": "T2I Adapters", "hrf_enabled": "High-res fix", "hrf_method": "High-res fix method",
    "hrf_strength": "High-res fix strength",
}  # fmt: skip
_INVOKEAI_TASKS = {"txt2img": "text2img", "img2img": "img2img", "inpaint": "inpaint", "outpaint": "inpaint"}


def _read_invokeai(chunks: dict[str, str]) -> dict[str, Any]:
    """invokeai/app/invocations/metadata.py CoreMetadataInvocation (3.0's CoreMetadata: `lora` for `model`)."""
    meta, raw = _json_object(chunks, "invokeai_metadata", "InvokeAI 3+")
    found = _Found("invokeai", "InvokeAI 3+", _shown(meta, raw))
    found.text("prompt", meta.get("positive_prompt"), "positive prompt")
    found.text("negative_prompt", meta.get("negative_prompt"), "negative prompt")
    found.common(meta.get("seed"), meta.get("steps"), meta.get("cfg_scale"), meta.get("width"), meta.get("height"))
    found.sampler(meta.get("scheduler"), None, _invokeai_a1111(meta.get("scheduler")))
    mode = meta.get("generation_mode")
    task = _INVOKEAI_TASKS.get(mode.rpartition("_")[2]) if isinstance(mode, str) else None  # "sdxl_img2img"
    if mode is not None and task is None:
        found.note(
            f"Generation mode {_quoted(mode)} (InvokeAI 3+) is not one this studio knows; it was read as text to image."
        )
    if isinstance(mode, str) and mode.endswith("outpaint"):
        found.note("InvokeAI outpainted this image; it goes to inpainting, which needs the larger canvas and its mask.")
    found.strength(task or "text2img", meta.get("strength"))
    model = meta.get("model")
    if isinstance(model, dict):
        found.show("Model", model.get("name") or model.get("model_name"))
        found.show("Model hash", model.get("hash"))
        found.show("Base model", model.get("base") or model.get("base_model"))
    else:
        found.show("Model", model)
    loras = meta.get("loras")
    for entry in loras[:MAX_LORAS] if isinstance(loras, list) else []:
        ref = (entry.get("model") or entry.get("lora")) if isinstance(entry, dict) else None
        ref = ref if isinstance(ref, dict) else {}
        weight = entry.get("weight") if isinstance(entry, dict) else None
        found.lora(ref.get("name") or ref.get("model_name") or ref.get("key"), weight, ref.get("hash"))
    used = {"positive_prompt", "negative_prompt", "seed", "steps", "cfg_scale", "width", "height", "generation_mode"}
    used |= {"model", "loras", "scheduler"} | ({"strength"} if found.task != "text2img" else set())
    found.rest(meta, used, _INVOKEAI_LABELS)
    return found.result()


def _split_negative(prompt: str) -> tuple[str, str]:
    """InvokeAI 1 and 2 write the negative words in square brackets inside the prompt: "a cat [blurry, dog]"."""
    negative = ", ".join(part.strip() for part in re.findall(r"\[([^\[\]]*)\]", prompt) if part.strip())
    return re.sub(r"\[[^\[\]]*\]", "", prompt).strip(), negative


def _read_invokeai_2(chunks: dict[str, str]) -> dict[str, Any]:
    """ldm/invoke/args.py metadata_dumps (v2.3): {"model_weights", "model_hash", "app_version", "image": {...}}."""
    meta, raw = _json_object(chunks, "sd-metadata", "InvokeAI 2")
    found = _Found("invokeai", "InvokeAI 2", _shown(meta, raw))
    image, images = meta.get("image"), meta.get("images")
    if not isinstance(image, dict) and isinstance(images, list) and images and isinstance(images[0], dict):
        image = images[0]
        found.note(f"The image is a grid of {len(images)}; the first one's parameters were read.")
    if not isinstance(image, dict):
        raise _Skipped("The image's `sd-metadata` chunk (InvokeAI 2) has no `image` entry; it was skipped.")
    prompt = image.get("prompt")
    if isinstance(prompt, list):
        parts = [p for p in prompt[:100] if isinstance(p, dict) and isinstance(p.get("prompt"), str)]
        if any(p.get("weight", 1) != 1 for p in parts):
            found.note(f"InvokeAI weighted {len(parts)} sub-prompts; they were joined without their weights.")
        prompt = ", ".join(p["prompt"] for p in parts) if parts else None
    if isinstance(prompt, str):
        found.fields["prompt"], found.fields["negative_prompt"] = _split_negative(prompt)
    else:
        found.text("prompt", prompt, "prompt")
    found.common(image.get("seed"), image.get("steps"), image.get("cfg_scale"), image.get("width"), image.get("height"))
    _legacy_sampler(found, image.get("sampler"))
    kind = image.get("type")
    task = (
        "inpaint" if image.get("init_mask") else "img2img" if kind == "img2img" or image.get("init_img") else "text2img"
    )
    found.strength(task, image.get("strength", image.get("strength_steps")))  # 2.3 renamed it for img2img
    found.show("Model", meta.get("model_weights"))
    found.show("Model hash", meta.get("model_hash"))
    found.show("Version", meta.get("app_version"))
    used = {"prompt", "seed", "steps", "cfg_scale", "width", "height", "sampler", "type"}
    used |= {"strength", "strength_steps"} if found.task != "text2img" else set()
    found.rest(image, used, {"variations": "Variations", "postprocessing": "Postprocessing", "init_img": "Init image"})
    return found.result()


_DREAM_SWITCHES = {"-s": "steps", "-S": "seed", "-W": "width", "-H": "height", "-C": "cfg_scale", "-A": "sampler"}
_DREAM_SWITCHES |= {"-f": "strength", "-I": "init_img", "-M": "init_mask"}
_DREAM_LABELS = {"-G": "Face restoration strength", "-ft": "Face tool", "-cf": "CodeFormer fidelity", "-U": "Upscale"}


def _read_dream(chunks: dict[str, str]) -> dict[str, Any]:
    """ldm/invoke/args.py dream_prompt_str: `"prompt [negative]" -s 50 -S 42 -W 512 -H 512 -C 7.5 -A k_lms`."""
    text = _capped(chunks, "Dream", "InvokeAI 1 (Dream)")
    end = text.rfind('"')  # the switches never hold a quote, the prompt may
    if not text.startswith('"') or end < 1:
        raise _Skipped(
            "The image's `Dream` chunk (InvokeAI 1 (Dream)) doesn't start with a quoted prompt; it was skipped."
        )
    found = _Found("invokeai", "InvokeAI 1 (Dream)", _cut(text, SHOWN_CHARS))
    switches: dict[str, list[str]] = {}
    current: list[str] = []
    for token in text[end + 1 :].split():
        if re.fullmatch(r"--?[A-Za-z][\w-]*", token):
            current = switches.setdefault(token, [])
        else:
            current.append(token)
    values = {_DREAM_SWITCHES.get(k, k): " ".join(v) for k, v in switches.items()}
    found.fields["prompt"], found.fields["negative_prompt"] = _split_negative(text[1:end])
    found.common(
        values.get("seed"), values.get("steps"), values.get("cfg_scale"), values.get("width"), values.get("height")
    )
    _legacy_sampler(found, values.get("sampler"))
    task = "inpaint" if values.get("init_mask") else "img2img" if values.get("init_img") else "text2img"
    found.strength(task, values.get("strength"))
    used = {"seed", "steps", "cfg_scale", "width", "height", "sampler"} | (
        {"strength"} if task != "text2img" else set()
    )
    for key, value in values.items():
        if key not in used:
            found.show(_DREAM_LABELS.get(key, key), value or "yes")
    return found.result()


# -- NovelAI: Software "NovelAI", Description (prompt), Source (model), Comment (JSON) -----------------------------

_NOVELAI_TASKS = {"PromptGenerateRequest": "text2img", "Img2ImgRequest": "img2img", "NativeInfillingRequest": "inpaint"}


def _read_novelai(chunks: dict[str, str]) -> dict[str, Any]:
    """Comment keys as NovelAI writes them (sd-parsers' tests/resources/parsers/NovelAI; 6DammK9's NAI v3 notes)."""
    comment, _ = _json_object(chunks, "Comment", "NovelAI")
    description = _capped(chunks, "Description", "NovelAI") if "Description" in chunks else None
    shown = {"Description": description, "Source": chunks.get("Source"), "Comment": comment}
    found = _Found("novelai", "NovelAI", _shown(shown, ""))
    found.text("prompt", description if description is not None else comment.get("prompt"), "prompt")
    negative = comment.get("uc", comment.get("negative_prompt"))
    v4 = comment.get("v4_negative_prompt")
    if negative is None and isinstance(v4, dict) and isinstance(v4.get("caption"), dict):
        negative = v4["caption"].get("base_caption")
    found.text("negative_prompt", negative, "negative prompt")
    found.common(
        comment.get("seed"), comment.get("steps"), comment.get("scale"), comment.get("width"), comment.get("height")
    )
    sampler, schedule = comment.get("sampler"), comment.get("noise_schedule", "native")
    found.sampler(sampler, schedule, _named(_NOVELAI_SAMPLERS, sampler, _NOVELAI_SCHEDULES, schedule))
    request = comment.get("request_type")
    used = {"prompt", "uc", "negative_prompt", "seed", "steps", "scale", "width", "height", "sampler", "noise_schedule"}
    if isinstance(request, str) and request in _NOVELAI_TASKS:
        found.strength(_NOVELAI_TASKS[request], comment.get("strength"))
        used |= {"request_type"} | ({"strength"} if found.task != "text2img" else set())
    elif "strength" in comment:
        found.note(
            "NovelAI's older metadata records a strength for every image, not whether an image was given; it was "
            "read as text to image."
        )
    found.show("Model", chunks.get("Source"))
    found.rest(comment, used, {})
    return found.result()


# -- Fooocus and SwarmUI: JSON in `parameters` -----------------------------------------------------------------------


def _read_parameters_json(chunks: dict[str, str]) -> dict[str, Any]:
    text = chunks.get("parameters", "")
    scheme = chunks.get("fooocus_scheme")
    tool = "SwarmUI" if "sui_image_params" in text[:MAX_TEXT_BYTES] else "Fooocus" if scheme else "Fooocus or SwarmUI"
    data, raw = _json_object(chunks, "parameters", tool)
    if isinstance(data.get("sui_image_params"), dict):
        return _read_swarmui(data, raw)
    version = data.get("version", data.get("Version"))
    if scheme == "fooocus" or "metadata_scheme" in data or (isinstance(version, str) and version.startswith("Fooocus")):
        return _read_fooocus(data, raw)
    if {"Prompt", "Base Model"} <= data.keys() or {"prompt", "base_model", "guidance_scale"} <= data.keys():
        return _read_fooocus(data, raw)  # older Fooocus, without a version
    keys = ", ".join(list(data)[:8])
    raise _Skipped(
        f"The image's `parameters` chunk holds JSON that is neither Fooocus' nor SwarmUI's (keys: {_cut(keys, 200)}); "
        "it was skipped."
    )


def _read_fooocus(data: dict[str, Any], raw: str) -> dict[str, Any]:
    """modules/async_worker.py save_and_log + meta_parser.py FooocusMetadataParser.to_string; each key may also be
    written as its label ("Guidance Scale"), which Fooocus' own reader falls back to."""
    labels = {"negative_prompt": "Negative Prompt", "guidance_scale": "Guidance Scale", "base_model": "Base Model"}
    labels |= {
        "refiner_model": "Refiner Model",
        "refiner_switch": "Refiner Switch",
        "prompt_expansion": "Fooocus V2 Expansion",
    }
    labels |= {"clip_skip": "CLIP Skip", "adm_guidance": "ADM Guidance", "base_model_hash": "Model hash", "vae": "VAE"}

    def get(key: str) -> Any:
        return data.get(key, data.get(labels.get(key, key.replace("_", " ").title())))

    version = get("version")
    tool = version if isinstance(version, str) and version.startswith("Fooocus") and len(version) <= 40 else "Fooocus"
    found = _Found("fooocus", tool, _shown(data, raw))
    # Fooocus encodes the prompt with its styles and expansion applied (full_prompt); its A1111 scheme writes that.
    for field, full, plain in (
        ("prompt", "full_prompt", "prompt"),
        ("negative_prompt", "full_negative_prompt", "negative_prompt"),
    ):
        parts = data.get(full)
        if isinstance(parts, list) and parts and all(isinstance(p, str) for p in parts):
            found.fields[field] = ", ".join(parts)
            found.show(f"Raw {plain.replace('_', ' ')}", get(plain))
        else:
            found.text(field, get(plain), plain.replace("_", " "))
    size = get("resolution")
    match = (
        re.fullmatch(r"\(\s*'?(\d{1,6})'?\s*,\s*'?(\d{1,6})'?\s*\)", size.strip()) if isinstance(size, str) else None
    )
    if size is not None and match is None:
        found.note(f"Resolution {_quoted(size)} ({tool}) is not a (width, height) pair; the size was left as it is.")
    found.common(get("seed"), get("steps"), get("guidance_scale"), *(match.groups() if match else (None, None)))
    sampler, schedule = get("sampler"), get("scheduler")
    found.sampler(sampler, schedule, _comfy_a1111(sampler, schedule))
    used = {"prompt", "negative_prompt", "full_prompt", "full_negative_prompt", "resolution", "seed", "steps"}
    used |= {"guidance_scale", "sampler", "scheduler", "version", "metadata_scheme", "loras", "base_model"}
    found.show("Model", get("base_model"))
    loras = data.get("loras")
    for entry in loras[:MAX_LORAS] if isinstance(loras, list) else []:  # [[name, weight, hash]]
        if isinstance(entry, list) and len(entry) >= 2:
            found.lora(entry[0], entry[1], entry[2] if len(entry) > 2 else None)
        else:
            found.lora(None, None)
    for key, value in data.items():  # older: "lora_combined_1" / "LoRA 1": "[True : ]name : weight"
        if re.fullmatch(r"lora_combined_\d+|LoRA \d+", key) and isinstance(value, str):
            used.add(key)
            parts = value.split(" : ")
            if len(parts) in (2, 3) and parts[0] != "False":
                found.lora(parts[-2], parts[-1])
    canonical = {label: key for key, label in labels.items()}
    for key, value in data.items():
        unset_refiner = key in ("refiner_model", "Refiner Model") and value == "None"
        if key not in used and canonical.get(key, key.lower().replace(" ", "_")) not in used and not unset_refiner:
            found.show(labels.get(key, key.replace("_", " ").capitalize()), value)
    return found.result()


def _split_list(value: Any) -> list[Any]:
    """SwarmUI lists are JSON lists or comma-separated strings (docs/Image Metadata Format.md)."""
    if isinstance(value, list):
        return value[:MAX_LORAS]
    return [part.strip() for part in value.split(",")][:MAX_LORAS] if isinstance(value, str) and value else []


def _read_swarmui(data: dict[str, Any], raw: str) -> dict[str, Any]:
    """docs/Image Metadata Format.md: {"sui_image_params": {param id: value}, "sui_extra_data", "sui_models"}; the
    ids are src/Text2Image/T2IParamTypes.cs names, lowercased without spaces; samplers are ComfyUI's."""
    params = data["sui_image_params"]
    found = _Found("swarmui", "SwarmUI", _shown(data, raw))
    found.text("prompt", params.get("prompt"), "prompt")
    found.text("negative_prompt", params.get("negativeprompt"), "negative prompt")
    seed = params.get("seed")
    if _as_int(seed) == -1:
        found.note("The seed was random (-1) and SwarmUI did not record the one it drew; it was left as it is.")
        seed = None
    found.common(seed, params.get("steps"), params.get("cfgscale"), params.get("width"), params.get("height"))
    sampler = params.get("sampler", params.get("comfyuisampler"))
    schedule = params.get("scheduler", params.get("comfyuischeduler"))
    if sampler is not None and schedule is None:
        found.note(
            f"Sampler {_quoted(sampler)} (SwarmUI) was recorded without its scheduler, whose default depends on the "
            "model; the scheduler was left as it is."
        )
        found.show("Sampler", sampler)
    else:
        found.sampler(sampler, schedule, _comfy_a1111(sampler, schedule))
    task = "inpaint" if params.get("maskimage") else "img2img" if "initimagecreativity" in params else "text2img"
    found.strength(task, params.get("initimagecreativity"))
    found.show("Model", params.get("model"))
    models = data.get("sui_models") if isinstance(data.get("sui_models"), list) else []
    hashes = {
        _stem(m["name"]): m.get("hash") for m in models[:200] if isinstance(m, dict) and isinstance(m.get("name"), str)
    }
    if isinstance(params.get("model"), str):
        found.show("Model hash", hashes.get(_stem(params["model"])))
    names, weights = _split_list(params.get("loras")), _split_list(params.get("loraweights"))
    for index, name in enumerate(names):
        found.lora(
            name,
            weights[index] if index < len(weights) else 1.0,
            hashes.get(_stem(name)) if isinstance(name, str) else None,
        )
    used = {"prompt", "negativeprompt", "seed", "steps", "cfgscale", "width", "height", "sampler", "scheduler"}
    used |= {"comfyuisampler", "comfyuischeduler", "initimagecreativity", "model", "loras", "loraweights"}
    found.rest(params, used, {"swarm_version": "Version", "aspectratio": "Aspect ratio", "vae": "VAE"})
    extra = data.get("sui_extra_data")
    found.rest(extra if isinstance(extra, dict) else {}, set(), {})
    return found.result()


@dataclass(frozen=True)
class _Reader:
    key: str  # the chunk a problem names
    tool: str
    present: Callable[[dict[str, str]], bool]
    read: Callable[[dict[str, str]], dict[str, Any]]
    after_text: bool = False  # skipped when the image also has AUTOMATIC1111's plain text


_READERS = (
    _Reader("parameters", "Fooocus or SwarmUI", lambda c: _is_json_text(c.get("parameters")), _read_parameters_json),
    _Reader("invokeai_metadata", "InvokeAI 3+", lambda c: "invokeai_metadata" in c, _read_invokeai),
    _Reader("sd-metadata", "InvokeAI 2", lambda c: "sd-metadata" in c, _read_invokeai_2),
    _Reader("Dream", "InvokeAI 1 (Dream)", lambda c: "Dream" in c, _read_dream),
    _Reader("Comment", "NovelAI", lambda c: str(c.get("Software", "")).strip() == "NovelAI", _read_novelai),
    # A `prompt` chunk that is plain text is some other tool's (Easy Diffusion writes one), not ComfyUI's graph.
    _Reader("prompt", "ComfyUI", lambda c: _is_json_text(c.get("prompt")), _read_comfyui, after_text=True),
    _Reader("workflow", "ComfyUI", lambda c: "workflow" in c, _read_comfyui_workflow, after_text=True),
)
