"""Every companion task through the API: load its companion, run it, check the output, unload it."""

from __future__ import annotations

import numpy as np
import pytest
from gradio_client import handle_file
from PIL import Image

COMMON = dict(steps=2, guidance_scale=5.0, seed=7, scheduler="default")


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("companion-inputs")
    Image.new("RGB", (64, 64), (60, 160, 90)).save(folder / "image.png")
    Image.new("RGB", (32, 24), (200, 60, 90)).save(folder / "small.png")
    Image.new("L", (64, 64), 255).save(folder / "mask.png")
    return folder


def first_size(gallery) -> tuple[int, int]:
    with Image.open(gallery[0]["image"]) as im:
        assert im.format == "PNG"
        return im.size


def cases(folder):
    image = handle_file(str(folder / "image.png"))
    small = handle_file(str(folder / "small.png"))
    return {
        "depth": (
            "/depth2img",
            dict(
                image=image,
                depth_map=None,
                prompt="x",
                negative_prompt="",
                strength=0.9,
                num_images=1,
                safety_checker=False,
                **COMMON,
            ),
            (64, 64),
        ),
        "variation": ("/variation", dict(image=image, num_images=2, safety_checker=False, **COMMON), (64, 64)),
        "unclip": (
            "/unclip",
            dict(
                image=image,
                prompt="x",
                negative_prompt="",
                unclip_noise_level=100,
                num_images=1,
                safety_checker=False,
                **COMMON,
            ),
            (64, 64),
        ),
        "unclip_text2img": (
            "/unclip_text2img",
            dict(
                prompt="x",
                negative_prompt="",
                prior_steps=2,
                unclip_noise_level=0,
                width=64,
                height=64,
                num_images=1,
                safety_checker=False,
                **COMMON,
            ),
            (64, 64),
        ),
        "paint_by_example": (
            "/paint_by_example",
            dict(
                image=image,
                mask=handle_file(str(folder / "mask.png")),
                example_image=small,
                num_images=1,
                safety_checker=False,
                **COMMON,
            ),
            (64, 64),
        ),
        "gligen": (
            "/gligen",
            dict(
                prompt="a cat and a lamp",
                negative_prompt="",
                gligen_phrases="a cat; a lamp",
                gligen_boxes="0,0.5,0.5,1; 0.5,0,1,0.5",
                gligen_beta=0.3,
                width=64,
                height=64,
                num_images=1,
                safety_checker=False,
                **COMMON,
            ),
            (64, 64),
        ),
        "instruct": (
            "/instruct",
            dict(
                image=image,
                prompt="make it snow",
                negative_prompt="",
                image_guidance_scale=1.5,
                num_images=1,
                safety_checker=False,
                **COMMON,
            ),
            (64, 64),
        ),
        "upscale_x4": (
            "/upscale",
            dict(
                image=small,
                prompt="x",
                negative_prompt="",
                upscaler="x4",
                noise_level=20,
                safety_checker=False,
                **COMMON,
            ),
            (128, 96),
        ),
        "upscale_x2": (
            "/upscale",
            dict(
                image=image,
                prompt="x",
                negative_prompt="",
                upscaler="x2",
                noise_level=20,
                safety_checker=False,
                **COMMON,
            ),
            (128, 128),
        ),
        "ldm3d": (
            "/rgbd",
            dict(prompt="x", negative_prompt="", width=64, height=64, num_images=1, safety_checker=True, **COMMON),
            (64, 64),
        ),
        "inpaint": (
            "/inpaint",
            dict(
                image=image,
                mask=handle_file(str(folder / "mask.png")),
                prompt="x",
                negative_prompt="",
                strength=1.0,
                num_images=1,
                safety_checker=False,
                **COMMON,
            ),
            (64, 64),
        ),
    }


KINDS = [
    "depth", "variation", "instruct", "unclip", "unclip_text2img", "paint_by_example", "gligen", "upscale_x4",
    "upscale_x2", "ldm3d", "inpaint",
]  # fmt: skip


@pytest.mark.parametrize("kind", KINDS)
def test_companion_task_through_the_api(client, running_app, inputs, kind):
    endpoint, arguments, size = cases(inputs)[kind]
    main_bytes = running_app.studio.pool.unique_bytes()
    loaded = client.predict(kind=kind, source=f"demo-{kind.replace('_', '-')}", api_name="/load_companion")
    assert kind in loaded["companions"]
    try:
        result = client.predict(**arguments, api_name=endpoint)
        gallery, info = result[0], result[-1]
        assert first_size(gallery) == size
        if kind == "variation":
            assert len(gallery) == 2
        if kind in ("depth", "ldm3d"):
            depth = result[1] if kind == "depth" else result[1][0]["image"]
            with Image.open(depth) as im:
                assert im.size == size
        report = client.predict(api_name="/memory")
        assert running_app.studio.pool.unique_bytes() == main_bytes, "the main checkpoint was not loaded twice"
        assert any(row["name"].startswith(f"{kind}/") for row in report["components"])
        assert info["model"] == f"demo-{kind.replace('_', '-')}"
    finally:
        unloaded = client.predict(kind=kind, api_name="/unload_companion")
    assert kind not in unloaded["companions"]


def test_animate_returns_a_gif_and_an_mp4(client, running_app):
    client.predict(kind="motion_adapter", source="demo-motion-adapter", api_name="/load_companion")
    try:
        gif, mp4, gallery, info = client.predict(
            prompt="waves",
            negative_prompt="",
            num_frames=4,
            fps=4,
            steps=2,
            guidance_scale=5.0,
            width=64,
            height=64,
            seed=1,
            scheduler="default",
            api_name="/animate",
        )
        with Image.open(gif) as im:
            assert im.format == "GIF" and im.n_frames == 4 and im.size == (64, 64)
        assert str(mp4["video"] if isinstance(mp4, dict) else mp4).endswith(".mp4")
        assert info["pipeline"] == "AnimateDiffPipeline" and first_size(gallery) == (64, 64)
    finally:
        client.predict(kind="motion_adapter", api_name="/unload_companion")


def test_controlnet_through_the_api_with_its_map_endpoint(client, running_app, tmp_path):
    drawing = Image.new("RGB", (64, 64), "white")
    drawing.paste((0, 0, 0), (20, 20, 44, 44))
    drawing.save(tmp_path / "drawing.png")
    control = handle_file(str(tmp_path / "drawing.png"))
    map_file = client.predict(image=control, name="invert", low=100, high=200, api_name="/control_map")
    with Image.open(map_file) as im:  # black square on white, turned round
        assert im.getpixel((32, 32)) == (255, 255, 255) and im.getpixel((2, 2)) == (0, 0, 0)
    main_bytes = running_app.studio.pool.unique_bytes()
    client.predict(kind="controlnet", source="demo-controlnet", api_name="/load_companion")
    try:
        arguments = dict(
            control_image=control, preprocessor="canny", control_scale=1.0, control_start=0.0, control_end=1.0,
            canny_low=100, canny_high=200, prompt="a window", negative_prompt="", width=64, height=64,
            num_images=1, safety_checker=False, **COMMON,
        )  # fmt: skip
        gallery, maps, info = client.predict(**arguments, api_name="/controlnet")
        assert first_size(gallery) == (64, 64) and info["pipeline"] == "StableDiffusionControlNetPipeline"
        with Image.open(maps[0]["image"]) as im:  # the canny map the model saw: the square's outline
            edges = np.asarray(im.convert("L"))
        assert edges[32, 32] == 0 and edges[32, 18:23].max() == 255
        assert info["controls"][0]["preprocessor"] == "canny" and info["canny_low"] == 100
        report = client.predict(api_name="/memory")
        assert running_app.studio.pool.unique_bytes() == main_bytes, "the checkpoint was not loaded twice"
        assert any(row["name"] == "controlnet" and row["bytes"] > 0 for row in report["components"])
        with pytest.raises(Exception, match=r"control_end must be between 0 and 1, got 1\.5"):
            client.predict(**{**arguments, "control_end": 1.5}, api_name="/controlnet")
    finally:
        unloaded = client.predict(kind="controlnet", api_name="/unload_companion")
    assert "controlnet" not in unloaded["companions"]
