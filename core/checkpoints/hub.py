"""The Hugging Face Hub side of loading: what a checkpoint will cost before any weights are fetched, fetching
only the chosen variant's files, and the local cache.

Sizes come from the Hub's file listing (`snapshot_download(dry_run=True)`, which also says what is cached already);
parameter counts come from each component's safetensors header (`parse_safetensors_file_metadata` reads a few
kilobytes per file; `get_safetensors_metadata` looks for a root `model.safetensors` and can't read a diffusers repo).
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import huggingface_hub
import torch
from huggingface_hub import HfApi
from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, OfflineModeIsEnabled
from safetensors import safe_open
from tqdm.auto import tqdm

from core import devices
from core.checkpoints import DEFAULT_VARIANT, CheckpointFiles, hub_offline, weight_variant
from core.errors import LoadError

# safetensors dtype names -> bytes per element
_ITEMSIZE = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "F8_E4M3": 1, "F8_E5M2": 1, "I64": 8, "I32": 4, "I16": 2}
_ITEMSIZE.update({"I8": 1, "U8": 1, "BOOL": 1})
_FLOATS = {"F64", "F32", "F16", "BF16"}
HEADROOM = 1.2  # weights plus room for activations and the decoder: what "fits" asks for

ProgressFn = Callable[[int, int], None]  # (bytes done, bytes in all)


def weight_files(names: Iterable[str], components: Iterable[str], variant: str) -> dict[str, list[str]]:
    """Per component, the weight files diffusers will read for `variant`: that variant's safetensors if the
    component has them, else its default ones (diffusers falls back the same way); pickle only when there is no
    safetensors file at all."""
    names = list(names)
    chosen: dict[str, list[str]] = {}
    for component in components:
        own = [n for n in names if posixpath.dirname(n) == component and weight_variant(posixpath.basename(n))]
        for suffix in (".safetensors", ".bin"):
            kind = [n for n in own if n.endswith(suffix)]
            picked = [n for n in kind if weight_variant(posixpath.basename(n)) == variant] or [
                n for n in kind if weight_variant(posixpath.basename(n)) == DEFAULT_VARIANT
            ]
            if picked:
                chosen[component] = sorted(picked)
                break
    return chosen


def needed_files(files: CheckpointFiles, variant: str) -> list[str]:
    """Every file a load of `variant` reads: model_index.json, the components' configs and tokenizer files, and
    the variant's weights. Other variants, pickle copies, single-file checkpoints and images stay on the Hub."""
    names = files.file_names
    components = set(files.components)
    configs = [
        n
        for n in names
        if n == "model_index.json"
        or (posixpath.dirname(n) in components and weight_variant(posixpath.basename(n)) is None)
    ]
    weights = [f for group in weight_files(names, components, variant).values() for f in group]
    return sorted(set(configs) | set(weights))


def _tensor_bytes(counts: dict[str, int], dtype: torch.dtype) -> int:
    """Bytes the tensors take once loaded in `dtype`: floating weights are cast to it, the rest keep their type."""
    target = torch.empty((), dtype=dtype).element_size()
    return sum(n * (target if kind in _FLOATS else _ITEMSIZE.get(kind, 4)) for kind, n in counts.items())


def _local_counts(path: Path) -> dict[str, int]:
    counts: dict[str, int] = {}
    with safe_open(str(path), framework="pt") as f:
        for key in f.keys():  # noqa: SIM118 - safe_open is not a mapping
            piece = f.get_slice(key)
            n = 1
            for dim in piece.get_shape():
                n *= dim
            counts[piece.get_dtype()] = counts.get(piece.get_dtype(), 0) + n
    return counts


def preflight(
    files: CheckpointFiles, variant: str, dtype: torch.dtype, device: torch.device, *, offline: bool = False
) -> dict:
    """What loading `variant` of the checkpoint in `dtype` on `device` takes: files, download size, memory, and a
    fits / tight / does not fit verdict. Reads headers only."""
    if files.single_file is not None:  # one local file holds every component's weights
        return _report(
            files,
            variant,
            dtype,
            device,
            {files.single_file.name: (files.single_file.stat().st_size, True)},
            [_component("checkpoint", [files.single_file.name], _local_counts(files.single_file), dtype)],
        )
    wanted = needed_files(files, variant)
    sizes: dict[str, tuple[int, bool]] = {}  # file -> (bytes, already on disk)
    if files.is_hub and not hub_offline(offline):
        for entry in _hub_call(
            files.source, lambda: huggingface_hub.snapshot_download(files.source, allow_patterns=wanted, dry_run=True)
        ):
            sizes[entry.filename] = (entry.file_size or 0, not entry.will_download)
    else:
        for name in wanted:
            local = files.path / name
            sizes[name] = (local.stat().st_size if local.exists() else 0, local.exists())
    components = []
    api = HfApi()
    for component, group in weight_files(files.file_names, files.components, variant).items():
        counts: dict[str, int] = {}
        for name in group:
            if not name.endswith(".safetensors"):
                continue  # a pickle file has no header to read without loading it
            local = files.path / name
            if local.exists():
                found = _local_counts(local)
            else:
                found = _hub_call(
                    files.source, lambda n=name: api.parse_safetensors_file_metadata(files.source, n).parameter_count
                )
            for kind, n in found.items():
                counts[kind] = counts.get(kind, 0) + n
        components.append(_component(component, group, counts, dtype))
    return _report(files, variant, dtype, device, sizes, components)


def _component(name: str, group: list[str], counts: dict[str, int], dtype: torch.dtype) -> dict:
    return {
        "name": name,
        "files": group,
        "parameters": sum(counts.values()),
        "stored_dtypes": sorted(counts),
        "bytes": _tensor_bytes(counts, dtype),
    }


def _report(
    files: CheckpointFiles,
    variant: str,
    dtype: torch.dtype,
    device: torch.device,
    sizes: dict[str, tuple[int, bool]],
    components: list[dict],
) -> dict:
    need = sum(c["bytes"] for c in components)
    memory = devices.read_memory(device)
    if not memory.readable:
        verdict = "unknown (the device's free memory can't be read here)"
    elif need * HEADROOM <= memory.free_bytes:
        verdict = "fits"
    else:
        verdict = "tight" if need <= memory.free_bytes else "does not fit"
    return {
        "model": files.source,
        "hub": files.is_hub,
        "pipeline": files.pipeline_class,
        "variants": list(files.variants),
        "variant": variant,
        "dtype": devices.dtype_name(dtype),
        "device": str(device),
        "files": [{"file": n, "bytes": b, "cached": c} for n, (b, c) in sorted(sizes.items())],
        "total_bytes": sum(b for b, _ in sizes.values()),
        "download_bytes": sum(b for b, cached in sizes.values() if not cached),
        "components": components,
        "memory_bytes": need,
        "free_bytes": memory.free_bytes,
        "verdict": verdict,
    }


def download(
    files: CheckpointFiles, variant: str, on_progress: ProgressFn | None = None, *, offline: bool = False
) -> Path:
    """Fetch only the files a load of `variant` reads into the Hub cache; returns the snapshot folder."""
    wanted = needed_files(files, variant)
    bar_class = _progress_bar(on_progress) if on_progress else None
    folder = _hub_call(
        files.source,
        lambda: huggingface_hub.snapshot_download(
            files.source,
            allow_patterns=wanted,
            tqdm_class=bar_class,
            local_files_only=hub_offline(offline),
        ),
    )
    return Path(folder)


def _progress_bar(on_progress: ProgressFn) -> type:
    """A tqdm class that passes snapshot_download's aggregated byte counts on (its file-count bar is ignored)."""

    class Bar(tqdm):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs["disable"] = False  # huggingface_hub disables its bars at some log levels; the page needs them
            super().__init__(*args, **kwargs)

        def update(self, n: float | None = 1) -> bool | None:
            shown = super().update(n)
            if self.unit == "B" and self.total:
                on_progress(int(self.n), int(self.total))
            return shown

    return Bar


def _hub_call(repo_id: str, call: Callable[[], Any]) -> Any:
    try:
        return call()
    except (LocalEntryNotFoundError, OfflineModeIsEnabled) as e:
        raise LoadError(
            f"{repo_id!r} can't be fetched: the Hub is unreachable or offline mode is on (HF_HUB_OFFLINE), and the "
            "files are not in the local cache. Connect, or load a cached checkpoint, a local folder or `demo`."
        ) from e
    except HfHubHTTPError as e:
        raise LoadError(f"The Hub refused a request for {repo_id!r}: {e}. Try again later.") from e
