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
    """A user-facing scheduler name, the diffusers class behind it and the config it overrides."""

    name: str
    class_name: str
    overrides: dict[str, Any] = field(default_factory=dict)


_KARRAS = {"use_karras_sigmas": True}

CATALOG: tuple[SchedulerChoice, ...] = (
    SchedulerChoice("Euler", "EulerDiscreteScheduler"),
    SchedulerChoice("Euler a", "EulerAncestralDiscreteScheduler"),
    SchedulerChoice("Heun", "HeunDiscreteScheduler"),
    SchedulerChoice("LMS", "LMSDiscreteScheduler"),
    SchedulerChoice("LMS Karras", "LMSDiscreteScheduler", _KARRAS),
    SchedulerChoice("DDIM", "DDIMScheduler"),
    SchedulerChoice("DDPM", "DDPMScheduler"),
    SchedulerChoice("PNDM", "PNDMScheduler"),
    SchedulerChoice("DPM++ 2M", "DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++"}),
    SchedulerChoice("DPM++ 2M Karras", "DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", **_KARRAS}),
    SchedulerChoice("DPM++ 2M SDE", "DPMSolverMultistepScheduler", {"algorithm_type": "sde-dpmsolver++"}),
    SchedulerChoice(
        "DPM++ 2M SDE Karras",
        "DPMSolverMultistepScheduler",
        {"algorithm_type": "sde-dpmsolver++", **_KARRAS},
    ),
    SchedulerChoice("DPM++ SDE", "DPMSolverSDEScheduler"),
    SchedulerChoice("DPM++ SDE Karras", "DPMSolverSDEScheduler", _KARRAS),
    SchedulerChoice("DPM2", "KDPM2DiscreteScheduler"),
    SchedulerChoice("DPM2 Karras", "KDPM2DiscreteScheduler", _KARRAS),
    SchedulerChoice("DPM2 a", "KDPM2AncestralDiscreteScheduler"),
    SchedulerChoice("DPM2 a Karras", "KDPM2AncestralDiscreteScheduler", _KARRAS),
    SchedulerChoice("UniPC", "UniPCMultistepScheduler"),
    SchedulerChoice("DEIS", "DEISMultistepScheduler"),
    # For LCM-LoRAs (and LCM checkpoints, whose default it is): few steps, guidance about 1.
    SchedulerChoice("LCM", "LCMScheduler"),
)
_BY_NAME = {choice.name: choice for choice in CATALOG}


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
        flow = [c for c in CATALOG if c.class_name in compatible and "use_karras_sigmas" not in c.overrides]
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
