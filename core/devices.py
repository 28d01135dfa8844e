"""Which device and dtype to run on, and what its memory looks like right now."""

from __future__ import annotations

import resource
import sys
from dataclasses import dataclass
from typing import Any

import psutil
import torch

from core.errors import InvalidRequest

DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps", "xpu")
DTYPE_CHOICES = ("auto", "float32", "float16", "bfloat16")
_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def resolve_device(name: str = "auto") -> torch.device:
    """Return the device named, or the best one present for `auto` (cuda > mps > xpu > cpu)."""
    if name not in DEVICE_CHOICES:
        raise InvalidRequest(f"Unknown device {name!r}; choose one of {', '.join(DEVICE_CHOICES)}.")
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        if hasattr(torch, "xpu") and torch.xpu.is_available():
            return torch.device("xpu")
        return torch.device("cpu")
    available = {
        "cpu": True,
        "cuda": torch.cuda.is_available(),
        "mps": torch.backends.mps.is_available(),
        "xpu": hasattr(torch, "xpu") and torch.xpu.is_available(),
    }
    if not available[name]:
        raise InvalidRequest(f"Device {name!r} is not available on this machine; use --device auto or cpu.")
    return torch.device(name)


def cpu_supports_bf16() -> bool:
    """Whether this CPU has native bfloat16 matrix instructions (AVX512-BF16 or AMX), where bf16 beats fp32."""
    if sys.platform != "linux":
        return False
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            flags = f.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """Return the dtype named, or for `auto` the fastest one that is safe on `device`."""
    if name == "auto":
        if device.type in ("cuda", "mps", "xpu"):
            return torch.float16
        return torch.bfloat16 if cpu_supports_bf16() else torch.float32
    if name not in _DTYPES:
        raise InvalidRequest(f"Unknown dtype {name!r}; choose one of {', '.join(DTYPE_CHOICES)}.")
    dtype = _DTYPES[name]
    if device.type == "cpu" and dtype == torch.float16:
        # Many CPU kernels lack fp16 and the rest are slow; refusing is kinder than a 10-minute image.
        raise InvalidRequest("float16 is not supported on the CPU; use bfloat16 or float32 (or dtype auto).")
    return dtype


def prefers_channels_last(device: torch.device) -> bool:
    """Whether convolution UNets run faster in channels_last here: yes on CUDA (diffusers' and PyTorch's advice
    for tensor cores); not on this project's CPU, where bench/sd15_suite.py (layout) measured no gain beyond
    its +-2% noise (+1.75% in one run, -1.86% in the next)."""
    return device.type == "cuda"


def dtype_name(dtype: torch.dtype) -> str:
    """`torch.float16` -> `float16`."""
    return str(dtype).removeprefix("torch.")


@dataclass(frozen=True)
class DeviceMemory:
    """One reading of a device's memory, in bytes."""

    device: str
    device_name: str
    total_bytes: int
    free_bytes: int
    allocated_bytes: int
    reserved_bytes: int
    peak_bytes: int
    process_rss_bytes: int
    readable: bool = True  # False: the device's memory could not be read in this process; the figures are 0


def _peak_rss_bytes() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # Linux reports KiB, macOS bytes


def _read_accelerator(backend: Any, device: torch.device, rss: int) -> DeviceMemory:
    """torch.cuda and torch.xpu have the same memory API (mem_get_info, memory_allocated, ...)."""
    index = device.index if device.index is not None else backend.current_device()
    free, total = backend.mem_get_info(index)
    return DeviceMemory(
        device=f"{device.type}:{index}",
        device_name=backend.get_device_name(index),
        total_bytes=total,
        free_bytes=free,
        allocated_bytes=backend.memory_allocated(index),
        reserved_bytes=backend.memory_reserved(index),
        peak_bytes=backend.max_memory_allocated(index),
        process_rss_bytes=rss,
    )


def _unreadable(device: torch.device, rss: int) -> DeviceMemory:
    return DeviceMemory(
        device=str(device),
        device_name=f"{device} (its memory can't be read in this process)",
        total_bytes=0,
        free_bytes=0,
        allocated_bytes=0,
        reserved_bytes=0,
        peak_bytes=0,
        process_rss_bytes=rss,
        readable=False,
    )


def read_memory(device: torch.device) -> DeviceMemory:
    """Read the device's memory now: torch's allocator on accelerators, the process and system RAM on CPU."""
    rss = psutil.Process().memory_info().rss
    if device.type in ("cuda", "xpu"):
        try:
            return _read_accelerator(getattr(torch, device.type), device, rss)
        except (RuntimeError, AssertionError):
            # e.g. ZeroGPU's main process, where the GPU is attached only inside a GPU task. Host RAM under the
            # device's name would be a wrong answer (and preflight's "fits" judged against it): say so instead.
            return _unreadable(device, rss)
    if device.type == "mps":
        total = torch.mps.recommended_max_memory()
        allocated = torch.mps.current_allocated_memory()
        driver = torch.mps.driver_allocated_memory()
        return DeviceMemory(
            device="mps",
            device_name="Apple GPU (MPS)",
            total_bytes=total,
            free_bytes=max(total - driver, 0),
            allocated_bytes=allocated,
            reserved_bytes=driver,
            peak_bytes=driver,  # MPS keeps no peak counter; the driver's figure is the closest honest one
            process_rss_bytes=rss,
        )
    vm = psutil.virtual_memory()
    return DeviceMemory(
        device="cpu",
        device_name=f"CPU ({psutil.cpu_count(logical=True)} threads)",
        total_bytes=vm.total,
        free_bytes=vm.available,
        allocated_bytes=rss,
        reserved_bytes=rss,
        # The kernel updates its high-water mark lazily, so it can trail the RSS just read by a few pages.
        peak_bytes=max(_peak_rss_bytes(), rss),
        process_rss_bytes=rss,
    )


def release_cached_memory(device: torch.device) -> None:
    """Hand the allocator's cached blocks back to the device, after a model was dropped."""
    if device.type in ("cuda", "xpu"):
        getattr(torch, device.type).empty_cache()
    elif device.type == "mps":
        torch.mps.empty_cache()
