"""Reading parameters back from PNGs: this studio's own files and the web UIs' plain-text `parameters` chunk."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, PngImagePlugin

from core.errors import InvalidRequest
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


HIRES = """a castle <lora:ink-style:0.7>, <lora:film_grain>
Negative prompt: lowres
Steps: 20, Sampler: DPM++ 2M SDE, Schedule type: Exponential, CFG scale: 7, Seed: 42, Size: 512x512, \
Model hash: 6ce0161689, Model: v1-5, Denoising strength: 0.55, Hires upscale: 2, Hires steps: 10, \
Hires upscaler: Latent, Lora hashes: "ink-style: 0123456789ab, film_grain: ba9876543210", Version: v1.10.1"""


def test_hires_fix_is_text_to_image_and_its_denoise_is_not_a_strength():
    found = parse_parameters(HIRES)
    assert found["task"] == "text2img" and "strength" not in found["fields"]
    assert found["fields"]["scheduler"] == "DPM++ 2M SDE Exponential", "the schedule type is kept"
    assert found["other"]["Denoising strength"] == "0.55"
    assert any("Hires fix (upscale 2, steps 10, upscaler Latent)" in line for line in found["unmapped"])
    assert found["fields"]["prompt"] == "a castle", "the LoRA tags leave the prompt"
    assert found["loras"] == [
        {"name": "ink-style", "weight": 0.7, "hash": "0123456789ab"},
        {"name": "film_grain", "weight": 1.0, "hash": "ba9876543210"},  # no weight: A1111's 1
    ]
    assert "Lora hashes" not in found["other"]


def test_a1111_inpaint_goes_to_inpaint():
    text = (
        "a hat\nSteps: 30, Sampler: Euler a, Schedule type: Automatic, CFG scale: 7, Seed: 1, Size: 512x512, "
        "Denoising strength: 0.75, Mask blur: 4, Inpaint area: Only masked, Masked content: original"
    )
    found = parse_parameters(text)
    assert found["task"] == "inpaint" and found["fields"]["strength"] == 0.75
    assert found["fields"]["scheduler"] == "Euler a"
    assert any("no mask is stored" in line for line in found["unmapped"])


@pytest.mark.parametrize(
    ("sampler", "schedule", "expected"),
    [
        ("DPM++ 3M SDE", "Exponential", "DPM++ 3M SDE Exponential"),
        ("DPM++ 3M SDE", "Automatic", "DPM++ 3M SDE Exponential"),  # A1111's default schedule for it
        ("DPM++ 2M", "Automatic", "DPM++ 2M Karras"),
        ("DPM++ 2M", "Uniform", "DPM++ 2M"),
        ("PLMS", "Automatic", "PNDM"),
        ("DPM2 a", "Karras", "DPM2 a Karras"),
        ("UniPC", "Automatic", "UniPC"),
    ],
)
def test_a1111_sampler_and_schedule_map_to_the_scheduler_it_ran(sampler, schedule, expected):
    text = f"x\nSteps: 5, Sampler: {sampler}, Schedule type: {schedule}, CFG scale: 7, Seed: 1, Size: 64x64"
    found = parse_parameters(text)
    assert found["fields"]["scheduler"] == expected and not found["unmapped"]


def test_an_unknown_sampler_or_schedule_is_named_not_dropped():
    found = parse_parameters("x\nSteps: 5, Sampler: Euler a, Schedule type: Karras, CFG scale: 7, Seed: 1, Size: 8x8")
    assert "scheduler" not in found["fields"]
    assert found["unmapped"] == [
        "Sampler 'Euler a' with schedule 'Karras' has no match among this studio's schedulers; the scheduler was "
        "left as it is."
    ]
    old = parse_parameters("x\nSteps: 5, Sampler: DPM++ 2M, CFG scale: 7, Seed: 1, Size: 8x8")  # before A1111 1.9
    assert old["fields"]["scheduler"] == "DPM++ 2M"
    assert "A1111 1.9 and later would run it with its automatic schedule (Karras)" in old["unmapped"][0]


def test_a_damaged_chunk_does_not_hide_the_good_one_beside_it(tmp_path):
    found = read_png_info(_png_with(tmp_path, {"diffusion_studio": "{not json", "parameters": WEBUI}))
    assert found["found"] == "web-ui" and found["fields"]["seed"] == 1234567890
    assert found["problems"][0].startswith("The image's diffusion_studio data is damaged")
    long = read_png_info(_png_with(tmp_path, {"workflow": "x" * 70_000, "parameters": WEBUI}))
    assert long["fields"]["steps"] == 28 and "workflow text is over 64 KB" in long["problems"][0]
    with pytest.raises(InvalidRequest, match="diffusion_studio data is damaged"):
        read_png_info(_png_with(tmp_path, {"diffusion_studio": "[1, 2"}))


def test_the_tool_is_named():
    from core.png_info import _a1111_tool

    assert _a1111_tool(WEBUI) == "AUTOMATIC1111's web UI (v1.10.1) or a tool writing its format"
    forge = WEBUI.replace("v1.10.1", "f2.0.1v1.10.1-previous-669-gdfdcbab6")
    assert _a1111_tool(forge).startswith("Stable Diffusion WebUI Forge")


@pytest.mark.parametrize("fmt", ["JPEG", "WEBP"])
def test_an_a1111_jpeg_or_webp_is_read_from_its_exif_comment(tmp_path, fmt):
    exif = Image.Exif()
    exif.get_ifd(0x8769)[0x9286] = b"UNICODE\0" + WEBUI.encode("utf-16-be")  # as A1111 writes it (piexif)
    path = tmp_path / f"a1111.{fmt.lower()}"
    Image.new("RGB", (8, 8), "gray").save(path, format=fmt, exif=exif)
    found = read_png_info(str(path))
    assert found["found"] == "web-ui" and found["fields"]["seed"] == 1234567890
    assert found["fields"]["scheduler"] == "DPM++ 2M Karras"
