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
    (
        "attend_excite",
        dict(task="attend_excite", excite_words="tower", max_iter_to_alter=2),
        "StableDiffusionAttendAndExcitePipeline",
    ),
    (
        "semantic",
        dict(task="semantic", edit_prompt_1="sunset", edit_scale_1=8.0, edit_warmup_steps=0, edit_threshold=0.5),
        "SemanticStableDiffusionPipeline",
    ),
    ("panorama", dict(task="panorama", width=192, circular_padding=True), "StableDiffusionPanoramaPipeline"),
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
    assert result.images[0].size == (fields.get("width", 64), 64)
    if result.images[0].size == plain.images[0].size:
        assert result.images[0].tobytes() != plain.images[0].tobytes(), f"{name} changed nothing"
    for key, module in modules.items():
        assert studio.pool.components[key] is module and next(module.parameters()).dtype == torch.float32
    assert studio.pool.unique_bytes() == bytes_before
    (tmp_path / "reproduce.py").write_text(result.info["code"])
    monkeypatch.chdir(tmp_path)
    runpy.run_path(str(tmp_path / "reproduce.py"), run_name="__main__")
    assert Image.open(tmp_path / "image.png").tobytes() == result.images[0].tobytes()


def test_attend_and_excite_finds_the_tokens_of_the_named_words(studio):
    from core.tasks.attend_excite import token_indices

    tokenizer = studio.pool.base.tokenizer
    # The demo's tokenizer has no merges: "cat" is three tokens, after the start token and "a".
    assert token_indices(tokenizer, "a cat", ["cat"]) == [2, 3, 4]
    with pytest.raises(InvalidRequest, match="The prompt has no word 'frog'"):
        studio.generate(GenerationRequest(**{**BASE, "task": "attend_excite", "excite_words": "frog"}))
    with pytest.raises(InvalidRequest, match="Name the words of the prompt"):
        studio.generate(GenerationRequest(**{**BASE, "task": "attend_excite", "excite_words": " , "}))


def test_semantic_guidance_removing_a_concept_differs_from_adding_it(studio):
    fields = dict(task="semantic", edit_prompt_1="sunset", edit_scale_1=8.0, edit_warmup_steps=0, edit_threshold=0.5)
    added = studio.generate(GenerationRequest(**{**BASE, **fields}))
    removed = studio.generate(GenerationRequest(**{**BASE, **fields, "edit_direction_1": "remove"}))
    assert added.info["edits"] == [{"prompt": "sunset", "direction": "add", "scale": 8.0}]
    assert added.images[0].tobytes() != removed.images[0].tobytes()
    plain = studio.generate(GenerationRequest(**{**BASE, "task": "semantic"}))  # no concept: the checkpoint's image
    text2img = studio.generate(GenerationRequest(**BASE))
    assert np.abs(np.asarray(plain.images[0], int) - np.asarray(text2img.images[0], int)).max() <= 1


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
