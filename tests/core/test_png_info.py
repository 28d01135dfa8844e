"""Reading parameters back from PNGs: this studio's own files and the web UIs' plain-text `parameters` chunk."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, PngImagePlugin

from core.generation import ALONE_TOLERANCE, GenerationRequest
from core.outputs import png_metadata
from core.png_info import parse_parameters, read_png_info, request_fields
from core.studio import Studio, StudioOptions

WEBUI = """masterpiece, a lighthouse at dusk,
oil painting
Negative prompt: blurry, lowres
Steps: 28, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 6.5, Seed: 1234567890, Size: 512x768, \
Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, Lora hashes: "film: 1a2b, grain: 3c4d", Version: v1.10.1"""


def _png_with(tmp_path, text: dict[str, str]) -> Image.Image:
    meta = PngImagePlugin.PngInfo()
    for key, value in text.items():
        meta.add_text(key, value)
    path = tmp_path / "in.png"
    Image.new("RGB", (8, 8), "gray").save(path, pnginfo=meta)
    return Image.open(path)


def test_a_web_ui_block_becomes_our_fields(tmp_path):
    found = read_png_info(_png_with(tmp_path, {"parameters": WEBUI}))
    assert found["found"] == "web-ui" and found["task"] == "text2img"
    assert found["fields"] == {
        "prompt": "masterpiece, a lighthouse at dusk,\noil painting",
        "negative_prompt": "blurry, lowres",
        "steps": 28,
        "guidance_scale": 6.5,
        "seed": 1234567890,
        "width": 512,
        "height": 768,
        "scheduler": "DPM++ 2M Karras",  # sampler plus its schedule type
    }
    assert found["other"]["Model hash"] == "6ce0161689"
    assert found["other"]["Lora hashes"] == "film: 1a2b, grain: 3c4d"  # a quoted value keeps its commas


def test_img2img_blocks_older_formats_and_unknown_samplers():
    found = parse_parameters(
        "a cat\nSteps: 10, Sampler: Euler a, CFG scale: 7, Seed: 5, Size: 64x64, Denoising strength: 0.4"
    )
    assert found["task"] == "img2img" and found["fields"]["strength"] == 0.4
    assert found["fields"]["scheduler"] == "Euler a" and found["fields"]["negative_prompt"] == ""
    odd = parse_parameters("a dog\nSteps: 12, Sampler: UniPC-Restart-Custom, CFG scale: 3, Seed: 9, Size: 64x64")
    assert "scheduler" not in odd["fields"] and odd["other"]["Sampler"] == "UniPC-Restart-Custom"
    assert odd["fields"]["steps"] == 12
    no_settings = parse_parameters("just a prompt\nover two lines")
    assert no_settings["fields"] == {"prompt": "just a prompt\nover two lines", "negative_prompt": ""}


def test_an_image_without_parameters_says_so(tmp_path):
    found = read_png_info(_png_with(tmp_path, {"Software": "GIMP"}))
    assert found["found"] is None and found["fields"] == {}


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_our_own_png_round_trips_to_the_same_request(tmp_path, dtype):
    studio = Studio(StudioOptions(outputs_dir=tmp_path))
    studio.load("demo", variant="default", dtype=dtype)
    request = GenerationRequest(
        task="text2img",
        prompt="a red boat",
        negative_prompt="fog",
        steps=3,
        guidance_scale=5.5,
        width=64,
        height=72,
        seed=77,
        scheduler="Euler a",
        num_images=2,
    )
    result = studio.generate(request)
    path = tmp_path / "second.png"
    result.images[1].save(path, pnginfo=png_metadata(result.info, 1))
    found = read_png_info(Image.open(path))
    assert found["found"] == "diffusion-studio" and found["task"] == "text2img"
    assert found["fields"] == {
        "prompt": "a red boat",
        "negative_prompt": "fog",
        "steps": 3,
        "guidance_scale": 5.5,
        "seed": result.info["seeds"][1],  # the second image's own seed
        "width": 64,
        "height": 72,
        "scheduler": "Euler a",
    }
    assert found["batch"] == {"size": 2, "index": 1, "first_seed": 77}
    mine = np.asarray(result.images[1], dtype=int)
    # Alone, from its own seed: near-identical (batched math rounds differently), within the documented bound.
    alone = studio.generate(GenerationRequest(task="text2img", **request_fields(found))).images[0]
    assert np.abs(np.asarray(alone, dtype=int) - mine).max() <= ALONE_TOLERANCE[dtype]
    # The whole batch again: the very bytes.
    again = studio.generate(GenerationRequest(task="text2img", **request_fields(found, whole_batch=True)))
    assert len(again.images) == 2 and again.images[1].tobytes() == result.images[1].tobytes()


def test_a_single_image_has_no_batch_and_sends_one_image(tmp_path):
    info = {"task": "text2img", "prompt": "x", "seeds": [5], "steps": 2, "width": 64, "height": 64}
    path = tmp_path / "one.png"
    Image.new("RGB", (8, 8)).save(path, pnginfo=png_metadata(info, 0))
    found = read_png_info(Image.open(path))
    assert "batch" not in found
    assert request_fields(found, whole_batch=True) == {**found["fields"], "num_images": 1, "seed": 5}
