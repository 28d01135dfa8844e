"""Beyond SD 1.5: SDXL (two text encoders) through the same pool, views, options and snippet."""

from __future__ import annotations

import runpy

import pytest
import torch
from PIL import Image

from core.errors import InvalidRequest
from core.generation import GenerationRequest
from core.studio import Studio, StudioOptions

BASE = dict(prompt="a dune", steps=2, seed=8, safety_checker=True)


@pytest.fixture(scope="module")
def sdxl() -> Studio:
    studio = Studio(StudioOptions(device="cpu", offline=True))
    studio.load("demo-sdxl", variant="default", dtype="float32")
    return studio


def test_sdxl_serves_the_three_tasks_from_one_pool(sdxl):
    info = sdxl.model_info()
    assert info["pipeline"] == "StableDiffusionXLPipeline" and info["safety_checker"] is False
    assert (
        info["default_size"] == 1024
        and info["size_multiple"] == 8
        and info["options"] == ["pag", "refiner", "step_cache"]
    )
    modules = {k: v for k, v in sdxl.pool.components.items() if isinstance(v, torch.nn.Module)}
    assert {"text_encoder", "text_encoder_2", "unet", "vae"} <= set(modules)
    before = sdxl.pool.unique_bytes()
    image = Image.new("RGB", (64, 64), (10, 200, 90))
    runs = {
        "text2img": dict(width=64, height=64),
        "img2img": dict(image=image, strength=0.6),
        "inpaint": dict(image=image, mask=Image.new("L", (64, 64), 255), strength=1.0),
    }
    for task, fields in runs.items():
        result = sdxl.generate(GenerationRequest(task=task, **BASE, **fields))
        assert result.info["pipeline"] == sdxl.model_info()["task_pipelines"][task]
        assert result.images[0].size == (64, 64) and result.info["nsfw"] is None  # no checker to run
    for name, module in modules.items():
        assert sdxl.pool.components[name] is module and next(module.parameters()).dtype == torch.float32
    assert sdxl.pool.unique_bytes() == before


def test_pag_works_and_sag_says_it_does_not_apply(sdxl):
    plain = sdxl.generate(GenerationRequest(**BASE, width=64, height=64)).images[0]
    pag = sdxl.generate(GenerationRequest(**BASE, width=64, height=64, pag_scale=3.0))
    assert pag.info["pipeline"] == "StableDiffusionXLPAGPipeline" and pag.images[0].tobytes() != plain.tobytes()
    with pytest.raises(InvalidRequest, match="SAG is not available for StableDiffusionXLPipeline; set sag_scale to 0"):
        sdxl.generate(GenerationRequest(**BASE, width=64, height=64, sag_scale=0.5))
    # An out-of-range value is told its range first, as on any family (availability comes after validation).
    with pytest.raises(InvalidRequest, match="sag_scale must be a number between 0 and 10, got 50"):
        sdxl.generate(GenerationRequest(**BASE, width=64, height=64, sag_scale=50))


def test_sdxl_snippet_gives_the_same_pixels(sdxl, tmp_path, monkeypatch):
    result = sdxl.generate(GenerationRequest(**BASE, width=64, height=64, scheduler="Euler a"))
    (tmp_path / "reproduce.py").write_text(result.info["code"])
    monkeypatch.chdir(tmp_path)
    runpy.run_path(str(tmp_path / "reproduce.py"), run_name="__main__")
    assert Image.open(tmp_path / "image.png").tobytes() == result.images[0].tobytes()


@pytest.fixture(scope="module")
def sd3() -> Studio:
    studio = Studio(StudioOptions(device="cpu", offline=True))
    studio.load("demo-sd3", variant="default", dtype="float32")
    return studio


def test_sd3_without_t5_a_transformer_family_with_its_own_size_rule(sd3, tmp_path, monkeypatch):
    info = sd3.model_info()
    assert info["pipeline"] == "StableDiffusion3Pipeline" and info["size_multiple"] == 16
    assert info["default_size"] == 1024 and info["schedulers"] == ["default"] and info["options"] == ["pag"]
    assert sd3.pool.components["text_encoder_3"] is None, "loaded without its T5 encoder"
    with pytest.raises(InvalidRequest, match="width must be a multiple of 16, got 72; try 64 or 80"):
        sd3.generate(GenerationRequest(**BASE, width=72, height=64))
    image = Image.new("RGB", (104, 64), (200, 30, 30))  # 104 is no multiple of 16: used as 96
    for task, fields in (
        ("img2img", dict(image=image, strength=0.5)),
        ("inpaint", dict(image=image, mask=Image.new("L", (104, 64), 255), strength=1.0)),
    ):
        result = sd3.generate(GenerationRequest(task=task, **BASE, **fields))
        assert result.images[0].size == (96, 64) and result.info["pipeline"].startswith("StableDiffusion3")
    result = sd3.generate(GenerationRequest(**BASE, width=64, height=64))
    assert "text_encoder_3=None" in result.info["code"]
    (tmp_path / "reproduce.py").write_text(result.info["code"])
    monkeypatch.chdir(tmp_path)
    runpy.run_path(str(tmp_path / "reproduce.py"), run_name="__main__")
    assert Image.open(tmp_path / "image.png").tobytes() == result.images[0].tobytes()
