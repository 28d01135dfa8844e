"""The compiled-UNet mode: `torch.compile` of the denoiser's repeated blocks (diffusers' regional compilation,
`compile_repeated_blocks`), on the pool's shared UNet, so every task view runs compiled.

Regional compilation compiles one transformer block and reuses its code for every block of the same shape, which
bounds the compile to seconds-to-a-minute instead of the whole UNet's minutes. torch compiles again for each new
input shape (image size, batch, guidance on or off); the studio remembers which it has seen, so a run that paid a
compile says so. Inductor's cache goes into the studio's cache folder (`TORCHINDUCTOR_CACHE_DIR`, unless set), so a
restart on the same machine loads the compiled kernels instead of compiling them again. Turning the mode off puts
the blocks' plain call back, with no reload. The speed-up and the images' difference against the uncompiled run:
bench/sd15_suite.py --only compile, docs/benchmarks.md.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

# What the tests use: `eager` wraps the blocks the same way with no code generation (seconds instead of a minute).
BACKEND_VARIABLE = "DIFFUSION_STUDIO_COMPILE_BACKEND"


def backend() -> str:
    return os.environ.get(BACKEND_VARIABLE, "inductor")


def keep_cache_in(cache_dir: Path | None) -> None:
    """Inductor's compiled kernels under the studio's cache folder, where nothing else said where (call before the
    first compile: inductor reads the variable when it starts)."""
    if cache_dir is None:
        from core.demo.checkpoint import default_cache_dir

        cache_dir = default_cache_dir()
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(Path(cache_dir) / "torchinductor"))


def compiled_blocks(unet: torch.nn.Module) -> int:
    """How many of the UNet's blocks run compiled."""
    return sum(1 for m in unet.modules() if getattr(m, "_compiled_call_impl", None) is not None)


def compile_unet(unet: Any) -> int:
    """Compile `unet`'s repeated blocks in place (each block's `Module.compile`); returns how many."""
    if compiled_blocks(unet):
        return compiled_blocks(unet)
    # Not fullgraph: a LoRA's or an IP-Adapter's layers inside a block may break the graph; the rest still compiles.
    unet.compile_repeated_blocks(backend=backend())
    return compiled_blocks(unet)


def uncompile_unet(unet: torch.nn.Module) -> None:
    """The blocks' plain call back: `Module.compile` keeps the compiled call in `_compiled_call_impl`, which
    `Module.__call__` uses when it is set (torch has no public way to undo it)."""
    for module in unet.modules():
        if getattr(module, "_compiled_call_impl", None) is not None:
            module._compiled_call_impl = None


def supports(unet: Any) -> bool:
    """Whether the denoiser has diffusers' regional compilation (a `_repeated_blocks` list: UNets, most
    transformers)."""
    return bool(getattr(unet, "_repeated_blocks", None)) and hasattr(unet, "compile_repeated_blocks")


def shape_key(request: Any, pool_source: str, dtype: torch.dtype) -> tuple:
    """What makes torch compile again: the checkpoint, its dtype, the task, the latents' size and the batch."""
    size = request.image.size if getattr(request, "image", None) is not None else (request.width, request.height)
    return (pool_source, str(dtype), request.task, *size, request.num_images)
