"""Step caching: DeepCache's reuse of a UNet's deep features between denoising steps, for the length of one run.

Adjacent steps of a diffusion loop change the UNet's deep (low-resolution) features little. DeepCache runs the whole
UNet every `interval` steps and, in between, only its shallowest branch (the input convolution, the last up block's
last layer and the output convolution), taking the rest from the last full step. The `DeepCache` package (the
paper's authors') does the wrapping; this module scopes it to one call on the pool's shared UNet, which every view
uses, so that no other run, view or visitor ever sees a cached UNet, also when the run fails or is stopped.

It applies where a view runs a `UNet2DConditionModel` once per step (the SD family's tasks that take it); a second
UNet call per step with other inputs (self-attention or perturbed-attention guidance) would read the first call's
cache, so those combinations are refused. The measured speed-up and its cost in quality: bench/step_cache.py,
docs/benchmarks.md.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from diffusers import DiffusionPipeline, UNet2DConditionModel

from core.errors import InvalidRequest

OFF = 1  # the full UNet at every step
MAX_INTERVAL = 5  # past this, images drift far from the full run (docs/benchmarks.md)
# Request options that call the UNet a second time in a step, on other inputs than the first call.
INCOMPATIBLE = {"sag_scale": "self-attention guidance (SAG)", "pag_scale": "perturbed-attention guidance (PAG)"}


# The families whose pipelines call their UNet as DeepCache expects it (the timestep second, by position) and whose
# images the tests compare with DeepCache on plain diffusers (tests/core/test_step_cache.py).
FAMILIES = ("stable-diffusion", "stable-diffusion-xl")


def supports(unet: Any, family: str | None) -> bool:
    """Whether step caching applies to this denoiser (DeepCache knows the SD UNet's blocks, not transformers')."""
    return isinstance(unet, UNet2DConditionModel) and family in FAMILIES


def check(request: Any, pipe: DiffusionPipeline, family: str | None) -> None:
    """Raise InvalidRequest, saying what to change, when the request asks for step caching the view can't do."""
    if request.step_cache <= OFF:
        return
    if not supports(getattr(pipe, "unet", None), family):
        raise InvalidRequest(
            f"Step caching works on Stable Diffusion and SDXL UNets, not on {type(pipe).__name__}. "
            "Set step_cache to 1 (off)."
        )
    for name, what in INCOMPATIBLE.items():
        if getattr(request, name, 0):
            raise InvalidRequest(
                f"Step caching can't be combined with {what}: it calls the UNet twice a step. Turn one of them off."
            )


@contextlib.contextmanager
def caching(pipe: DiffusionPipeline, interval: int) -> Iterator[None]:
    """For the length of the block, `pipe`'s UNet runs whole every `interval` steps (none when `interval` <= 1)."""
    if interval <= OFF:
        yield
        return
    from DeepCache import DeepCacheSDHelper

    unet = pipe.unet
    # DeepCache puts its wrappers on the modules as instance attributes and puts the methods back the same way;
    # those that had none (all, but for accelerate's offload hooks) get theirs removed, or each module would keep a
    # bound method of itself (a reference cycle that keeps a dropped UNet's memory until the garbage collector runs).
    own = {id(m) for m in unet.modules() if "forward" in vars(m)}
    helper = DeepCacheSDHelper(pipe=pipe)
    helper.set_params(cache_interval=interval, cache_branch_id=0)
    helper.enable()
    try:
        yield
    finally:
        helper.disable()
        for module in unet.modules():
            if id(module) not in own:
                vars(module).pop("forward", None)


def snippet_lines(interval: int) -> list[str]:
    """What a diffusers script adds after loading to run the same way."""
    if interval <= OFF:
        return []
    return [
        "from DeepCache import DeepCacheSDHelper  # pip install DeepCache",
        "",
        "helper = DeepCacheSDHelper(pipe=pipe)  # the whole UNet every few steps, its shallow branch in between",
        f"helper.set_params(cache_interval={interval}, cache_branch_id=0)",
        "helper.enable()",
    ]
