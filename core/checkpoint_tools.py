"""Checkpoint tools: preflight before a download, the local Hub cache, and saving the loaded checkpoint as another
variant (seed 003, "Checkpoint variants"). A collaborator of the Studio, handed what it uses."""

from __future__ import annotations

import copy
import inspect
import re
import shutil
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import huggingface_hub
import torch

from core import checkpoints, devices
from core.checkpoints import DEFAULT_VARIANT, hub, hub_cache, loading, weight_variant
from core.errors import InvalidRequest

if TYPE_CHECKING:
    from core.pool import Pool

SAVE_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}
_VARIANT_NAME = re.compile(r"^[A-Za-z0-9_]{1,32}$")


class CheckpointTools:
    """Preflight, the cache browser and saving variants, over what the Studio hands it: its options and device, the
    lock every change to the modules holds, and how a source resolves to checkpoint files."""

    def __init__(
        self,
        options: Any,
        device: torch.device,
        lock: threading.RLock,
        resolve: Callable[[str], checkpoints.CheckpointFiles],
    ) -> None:
        self.options, self.device, self._lock, self._resolve = options, device, lock, resolve

    def preflight(self, source: str, variant: str = "auto", dtype: str = "auto") -> dict[str, Any]:
        """What loading would download and need in memory, with a fits / tight / does not fit verdict; reads file
        listings and safetensors headers only, loads nothing."""
        torch_dtype = devices.resolve_dtype(dtype, self.device)
        files = self._resolve(source)
        chosen = loading.choose_variant(files, variant, torch_dtype)
        return hub.preflight(files, chosen, torch_dtype, self.device, offline=self.options.offline)

    def cached_checkpoints(self) -> list[dict[str, Any]]:
        """The model repos in the local Hugging Face cache (not offered on a public server)."""
        self.refuse_in_public("The cache browser")
        return hub_cache.cached_checkpoints()

    def delete_cached(self, repo_id: str, in_use: dict[str, str]) -> dict[str, Any]:
        """Delete a repo from the local cache, unless something loaded now came from it (`in_use`: source -> what
        uses it)."""
        self.refuse_in_public("Deleting from the cache")
        repo_id = repo_id.strip()
        if repo_id in in_use:
            raise InvalidRequest(
                f"{repo_id!r} is loaded now ({in_use[repo_id]}); load another checkpoint first, then delete it."
            )
        with self._lock:
            freed = hub_cache.delete_cached(repo_id)
        return {"deleted": repo_id, "freed_bytes": freed}

    def save_variant(
        self, pool: Pool, folder: str, variant: str, dtype: str, *, adapters_loaded: bool, offload: str
    ) -> dict[str, Any]:
        """Write the loaded checkpoint's weights as `variant` files in `dtype` (`name.<variant>.safetensors` next to
        the original files), so `load(folder, variant=variant)` reads them back.

        `folder` empty means the checkpoint's own folder (a local one). Any other folder gets the configs and
        tokenizer copied first. One component is cast at a time, so the extra memory is one component's copy.
        """
        self.refuse_in_public("Saving checkpoints")
        if not _VARIANT_NAME.match(variant or "") or variant == DEFAULT_VARIANT:
            raise InvalidRequest(
                f"A variant name is letters, digits or _ (e.g. fp16, bf16), not {variant!r} or `default`."
            )
        if dtype not in SAVE_DTYPES:
            raise InvalidRequest(f"Save as one of {', '.join(SAVE_DTYPES)}, not {dtype!r}.")
        if adapters_loaded:
            raise InvalidRequest("Unload the LoRAs and the IP-Adapter first: their layers would be saved too.")
        if offload == "sequential":  # its weights sit on the meta device between uses
            raise InvalidRequest("Turn sequential CPU offload off before saving (Memory modes), then save again.")
        target = self._save_target(folder, pool)
        with self._lock:
            _copy_configs(pool.files.path, target)
            written = []
            for name in pool.files.components:
                module = pool.base.components.get(name)
                if not isinstance(module, torch.nn.Module) or not hasattr(module, "save_pretrained"):
                    continue
                cast = copy.deepcopy(module).to(device="cpu", dtype=SAVE_DTYPES[dtype])
                kwargs: dict[str, Any] = {"variant": variant}
                if "safe_serialization" in inspect.signature(cast.save_pretrained).parameters:
                    kwargs["safe_serialization"] = True
                cast.save_pretrained(target / name, **kwargs)
                del cast
                written += [str(p.relative_to(target)) for p in (target / name).iterdir() if _is(p.name, variant)]
        notes = []
        if pool.vae_source != "default":
            notes.append(f"The VAE saved is the one in use: {pool.vae_source}.")
        if SAVE_DTYPES[dtype].itemsize > pool.dtype.itemsize:
            notes.append(f"The weights in memory are {devices.dtype_name(pool.dtype)}: {dtype} adds no precision.")
        return {
            "folder": str(target),
            "variant": variant,
            "dtype": dtype,
            "files": sorted(written),
            "bytes": sum((target / f).stat().st_size for f in written),
            "notes": notes,
        }

    def _save_target(self, folder: str, pool: Pool) -> Path:
        files = pool.files
        if not folder.strip():
            if files.is_hub or files.source.startswith(checkpoints.DEMO) or files.single_file is not None:
                raise InvalidRequest(
                    "This checkpoint is in the Hub cache, a demo or a single file: give a folder to save the variant "
                    "into (for a single file, that makes a diffusers folder of it)."
                )
            target = files.path.resolve()
        else:
            target = Path(folder.strip()).expanduser().resolve()
        cache = Path(huggingface_hub.constants.HF_HUB_CACHE).resolve()
        if target == cache or cache in target.parents:
            raise InvalidRequest(
                "Don't write into the Hugging Face cache (it is managed by huggingface_hub); pick another folder."
            )
        if target.exists() and not target.is_dir():
            raise InvalidRequest(f"{target} is a file; give a folder.")
        return target

    def refuse_in_public(self, what: str) -> None:
        if self.options.public:
            raise InvalidRequest(f"{what} is not available on a public server.")


def _is(name: str, variant: str) -> bool:
    return weight_variant(name) == variant


def _copy_configs(source: Path, target: Path) -> None:
    """model_index.json, every component's config and tokenizer files; no weights."""
    if source == target:
        return
    for path in source.rglob("*"):
        if path.is_file() and weight_variant(path.name) is None:
            dest = target / path.relative_to(source)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, dest)  # through the cache's symlinks: the real file
