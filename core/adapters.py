"""LoRA adapters on the shared pool, through diffusers' adapter API (peft).

An adapter changes the shared modules themselves, so every task view built over them sees it at once: this is
the seed's "Modify from_pipe components" warning, made visible. Unloading deletes the adapter's layers and
leaves the original weights as they were.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core import checkpoints
from core.errors import InvalidRequest, LoadError

if TYPE_CHECKING:
    from core.pool import Pool
    from core.studio import StudioOptions


@dataclass
class Lora:
    name: str
    source: str
    weight: float
    location: str  # folder or Hub id given to load_lora_weights
    weight_name: str | None  # the file in it, when the source named one


def adapter_name(source: str) -> str:
    """A valid adapter name from a source: `org/my-lora.safetensors` -> `my_lora`."""
    stem = Path(source.rstrip("/")).name.removesuffix(".safetensors")
    return re.sub(r"\W+", "_", stem).strip("_") or "lora"


def locate(source: str, options: StudioOptions) -> tuple[str, str | None]:
    """(location, weight_name) for load_lora_weights: a .safetensors file, a folder, a Hub id, or `demo-lora`."""
    if source == "demo-lora":
        from core.demo_families import demo_lora_path

        return str(demo_lora_path(options.cache_dir)), None
    path = Path(source).expanduser()
    if path.is_file():
        if path.suffix != ".safetensors":
            raise LoadError(f"{source!r} is not a .safetensors file; LoRAs are loaded from safetensors only.")
        return str(path.parent), path.name
    if path.is_dir() or checkpoints.looks_like_repo_id(source):
        return source, None
    raise LoadError(f"{source!r} is not a LoRA file, folder or Hub id (org/name); check the path.")


class LoraSet:
    """The LoRAs loaded into one pool, with their weights."""

    def __init__(self) -> None:
        self.loras: dict[str, Lora] = {}

    def load(self, pool: Pool, source: str, weight: float, options: StudioOptions) -> Lora:
        """Load `source` as an adapter on the pool's modules and make it active with `weight`."""
        if not hasattr(pool.base, "load_lora_weights"):
            raise InvalidRequest(f"The loaded {type(pool.base).__name__} does not take LoRA adapters.")
        name = adapter_name(source)
        if name in self.loras:
            raise InvalidRequest(f"A LoRA named {name!r} is already loaded; unload it first.")
        location, weight_name = locate(source, options)
        kwargs: dict[str, Any] = {"adapter_name": name, "local_files_only": options.offline}
        if weight_name:
            kwargs["weight_name"] = weight_name
        try:
            pool.base.load_lora_weights(location, **kwargs)
        except Exception as e:  # any library failure here means "this LoRA can't be used with this model"
            raise LoadError(
                f"Loading the LoRA {source!r} failed: {type(e).__name__}: {e}. Is it made for this model family?"
            ) from e
        lora = Lora(name, source, weight, location, weight_name)
        self.loras[name] = lora
        self._activate(pool)
        return lora

    def unload(self, pool: Pool, name: str) -> None:
        """Remove the adapter's layers from the shared modules."""
        if name not in self.loras:
            raise InvalidRequest(f"No LoRA named {name!r} is loaded; loaded: {', '.join(self.loras) or 'none'}.")
        pool.base.delete_adapters(name)
        del self.loras[name]
        self._activate(pool)

    def _activate(self, pool: Pool) -> None:
        if self.loras:
            pool.base.set_adapters(list(self.loras), adapter_weights=[lora.weight for lora in self.loras.values()])

    def info(self, pool: Pool) -> dict[str, Any]:
        """What is loaded, and which task views the adapters change (those built over the modules they touch)."""
        affected = sorted({task for name in ("unet", "text_encoder") for task in pool.tasks_using(name)})
        return {
            "loras": {name: {"source": lora.source, "weight": lora.weight} for name, lora in self.loras.items()},
            "affects": affected if self.loras else [],
        }

    def snippet_lines(self) -> list[str]:
        """The lines that load the same adapters in the reproduction script."""
        lines = []
        for lora in self.loras.values():
            extra = f", weight_name={lora.weight_name!r}" if lora.weight_name else ""
            lines.append(f"pipe.load_lora_weights({lora.location!r}{extra}, adapter_name={lora.name!r})")
        if lines:
            names = [lora.name for lora in self.loras.values()]
            weights = [lora.weight for lora in self.loras.values()]
            lines.append(f"pipe.set_adapters({names!r}, adapter_weights={weights!r})")
        return lines
