"""The pool: every task view shares the same module objects, in the same dtype, adding no bytes."""

from __future__ import annotations

import pytest
import torch

from core import schedulers
from core.studio import Studio, StudioOptions
from core.tasks import TASKS


@pytest.fixture(scope="module", params=["float32", "bfloat16"])
def studio(request) -> Studio:
    studio = Studio(StudioOptions(device="cpu", offline=True))
    studio.load("demo", variant="default", dtype=request.param)
    return studio


def _view(studio: Studio, task: str):
    pool = studio.pool
    return pool.view(TASKS[task], scheduler=schedulers.build("default", pool.base.scheduler), safety_checker=True)


def test_switching_tasks_shares_objects_keeps_dtype_and_adds_no_bytes(studio):
    pool = studio.pool
    modules = {k: v for k, v in pool.components.items() if isinstance(v, torch.nn.Module)}
    dtypes = {k: next(v.parameters()).dtype for k, v in modules.items()}
    bytes_before = pool.unique_bytes()
    for task in ["text2img", "img2img", "inpaint", "text2img", "inpaint", "img2img"]:
        view = _view(studio, task)
        assert type(view).__name__ == studio.model_info()["task_pipelines"][task]
        for name, module in modules.items():
            assert getattr(view, name) is module, f"{task} view has its own {name}"
            assert next(module.parameters()).dtype == dtypes[name], f"{name} changed dtype after {task}"
    assert pool.unique_bytes() == bytes_before
    assert {str(d) for d in dtypes.values()} == {f"torch.{studio.model_info()['dtype']}"}


def test_each_view_gets_its_own_scheduler(studio):
    a, b = _view(studio, "text2img"), _view(studio, "text2img")
    assert a.scheduler is not b.scheduler
    assert a.scheduler is not studio.pool.base.scheduler
    assert a.unet is b.unet


def test_skipping_the_checker_is_per_view(studio):
    pool = studio.pool
    sched = schedulers.build("default", pool.base.scheduler)
    off = pool.view(TASKS["text2img"], scheduler=sched, safety_checker=False)
    on = pool.view(TASKS["text2img"], scheduler=sched, safety_checker=True)
    assert off.safety_checker is None
    assert on.safety_checker is pool.components["safety_checker"]
    assert pool.has_safety_checker, "the checker stays loaded in the pool"


def test_pool_and_naive_bytes(studio):
    pool = studio.pool
    one_pipeline = sum(row["bytes"] for row in pool.component_rows())
    assert pool.unique_bytes() == one_pipeline
    # Loaded alone, each view would hold every component (the seed's table: SD and SAG cost the same), the four
    # control views too (their control modules are counted where they are loaded); AnimateDiff all but the checker.
    checker = next(row["bytes"] for row in pool.component_rows() if row["name"] == "safety_checker")
    views = [
        "text2img", "img2img", "inpaint", "sag", "pag", "controlnet", "controlnet_img2img", "controlnet_inpaint",
        "t2i_adapter", "controlnet_xs", "safe_text2img", "paradigms", "attend_excite", "semantic", "panorama",
        "diffedit", "cycle", "pix2pix_zero", "model_editing", "animate", "video_zero",
    ]  # fmt: skip
    assert pool.naive_bytes() == (len(views) - 1) * one_pipeline + (one_pipeline - checker)
    unet = next(row for row in pool.component_rows() if row["name"] == "unet")
    assert unet["used_by"] == views
