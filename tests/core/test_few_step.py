"""Few-step models are recognised and told what they need: an LCM checkpoint, an LCM-LoRA on the demo, a Turbo
checkpoint by its Hub id; and InstructPix2Pix, the edit-by-instruction companion."""

from __future__ import annotations

import runpy

import numpy as np
import pytest
from PIL import Image

from core.generation import GenerationRequest
from core.studio import Studio, StudioOptions

BASE = dict(prompt="a cat", width=64, height=64, seed=3, safety_checker=False)


def test_an_lcm_checkpoint_runs_in_four_steps_with_its_own_scheduler(tmp_path, monkeypatch):
    studio = Studio(StudioOptions(device="cpu", offline=True))
    info = studio.load("demo-lcm", variant="default", dtype="float32")
    assert info["pipeline"] == "LatentConsistencyModelPipeline"
    assert info["few_step"]["name"] == "LCM" and info["few_step"]["steps"] == 4
    assert "LCM" in info["schedulers"]
    result = studio.generate(GenerationRequest(**BASE, steps=4, guidance_scale=8.0))
    assert result.info["pipeline"] == "LatentConsistencyModelPipeline" and result.info["warnings"] == []
    assert result.info["scheduler_class"] == "LCMScheduler"
    (tmp_path / "reproduce.py").write_text(result.info["code"])
    monkeypatch.chdir(tmp_path)
    runpy.run_path(str(tmp_path / "reproduce.py"), run_name="__main__")
    assert Image.open(tmp_path / "image.png").tobytes() == result.images[0].tobytes()
    assert studio.generate(GenerationRequest(**BASE, task="img2img", image=result.images[0], steps=4)).images


def test_an_lcm_lora_makes_the_demo_a_few_step_model_until_it_is_removed():
    studio = Studio(StudioOptions(device="cpu", offline=True))
    assert studio.load("demo", variant="default", dtype="float32")["few_step"] is None
    studio.load_lora("demo-lora", 0.5)
    studio.load_lora("demo-lcm-lora", 1.0)  # composes with the other LoRA
    few = studio.model_info()["few_step"]
    assert few["name"] == "LCM-LoRA" and few["scheduler"] == "LCM" and few["guidance_scale"] == 1.0
    result = studio.generate(GenerationRequest(**BASE, steps=4, guidance_scale=1.0, scheduler="LCM"))
    assert result.info["scheduler_class"] == "LCMScheduler" and result.info["warnings"] == []
    warned = studio.generate(GenerationRequest(**BASE, steps=4, guidance_scale=7.5, scheduler="LCM"))
    assert any("over-saturates" in w for w in warned.info["warnings"])
    studio.unload_lora("demo_lcm_lora")
    assert studio.model_info()["few_step"] is None
    plain = studio.generate(GenerationRequest(**BASE, steps=4, guidance_scale=7.5))
    assert plain.info["warnings"] == []


def test_a_turbo_checkpoint_is_recognised_by_its_hub_id(demo_dir, hub_cache):
    hub_cache(demo_dir, "stabilityai/sd-turbo")
    studio = Studio(StudioOptions(device="cpu", offline=True))
    few = studio.load("stabilityai/sd-turbo", variant="default", dtype="float32")["few_step"]
    assert few == {**few, "name": "SD Turbo", "steps": 1, "guidance_scale": 0.0, "scheduler": "default"}
    result = studio.generate(GenerationRequest(**BASE, steps=1, guidance_scale=0.0))
    assert result.images and result.info["warnings"] == []
    assert any(
        "distilled for guidance 0" in w for w in studio.generate(GenerationRequest(**BASE, steps=1)).info["warnings"]
    )


@pytest.fixture(scope="module")
def studio() -> Studio:
    studio = Studio(StudioOptions(device="cpu", offline=True))
    studio.load("demo", variant="default", dtype="float32")
    return studio


def test_instruct_pix2pix_edits_on_its_companion_and_shares_the_demos_text_encoder(studio, tmp_path, monkeypatch):
    studio.load_companion("instruct", "demo-instruct")
    try:
        picture = Image.new("RGB", (96, 64), (200, 120, 40))
        request = dict(task="instruct", image=picture, prompt="make it blue", steps=3, seed=4, safety_checker=False)
        result = studio.generate(GenerationRequest(**request, image_guidance_scale=1.5))
        assert result.info["pipeline"] == "StableDiffusionInstructPix2PixPipeline"
        assert result.images[0].size == (96, 64) and result.info["image_guidance_scale"] == 1.5
        closer = studio.generate(GenerationRequest(**request, image_guidance_scale=4.0))
        assert not np.array_equal(np.asarray(closer.images[0]), np.asarray(result.images[0]))
        rows = {row["name"]: row for row in studio.memory_report()["components"]}
        # The twin's text encoder and VAE are the demo's files: the pool holds them once.
        assert rows["instruct/text_encoder"]["shared_with"] == ["demo"]
        assert rows["instruct/vae"]["shared_with"] == ["demo"]
        picture.save(tmp_path / "input.png")
        (tmp_path / "reproduce.py").write_text(result.info["code"])
        monkeypatch.chdir(tmp_path)
        runpy.run_path(str(tmp_path / "reproduce.py"), run_name="__main__")
        assert Image.open(tmp_path / "image.png").tobytes() == result.images[0].tobytes()
    finally:
        studio.unload_companion("instruct")
