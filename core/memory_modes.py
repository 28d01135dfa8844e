"""Memory modes: CPU offload (model or sequential), attention slicing, VAE slicing and tiling.

All are diffusers' own switches. Slicing and tiling change the shared modules, so they are set once on the pool
and every view sees them. Offloading installs accelerate hooks through one pipeline's offload sequence, and
`from_pipe` views don't inherit it (seed 003's warning), so it is re-applied to each view before it runs. Every
mode can be turned off again without reloading: slicing puts back the attention processors it replaced, offloading
removes its hooks and moves the weights back to the device.
"""

from __future__ import annotations

import weakref
from dataclasses import asdict, dataclass
from typing import Any

import torch

from core.errors import InvalidRequest

OFFLOAD_MODES = ("none", "model", "sequential")


@dataclass(frozen=True)
class MemoryModes:
    offload: str = "none"  # none | model (one whole model on the device at a time) | sequential (layer by layer)
    attention_slicing: bool = False
    vae_slicing: bool = False  # decode a batch one image at a time
    vae_tiling: bool = False  # decode (and encode) large images in overlapping tiles

    def check(self, device: torch.device) -> None:
        if self.offload not in OFFLOAD_MODES:
            raise InvalidRequest(f"offload must be one of {', '.join(OFFLOAD_MODES)}, got {self.offload!r}.")
        if self.offload != "none" and device.type == "cpu":
            raise InvalidRequest(
                "CPU offload keeps weights in CPU memory and moves them to the GPU when needed; this server runs on "
                "the CPU, so there is nothing to offload. Use attention or VAE slicing/tiling, or a lower dtype."
            )

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def active(self) -> bool:
        return self != MemoryModes()


class ModeState:
    """The modes in force, and what is needed to undo them."""

    def __init__(self) -> None:
        self.modes = MemoryModes()
        # The attention processors slicing replaced, by UNet (weakly: a UNet that is gone needs no undoing).
        self._saved_processors: weakref.WeakKeyDictionary[Any, dict[str, Any]] = weakref.WeakKeyDictionary()

    def apply(self, pipes: list[Any], modes: MemoryModes, device: torch.device) -> None:
        """Set `modes` on pools' base pipelines (their shared modules), undoing what the modes in force did and
        `modes` don't. Applying the modes in force again (to a newly loaded pool) is safe."""
        modes.check(device)
        for pipe in pipes:
            self._set_slicing(pipe, modes.attention_slicing)
            vae = getattr(pipe, "vae", None)
            for flag, on in (("slicing", modes.vae_slicing), ("tiling", modes.vae_tiling)):
                if hasattr(vae, f"enable_{flag}"):
                    getattr(vae, f"enable_{flag}" if on else f"disable_{flag}")()
            if modes.offload == "none" and self.modes.offload != "none":
                undo_offload(pipe, device)
        self.modes = modes

    def _set_slicing(self, pipe: Any, on: bool) -> None:
        unet = getattr(pipe, "unet", None)
        if unet is None or not hasattr(unet, "attn_processors"):
            return
        if on and unet not in self._saved_processors:
            self._saved_processors[unet] = dict(unet.attn_processors)
            pipe.enable_attention_slicing("auto")
        elif not on and unet in self._saved_processors:
            unet.set_attn_processor(self._saved_processors.pop(unet))

    def prepare_view(self, view: Any, device: torch.device) -> None:
        """Offload a view through its own model sequence, if offloading is on (a no-op otherwise)."""
        if self.modes.offload == "model":
            view.enable_model_cpu_offload(device=device)
        elif self.modes.offload == "sequential":
            view.enable_sequential_cpu_offload(device=device)


def undo_offload(pipe: Any, device: torch.device) -> None:
    """Remove accelerate's offload hooks from the pipeline's modules and put their weights back on `device`.

    Removing an offloading hook restores the weights it kept aside (accelerate's AlignDevicesHook.detach_hook),
    so the modules are whole again before they move."""
    import accelerate.hooks

    for module in pipe.components.values():
        if isinstance(module, torch.nn.Module):
            accelerate.hooks.remove_hook_from_module(module, recurse=True)
            module.to(device)
    if hasattr(pipe, "_all_hooks"):
        pipe._all_hooks = []


def oom_advice(request: Any, dtype: torch.dtype, device: torch.device, modes: MemoryModes) -> str:
    """What to try after a run ran out of memory, most effective first, given what the run asked for."""
    tips = []
    if request.num_images > 1:
        tips.append(f"fewer images at once (you asked for {request.num_images})")
    tips.append("a smaller size")
    if device.type != "cpu" and modes.offload == "none":
        tips.append("model CPU offload in Memory modes")
    if not modes.vae_tiling:
        tips.append("VAE tiling in Memory modes (large images)")
    if dtype == torch.float32:
        tips.append("a lower dtype (float16 on a GPU, bfloat16 on a CPU) when loading")
    where = "the GPU" if device.type != "cpu" else "this machine"
    return (
        f"Out of memory on {where} while making {request.num_images} image(s) of {request.width}x{request.height}. "
        f"The model is still loaded and the memory is freed; try {', or '.join(tips)}."
    )
