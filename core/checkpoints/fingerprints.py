"""Content fingerprints of a checkpoint's components, so identical weights are loaded once across checkpoints.

Many fine-tunes of one base ship byte-identical text encoders and VAEs. A component's fingerprint covers its
config and the weight files of the chosen variant; two components with the same fingerprint (and the same dtype
and device) are the same module, so the second checkpoint reuses the first's instead of loading it again.
"""

from __future__ import annotations

import hashlib
import os
import threading
import weakref
from pathlib import Path
from typing import Any

from core.checkpoints import DEFAULT_VARIANT, weight_variant

_CHUNK = 8 * 1024 * 1024


class FileHashes:
    """sha256 of files, remembered by (real path, size, mtime) so each file is read at most once per run."""

    def __init__(self) -> None:
        self._known: dict[tuple[str, int, int], str] = {}
        self._lock = threading.Lock()

    def sha256(self, path: Path) -> str:
        real = Path(os.path.realpath(path))
        # In the Hugging Face cache, weight files are symlinks to blobs named by their sha256: no need to read them.
        if real.parent.name == "blobs" and len(real.name) == 64:
            return real.name
        stat = real.stat()
        key = (str(real), stat.st_size, stat.st_mtime_ns)
        with self._lock:
            if key in self._known:
                return self._known[key]
        digest = hashlib.sha256()
        with open(real, "rb") as f:
            while chunk := f.read(_CHUNK):
                digest.update(chunk)
        with self._lock:
            self._known[key] = digest.hexdigest()
        return self._known[key]


def component_fingerprint(folder: Path, component: str, variant: str, hashes: FileHashes) -> str | None:
    """The fingerprint of `folder/component` for `variant` (config + weight files), or None if it has no weights."""
    sub = folder / component
    if not sub.is_dir():
        return None
    weights = sorted(p for p in sub.iterdir() if p.suffix == ".safetensors" and weight_variant(p.name) == variant)
    if not weights and variant != DEFAULT_VARIANT:  # diffusers falls back to the default files for this component
        weights = sorted(p for p in sub.iterdir() if p.suffix == ".safetensors" and weight_variant(p.name) == "default")
    if not weights:
        return None
    digest = hashlib.sha256()
    config = sub / "config.json"
    if config.is_file():
        digest.update(hashlib.sha256(config.read_bytes()).digest())
    for path in weights:
        digest.update(path.name.encode())
        digest.update(hashes.sha256(path).encode())
    return digest.hexdigest()


class SharedModules:
    """Modules in memory by (fingerprint, dtype, device); entries vanish when no checkpoint holds the module.
    Which loaded checkpoints share a module is asked of the pools themselves (core.describe.memory_report)."""

    def __init__(self) -> None:
        self._modules: weakref.WeakValueDictionary[tuple[str, str, str], Any] = weakref.WeakValueDictionary()

    def find(self, fingerprint: str, dtype: str, device: str) -> Any | None:
        """The module loaded from these files, unless it has changed in place since (see carries_adapters) or
        accelerate is offloading it (see is_offloaded)."""
        module = self._modules.get((fingerprint, dtype, device))
        return None if module is None or carries_adapters(module) or is_offloaded(module) else module

    def add(self, fingerprint: str, dtype: str, device: str, module: Any) -> None:
        self._modules[(fingerprint, dtype, device)] = module


def is_offloaded(module: Any) -> bool:
    """Whether accelerate's offload hooks hold the module (sequential or model CPU offload): its weights may sit on
    `meta` between calls, and a pipeline being loaded around it can't move or copy them, so another checkpoint
    gets its own copy from its files instead."""
    modules = module.modules() if hasattr(module, "modules") else ()
    return any(getattr(m, "_hf_hook", None) is not None for m in modules)


def carries_adapters(module: Any) -> bool:
    """Whether a module holds more than its files: LoRA layers injected by peft (their wrappers stay after an
    unload), or IP-Adapter attention processors. A fingerprint describes files, so such a module is never handed
    out as the clean one."""
    from peft.tuners.tuners_utils import BaseTunerLayer  # peft is a dependency (diffusers' LoRA runs on it)

    if getattr(module, "peft_config", None) or any(isinstance(m, BaseTunerLayer) for m in module.modules()):
        return True
    processors = getattr(module, "attn_processors", None)
    return bool(processors) and any("IPAdapter" in type(p).__name__ for p in processors.values())
