"""The app's API, driven through gradio_client as a script author would."""

from __future__ import annotations

import json

import pytest
from gradio_client import handle_file
from gradio_client.exceptions import AppError
from PIL import Image

T2I = dict(
    prompt="a small house",
    negative_prompt="",
    steps=2,
    guidance_scale=7.0,
    width=64,
    height=64,
    seed=5,
    scheduler="Euler a",
    num_images=2,
    safety_checker=True,
)


def image_files(gallery) -> list[str]:
    return [item["image"] for item in gallery]


@pytest.fixture(scope="module")
def input_png(tmp_path_factory):
    path = tmp_path_factory.mktemp("inputs") / "input.png"
    Image.new("RGB", (96, 64), (200, 120, 40)).save(path)
    mask = path.with_name("mask.png")
    im = Image.new("L", (96, 64), 0)
    im.paste(255, (16, 16, 64, 48))
    im.save(mask)
    return path, mask


def test_documented_endpoints_and_parameter_names(client):
    api = client.view_api(return_format="dict", print_info=False)["named_endpoints"]
    common = ["steps", "guidance_scale", "seed", "scheduler"]
    expected = {
        "/load_model": ["source", "variant", "dtype"],
        "/set_vae": ["source"],
        "/text2img": [
            "prompt",
            "negative_prompt",
            "steps",
            "guidance_scale",
            "width",
            "height",
            "seed",
            "scheduler",
            "num_images",
            "safety_checker",
            "sag_scale",
            "pag_scale",
            "refiner_switch",
            "ip_adapter_image",
            "preview_every",
            "step_cache",
            "tiny_decode",
        ],
        "/img2img": [
            "image",
            "prompt",
            "negative_prompt",
            "strength",
            "steps",
            "guidance_scale",
            "seed",
            "scheduler",
            "num_images",
            "safety_checker",
            "ip_adapter_image",
            "preview_every",
            "step_cache",
        ],
        "/inpaint": [
            "image",
            "mask",
            "prompt",
            "negative_prompt",
            "strength",
            "steps",
            "guidance_scale",
            "seed",
            "scheduler",
            "num_images",
            "safety_checker",
            "ip_adapter_image",
            "preview_every",
            "step_cache",
        ],
        "/safe_text2img": [
            "prompt",
            "negative_prompt",
            "safety_preset",
            "steps",
            "guidance_scale",
            "width",
            "height",
            "seed",
            "scheduler",
            "num_images",
            "safety_checker",
            "ip_adapter_image",
        ],
        "/depth2img": [
            "image",
            "depth_map",
            "prompt",
            "negative_prompt",
            "strength",
            *common,
            "num_images",
            "safety_checker",
        ],
        "/variation": ["image", *common, "num_images", "safety_checker"],
        "/upscale": ["image", "prompt", "negative_prompt", "upscaler", "noise_level", *common, "safety_checker"],
        "/rgbd": [
            "prompt",
            "negative_prompt",
            "steps",
            "guidance_scale",
            "width",
            "height",
            "seed",
            "scheduler",
            "num_images",
            "safety_checker",
        ],
        "/animate": [
            "prompt",
            "negative_prompt",
            "num_frames",
            "fps",
            "steps",
            "guidance_scale",
            "width",
            "height",
            "seed",
            "scheduler",
            "ip_adapter_image",
        ],
        "/compare": [
            "prompt",
            "negative_prompt",
            "schedulers",
            "axis",
            "values",
            "steps",
            "guidance_scale",
            "width",
            "height",
            "seed",
            "safety_checker",
            "ip_adapter_image",
        ],
        "/load_companion": ["kind", "source"],
        "/unload_companion": ["kind"],
        "/load_lora": ["source", "weight"],
        "/unload_lora": ["name"],
        "/set_lora_weight": ["name", "weight"],
        "/load_ip_adapter": ["source", "scale"],
        "/unload_ip_adapter": [],
        "/memory": [],
        "/set_memory_modes": ["offload", "attention_slicing", "vae_slicing", "vae_tiling"],
        "/set_compile": ["on"],
        "/preflight": ["source", "variant", "dtype"],
        "/cached_checkpoints": [],
        "/delete_cached": ["repo_id"],
        "/save_variant": ["folder", "variant", "dtype"],
        "/png_info": ["image"],
    }
    for name, params in expected.items():
        assert name in api, f"{name} missing; have {sorted(api)}"
        assert [p["parameter_name"] for p in api[name]["parameters"]] == params, name


def test_text2img_returns_png_images_and_info(client, running_app):
    before = set(running_app.outputs.rglob("*.png"))
    gallery, info = client.predict(**T2I, api_name="/text2img")
    files = image_files(gallery)
    assert len(files) == 2
    for f in files:
        with Image.open(f) as im:
            assert im.format == "PNG" and im.size == (64, 64)
    assert info["seeds"] == [5, 6] and info["scheduler"] == "Euler a" and info["task"] == "text2img"
    assert info["nsfw"] == [False, False]
    assert "from diffusers import" in info["code"]
    saved = sorted(set(running_app.outputs.rglob("*.png")) - before)
    assert len(saved) == 2, "this request's two images are saved to the outputs folder"
    shown = sorted(Image.open(f).tobytes() for f in files)
    assert sorted(Image.open(f).tobytes() for f in saved) == shown, "the saved files are the images returned"
    assert sorted(json.loads(Image.open(f).text["diffusion_studio"])["image_index"] for f in saved) == [0, 1]


def test_same_seed_same_image_through_the_api(client):
    first, _ = client.predict(**{**T2I, "num_images": 1}, api_name="/text2img")
    second, _ = client.predict(**{**T2I, "num_images": 1}, api_name="/text2img")
    assert Image.open(image_files(first)[0]).tobytes() == Image.open(image_files(second)[0]).tobytes()


def test_step_caching_through_the_api_is_another_image_and_says_so(client):
    plain = {**T2I, "num_images": 1, "steps": 6}
    full, full_info = client.predict(**plain, api_name="/text2img")
    cached, info = client.predict(**plain, step_cache=3, api_name="/text2img")
    assert info["step_cache"] == 3 and "step_cache" not in full_info
    assert "helper.set_params(cache_interval=3" in info["code"]
    assert Image.open(image_files(cached)[0]).tobytes() != Image.open(image_files(full)[0]).tobytes()
    with pytest.raises(Exception, match="step_cache must be between 1 and 5"):
        client.predict(**plain, step_cache=6, api_name="/text2img")


def test_img2img_with_an_uploaded_image(client, input_png):
    image, _mask = input_png
    gallery, info = client.predict(
        image=handle_file(str(image)),
        prompt="autumn",
        negative_prompt="",
        strength=0.6,
        steps=4,
        guidance_scale=7.0,
        seed=3,
        scheduler="default",
        num_images=1,
        safety_checker=True,
        api_name="/img2img",
    )
    assert info["pipeline"] == "StableDiffusionImg2ImgPipeline"
    assert Image.open(image_files(gallery)[0]).size == (96, 64)


def test_inpaint_with_a_separate_mask(client, input_png):
    image, mask = input_png
    gallery, info = client.predict(
        image=handle_file(str(image)),
        mask=handle_file(str(mask)),
        prompt="a window",
        negative_prompt="",
        strength=1.0,
        steps=3,
        guidance_scale=7.0,
        seed=3,
        scheduler="DDIM",
        num_images=1,
        safety_checker=False,
        api_name="/inpaint",
    )
    assert info["pipeline"] == "StableDiffusionInpaintPipeline" and info["nsfw"] is None
    assert Image.open(image_files(gallery)[0]).size == (96, 64)


def test_memory_reports_the_pool(client):
    report = client.predict(api_name="/memory")
    assert report["device"] == "cpu" and report["pool_bytes"] > 0
    assert report["naive_bytes"] > 6 * report["pool_bytes"]  # seven task views share one pool
    assert {c["name"] for c in report["components"]} >= {"unet", "vae", "text_encoder", "safety_checker"}


def test_invalid_input_says_what_to_do_and_the_app_keeps_serving(client):
    with pytest.raises(AppError, match="width must be a multiple of 8, got 67"):
        client.predict(**{**T2I, "width": 67}, api_name="/text2img")
    with pytest.raises(AppError, match=r"Nope is not in the list of choices: \[.default., .Euler."):
        client.predict(**{**T2I, "scheduler": "Nope"}, api_name="/text2img")
    with pytest.raises(AppError, match=r"non_existent"):
        client.predict(source="demo", variant="non_existent", dtype="float32", api_name="/load_model")
    gallery, _info = client.predict(**{**T2I, "num_images": 1}, api_name="/text2img")
    assert len(image_files(gallery)) == 1


def test_load_model_with_fp16_variant_switches_dtype(client):
    try:
        info = client.predict(source="demo", variant="fp16", dtype="bfloat16", api_name="/load_model")
        assert info["variant"] == "fp16" and info["dtype"] == "bfloat16"
        report = client.predict(api_name="/memory")
        assert {c["dtype"] for c in report["components"] if c["dtype"]} == {"bfloat16"}
        _gallery, gen = client.predict(**{**T2I, "num_images": 1}, api_name="/text2img")
        assert gen["dtype"] == "bfloat16" and gen["variant"] == "fp16"
    finally:
        client.predict(source="demo", variant="default", dtype="float32", api_name="/load_model")
