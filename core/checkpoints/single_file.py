"""Single-file checkpoints (one `.safetensors` in the original layout, as the web UIs and model sites share them),
loaded with diffusers' single-file loader (`from_single_file`) against a diffusers config folder found locally:

1. a folder next to the file with the same name and a model_index.json (`model.safetensors` + `model/`), else
2. the configs of the Hub repo diffusers infers from the file's keys (e.g. SD 1.5's), from the local cache when
   offline (only their small json/txt files are fetched online).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors import safe_open

from core.errors import LoadError

if TYPE_CHECKING:
    from diffusers import DiffusionPipeline

    from core.checkpoints import CheckpointFiles

SUFFIXES = (".safetensors", ".ckpt")


def is_single_file(source: str) -> bool:
    path = Path(source).expanduser()
    return path.suffix in SUFFIXES and path.is_file()


class _LazyCheckpoint(Mapping):
    """The file's tensors by name, read only when looked at: diffusers' model-type inference peeks at a handful."""

    def __init__(self, path: Path) -> None:
        self._file = safe_open(str(path), framework="pt")
        self._keys = list(self._file.keys())

    def __getitem__(self, key: str) -> torch.Tensor:
        if key not in self._keys:
            raise KeyError(key)
        return self._file.get_tensor(key)

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)


def config_location(path: Path, *, fetch_configs: Callable[[str], Path]) -> tuple[Path, str]:
    """The diffusers config folder for the single file at `path`, and where it came from (for the snippet).
    `fetch_configs(repo_id)` gives the config folder of the model diffusers recognises in the file (the caller's
    Hub access, so this module needs nothing of core.checkpoints)."""
    sidecar = path.with_suffix("")
    if (sidecar / "model_index.json").is_file():
        return sidecar, str(sidecar)
    if path.suffix != ".safetensors":
        raise LoadError(
            f"{path.name} is a pickle checkpoint: put its diffusers config folder next to it as {sidecar.name}/ "
            "(with model_index.json), or better, use a .safetensors copy."
        )
    from diffusers.loaders.single_file_utils import fetch_diffusers_config

    try:
        repo_id = fetch_diffusers_config(_LazyCheckpoint(path))["pretrained_model_name_or_path"]
    except Exception as e:  # not a checkpoint diffusers knows
        raise LoadError(
            f"{path.name} is not a single-file checkpoint diffusers recognises ({type(e).__name__}: {e})."
        ) from e
    try:
        folder = fetch_configs(repo_id)
    except LoadError as e:
        raise LoadError(
            f"{path.name} looks like a {repo_id} checkpoint, whose configs are needed to load it: {e} "
            f"Or put a diffusers folder of that model next to the file as {sidecar.name}/."
        ) from e
    return folder, repo_id


def load(
    files: CheckpointFiles, dtype: torch.dtype, reuse: dict[str, torch.nn.Module] | None = None
) -> DiffusionPipeline:
    """The pipeline class of the config folder, built from the single file; its safety checker (not part of such
    files) comes from the config folder when that holds its weights, else there is none."""
    import diffusers

    cls = getattr(diffusers, files.pipeline_class)
    extra: dict[str, Any] = dict(reuse or {})
    checker = files.path / "safety_checker"
    if "safety_checker" in files.components and "safety_checker" not in extra:
        has_weights = checker.is_dir() and any(p.suffix == ".safetensors" for p in checker.iterdir())
        extra["safety_checker"] = (
            diffusers.pipelines.stable_diffusion.safety_checker.StableDiffusionSafetyChecker.from_pretrained(
                str(checker), dtype=dtype
            )
            if has_weights
            else None
        )
    return cls.from_single_file(
        str(files.single_file), config=str(files.path), torch_dtype=dtype, local_files_only=True, **extra
    )


def load_vae(files: CheckpointFiles, dtype: torch.dtype) -> torch.nn.Module:
    """The file's own VAE again (after another VAE was in use)."""
    import diffusers

    return diffusers.AutoencoderKL.from_single_file(
        str(files.single_file), config=str(files.path), subfolder="vae", torch_dtype=dtype, local_files_only=True
    )
