"""Adapters on the shared pool: LoRA (through diffusers' peft integration), IP-Adapter, and AnimateDiff's motion
adapter.

LoRA and IP-Adapter change the shared modules themselves, so every task view built over them sees them at once:
this is the seed's "Modify from_pipe components" warning, made visible. Unloading deletes the adapter's layers and
leaves the original weights as they were. The motion adapter is the exception: AnimateDiff builds its own UNet.
"""

from __future__ import annotations

import dataclasses
import re
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from core import checkpoints, infotext
from core.errors import InvalidRequest, LoadError

if TYPE_CHECKING:
    from core.generation import GenerationRequest
    from core.pool import Pool
    from core.settings import StudioOptions
    from core.tasks import Task


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
    """(location, weight_name) for load_lora_weights: a .safetensors file, a folder, a Hub id, or a LoRA twin
    (`demo-lora`, `demo-lcm-lora`)."""
    from core.demo.families import DEMO_LORAS, demo_lora_path

    if source in DEMO_LORAS:
        return str(demo_lora_path(options.cache_dir, source)), None
    path = Path(source).expanduser()
    if path.is_file():
        if path.suffix != ".safetensors":
            raise LoadError(f"{source!r} is not a .safetensors file; LoRAs are loaded from safetensors only.")
        return str(path.parent), path.name
    pickle_only = path.is_dir() and not any(path.glob("*.safetensors")) and any(path.glob("*.bin"))
    if pickle_only and not options.allow_unsafe:
        raise LoadError(
            f"{source!r} holds only pickle (.bin) weights, which can run code when opened; convert them to "
            "safetensors, or start the app with --allow-unsafe for a folder you trust."
        )
    if path.is_dir() or checkpoints.looks_like_repo_id(source):
        return source, None
    raise LoadError(f"{source!r} is not a LoRA file, folder or Hub id (org/name); check the path.")


def _check_lora_weight(weight: Any) -> None:
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not -2.0 <= weight <= 2.0:
        raise InvalidRequest(f"The LoRA weight must be between -2 and 2, got {weight}.")


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
        if not options.allow_unsafe:  # never diffusers' fallback to torch.load of a .bin
            kwargs["use_safetensors"] = True
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
        if not self.loras:
            # delete_adapters leaves peft's wrapper layers in place: they would be saved as `...base_layer.weight`
            # keys by save_variant, and make the module look adapted. With no LoRA left, remove them.
            pool.base.unload_lora_weights()
        self._activate(pool)

    def set_weight(self, pool: Pool, name: str, weight: float) -> None:
        """Change a loaded LoRA's weight in place (peft's `set_adapters`): nothing is loaded again."""
        if name not in self.loras:
            raise InvalidRequest(f"No LoRA named {name!r} is loaded; loaded: {', '.join(self.loras) or 'none'}.")
        self.loras[name].weight = weight
        self._activate(pool)

    def _activate(self, pool: Pool) -> None:
        if self.loras:
            pool.base.set_adapters(list(self.loras), adapter_weights=[lora.weight for lora in self.loras.values()])

    def info(self, pool: Pool) -> dict[str, Any]:
        """What is loaded, and which task views the adapters change (those built over the modules they touch)."""
        # Animate builds its motion UNet from the plain UNet and refuses while a LoRA is loaded (core.views).
        from core.tasks import TASKS

        unaffected = {name for name, task in TASKS.items() if not task.lora_applies}
        affected = sorted({task for name in ("unet", "text_encoder") for task in pool.tasks_using(name)} - unaffected)
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


# Where the weights of an IP-Adapter repo's plain adapter live, by the checkpoint family it was trained for
# (the layout of h94/IP-Adapter, the reference repo).
IP_ADAPTER_LAYOUT = {
    "stable-diffusion": ("models", "ip-adapter_sd15.safetensors"),
    "stable-diffusion-xl": ("sdxl_models", "ip-adapter_sdxl.safetensors"),
}


@dataclass
class IpAdapter:
    """An IP-Adapter loaded into the pool's UNet: an image prompt, weighted by `scale`, in every view."""

    source: str
    scale: float
    location: str  # folder or Hub id given to load_ip_adapter
    subfolder: str
    weight_name: str
    processors: dict[str, Any]  # the UNet's attention processors before loading, put back on unloading

    def info(self, pool: Pool) -> dict[str, Any]:
        return {"ip_adapter": {"source": self.source, "scale": self.scale}, "affects": pool.tasks_using("unet")}

    def snippet_lines(self) -> list[str]:
        return [
            f"pipe.load_ip_adapter({self.location!r}, subfolder={self.subfolder!r}, weight_name={self.weight_name!r})",
            f"pipe.set_ip_adapter_scale({self.scale!r})",
        ]


def locate_ip_adapter(source: str, family: str | None, options: StudioOptions) -> tuple[str, str, str]:
    """(location, subfolder, weight_name) for load_ip_adapter, from `demo-ip-adapter`, a local .safetensors file
    (its `image_encoder/` beside it), a Hub path `org/name/sub/folder/file.safetensors`, or a Hub id laid out
    like h94/IP-Adapter (the plain adapter of the loaded family)."""
    if source == "demo-ip-adapter":
        from core.demo.families import IP_ADAPTER_WEIGHTS, demo_ip_adapter_path

        return str(demo_ip_adapter_path(options.cache_dir)), "", IP_ADAPTER_WEIGHTS
    path = Path(source).expanduser()
    if path.exists() or path.is_absolute() or source.startswith((".", "~")):
        if not path.exists():
            raise LoadError(f"{source!r} is not an IP-Adapter file or Hub id: no such file; check the path.")
        if not (path.is_file() and path.suffix == ".safetensors"):
            raise LoadError(f"{source!r}: give the adapter's .safetensors file (its image_encoder/ folder beside it).")
        return str(path.parent), "", path.name
    parts = source.strip("/").split("/")
    if len(parts) > 2 and parts[-1].endswith(".safetensors") and checkpoints.looks_like_repo_id("/".join(parts[:2])):
        return "/".join(parts[:2]), "/".join(parts[2:-1]), parts[-1]
    if checkpoints.looks_like_repo_id(source):
        if family not in IP_ADAPTER_LAYOUT:
            raise LoadError(f"No IP-Adapter layout is known for {family or 'this'} checkpoints; name the file.")
        return (source, *IP_ADAPTER_LAYOUT[family])
    raise LoadError(f"{source!r} is not an IP-Adapter file or Hub id (org/name[/folder/file.safetensors]).")


def load_ip_adapter(pool: Pool, source: str, scale: float, options: StudioOptions) -> IpAdapter:
    """Load an IP-Adapter into the pool's UNet (and its image encoder into the pool) with `scale`."""
    from core.tasks import family_of

    base = pool.base
    if not hasattr(base, "load_ip_adapter") or "unet" not in pool.components:
        raise InvalidRequest(f"The loaded {type(base).__name__} does not take the studio's IP-Adapters.")
    location, subfolder, weight_name = locate_ip_adapter(source, family_of(type(base).__name__), options)
    processors = dict(base.unet.attn_processors)
    try:
        base.load_ip_adapter(location, subfolder=subfolder, weight_name=weight_name, local_files_only=options.offline)
        base.set_ip_adapter_scale(scale)
    except Exception as e:  # any library failure here means "this adapter can't be used with this model"
        _remove_ip_adapter(base, processors)
        raise LoadError(
            f"Loading the IP-Adapter {source!r} failed: {type(e).__name__}: {e}. Is it made for this model family?"
        ) from e
    return IpAdapter(source, scale, location, subfolder, weight_name, processors)


def image_prompt(adapter: IpAdapter | None, task: Task, request: GenerationRequest) -> tuple[GenerationRequest, list]:
    """The request with its image prompt kept only where an IP-Adapter (`adapter`, on the pool the task runs on)
    will read it, and a note for the run's warnings if it was dropped."""
    if adapter is not None:
        if request.ip_adapter_image is None:
            raise InvalidRequest(
                f"An IP-Adapter is loaded, so {task.label} needs an image prompt: add one in the IP-Adapter "
                "panel, or unload the adapter."
            )
        return request, []
    if request.ip_adapter_image is None:
        return request, []
    note = "The image prompt was not used: no IP-Adapter is loaded for this task's model."
    return dataclasses.replace(request, ip_adapter_image=None), [note]


def unload_ip_adapter(pool: Pool, adapter: IpAdapter) -> None:
    """Remove the adapter's layers and image encoder; the UNet gets back its exact attention processors."""
    _remove_ip_adapter(pool.base, adapter.processors)


def _remove_ip_adapter(base: Any, processors: dict[str, Any]) -> None:
    if getattr(base.unet, "encoder_hid_proj", None) is not None or getattr(base, "image_encoder", None) is not None:
        base.unload_ip_adapter()
    # diffusers' unload puts fresh default processors back; ours may have been others (sliced, xformers...).
    base.unet.set_attn_processor(processors)


@dataclass
class MotionAdapterState:
    """The AnimateDiff adapter, and the motion UNet built from the pool's UNet plus the adapter (kept, since
    building it copies the UNet's weights)."""

    source: str
    adapter: torch.nn.Module
    motion_unet: torch.nn.Module | None = None
    # Weak references to the UNet (and IP-Adapter projection) it was built from: an id() could match a new object
    # at a freed address, and a strong reference would keep an unloaded model's UNet alive.
    built_from: tuple[Any, Any] | None = None

    def unet_for(self, pool: Pool) -> torch.nn.Module:
        """The motion UNet over the pool's UNet as it is now, rebuilt when the UNet or its IP-Adapter changed
        (diffusers copies a loaded IP-Adapter's layers into the motion UNet when it builds one)."""
        from diffusers import UNetMotionModel

        unet = pool.base.unet
        projection = getattr(unet, "encoder_hid_proj", None)
        if self.motion_unet is None or not self._built_from(unet, projection):
            self.forget()  # free the old copy before making the new one
            built = UNetMotionModel.from_unet2d(unet, self.adapter)
            self.motion_unet = built.to(device=pool.device, dtype=pool.dtype)
            self.built_from = (weakref.ref(unet), weakref.ref(projection) if projection is not None else None)
        return self.motion_unet

    def _built_from(self, unet: Any, projection: Any) -> bool:
        if self.built_from is None:
            return False
        unet_ref, projection_ref = self.built_from
        return unet_ref() is unet and (projection_ref() if projection_ref is not None else None) is projection

    def forget(self) -> None:
        """Drop the motion UNet (the model it was built over is gone, or changed)."""
        self.motion_unet, self.built_from = None, None


class Adapters:
    """LoRA and IP-Adapter on the main pool's shared modules, over what the Studio hands it: its options, the lock
    every change to the modules holds, the main pool (asked for under the lock: a load may be replacing it), whether
    attention slicing is on, the public allowlist check, and how to hand freed memory back."""

    def __init__(
        self,
        options: StudioOptions,
        lock: threading.RLock,
        pool: Callable[[], Pool],
        attention_slicing: Callable[[], bool],
        check_allowed: Callable[[str], None],
        release: Callable[[], None],
    ) -> None:
        self.options, self._lock, self._pool, self._release = options, lock, pool, release
        self._slicing, self._check_allowed = attention_slicing, check_allowed
        self.loras = LoraSet()
        self.ip_adapter: IpAdapter | None = None

    def reset(self) -> None:
        """A new checkpoint was loaded: the adapters lived on the old pool's modules."""
        self.loras, self.ip_adapter = LoraSet(), None

    @property
    def any_loaded(self) -> bool:
        return bool(self.loras.loras) or self.ip_adapter is not None

    def load_lora(self, source: str, weight: float = 1.0) -> dict[str, Any]:
        """Load a LoRA (a .safetensors file, a folder, a Hub id, or `demo-lora`) onto the shared modules: every
        task view sees it."""
        _check_lora_weight(weight)
        self._check_allowed(source)
        with self._lock:
            pool = self._pool()
            lora = self.loras.load(pool, source.strip(), float(weight), self.options)
            infotext.lora_hash(lora)  # hashed once, here, for every run's infotext (core.infotext caches it)
            return self.loras.info(pool)

    def set_lora_weight(self, name: str, weight: float) -> dict[str, Any]:
        """Change a loaded LoRA's weight without loading it again."""
        _check_lora_weight(weight)
        with self._lock:
            pool = self._pool()
            self.loras.set_weight(pool, name, float(weight))
            return self.loras.info(pool)

    def unload_lora(self, name: str) -> dict[str, Any]:
        """Remove a LoRA; the shared modules are as they were before it was loaded."""
        with self._lock:
            pool = self._pool()
            self.loras.unload(pool, name)
            self._release()
            return self.loras.info(pool)

    def load_ip_adapter(self, source: str, scale: float = 0.6) -> dict[str, Any]:
        """Load an IP-Adapter (`demo-ip-adapter`, a .safetensors file, a Hub id) into the shared UNet: every task
        over it then takes an image prompt. Loading the one already loaded only changes its scale."""
        if not isinstance(scale, (int, float)) or not 0.0 <= scale <= 2.0:
            raise InvalidRequest(f"The IP-Adapter scale must be between 0 and 2, got {scale}.")
        source = source.strip()
        self._check_allowed(source)
        with self._lock:
            pool = self._pool()
            if self.ip_adapter is not None and self.ip_adapter.source != source:
                raise InvalidRequest(f"The IP-Adapter {self.ip_adapter.source!r} is loaded; unload it first.")
            if self.ip_adapter is None:
                if self._slicing():
                    raise InvalidRequest(
                        "Attention slicing is on, and an IP-Adapter needs its own attention processors: turn "
                        "slicing off in Memory modes first."
                    )
                self.ip_adapter = load_ip_adapter(pool, source, float(scale), self.options)
            pool.base.set_ip_adapter_scale(float(scale))
            self.ip_adapter.scale = float(scale)
            return self.ip_adapter.info(pool)

    def unload_ip_adapter(self) -> dict[str, Any]:
        """Remove the IP-Adapter and its image encoder; the UNet is exactly as before it was loaded."""
        with self._lock:
            if self.ip_adapter is not None:
                unload_ip_adapter(self._pool(), self.ip_adapter)
                self.ip_adapter = None
                self._release()
            return {"ip_adapter": None, "affects": []}
