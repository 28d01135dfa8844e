"""Hugging Face ZeroGPU: a GPU is attached only while a `spaces.GPU`-decorated function runs.

`app.py` imports this module before anything that imports torch: on ZeroGPU, `spaces` must be imported before
CUDA is initialised (it lives in ui/ because core/ imports no UI or Spaces library). Off ZeroGPU nothing here
imports `spaces` and `run_generation` / `run_compare` just call the studio. On ZeroGPU they run in a forked GPU
worker: arguments and results are pickled (a request, a result), and changes made there (a scheduler swap, a
loaded LoRA) do not come back, which is why only generations run there. Stop and live previews need the main
process's callbacks, so they are not offered on ZeroGPU.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from core.generation import GenerationRequest, GenerationResult
    from core.studio import Studio


def enabled(env: dict[str, str] | None = None) -> bool:
    """On a ZeroGPU Space (Spaces set SPACES_ZERO_GPU there, and SPACE_ID on every Space)."""
    env = os.environ if env is None else env
    return bool(env.get("SPACE_ID")) and env.get("SPACES_ZERO_GPU", "").lower() in ("1", "true")


ON_ZERO_GPU = enabled()
if ON_ZERO_GPU:
    import spaces  # before torch, on purpose

MIN_SECONDS, MAX_SECONDS = 15, 120  # ZeroGPU's shortest sensible lease and its longest for one call
_studio: Studio | None = None


def bind(studio: Studio) -> None:
    """The studio the GPU functions run on (the forked worker inherits it, with the pool already loaded)."""
    global _studio
    _studio = studio


def estimate_seconds(request: GenerationRequest, *, images: int | None = None) -> int:
    """A GPU lease long enough for the request: ~0.12 s per step per image at 512x512 on an A10G-class slice
    (scaled by the pixel count), plus start-up, decode and the safety checker."""
    count = images if images is not None else request.num_images
    pixels = (request.width * request.height) / (512 * 512)
    from core.tasks import get_task

    frames = get_task(request.task).frames(request)
    seconds = 10 + 0.12 * request.steps * count * pixels * frames * (2 if request.refiner_switch else 1)
    return int(min(max(seconds, MIN_SECONDS), MAX_SECONDS))


def _generate(request: GenerationRequest, session: str) -> GenerationResult:
    assert _studio is not None, "zerogpu.bind(studio) first"
    return _studio.generate(request, session=session)


def _compare(base: GenerationRequest, schedulers: list[str], axis: str, values: list, session: str) -> Any:
    from core.compare import compare

    assert _studio is not None, "zerogpu.bind(studio) first"
    return compare(_studio, base, schedulers, axis, values, session=session)


def _generate_seconds(request: GenerationRequest, session: str) -> int:
    return estimate_seconds(request)


def _compare_seconds(base: GenerationRequest, schedulers: list[str], axis: str, values: list, session: str) -> int:
    return estimate_seconds(base, images=max(len(schedulers), 1) * max(len(values), 1))


if ON_ZERO_GPU:  # decorated at import, as ZeroGPU expects; the duration is computed from each call's arguments
    run_generation = spaces.GPU(duration=_generate_seconds)(_generate)
    run_compare = spaces.GPU(duration=_compare_seconds)(_compare)
else:
    run_generation, run_compare = _generate, _compare
