"""AUTOMATIC1111's infotext, the `parameters` text every Stable Diffusion tool reads, written as A1111 writes it.

    a lighthouse at dusk <lora:ink-style:0.8>
    Negative prompt: blurry
    Steps: 20, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, Seed: 42, Size: 512x768, Model hash: 6ce0161689,
    Model: v1-5-pruned-emaonly, RNG: CPU, Lora hashes: "ink-style: 0b1c2d3e4f5a", Version: diffusion-studio

The rules (A1111's `processing.create_infotext` and `infotext_utils`; there is no spec beyond its code):

- `Sampler` and `Schedule type` are always both written. A1111 reads a missing schedule as "Automatic", which is
  Karras for DPM++ 2M and Exponential for DPM++ 2M SDE, so a run without Karras sigmas would come back with them.
- A value holding a comma, a colon or a newline is written as a JSON string (A1111's `quote`).
- `Model` is the checkpoint's short name: a file's stem, a folder's name, a Hub id. `Model hash` is the first 10 hex
  digits of the file's SHA-256, for a single-file checkpoint only. A diffusers folder has no one file, and A1111 and
  the model sites hash only files.
- `RNG: CPU`: every generator here is a CPU one. Without the key A1111 assumes GPU noise, which is other noise.
- LoRAs are `<lora:name:weight>` tags at the prompt's end, and `Lora hashes: "name: hash"`. The hash is the first
  12 hex digits of the SHA-256 of the file's tensor data, skipping its header (A1111's `addnet_hash_safetensors`,
  which kohya's trainer writes too).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import threading
from pathlib import Path
from typing import Any

from core import schedulers

VERSION = "diffusion-studio"
_BLOCK = 1024 * 1024


def quote(value: Any) -> str:
    """A value as A1111 writes it: as is, or as a JSON string when it holds `,`, `:` or a newline."""
    text = str(value)
    if "," not in text and ":" not in text and "\n" not in text:
        return text
    return json.dumps(text, ensure_ascii=False)


def number(value: Any) -> str:
    """7.0 -> `7`, 7.5 -> `7.5`: A1111 writes its floats the way Python prints them; whole ones read alike."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def model_name(source: str | None) -> str | None:
    """The checkpoint's short name: a Hub id as it is, a local file's stem, a folder's name (never a full path)."""
    if not source:
        return None
    path = Path(source).expanduser()
    if path.is_absolute() or source.startswith((".", "~")) or path.exists():
        return path.stem if path.suffix in (".safetensors", ".ckpt") else path.name
    return source


NETWORK_TAG = re.compile(r"<(\w+):([^<>]{1,256})>")  # A1111's extra-network tags: `<lora:name:weight>`


def network_tags(prompt: str) -> tuple[str, list[tuple[str, str, list[str]]]]:
    """A1111's extra-network tags out of a prompt (at most 64): the prompt without them (spaces and a comma left
    by a tag tidied), and each as (the tag as written, its kind in lower case, its `:`-separated arguments)."""
    tags = [(m[0], m[1].lower(), m[2].split(":")) for m in NETWORK_TAG.finditer(prompt)][:64]
    if not tags:
        return prompt, []
    lines = NETWORK_TAG.sub("", prompt).split("\n")
    return "\n".join(re.sub(" {2,}", " ", line).strip().rstrip(",").rstrip() for line in lines).strip(), tags


def lora_name(lora: Any) -> str:
    """What an A1111 prompt calls a LoRA: its file's stem (a folder's or a repo's name when the file is the
    default `pytorch_lora_weights`), without the `:` and `,` A1111 strips from it."""
    weight_name = getattr(lora, "weight_name", None)
    if weight_name and Path(weight_name).stem != "pytorch_lora_weights":
        name = Path(weight_name).stem
    else:
        name = Path(str(lora.source).rstrip("/")).name.removesuffix(".safetensors")
    return name.replace(":", "").replace(",", "") or "lora"


def lora_file(lora: Any) -> Path | None:
    """The .safetensors file a loaded LoRA came from, where it is on this machine (a Hub LoRA: in the cache)."""
    location, weight_name = Path(lora.location).expanduser(), lora.weight_name
    if location.is_dir():
        if weight_name:
            return location / weight_name if (location / weight_name).is_file() else None
        found = sorted(location.glob("*.safetensors"))
        default = location / "pytorch_lora_weights.safetensors"
        return default if default.is_file() else (found[0] if len(found) == 1 else None)
    from huggingface_hub import try_to_load_from_cache

    try:
        cached = try_to_load_from_cache(lora.location, weight_name or "pytorch_lora_weights.safetensors")
    except Exception:  # not a repo id huggingface_hub accepts
        return None
    return Path(cached) if isinstance(cached, str) else None


def file_hash(path: Path, *, skip_header: bool = False) -> str:
    """The SHA-256 of a file (of its tensor data alone with `skip_header`: A1111's LoRA hash), cached by path,
    size and modification time: a checkpoint takes seconds to hash and is hashed once per process.

    hashlib has the digest; the header skip is A1111's, so it is written here (no library offers it)."""
    stat = path.stat()
    return _hash(str(path.resolve()), stat.st_size, stat.st_mtime_ns, skip_header)


@functools.lru_cache(maxsize=256)
def _hash(path: str, _size: int, _mtime_ns: int, skip_header: bool) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        if skip_header:
            header = int.from_bytes(f.read(8), "little")
            f.seek(8 + header)
        for block in iter(lambda: f.read(_BLOCK), b""):
            digest.update(block)
    return digest.hexdigest()


_lock = threading.Lock()


def model_hash(single_file: Path | str | None) -> str | None:
    """A1111's `Model hash` of a single-file checkpoint (10 hex digits), or None (a folder, a Hub repo)."""
    if not single_file or not os.path.isfile(single_file):
        return None
    with _lock:  # two runs finishing together hash a new file once
        return file_hash(Path(single_file))[:10]


def lora_hash(lora: Any) -> str | None:
    """A1111's LoRA hash (12 hex digits) of a loaded LoRA's file, or None where the file isn't on this machine."""
    path = lora_file(lora)
    if path is None or not path.is_file():
        return None
    with _lock:
        return file_hash(path, skip_header=path.suffix == ".safetensors")[:12]


def sampler_and_schedule(scheduler: Any) -> tuple[str | None, str | None]:
    """(Sampler, Schedule type) of a run's built scheduler in A1111's names: its catalog entry's (for `default`
    too, the checkpoint's own scheduler's entry). A class the catalog lacks (a flow-matching Euler) is named by
    its class, with the schedule its sigma flags say; (None, None) for a pipeline with a scheduler per stage."""
    if scheduler is None:
        return None, None
    entry = schedulers.of_scheduler(scheduler)
    if entry is not None:
        return entry.a1111
    config = scheduler.config
    schedule = next(
        (name for flag, name in _SCHEDULE_FLAGS.items() if config.get(flag)),
        "Uniform",
    )
    return type(scheduler).__name__.removesuffix("Scheduler"), schedule


_SCHEDULE_FLAGS = {"use_karras_sigmas": "Karras", "use_exponential_sigmas": "Exponential", "use_beta_sigmas": "Beta"}


def infotext(info: dict[str, Any], index: int = 0) -> str:
    """The `parameters` text of image `index` of a run, from its info."""
    prompt = info.get("prompt", "") or ""
    loras = info.get("loras") or []
    tags = " ".join(f"<lora:{lora['name']}:{number(lora['weight'])}>" for lora in loras)
    prompt = f"{prompt} {tags}".strip() if tags else prompt
    sampler, schedule = info.get("sampler"), info.get("schedule_type")
    seeds = info.get("seeds") or []
    width, height = info.get("width"), info.get("height")
    hashes = ", ".join(f"{lora['name']}: {lora['hash']}" for lora in loras if lora.get("hash"))
    vae = info.get("vae")
    fields: dict[str, Any] = {
        "Steps": info.get("steps"),
        "Sampler": sampler,
        "Schedule type": schedule,
        "CFG scale": number(info["guidance_scale"]) if info.get("guidance_scale") is not None else None,
        "Seed": seeds[index] if index < len(seeds) else None,
        "Size": f"{width}x{height}" if width and height else None,
        "Model hash": info.get("model_hash"),
        "Model": model_name(info.get("model")),
        "VAE": model_name(vae) if vae and vae != "default" else None,
        "Denoising strength": number(info["strength"]) if info.get("strength") is not None else None,
        "RNG": "CPU",
        "Lora hashes": hashes or None,
        "Version": VERSION,
    }
    settings = ", ".join(f"{key}: {quote(value)}" for key, value in fields.items() if value is not None)
    negative = info.get("negative_prompt")
    lines = [prompt] + ([f"Negative prompt: {negative}"] if negative else []) + [settings]
    return "\n".join(lines).strip()
