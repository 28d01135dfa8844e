"""The component pool: one loaded checkpoint's components, held once, and the task views built over them.

A view is a pipeline object made with `from_pipe`: it references the pool's modules and allocates no weights.
Views are cheap (a few milliseconds) and carry per-run state (scheduler, guidance scale, the interrupt flag), so
the engine makes one per request rather than sharing pipeline objects between concurrent runs.
"""

from __future__ import annotations

import copy
import functools
import inspect
import threading
from dataclasses import dataclass, field
from typing import Any

import torch
from diffusers import DiffusionPipeline
from diffusers.schedulers.scheduling_utils import SchedulerMixin

from core.checkpoints import CheckpointFiles
from core.tasks import TASKS, Task, family_of, views_over

# Families whose pipelines round sizes by a rule of their own rather than by the VAE's factor:
# - Kandinsky 2.x and 3: latents are ceil(size / 64) * 8 (MoVQ's factor, squared), so any other size comes out
#   larger than asked;
# - Wuerstchen and Stable Cascade: the prior works 42.67x smaller, the decoder 10.67x: 128 px steps map exactly.
SIZE_RULES = {"kandinsky": 64, "kandinsky22": 64, "kandinsky3": 64, "wuerstchen": 128, "cascade": 128}


def module_bytes(module: Any) -> int:
    """Bytes held by a module's parameters and buffers (0 for tokenizers, schedulers and other non-modules)."""
    if not isinstance(module, torch.nn.Module):
        return 0
    tensors = {id(t): t for t in (*module.parameters(), *module.buffers())}
    return sum(t.numel() * t.element_size() for t in tensors.values())


def module_dtype(module: Any) -> str | None:
    """The dtype of a module's first parameter, e.g. `float16`; None for non-modules."""
    if not isinstance(module, torch.nn.Module):
        return None
    for p in module.parameters():
        return str(p.dtype).removeprefix("torch.")
    return None


def module_device(module: Any) -> str | None:
    """The device of a module's first parameter, e.g. `cuda:0`; None for non-modules."""
    if not isinstance(module, torch.nn.Module):
        return None
    for p in module.parameters():
        return str(p.device)
    return None


def component_row(name: str, module: Any, used_by: list[str]) -> dict[str, Any]:
    """A component as the memory panel lists it: name, class, dtype, device, bytes, the views that use it."""
    return {
        "name": name,
        "class": type(module).__name__,
        "dtype": module_dtype(module),
        "device": module_device(module),
        "bytes": module_bytes(module),
        "used_by": used_by,
    }


@dataclass
class Pool:
    """A loaded checkpoint: the base pipeline whose components every task view shares."""

    files: CheckpointFiles
    base: DiffusionPipeline
    variant: str  # the variant actually loaded: `default`, `fp16`, `non_ema`
    dtype: torch.dtype
    device: torch.device
    load_seconds: float
    vae_source: str = "default"
    companion_kind: str | None = None  # set for a companion checkpoint loaded beside the main one
    view_classes: dict[str, type] = field(init=False)  # every view this pool can serve: tasks and options
    unfit: dict[str, str] = field(init=False, default_factory=dict)  # tasks its family maps but it can't run, why
    _per_thread: threading.local = field(init=False, repr=False, default_factory=threading.local)

    def __post_init__(self) -> None:
        base_class = type(self.base).__name__
        self.view_classes = {}
        if self.companion_kind is not None:
            for name, task in TASKS.items():
                if self.companion_kind in task.companions and task.kind in ("companion", "auto"):
                    self.view_classes[name] = type(self.base)
            return
        views = views_over(base_class)
        self.unfit = {name: why for name in views if name in TASKS and (why := TASKS[name].unfit(self))}
        self.view_classes = {name: cls for name, cls in views.items() if name not in self.unfit}

    @property
    def family(self) -> str | None:
        """The AutoPipeline family of the main checkpoint ('stable-diffusion', 'flux', ...), if it has one."""
        return family_of(type(self.base).__name__)

    @property
    def denoiser(self) -> Any:
        """The model each step runs: the UNet, or the transformer (None for pipelines with neither)."""
        return self.components.get("unet") or self.components.get("transformer")

    @property
    def size_multiple(self) -> int:
        """Widths and heights must be multiples of this: the VAE's factor, times the patch size of a transformer,
        unless the family rounds sizes by a rule of its own (SIZE_RULES)."""
        family = self.family or ""
        if family in SIZE_RULES:
            return SIZE_RULES[family]
        factor = getattr(self.base, "vae_scale_factor", 8)
        if family.startswith("flux") or family == "chroma":
            return int(factor * 2)  # latents are packed 2x2 before the transformer
        transformer = self.components.get("transformer")
        patch = getattr(getattr(transformer, "config", None), "patch_size", None) or 1
        return int(factor * patch)

    @property
    def default_size(self) -> int:
        """The resolution the model was trained at (SD 1.5: 512, SDXL: 1024): the pipeline's own default size
        where its call has one (Kandinsky 3: 1024), else its denoiser's sample size in pixels."""
        height = inspect.signature(type(self.base).__call__).parameters.get("height")
        if height is not None and isinstance(height.default, int) and height.default > 0:
            return height.default
        denoiser = self.denoiser
        sample = getattr(self.base, "default_sample_size", None)  # Flux, SD3, SDXL set it; Flux has no other
        if not isinstance(sample, int):
            sample = getattr(getattr(denoiser, "config", None), "sample_size", None)
        if isinstance(sample, (list, tuple)):
            sample = sample[0]
        # A pipeline with no autoencoder (DeepFloyd IF's stage I) denoises pixels: its sample size is the size.
        pixels = not any(self.components.get(name) is not None for name in ("vae", "movq", "vqgan"))
        factor = 1 if pixels else getattr(self.base, "vae_scale_factor", 8)
        return int(sample * factor) if sample else 512

    @property
    def task_classes(self) -> dict[str, type]:
        """The tasks (not options such as SAG) this pool serves, with the class that runs each."""
        return {name: cls for name, cls in self.view_classes.items() if name in TASKS}

    @property
    def components(self) -> dict[str, Any]:
        """The pool's components by name, as the base pipeline holds them."""
        return self.base.components

    def thread_tokenizers(self) -> dict[str, Any]:
        """This thread's own copies of the pool's tokenizers.

        Fast tokenizers keep padding and truncation settings in mutable state, and a pipeline's encode_prompt
        calls its tokenizer twice with different settings; two threads encoding at once crossed them (seen as
        images a few levels off under concurrency). Tokenizers hold no weights, so a copy per thread is cheap.
        """
        copies = getattr(self._per_thread, "tokenizers", None)
        if copies is None:
            copies = {
                name: copy.deepcopy(component)
                for name, component in self.components.items()
                if name.startswith("tokenizer") and component is not None
            }
            self._per_thread.tokenizers = copies
        return copies

    @property
    def has_safety_checker(self) -> bool:
        return self.components.get("safety_checker") is not None

    def supports(self, task: str) -> bool:
        return task in self.view_classes

    def view_as(self, name: str, **overrides: Any) -> DiffusionPipeline:
        """A view of class `view_classes[name]` over the pool's modules (for options and feature tasks)."""
        cls = self.view_classes[name]
        modules, options = cls._get_signature_keys(cls)
        # The safety-checker switches only where the class has them (the x4 upscaler has a checker slot but no
        # requires_safety_checker; SDXL-style classes have neither).
        for key in ("safety_checker", "requires_safety_checker"):
            if key in overrides and key not in modules and key not in options:
                overrides.pop(key)
        if "scheduler" in overrides and overrides["scheduler"] is None:  # a scheduler per stage: its own
            del overrides["scheduler"]
        # dtype= always: without it, from_pipe casts the shared modules to float32 (diffusers issue 12754).
        overrides = {**self.thread_tokenizers(), **overrides}
        pipe = cls.from_pipe(self.base, dtype=self.dtype, **overrides)
        pipe.set_progress_bar_config(disable=True)
        return pipe

    def view(self, task: Task, *, scheduler: SchedulerMixin, safety_checker: bool) -> DiffusionPipeline:
        """A pipeline for `task` over the pool's modules, with its own scheduler, running the checker or not."""
        overrides: dict[str, Any] = {"scheduler": scheduler}
        if "safety_checker" in self.components:
            checker = self.components["safety_checker"] if safety_checker else None
            overrides["safety_checker"] = checker
            # The checker stays loaded in the pool; only this view skips it, so the library's warning about a
            # disabled checker would be noise.
            overrides["requires_safety_checker"] = checker is not None
        # AutoPipeline.from_pipe builds the task class around the same module objects and, unlike
        # `SomePipeline.from_pipe(base)` without `dtype=`, does not cast them (diffusers issue 12754).
        pipe = task.auto_class.from_pipe(self.base, **self.thread_tokenizers(), **overrides)
        pipe.set_progress_bar_config(disable=True)
        return pipe

    def component_rows(self) -> list[dict[str, Any]]:
        """One row per component: name, class, dtype, device, bytes, and the tasks whose views use it."""
        return [
            component_row(name, module, self.tasks_using(name))
            for name, module in self.components.items()
            if module is not None
        ]

    def tasks_using(self, component: str) -> list[str]:
        """The tasks and options whose pipeline class takes this component."""
        return self._users.get(component, [])

    @functools.cached_property
    def _users(self) -> dict[str, list[str]]:
        # A pool's views never change (a VAE swap or a load makes a new Pool), and the memory panel asks every
        # two seconds: inspect each view class's signature once.
        users: dict[str, list[str]] = {}
        for task, cls in self.view_classes.items():
            expected, _optional = cls._get_signature_keys(cls)
            for component in expected:
                users.setdefault(component, []).append(task)
        return users

    def unique_bytes(self) -> int:
        """Bytes of all weights in the pool, each tensor counted once."""
        seen: dict[int, torch.Tensor] = {}
        for module in self.components.values():
            if isinstance(module, torch.nn.Module):
                for t in (*module.parameters(), *module.buffers()):
                    seen[id(t)] = t
        return sum(t.numel() * t.element_size() for t in seen.values())

    def naive_bytes(self) -> int:
        """What the task pipelines would take if each were loaded on its own with `from_pretrained`."""
        total = 0
        for task in self.view_classes:
            total += sum(module_bytes(self.components[c]) for c in self.components if task in self.tasks_using(c))
        return total
