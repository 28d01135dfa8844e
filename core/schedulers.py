"""Scheduler names people know from other Stable Diffusion UIs, mapped to diffusers classes and settings.

Schedulers hold per-run state (timesteps, step index, solver history), so the engine builds a fresh one for
every request from the checkpoint's own config; nothing here is ever shared between two runs.
"""

from __future__ import annotations

import functools
import inspect
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import diffusers
import torch
from diffusers.schedulers.scheduling_utils import SchedulerMixin

from core.errors import InvalidRequest

DEFAULT = "default"


@dataclass(frozen=True)
class SchedulerChoice:
    """A user-facing scheduler name, the diffusers class behind it and the config it overrides, and what
    AUTOMATIC1111's web UI calls it: its `sampler` and its `schedule` (Schedule type), the two fields its infotext
    writes (None: A1111 has no such sampler; the name is written as it is)."""

    name: str
    class_name: str
    overrides: dict[str, Any] = field(default_factory=dict)
    sampler: str | None = ""  # "" = the name without its schedule
    schedule: str = "Uniform"

    @property
    def a1111(self) -> tuple[str, str]:
        """(Sampler, Schedule type) as A1111 writes them; a sampler A1111 lacks keeps this studio's name."""
        if self.sampler is None:
            return self.name, self.schedule
        if self.sampler:
            return self.sampler, self.schedule
        base = self.name.removesuffix(f" {self.schedule}") if self.schedule != "Uniform" else self.name
        return base, self.schedule


_KARRAS = {"use_karras_sigmas": True}
_EXPONENTIAL = {"use_exponential_sigmas": True}
_SDE = {"algorithm_type": "sde-dpmsolver++"}
_SDE_3M = {**_SDE, "solver_order": 3}
_SIGMA_FLAGS = {"use_karras_sigmas", "use_exponential_sigmas", "use_beta_sigmas"}

CATALOG: tuple[SchedulerChoice, ...] = (
    SchedulerChoice("Euler", "EulerDiscreteScheduler"),
    SchedulerChoice("Euler a", "EulerAncestralDiscreteScheduler"),
    SchedulerChoice("Heun", "HeunDiscreteScheduler"),
    SchedulerChoice("LMS", "LMSDiscreteScheduler"),
    SchedulerChoice("LMS Karras", "LMSDiscreteScheduler", _KARRAS, schedule="Karras"),
    SchedulerChoice("DDIM", "DDIMScheduler"),
    SchedulerChoice("DDPM", "DDPMScheduler", sampler=None),  # A1111 has no DDPM sampler
    SchedulerChoice("PNDM", "PNDMScheduler", sampler="PLMS"),  # SD's PNDM skips its Runge-Kutta steps: PLMS
    SchedulerChoice("DPM++ 2M", "DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++"}),
    SchedulerChoice(
        "DPM++ 2M Karras",
        "DPMSolverMultistepScheduler",
        {"algorithm_type": "dpmsolver++", **_KARRAS},
        schedule="Karras",
    ),
    SchedulerChoice("DPM++ 2M SDE", "DPMSolverMultistepScheduler", _SDE),
    SchedulerChoice("DPM++ 2M SDE Karras", "DPMSolverMultistepScheduler", {**_SDE, **_KARRAS}, schedule="Karras"),
    SchedulerChoice(
        "DPM++ 2M SDE Exponential", "DPMSolverMultistepScheduler", {**_SDE, **_EXPONENTIAL}, schedule="Exponential"
    ),
    SchedulerChoice("DPM++ 3M SDE", "DPMSolverMultistepScheduler", _SDE_3M),
    SchedulerChoice("DPM++ 3M SDE Karras", "DPMSolverMultistepScheduler", {**_SDE_3M, **_KARRAS}, schedule="Karras"),
    SchedulerChoice(
        "DPM++ 3M SDE Exponential", "DPMSolverMultistepScheduler", {**_SDE_3M, **_EXPONENTIAL}, schedule="Exponential"
    ),
    SchedulerChoice("DPM++ SDE", "DPMSolverSDEScheduler"),
    SchedulerChoice("DPM++ SDE Karras", "DPMSolverSDEScheduler", _KARRAS, schedule="Karras"),
    SchedulerChoice("DPM2", "KDPM2DiscreteScheduler"),
    SchedulerChoice("DPM2 Karras", "KDPM2DiscreteScheduler", _KARRAS, schedule="Karras"),
    SchedulerChoice("DPM2 a", "KDPM2AncestralDiscreteScheduler"),
    SchedulerChoice("DPM2 a Karras", "KDPM2AncestralDiscreteScheduler", _KARRAS, schedule="Karras"),
    SchedulerChoice("UniPC", "UniPCMultistepScheduler"),
    SchedulerChoice("DEIS", "DEISMultistepScheduler", sampler=None),  # nor a DEIS one
    # For LCM-LoRAs (and LCM checkpoints, whose default it is): few steps, guidance about 1.
    SchedulerChoice("LCM", "LCMScheduler"),
)
_BY_NAME = {choice.name: choice for choice in CATALOG}

# A1111's "Automatic" schedule type is each sampler's own default (its sd_samplers_kdiffusion.py: `scheduler`
# options); the others run on the model's own sigmas, which this catalog calls Uniform.
A1111_AUTOMATIC = {
    "DPM++ 2M": "Karras",
    "DPM++ SDE": "Karras",
    "DPM2": "Karras",
    "DPM2 a": "Karras",
    "DPM++ 2S a": "Karras",
    "DPM++ 2M SDE": "Exponential",
    "DPM++ 2M SDE Heun": "Exponential",
    "DPM++ 3M SDE": "Exponential",
}
A1111_SCHEDULES = ("Uniform", "Karras", "Exponential")  # of A1111's schedule types, those the catalog runs


def choice(name: str) -> SchedulerChoice | None:
    return _BY_NAME.get(name)


def from_a1111(sampler: str, schedule: str | None) -> tuple[str | None, str]:
    """An A1111 (Sampler, Schedule type) -> (this studio's name or None, the schedule it was read as).

    "Automatic" is the sampler's own default, as A1111 runs it. With no schedule type at all the text predates
    A1111 1.9, whose sampler names carried the schedule ("DPM++ 2M Karras"; "DPM++ 2M" was without Karras): the
    whole name is matched first, and only a name the catalog lacks falls back to the automatic schedule."""
    sampler, schedule = sampler.strip(), (schedule or "").strip()
    if not schedule and sampler in _BY_NAME:
        found = _BY_NAME[sampler]
        return found.name, found.a1111[1]
    lowered = {c.name.lower(): c for c in CATALOG}
    if not schedule and sampler.lower() in lowered:
        found = lowered[sampler.lower()]
        return found.name, found.a1111[1]
    if not schedule or schedule.lower() == "automatic":
        schedule = A1111_AUTOMATIC.get(sampler, "Uniform")
    for c in CATALOG:
        written, its_schedule = c.a1111
        if written.lower() == sampler.lower() and its_schedule.lower() == schedule.lower():
            return c.name, its_schedule
    return None, schedule


def of_scheduler(scheduler: SchedulerMixin | None) -> SchedulerChoice | None:
    """The catalog entry a built scheduler is (its class and every override it carries), the most specific one;
    None for a class the catalog lacks (a flow-matching Euler, unCLIP's per-stage ones)."""
    if scheduler is None:
        return None
    fits = [
        c
        for c in CATALOG
        if c.class_name == type(scheduler).__name__
        and all(scheduler.config.get(k) == v for k, v in c.overrides.items())
        and not _extra_sigmas(scheduler, c)
    ]
    return max(fits, key=lambda c: len(c.overrides), default=None)


def _extra_sigmas(scheduler: SchedulerMixin, c: SchedulerChoice) -> bool:
    """Whether the scheduler uses a sigma schedule the entry doesn't name (Karras sigmas on a plain entry)."""
    return any(scheduler.config.get(flag) and flag not in c.overrides for flag in _SIGMA_FLAGS) or (
        "solver_order" not in c.overrides
        and scheduler.config.get("solver_order", 2) == 3
        and "algorithm_type" in c.overrides
    )


def compatible_names(base: SchedulerMixin | None, pipeline: type | None = None) -> list[str]:
    """The names to offer for a pipeline whose scheduler is `base`: `default` first, then the compatible ones.
    Given the pipeline's class, only those its denoising loop can drive (see `scales_inputs`)."""
    if base is None:  # a scheduler per stage (unCLIP): its own only
        return [DEFAULT]
    compatible = {cls.__name__ for cls in base.compatibles} | {type(base).__name__}
    if "beta_schedule" in base.config and _discrete(base):
        # LCMScheduler lists no compatibles, yet takes any DDPM-style discrete config: an LCM-LoRA on any SD or
        # SDXL checkpoint runs on it (diffusers' LCM-LoRA guide swaps it in with from_config).
        compatible.add("LCMScheduler")
    if pipeline is not None and not scales_inputs(pipeline):
        compatible = {name for name in compatible if not _rescales_inputs(name)} | {type(base).__name__}
    if _flow_sigmas(base):
        # A flow-prediction config (Sana's DPM-Solver): DDIM, DDPM, PNDM and LCM refuse `flow_prediction` inside the
        # run, and Karras sigmas on flow sigmas give NaN (black images). Only classes that take flow sigmas.
        compatible = {name for name in compatible if _takes_flow_sigmas(name)} | {type(base).__name__}
        flow = [c for c in CATALOG if c.class_name in compatible and not c.overrides.keys() & _SIGMA_FLAGS]
        return [DEFAULT] + [c.name for c in flow]
    return [DEFAULT] + [c.name for c in CATALOG if c.class_name in compatible]


def _flow_sigmas(base: SchedulerMixin) -> bool:
    """Whether the scheduler config is a flow-matching one inside a DDPM-style class (`use_flow_sigmas`)."""
    return bool(base.config.get("use_flow_sigmas")) or base.config.get("prediction_type") == "flow_prediction"


@functools.lru_cache
def _takes_flow_sigmas(class_name: str) -> bool:
    cls = getattr(diffusers, class_name, None)
    return cls is not None and "use_flow_sigmas" in inspect.signature(cls.__init__).parameters


@functools.lru_cache
def scales_inputs(pipeline: type) -> bool:
    """Whether the pipeline's denoising loop calls `scheduler.scale_model_input`. Kandinsky's and Wuerstchen's
    never do: Euler-style schedulers, which divide the model's input by its noise level there, then feed the UNet
    unscaled noise and give noise back; schedulers whose scaling is the identity (DDIM, DPM++ 2M, UniPC) work.
    Read from the source of the pipeline's package (its combined class calls the decoder's loop in a sibling
    module): diffusers declares this nowhere."""
    package = sys.modules[pipeline.__module__].__name__.rpartition(".")[0]
    folder = Path(sys.modules[package].__file__).parent
    return any("scale_model_input" in path.read_text(encoding="utf-8") for path in folder.glob("*.py"))


@functools.lru_cache
def _rescales_inputs(class_name: str) -> bool:
    """Whether the scheduler's `scale_model_input` changes the sample (measured on a fresh one)."""
    cls = getattr(diffusers, class_name, None)
    if cls is None:
        return True
    try:
        scheduler = cls()
    except TypeError:  # needs settings of its own (VQ Diffusion's classes): not one to swap in
        return True
    if not hasattr(scheduler, "scale_model_input"):  # flow-matching schedulers have none: nothing to scale
        return False
    scheduler.set_timesteps(4)
    sample = torch.ones(1, 1, 2, 2)
    return not torch.equal(scheduler.scale_model_input(sample, scheduler.timesteps[0]), sample)


def _discrete(base: SchedulerMixin) -> bool:
    """Whether the base is one of diffusers' DDPM-style discrete schedulers (what SD and SDXL ship)."""
    from diffusers.schedulers.scheduling_utils import KarrasDiffusionSchedulers

    return type(base).__name__ in {e.name for e in KarrasDiffusionSchedulers} | {"LCMScheduler"}


def resolve(
    name: str, base: SchedulerMixin | None, pipeline: type | None = None
) -> tuple[type[SchedulerMixin] | None, dict[str, Any]]:
    """The class and config overrides the name stands for on this pipeline; a clear error if it can't be used.
    A pipeline with no `scheduler` of its own (unCLIP: one per stage) has only its default: (None, {})."""
    if base is None:
        if name == DEFAULT:
            return None, {}
        raise InvalidRequest("This pipeline has a scheduler per stage, not one to swap; set the scheduler to default.")
    if name == DEFAULT:
        return type(base), {}
    choice = _BY_NAME.get(name)
    names = compatible_names(base, pipeline)
    if choice is None:
        raise InvalidRequest(f"Unknown scheduler {name!r}. Choose one of: {', '.join(names)}.")
    if name not in names:
        owner = f"{pipeline.__name__} (its {type(base).__name__})" if pipeline is not None else type(base).__name__
        raise InvalidRequest(
            f"Scheduler {name!r} does not work with this checkpoint's {owner}. Choose one of: {', '.join(names)}."
        )
    return getattr(diffusers, choice.class_name), dict(choice.overrides)


def build(name: str, base: SchedulerMixin | None, pipeline: type | None = None) -> SchedulerMixin | None:
    """A new scheduler for one run, built from the checkpoint's config with the name's overrides (None where the
    pipeline has no single scheduler)."""
    cls, overrides = resolve(name, base, pipeline)
    return cls.from_config(base.config, **overrides) if cls is not None else None
