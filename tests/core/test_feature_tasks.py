"""Guidance options and feature tasks built with from_pipe over the loaded checkpoint: SAG, PAG, safe SD."""

from __future__ import annotations

import runpy

import numpy as np
import pytest
import torch
from PIL import Image

from core.errors import InvalidRequest
from core.generation import GenerationRequest
from core.studio import Studio, StudioOptions

BASE = dict(prompt="a tower", steps=3, width=64, height=64, seed=21, safety_checker=False)


@pytest.fixture(scope="module")
def studio() -> Studio:
    studio = Studio(StudioOptions(device="cpu", offline=True))
    studio.load("demo", variant="default", dtype="float32")
    return studio


CASES = [
    ("sag", dict(task="text2img", sag_scale=0.75), "StableDiffusionSAGPipeline"),
    ("pag", dict(task="text2img", pag_scale=3.0), "StableDiffusionPAGPipeline"),
    ("safe", dict(task="safe_text2img", safety_preset="max"), "StableDiffusionPipelineSafe"),  # no warm-up steps
]


@pytest.mark.parametrize(("name", "fields", "pipeline"), CASES, ids=[c[0] for c in CASES])
def test_feature_runs_on_the_shared_pool_and_its_snippet_reproduces_it(
    studio, tmp_path, monkeypatch, name, fields, pipeline
):
    modules = {k: v for k, v in studio.pool.components.items() if isinstance(v, torch.nn.Module)}
    bytes_before = studio.pool.unique_bytes()
    plain = studio.generate(GenerationRequest(**BASE))
    result = studio.generate(GenerationRequest(**{**BASE, **fields}))
    assert result.info["pipeline"] == pipeline
    assert result.images[0].size == (64, 64)
    assert result.images[0].tobytes() != plain.images[0].tobytes(), f"{name} changed nothing"
    for key, module in modules.items():
        assert studio.pool.components[key] is module and next(module.parameters()).dtype == torch.float32
    assert studio.pool.unique_bytes() == bytes_before
    (tmp_path / "reproduce.py").write_text(result.info["code"])
    monkeypatch.chdir(tmp_path)
    runpy.run_path(str(tmp_path / "reproduce.py"), run_name="__main__")
    assert Image.open(tmp_path / "image.png").tobytes() == result.images[0].tobytes()


def test_pag_leaves_the_shared_unet_as_it_found_it(studio):
    before = studio.generate(GenerationRequest(**BASE)).images[0]
    studio.generate(GenerationRequest(**{**BASE, "pag_scale": 3.0}))
    after = studio.generate(GenerationRequest(**BASE)).images[0]
    assert np.array_equal(np.asarray(before), np.asarray(after))


def test_presets_and_options_are_checked(studio):
    with pytest.raises(InvalidRequest, match="not both"):
        studio.generate(GenerationRequest(**{**BASE, "sag_scale": 0.5, "pag_scale": 1.0}))
    with pytest.raises(InvalidRequest, match="safety_preset must be one of weak, medium, strong, max"):
        studio.generate(GenerationRequest(**{**BASE, "task": "safe_text2img", "safety_preset": "extreme"}))
    with pytest.raises(InvalidRequest, match="sag_scale must be a number between 0 and 10"):
        studio.generate(GenerationRequest(**{**BASE, "sag_scale": -1.0}))


def test_stopping_sag_midway_leaves_the_shared_unet_unchanged(studio):
    import threading

    before = studio.generate(GenerationRequest(**BASE)).images[0]
    processors = {k: type(v) for k, v in studio.pool.base.unet.attn_processors.items()}
    cancel = threading.Event()
    stopped = studio.generate(
        GenerationRequest(**{**BASE, "steps": 20, "sag_scale": 0.75}), on_step=lambda i, n: cancel.set(), cancel=cancel
    )
    assert stopped.info["interrupted"] is True and stopped.images == []
    assert {k: type(v) for k, v in studio.pool.base.unet.attn_processors.items()} == processors
    after = studio.generate(GenerationRequest(**BASE)).images[0]
    assert after.tobytes() == before.tobytes()
