"""Running one pipeline call: progress, live latents and Stop, for both callback styles."""

from __future__ import annotations

import inspect
import threading
from collections.abc import Callable
from typing import Any

import torch
from diffusers import DiffusionPipeline

StepCallback = Callable[[int, int], None]  # (steps done, steps in all)
PreviewCallback = Callable[[int, Any], None]  # (steps done, the latents then)


class _Stopped(Exception):
    """Raised inside a legacy step callback to end a pipeline that has no interrupt flag."""


def run_pipeline(
    pipe: DiffusionPipeline,
    arguments: dict[str, Any],
    *,
    steps: int,
    on_step: StepCallback | None,
    cancel: threading.Event | None,
    on_latents: PreviewCallback | None = None,
    extra_calls: int = 0,
    progress_bars: int = 0,
) -> tuple[Any | None, int | None]:
    """Call `pipe(**arguments)` reporting each step (and its latents, to `on_latents`) and honouring `cancel`;
    returns (output, the step a Stop ended it at, or None when it ran every step).

    Pipelines with `callback_on_step_end` are interrupted the documented way (their loop skips the remaining
    steps and still decodes). Older ones only have `callback(step, timestep, latents)`: Stop raises out of it,
    so they return no output. With `extra_calls` (a loop of several passes, each counting its steps from 0, some
    steps run twice), a legacy callback's progress is its calls so far out of the steps plus those.
    """
    # SAG and PAG swap attention processors on the shared UNet for the length of a call and put them back at
    # its end; a run ended by Stop (or an error) would skip that and change every other view. Put them back here.
    unet = getattr(pipe, "unet", None)
    processors = dict(unet.attn_processors) if unet is not None and hasattr(unet, "attn_processors") else None
    try:
        return _run(
            pipe,
            arguments,
            steps=steps,
            on_step=on_step,
            cancel=cancel,
            on_latents=on_latents,
            extra_calls=extra_calls,
            progress_bars=progress_bars,
        )
    finally:
        if processors is not None and dict(unet.attn_processors) != processors:
            unet.set_attn_processor(processors)


def _run(
    pipe: DiffusionPipeline,
    arguments: dict[str, Any],
    *,
    steps: int,
    on_step: StepCallback | None,
    cancel: threading.Event | None,
    on_latents: PreviewCallback | None,
    extra_calls: int = 0,
    progress_bars: int = 0,
) -> tuple[Any | None, int | None]:
    accepted = inspect.signature(pipe.__call__).parameters
    if on_step is not None:
        on_step = _in_asked_steps(on_step, steps, arguments)
    if "callback_on_step_end" in accepted:
        skipped: list[int] = []  # the step a Stop ended the loop at; a Stop after the last step skips nothing

        def step_end(p: DiffusionPipeline, step: int, timestep: Any, tensors: dict) -> dict:
            total = getattr(p, "num_timesteps", None) or steps
            if on_step is not None:
                on_step(step + 1, total)
            if on_latents is not None and "latents" in tensors:
                on_latents(step + 1, tensors["latents"])
            if cancel is not None and cancel.is_set() and step + 1 < total:
                p._interrupt = True
                skipped.append(step + 1)
            return tensors

        output = pipe(**arguments, callback_on_step_end=step_end)
        return output, (skipped[0] if skipped else None)

    if "callback" not in accepted or progress_bars:
        passes = max(progress_bars, 1)
        return _run_by_progress_bar(pipe, arguments, on_step=on_step, cancel=cancel, passes=passes, steps=steps)
    timesteps = _legacy_total_steps(pipe, arguments, steps)
    total = timesteps + extra_calls
    stopped_at: list[int] = []
    called = [0]

    def legacy(step: int, timestep: Any, latents: torch.Tensor) -> None:
        called[0] += 1
        if extra_calls:
            step = called[0] - 1
        if on_step is not None:
            on_step(step + 1, total)
        if on_latents is not None:
            on_latents(step + 1, latents)
        if cancel is not None and cancel.is_set() and step + 1 < total:
            stopped_at.append(step + 1 if not extra_calls else -(-(step + 1) * timesteps // total))  # in steps
            raise _Stopped

    try:
        return pipe(**arguments, callback=legacy, callback_steps=1), None
    except _Stopped:
        return None, stopped_at[0]


class _Steps:
    """What `DiffusionPipeline.progress_bar` returns (a tqdm), for pipelines with no step callback at all (DDPM, DiT,
    Dance Diffusion, ...): iterated or updated by their loop, it reports each step and raises Stop out of it."""

    def __init__(self, iterable: Any, total: int | None, report: Callable[[int, int], None]) -> None:
        self.iterable, self.report = iterable, report
        self.total = total if total is not None else len(iterable) if iterable is not None else 0
        self.done = 0

    def __iter__(self) -> Any:
        for item in self.iterable:
            yield item
            self.update()

    def update(self, n: int = 1) -> None:
        self.done += n
        self.report(self.done, max(self.total, self.done))

    def __enter__(self) -> _Steps:
        return self

    def __exit__(self, *exc: Any) -> None:
        return None


def _run_by_progress_bar(
    pipe: DiffusionPipeline,
    arguments: dict[str, Any],
    *,
    on_step: StepCallback | None,
    cancel: threading.Event | None,
    passes: int = 1,
    steps: int = 1,
) -> tuple[Any | None, int | None]:
    """With `passes` progress bars in a run (each over the steps: Pix2Pix Zero's inversion, then its two passes),
    progress is one climb over all of them, and a Stop is told in steps."""
    stopped_at: list[int] = []
    opened = [0]

    def report(done: int, total: int) -> None:
        if on_step is not None:
            on_step(done, total)
        if cancel is not None and cancel.is_set() and done < total:
            stopped_at.append(done if passes == 1 else -(-done * steps // total))
            raise _Stopped

    def progress_bar(iterable: Any = None, total: int | None = None, **_tqdm: Any) -> _Steps:
        before, opened[0] = opened[0], opened[0] + 1
        if passes == 1:
            return _Steps(iterable, total, report)
        return _Steps(iterable, total, lambda done, each: report(before * each + done, max(passes, before + 1) * each))

    # An attribute of this view only (a view per request): the pool's base pipeline keeps its own method.
    pipe.progress_bar = progress_bar
    try:
        return pipe(**arguments), None
    except _Stopped:
        return None, stopped_at[0]


def _in_asked_steps(on_step: StepCallback, steps: int, arguments: dict[str, Any]) -> StepCallback:
    """Progress in the steps the user asked for. Some schedulers call back more often than that: PNDM's warm-up adds
    one (26 for 25), second-order ones nearly double (Heun: 7 for 4). Fewer is real and shown as is (img2img at a
    strength runs that fraction of the steps, as diffusers' get_timesteps rounds it)."""
    strength = arguments.get("strength") if "image" in arguments else None
    asked = max(1, min(int(steps * strength), steps)) if isinstance(strength, (int, float)) else steps

    def report(done: int, total: int) -> None:
        if total > asked:
            done, total = -(-done * asked // total), asked  # ceil: the first call is step 1, the last is `asked`
        on_step(done, total)

    return report


def _legacy_total_steps(pipe: DiffusionPipeline, arguments: dict[str, Any], steps: int) -> int:
    # Legacy pipelines don't expose num_timesteps; ask a copy of the scheduler, as their loop would.
    scheduler = pipe.scheduler.__class__.from_config(pipe.scheduler.config)
    scheduler.set_timesteps(steps)
    total = len(scheduler.timesteps)
    strength = arguments.get("strength")
    if strength is not None and "image" in arguments:
        total = min(int(steps * strength), steps)
    return max(total, 1)
