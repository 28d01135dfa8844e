"""The scheduler catalog, and isolation of per-request schedulers under concurrent requests."""

from __future__ import annotations

import threading

import diffusers
import numpy as np
import pytest

from core import schedulers
from core.errors import InvalidRequest
from core.generation import GenerationRequest
from core.studio import Studio, StudioOptions

REQUIRED = [
    "Euler",
    "Euler a",
    "Heun",
    "LMS",
    "LMS Karras",
    "DDIM",
    "DDPM",
    "PNDM",
    "DPM++ 2M",
    "DPM++ 2M Karras",
    "DPM++ 2M SDE",
    "DPM++ 2M SDE Karras",
    "DPM++ SDE",
    "DPM++ SDE Karras",
    "DPM2",
    "DPM2 Karras",
    "DPM2 a",
    "DPM2 a Karras",
    "UniPC",
    "DEIS",
]


@pytest.fixture(scope="module")
def studio() -> Studio:
    studio = Studio(StudioOptions(device="cpu", offline=True))
    studio.load("demo", variant="default", dtype="float32")
    return studio


def test_every_required_name_is_offered_for_sd15(studio):
    names = studio.scheduler_names()
    assert names[0] == "default"
    assert set(REQUIRED) <= set(names)


def test_names_build_the_right_class_from_the_checkpoint_config(studio):
    base = studio.pool.base.scheduler
    karras = schedulers.build("DPM++ 2M Karras", base)
    assert isinstance(karras, diffusers.DPMSolverMultistepScheduler)
    assert karras.config.use_karras_sigmas and karras.config.algorithm_type == "dpmsolver++"
    assert karras.config.beta_schedule == "scaled_linear" and karras.config.beta_end == pytest.approx(0.012)
    default = schedulers.build("default", base)
    assert type(default) is type(base) and default is not base and dict(default.config) == dict(base.config)


def test_incompatible_names_are_not_offered():
    flow = diffusers.FlowMatchEulerDiscreteScheduler()
    names = schedulers.compatible_names(flow)
    assert "Euler a" not in names and "DPM++ 2M Karras" not in names
    with pytest.raises(InvalidRequest, match="does not work with this checkpoint"):
        schedulers.build("Euler a", flow)


def test_unknown_name_lists_the_choices(studio):
    with pytest.raises(InvalidRequest, match=r"Unknown scheduler 'Euler b'.*DPM\+\+ 2M Karras"):
        studio.generate(GenerationRequest(prompt="x", scheduler="Euler b", width=64, height=64, steps=2))


@pytest.mark.parametrize("name", [c.name for c in schedulers.CATALOG])
def test_every_scheduler_generates(studio, name, monkeypatch):
    """The view runs on the named class with its overrides (a name that was ignored would run PNDM)."""
    from core import runs

    used = []
    real = runs.run_pipeline

    def spy(pipe, *args, **kwargs):
        used.append(pipe.scheduler)
        return real(pipe, *args, **kwargs)

    monkeypatch.setattr(runs, "run_pipeline", spy)
    result = studio.generate(GenerationRequest(prompt="x", scheduler=name, width=64, height=64, steps=3, seed=5))
    (scheduler,) = used
    choice = schedulers.choice(name)
    assert type(scheduler).__name__ == choice.class_name == result.info["scheduler_class"]
    assert {k: scheduler.config[k] for k in choice.overrides} == choice.overrides
    for flag in ("use_karras_sigmas", "use_exponential_sigmas"):  # no sigma schedule the name doesn't ask for
        assert bool(scheduler.config.get(flag)) == bool(choice.overrides.get(flag)), flag
    assert scheduler is not studio.pool.base.scheduler, "a fresh scheduler per run"
    assert np.asarray(result.images[0]).std() > 0


# Pairs that may give the same bytes: the same sampler written two ways, two exact equivalents (Euler ancestral
# steps are DDPM's posterior steps; DDIM is Euler on the probability-flow ODE), which round alike on this twin.
MAY_MATCH = [{"Euler a", "DDPM"}, {"Euler", "DDIM"}]


def test_every_scheduler_makes_its_own_image(studio):
    """Same seed, same prompt: each name gives its own image (the names reach the denoising loop). Six steps:
    below five, diffusers' DPM++ 3M runs its lower orders only and is 2M's image."""
    images: dict[bytes, set[str]] = {}
    for name in studio.scheduler_names():
        made = studio.generate(GenerationRequest(prompt="x", scheduler=name, width=64, height=64, steps=6, seed=5))
        images.setdefault(made.images[0].tobytes(), set()).add(name)
    same = [names for names in images.values() if len(names) > 1]
    assert {"default", "PNDM"} in same, "`default` is the checkpoint's own PNDM"
    assert all(names in [{"default", "PNDM"}, *MAY_MATCH] for names in same), same
    assert len(images) >= len(studio.scheduler_names()) - 1 - len(MAY_MATCH)


def test_concurrent_requests_match_sequential_ones(studio):
    names = ["Euler a", "DPM++ 2M Karras", "DDIM", "UniPC", "Heun", "DPM2 a"]

    def request(i: int) -> GenerationRequest:
        return GenerationRequest(prompt=f"p{i}", scheduler=names[i], width=64, height=64, steps=6, seed=100 + i)

    sequential = [np.asarray(studio.generate(request(i)).images[0]) for i in range(len(names))]
    concurrent: dict[int, np.ndarray] = {}
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(names))

    def worker(i: int) -> None:
        try:
            barrier.wait()
            concurrent[i] = np.asarray(studio.generate(request(i)).images[0])
        except BaseException as e:  # surfaced by the assertion below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(names))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors
    for i, name in enumerate(names):
        assert np.array_equal(concurrent[i], sequential[i]), f"{name} differed when run concurrently"
