"""ControlNet and T2I-Adapter over the shared pool: every mode, two ControlNets at once, SDXL, the preprocessors,
pixel parity with diffusers alone (the snippet), and the refusals that would otherwise fail deep in diffusers."""

from __future__ import annotations

import runpy

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from core.errors import InvalidRequest, NotLoaded
from core.generation import GenerationRequest
from core.pool import module_bytes
from core.studio import Studio, StudioOptions


def _drawing() -> Image.Image:
    picture = Image.new("RGB", (64, 64), "white")
    ImageDraw.Draw(picture).ellipse((12, 12, 52, 52), outline="black", width=4)
    return picture


START = Image.new("RGB", (64, 64), (40, 120, 200))
MASK = Image.new("L", (64, 64), 0)
MASK.paste(255, (16, 16, 48, 48))
BASE = dict(
    task="controlnet", prompt="a ring", steps=3, width=64, height=64, seed=5, safety_checker=False,
    control_image=_drawing(), preprocessor="scribble",
)  # fmt: skip


@pytest.fixture(scope="module")
def studio() -> Studio:
    studio = Studio(StudioOptions(device="cpu", offline=True))
    studio.load("demo", variant="default", dtype="float32")
    studio.load_companion("controlnet", "demo-controlnet")
    return studio


def run(studio: Studio, **fields):
    return studio.generate(GenerationRequest(**{**BASE, **fields}))


def reproduce(result, tmp_path, monkeypatch, inputs: dict[str, Image.Image]) -> Image.Image:
    """Run the info's snippet (diffusers alone) with the files it loads; the first image it saves."""
    for name, picture in inputs.items():
        picture.save(tmp_path / name)
    (tmp_path / "reproduce.py").write_text(result.info["code"])
    monkeypatch.chdir(tmp_path)
    runpy.run_path(str(tmp_path / "reproduce.py"), run_name="__main__")
    return Image.open(tmp_path / "image.png")


MODES = {
    "text2img": ({}, "StableDiffusionControlNetPipeline", {}),
    "img2img": ({"image": START}, "StableDiffusionControlNetImg2ImgPipeline", {"input.png": START}),
    "inpaint": (
        {"image": START, "mask": MASK},
        "StableDiffusionControlNetInpaintPipeline",
        {"input.png": START, "mask.png": MASK},
    ),
}


@pytest.mark.parametrize("mode", list(MODES))
def test_each_mode_runs_on_the_shared_pool_and_diffusers_alone_makes_the_same_image(
    studio, tmp_path, monkeypatch, mode
):
    fields, pipeline, files = MODES[mode]
    modules = {k: v for k, v in studio.pool.components.items() if isinstance(v, torch.nn.Module)}
    bytes_before = studio.pool.unique_bytes()
    result = run(studio, **fields)
    assert result.info["pipeline"] == pipeline and result.info["mode"] == mode
    assert result.info["controls"] == [
        {"model": "demo-controlnet", "preprocessor": "scribble", "scale": 1.0, "start": 0.0, "end": 1.0}
    ]
    for key, module in modules.items():  # the view took the pool's own modules, in their dtype
        assert studio.pool.components[key] is module and next(module.parameters()).dtype == torch.float32
    assert studio.pool.unique_bytes() == bytes_before
    (control_map,) = result.extras["control_maps"]
    image = reproduce(result, tmp_path, monkeypatch, {**files, "control.png": control_map})
    assert image.tobytes() == result.images[0].tobytes()


def test_the_control_changes_the_image_and_weight_zero_is_the_plain_checkpoint(studio):
    plain = studio.generate(GenerationRequest(**{**BASE, "task": "text2img", "scheduler": "PNDM"}))
    steered = run(studio, scheduler="PNDM")
    off = run(studio, scheduler="PNDM", control_scale=0.0)
    a, b, c = (np.asarray(r.images[0], dtype=np.int16) for r in (plain, steered, off))
    assert np.abs(a - b).max() > 20, "the ControlNet changed nothing"
    assert np.abs(a - c).max() <= 1, "at weight 0 the ControlNet run should be the checkpoint's own image"


def test_two_controlnets_at_once_match_diffusers_multi_controlnet(studio, tmp_path, monkeypatch):
    studio.load_companion("controlnet_2", "demo-controlnet")
    try:
        second = Image.new("RGB", (64, 64), "black")
        second.paste((255, 255, 255), (0, 32, 64, 64))
        one = run(studio)
        both = run(studio, control_image_2=second, preprocessor_2="none", control_scale_2=0.7, control_end_2=0.5)
        assert both.info["pipeline"] == "StableDiffusionControlNetPipeline"
        assert [c["scale"] for c in both.info["controls"]] == [1.0, 0.7]
        assert len(both.extras["control_maps"]) == 2
        assert both.images[0].tobytes() != one.images[0].tobytes()
        assert "controlnet=[controlnet, controlnet_2]" in both.info["code"]
        maps = both.extras["control_maps"]
        image = reproduce(both, tmp_path, monkeypatch, {"control-1.png": maps[0], "control-2.png": maps[1]})
        assert image.tobytes() == both.images[0].tobytes()
        rows = {row["name"]: row for row in studio.memory_report()["components"]}
        assert rows["controlnet"]["bytes"] == module_bytes(studio.controls["controlnet"].module) > 0
        assert rows["controlnet_2"]["checkpoint"] == "demo-controlnet"
        assert "controlnet" in rows["unet"]["used_by"]  # the base UNet serves the ControlNet view
    finally:
        studio.unload_companion("controlnet_2")
    assert "controlnet_2" not in studio.controls


def test_a_t2i_adapter_in_the_slot_runs_the_adapter_pipeline(studio, tmp_path, monkeypatch):
    studio.load_companion("controlnet", "demo-t2i-adapter")
    try:
        result = run(studio, control_scale=0.8)
        assert result.info["pipeline"] == "StableDiffusionAdapterPipeline"
        image = reproduce(result, tmp_path, monkeypatch, {"control.png": result.extras["control_maps"][0]})
        assert image.tobytes() == result.images[0].tobytes()
        with pytest.raises(InvalidRequest, match="text to image only"):
            run(studio, image=START)
        with pytest.raises(InvalidRequest, match="set control_end to 1"):
            run(studio, control_end=0.5)
    finally:
        studio.load_companion("controlnet", "demo-controlnet")


def test_requests_that_cannot_run_say_what_to_do(studio):
    with pytest.raises(InvalidRequest, match="needs a control image"):
        run(studio, control_image=None)
    with pytest.raises(NotLoaded, match="second control slot"):
        run(studio, control_image_2=_drawing())
    with pytest.raises(InvalidRequest, match="must be below control_end"):
        run(studio, control_start=0.6, control_end=0.4)
    with pytest.raises(InvalidRequest, match="needs a start image"):
        run(studio, mask=MASK)
    with pytest.raises(InvalidRequest, match="preprocessor must be one of none, canny, depth, scribble, invert"):
        run(studio, preprocessor="openpose")
    with pytest.raises(InvalidRequest, match="control_scale must be a number between 0 and 2"):
        run(studio, control_scale=3.0)


def test_preprocessors_make_the_maps_controlnets_were_trained_on(studio):
    drawing = _drawing()
    scribble = np.asarray(studio.control_map(drawing, "scribble").convert("L"))
    assert scribble[32, 32] == 0 and scribble[32, 12:16].max() == 255  # white strokes on black
    inverted = np.asarray(studio.control_map(drawing, "invert").convert("L"))
    assert inverted[0, 0] == 0 and inverted[32, 12:16].max() == 255
    edges = np.asarray(studio.control_map(drawing, "canny", 100, 200).convert("L"))
    assert set(np.unique(edges)) == {0, 255} and edges[32, 32] == 0 and edges[32, 8:20].max() == 255
    assert studio.control_map(drawing, "none").tobytes() == drawing.tobytes()
    depth = studio.control_map(drawing, "depth")
    assert depth.size == drawing.size and depth.mode == "RGB"


def test_depth_maps_use_the_depth_companions_estimator_when_it_is_loaded(studio):
    studio.load_companion("depth", "demo-depth")
    try:
        estimator, _processor = studio.depth_estimator()
        assert estimator is studio.companion("depth").base.depth_estimator  # no second copy
        names = [row["name"] for row in studio.memory_report()["components"]]
        assert "depth_estimator" not in names and "depth/depth_estimator" in names
    finally:
        studio.unload_companion("depth")


def test_sdxl_controlnet_and_the_wrong_familys_module_is_refused(tmp_path, monkeypatch):
    studio = Studio(StudioOptions(device="cpu", offline=True))
    studio.load("demo-sdxl", variant="default", dtype="float32")
    studio.load_companion("controlnet", "demo-controlnet")
    with pytest.raises(InvalidRequest, match="made for another model family"):
        run(studio, width=128, height=128)
    studio.load_companion("controlnet", "demo-controlnet-sdxl")
    result = run(studio, width=128, height=128)
    assert result.info["pipeline"] == "StableDiffusionXLControlNetPipeline"
    image = reproduce(result, tmp_path, monkeypatch, {"control.png": result.extras["control_maps"][0]})
    assert image.tobytes() == result.images[0].tobytes()
    assert run(studio, image=START).info["pipeline"] == "StableDiffusionXLControlNetImg2ImgPipeline"


def test_control_modules_follow_the_next_checkpoints_dtype():
    studio = Studio(StudioOptions(device="cpu", offline=True))
    studio.load("demo", variant="default", dtype="float32")
    studio.load_companion("controlnet", "demo-controlnet")
    studio.control_map(_drawing(), "depth")  # loads the depth-map estimator
    studio.load("demo", variant="default", dtype="bfloat16")
    assert next(studio.controls["controlnet"].module.parameters()).dtype == torch.bfloat16
    assert next(studio.map_estimator[0].parameters()).dtype == torch.bfloat16
    result = run(studio, preprocessor="depth")
    assert result.info["dtype"] == "bfloat16" and result.images


def test_controlnet_xs_fuses_with_the_unet_once_and_diffusers_alone_makes_the_same_image(tmp_path, monkeypatch):
    studio = Studio(StudioOptions(device="cpu", offline=True))
    studio.load("demo-xs-base", variant="default", dtype="float32")  # two layers per block, as SD 1.5
    studio.load_companion("controlnet", "demo-controlnet-xs")
    result = run(studio, preprocessor="none", control_image=_drawing().convert("L").point(lambda v: 255 - v))
    assert result.info["pipeline"] == "StableDiffusionControlNetXSPipeline"
    fused = studio.controls["controlnet"].fused
    assert run(studio).images and studio.controls["controlnet"].fused is fused, "built once, not per run"
    rows = {row["name"]: row for row in studio.memory_report()["components"]}
    assert rows["controlnet/fused_unet"]["class"] == "UNetControlNetXSModel" and rows["controlnet/fused_unet"]["bytes"]
    image = reproduce(result, tmp_path, monkeypatch, {"control.png": result.extras["control_maps"][0]})
    assert image.tobytes() == result.images[0].tobytes()
    with pytest.raises(InvalidRequest, match="text to image only"):
        run(studio, image=START)
    studio.load("demo", variant="default", dtype="float32")  # one layer per block: the adapter does not fit
    assert studio.controls["controlnet"].fused is None
    with pytest.raises(InvalidRequest, match="does not fit the loaded checkpoint's UNet"):
        run(studio)
