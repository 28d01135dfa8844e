"""DiffEdit (a view over the loaded checkpoint), Paint by Example and Stable unCLIP (companions): each through the
engine, with diffusers alone making the same image from the info's snippet."""

from __future__ import annotations

import runpy
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from core.errors import InvalidRequest
from core.generation import GenerationRequest
from core.studio import Studio, StudioOptions

PICTURE = Image.new("RGB", (64, 64), (200, 100, 30))
ImageDraw.Draw(PICTURE).ellipse((10, 10, 50, 50), fill="white")
MASK = Image.new("L", (64, 64), 0)
MASK.paste(255, (16, 16, 48, 48))
EXAMPLE = Image.new("RGB", (64, 64), (20, 60, 220))


@pytest.fixture(scope="module")
def studio() -> Studio:
    studio = Studio(StudioOptions(device="cpu", offline=True))
    studio.load("demo", variant="default", dtype="float32")
    return studio


def snippet_image(result, folder, inputs: dict[str, Image.Image], *, fresh: bool = False) -> Image.Image:
    """The first image the info's snippet saves; `fresh`: in a new Python process, as a user would run it."""
    for name, picture in inputs.items():
        picture.save(folder / name)
    (folder / "reproduce.py").write_text(result.info["code"])
    if fresh:
        subprocess.run([sys.executable, "reproduce.py"], cwd=folder, check=True, capture_output=True)
    else:
        runpy.run_path(str(folder / "reproduce.py"), run_name="__main__")
    return Image.open(folder / "image.png")


def test_diffedit_makes_its_mask_from_two_prompts_and_the_snippet_repeats_all_three_stages(
    studio, tmp_path, monkeypatch
):
    modules = {k: v for k, v in studio.pool.components.items() if isinstance(v, torch.nn.Module)}
    request = dict(task="diffedit", image=PICTURE, source_prompt="a bowl of fruits", prompt="a bowl of pears")
    result = studio.generate(GenerationRequest(**request, steps=4, strength=0.8, seed=3, safety_checker=False))
    assert result.info["pipeline"] == "StableDiffusionDiffEditPipeline"
    assert result.info["scheduler"] == "DDIM" and result.info["strength"] == 0.75  # 4 x 0.8 rounded to 3 steps
    (mask,) = result.extras["mask"]
    assert mask.size == (64, 64) and set(np.unique(np.asarray(mask))) <= {0, 255}
    for key, module in modules.items():
        assert studio.pool.components[key] is module
    monkeypatch.chdir(tmp_path)
    assert snippet_image(result, tmp_path, {"input.png": PICTURE}).tobytes() == result.images[0].tobytes()
    with pytest.raises(InvalidRequest, match="needs both prompts"):
        studio.generate(GenerationRequest(**{**request, "source_prompt": " "}, steps=4))


def test_paint_by_example_repaints_the_mask_from_the_example(studio, tmp_path):
    studio.load_companion("paint_by_example", "demo-paint-by-example")
    try:
        request = dict(task="paint_by_example", image=PICTURE, mask=MASK, steps=3, seed=5, safety_checker=False)
        result = studio.generate(GenerationRequest(**request, example_image=EXAMPLE))
        other = studio.generate(GenerationRequest(**request, example_image=PICTURE))
        assert result.info["pipeline"] == "PaintByExamplePipeline" and result.images[0].size == (64, 64)
        assert result.images[0].tobytes() != other.images[0].tobytes(), "the example changed nothing"
        rows = {row["name"]: row for row in studio.memory_report()["components"]}
        assert rows["paint_by_example/vae"]["shared_with"] == ["demo"]  # the demo's VAE files: held once
        # In a new process: the published checkpoint's model_index.json needs the snippet's module alias there too.
        files = {"input.png": PICTURE, "mask.png": MASK, "example_image.png": EXAMPLE}
        image = snippet_image(result, tmp_path, files, fresh=True)
        assert image.tobytes() == result.images[0].tobytes()
        with pytest.raises(InvalidRequest, match="needs an example image"):
            studio.generate(GenerationRequest(**request))
    finally:
        studio.unload_companion("paint_by_example")


def test_stable_unclip_varies_an_image_with_a_prompt(studio, tmp_path, monkeypatch):
    studio.load_companion("unclip", "demo-unclip")
    try:
        request = dict(task="unclip", image=PICTURE, prompt="at night", steps=3, seed=6, safety_checker=False)
        result = studio.generate(GenerationRequest(**request))
        noisier = studio.generate(GenerationRequest(**request, unclip_noise_level=500))
        assert result.info["pipeline"] == "StableUnCLIPImg2ImgPipeline" and result.info["noise_level"] == 0
        assert result.images[0].tobytes() != noisier.images[0].tobytes()
        monkeypatch.chdir(tmp_path)
        assert snippet_image(result, tmp_path, {"input.png": PICTURE}).tobytes() == result.images[0].tobytes()
    finally:
        studio.unload_companion("unclip")


def test_gligen_puts_each_phrase_in_its_box(studio, tmp_path, monkeypatch):
    studio.load_companion("gligen", "demo-gligen")
    try:
        request = dict(
            task="gligen", prompt="a cat and a lamp", gligen_phrases="a cat; a lamp", steps=3, width=64, height=64,
            seed=3, safety_checker=False,
        )  # fmt: skip
        result = studio.generate(GenerationRequest(**request, gligen_boxes="0,0.5,0.5,1; 0.5,0,1,0.5"))
        swapped = studio.generate(GenerationRequest(**request, gligen_boxes="0.5,0,1,0.5; 0,0.5,0.5,1"))
        assert result.info["pipeline"] == "StableDiffusionGLIGENPipeline"
        assert result.info["gligen_boxes"] == [[0.0, 0.5, 0.5, 1.0], [0.5, 0.0, 1.0, 0.5]]
        assert result.images[0].tobytes() != swapped.images[0].tobytes(), "the boxes changed nothing"
        monkeypatch.chdir(tmp_path)
        assert snippet_image(result, tmp_path, {}).tobytes() == result.images[0].tobytes()
        with pytest.raises(InvalidRequest, match="one box per phrase"):
            studio.generate(GenerationRequest(**request, gligen_boxes="0,0,1,1"))
        with pytest.raises(InvalidRequest, match=r"Box '0.5,0,0.2,1' is not x0,y0,x1,y1"):
            studio.generate(GenerationRequest(**request, gligen_boxes="0,0,1,1; 0.5,0,0.2,1"))
    finally:
        studio.unload_companion("gligen")


def test_boxes_drawn_in_colours_become_the_endpoints_text():
    from core.tasks.params import BOX_COLOURS, boxes_from_canvas

    canvas = Image.new("RGBA", (200, 100), (0, 0, 0, 0))
    draw = ImageDraw.Draw(canvas)
    draw.rectangle((10, 20, 49, 59), outline=BOX_COLOURS[0][1] + (255,), width=3)  # phrase 1: red, an outline
    draw.ellipse((100, 0, 199, 99), fill=BOX_COLOURS[1][1] + (255,))  # phrase 2: green, a filled area
    assert boxes_from_canvas(canvas) == "0.050,0.200,0.250,0.600; 0.500,0.000,1.000,1.000"
    only_second = Image.new("RGBA", (100, 100), (0, 0, 0, 0))
    ImageDraw.Draw(only_second).rectangle((0, 0, 50, 50), fill=BOX_COLOURS[1][1] + (255,))
    with pytest.raises(InvalidRequest, match="Draw a box in red too"):
        boxes_from_canvas(only_second)
    assert boxes_from_canvas(Image.new("RGBA", (10, 10))) == ""


def test_stable_unclip_text_to_image_goes_through_its_prior(studio, tmp_path, monkeypatch):
    studio.load_companion("unclip_text2img", "demo-unclip-text2img")
    try:
        request = dict(task="unclip_text2img", prompt="a cat", steps=3, prior_steps=3, width=64, height=64, seed=3)
        result = studio.generate(GenerationRequest(**request, safety_checker=False))
        noisier = studio.generate(GenerationRequest(**request, unclip_noise_level=500, safety_checker=False))
        assert result.info["pipeline"] == "StableUnCLIPPipeline" and result.info["prior_steps"] == 3
        assert result.images[0].tobytes() != noisier.images[0].tobytes(), "the embedding's noise changed nothing"
        rows = {row["name"]: row for row in studio.memory_report()["components"]}
        assert rows["unclip_text2img/vae"]["shared_with"] == ["demo"]
        monkeypatch.chdir(tmp_path)
        assert snippet_image(result, tmp_path, {}).tobytes() == result.images[0].tobytes()
    finally:
        studio.unload_companion("unclip_text2img")
