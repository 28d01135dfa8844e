"""Checkpoints: where a checkpoint's files are and what they hold, read before any weights are loaded (here), and
beside this, getting them and loading them: `hub` (downloads and preflight), `hub_cache` (the local cache),
`single_file` (original-layout .safetensors files), `fingerprints` (content keys, to share identical modules between
checkpoints), `loading` (pipelines, VAEs and motion adapters from those files)."""

from __future__ import annotations

import dataclasses
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import huggingface_hub
from diffusers.utils.constants import (
    ONNX_EXTERNAL_WEIGHTS_NAME,
    ONNX_WEIGHTS_NAME,
    SAFETENSORS_WEIGHTS_NAME,
    WEIGHTS_NAME,
)
from huggingface_hub.errors import (
    GatedRepoError,
    HfHubHTTPError,
    LocalEntryNotFoundError,
    OfflineModeIsEnabled,
    RepositoryNotFoundError,
)
from transformers.utils import SAFE_WEIGHTS_NAME as TRANSFORMERS_SAFE_WEIGHTS_NAME
from transformers.utils import WEIGHTS_NAME as TRANSFORMERS_WEIGHTS_NAME

from core.checkpoints import single_file
from core.errors import LoadError

DEMO = "demo"
DEFAULT_VARIANT = "default"
VARIANT_CHOICES = ("auto", DEFAULT_VARIANT, "fp16", "non_ema")

_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".ckpt", ".pt", ".pth", ".msgpack", ".onnx")
# The weights names diffusers and transformers save components under: the list diffusers' own
# variant_compatible_siblings matches against.
_WEIGHT_PREFIXES = {
    name.split(".")[0]
    for name in (
        WEIGHTS_NAME,
        SAFETENSORS_WEIGHTS_NAME,
        ONNX_WEIGHTS_NAME,
        ONNX_EXTERNAL_WEIGHTS_NAME,
        TRANSFORMERS_WEIGHTS_NAME,
        TRANSFORMERS_SAFE_WEIGHTS_NAME,
    )
}
# diffusers names shards `name.fp16-00001-of-00002.safetensors`: the shard counter is not part of the variant.
_SHARD = re.compile(r"-\d{5}-of-\d{5}$")
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass(frozen=True)
class CheckpointFiles:
    """A checkpoint resolved to a folder on disk, with what its file names say about it."""

    source: str  # what the user typed: `demo`, a Hub id or a path
    path: Path  # the folder holding model_index.json
    is_hub: bool
    model_index: dict
    variants: tuple[str, ...]  # `default` when un-suffixed weights exist, plus every suffix found
    has_safetensors: bool
    has_pickle: bool
    file_names: tuple[str, ...] = ()  # every file of the checkpoint (a Hub repo's, before any download)
    single_file: Path | None = None  # a single-file checkpoint; `path` is then its diffusers config folder
    config_source: str | None = None  # where that config folder came from: a folder or a Hub id

    @property
    def component_folders(self) -> Path | None:
        """Where each component's weights live (`<path>/<name>/`), for content fingerprints; None for a single
        file, whose config folder holds no weights of its own."""
        return self.path if self.single_file is None else None

    @property
    def pipeline_class(self) -> str:
        return self.model_index.get("_class_name", "?")

    @property
    def components(self) -> dict[str, tuple[str, str]]:
        """Component name -> (library, class) as model_index.json declares them."""
        return {
            name: (spec[0], spec[1])
            for name, spec in self.model_index.items()
            if not name.startswith("_") and isinstance(spec, list) and len(spec) == 2 and spec[0]
        }


def weight_variant(filename: str) -> str | None:
    """The variant a component's weight file belongs to (`default` for un-suffixed), or None if it is not one.

    diffusers' rule (`variant_compatible_siblings`): a known weights name, then `.variant` before the extension
    (`diffusion_pytorch_model.fp16.safetensors`, `model.fp16-00001-of-00002.safetensors`). Any other dotted name
    is not a variant file: `sd_xl_base_1.0.safetensors` is no variant `0`."""
    if not filename.endswith(_WEIGHT_SUFFIXES):
        return None
    parts = filename.split(".")
    if _SHARD.sub("", parts[0]) not in _WEIGHT_PREFIXES:
        return None
    if len(parts) == 2:
        return DEFAULT_VARIANT
    if len(parts) == 3 and _SHARD.sub("", parts[1]):
        return _SHARD.sub("", parts[1])
    return None


def looks_like_repo_id(source: str) -> bool:
    """`org/name` that is not an existing path."""
    return bool(_REPO_ID.match(source)) and not Path(source).exists()


def scan_folder(
    path: Path, *, source: str, is_hub: bool = False, file_names: list[str] | None = None
) -> CheckpointFiles:
    """Read a checkpoint folder's model_index.json and weight file names (`file_names` if given, e.g. a repo's)."""
    index_file = path / "model_index.json"
    if not index_file.is_file():
        hint = ""
        if (path / "config.json").is_file():
            hint = " It looks like a single model (config.json); load it as a VAE, or pick its parent folder."
        elif any(path.glob("*.safetensors")):
            hint = " It looks like a single-file checkpoint; use a diffusers folder with component subfolders."
        raise LoadError(f"{source!r} is not a diffusers checkpoint: there is no model_index.json in {path}.{hint}")
    try:
        model_index = json.loads(index_file.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise LoadError(f"{index_file} could not be read ({e}); the checkpoint folder is damaged.") from e
    if file_names is None:
        file_names = _relative_names(path)
    variants = {v for v in (weight_variant(Path(n).name) for n in file_names) if v is not None}
    return CheckpointFiles(
        source=source,
        path=path,
        is_hub=is_hub,
        model_index=model_index,
        variants=tuple(sorted(variants, key=lambda v: (v != DEFAULT_VARIANT, v))),
        has_safetensors=any(n.endswith(".safetensors") for n in file_names),
        has_pickle=any(n.endswith((".bin", ".ckpt", ".pt", ".pth")) for n in file_names),
        file_names=tuple(sorted(file_names)),
    )


def resolve(source: str, *, demo_dir: Path | None = None, offline: bool = False) -> CheckpointFiles:
    """Find the checkpoint's folder: the demo (written on first use), a local folder, or a Hub snapshot."""
    source = source.strip()
    if not source:
        raise LoadError("No checkpoint given: enter a Hub id (org/name), a local folder, or `demo`.")
    if source == DEMO:
        from core.demo.checkpoint import demo_checkpoint_path

        return scan_folder(demo_checkpoint_path(demo_dir), source=DEMO)
    if source.startswith(DEMO + "-"):
        from core.demo.companions import COMPANIONS, companion_path

        kind = source.removeprefix(DEMO + "-").replace("-", "_")
        if kind in COMPANIONS:
            return scan_folder(companion_path(kind, demo_dir), source=source)
    path = Path(source).expanduser()
    if path.is_file() and path.suffix in single_file.SUFFIXES:
        return single_file_checkpoint(path.resolve(), source=source, offline=offline)
    if path.exists():
        if not path.is_dir():
            raise LoadError(
                f"{source!r} is a file, not a checkpoint: give a folder with model_index.json, or a single-file "
                ".safetensors checkpoint."
            )
        return scan_folder(path.resolve(), source=source)
    if not looks_like_repo_id(source):
        what = "an existing file" if path.suffix in single_file.SUFFIXES else "an existing folder"
        raise LoadError(
            f"{source!r} is neither {what} nor a Hub id of the form org/name. "
            "Check the path, or type a Hub id such as stable-diffusion-v1-5/stable-diffusion-v1-5."
        )
    folder, names = hub_file_names(source, offline=offline)
    return scan_folder(folder, source=source, is_hub=True, file_names=names)


def single_file_checkpoint(path: Path, *, source: str, offline: bool) -> CheckpointFiles:
    """A single-file checkpoint, described by the diffusers config folder it will be loaded against."""
    config, origin = single_file.config_location(
        path, fetch_configs=lambda repo_id: hub_file_names(repo_id, offline=offline)[0]
    )
    described = scan_folder(config, source=source, file_names=[])
    return dataclasses.replace(
        described,
        variants=(DEFAULT_VARIANT,),
        has_safetensors=path.suffix == ".safetensors",
        has_pickle=path.suffix != ".safetensors",
        file_names=(path.name,),
        single_file=path,
        config_source=origin,
    )


def hub_offline(offline: bool) -> bool:
    """Whether to stay off the Hub: `--offline`, or HF_HUB_OFFLINE=1 (which huggingface_hub read at import)."""
    return offline or huggingface_hub.constants.HF_HUB_OFFLINE


def hub_file_names(
    repo_id: str, *, offline: bool, instead: str = "load `demo` or a local folder"
) -> tuple[Path, list[str]]:
    """Fetch (or find in the cache) a repo's config files, and list its files' paths; no weights yet
    (core.checkpoints.hub downloads the chosen variant's weights before loading)."""
    offline = hub_offline(offline)
    try:
        folder = Path(
            huggingface_hub.snapshot_download(repo_id, allow_patterns=["*.json", "*.txt"], local_files_only=offline)
        )
        names = (
            _relative_names(folder) if offline else list(huggingface_hub.HfApi().list_repo_files(repo_id))
        )  # a new HfApi reads the endpoint now
    except (RepositoryNotFoundError, GatedRepoError) as e:
        raise LoadError(
            f"The Hub has no repository {repo_id!r} you can read (it may be private or gated: log in with "
            "`hf auth login` and accept its licence on the Hub). Check the spelling."
        ) from e
    except (LocalEntryNotFoundError, OfflineModeIsEnabled) as e:
        raise LoadError(
            f"{repo_id!r} is not in the local cache and the Hub can't be reached (offline). "
            f"Connect to the network, or {instead}."
        ) from e
    except HfHubHTTPError as e:
        raise LoadError(f"The Hub refused {repo_id!r}: {e}. Try again later, or load a local folder.") from e
    return folder, names


def _relative_names(folder: Path) -> list[str]:
    return [str(Path(root, name).relative_to(folder)) for root, _dirs, files in os.walk(folder) for name in files]


def file_tree(files: CheckpointFiles) -> list[dict]:
    """Every file under the checkpoint folder with its size and the variant it belongs to (None for configs)."""
    rows = []
    for root, _dirs, names in os.walk(files.path):
        for name in sorted(names):
            full = Path(root) / name
            rows.append(
                {
                    "file": str(full.relative_to(files.path)),
                    "bytes": full.stat().st_size,
                    "variant": weight_variant(name),
                }
            )
    return sorted(rows, key=lambda r: r["file"])
