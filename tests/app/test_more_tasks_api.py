"""The tasks served by the loaded checkpoint alone, through the API: guidance options, safe SD, compare."""

from __future__ import annotations

import threading
import time

import pytest
from gradio_client.exceptions import AppError
from PIL import Image

from core.generation import GenerationRequest

T2I = dict(
    prompt="a bridge",
    negative_prompt="",
    steps=3,
    guidance_scale=7.0,
    width=64,
    height=64,
    seed=9,
    scheduler="default",
    num_images=1,
    safety_checker=False,
)


def files(gallery) -> list[str]:
    return [item["image"] for item in gallery]


def test_sag_and_pag_are_options_of_text2img(client, running_app):
    bytes_before = running_app.studio.pool.unique_bytes()
    plain, plain_info = client.predict(**T2I, api_name="/text2img")
    sag, sag_info = client.predict(**T2I, sag_scale=0.75, api_name="/text2img")
    pag, pag_info = client.predict(**T2I, pag_scale=3.0, api_name="/text2img")
    assert (plain_info["pipeline"], sag_info["pipeline"], pag_info["pipeline"]) == (
        "StableDiffusionPipeline",
        "StableDiffusionSAGPipeline",
        "StableDiffusionPAGPipeline",
    )
    images = [Image.open(files(g)[0]).tobytes() for g in (plain, sag, pag)]
    assert len(set(images)) == 3, "each guidance changes the image"
    assert running_app.studio.pool.unique_bytes() == bytes_before, "SAG and PAG cost no memory"


def test_safe_text2img_with_a_preset(client):
    gallery, info = client.predict(
        prompt="a bridge",
        negative_prompt="",
        safety_preset="max",
        steps=3,
        guidance_scale=7.0,
        width=64,
        height=64,
        seed=9,
        scheduler="default",
        num_images=2,
        safety_checker=True,
        api_name="/safe_text2img",
    )
    assert info["pipeline"] == "StableDiffusionPipelineSafe" and info["safety_preset"] == "max"
    assert [Image.open(f).size for f in files(gallery)] == [(64, 64), (64, 64)]
    with pytest.raises(AppError, match="extreme"):
        client.predict(
            prompt="x",
            negative_prompt="",
            safety_preset="extreme",
            steps=3,
            guidance_scale=7.0,
            width=64,
            height=64,
            seed=9,
            scheduler="default",
            num_images=1,
            safety_checker=True,
            api_name="/safe_text2img",
        )


def test_compare_makes_a_labelled_grid_with_one_seed(client):
    grid, cells, info = client.predict(
        prompt="a bridge",
        negative_prompt="",
        schedulers=["Euler a", "DDIM"],
        axis="steps",
        values="2, 4",
        steps=20,
        guidance_scale=7.0,
        width=64,
        height=64,
        seed=123,
        safety_checker=False,
        api_name="/compare",
    )
    assert len(cells) == 4 and info["seed"] == 123
    assert [(c["scheduler"], c["steps"]) for c in info["cells"]] == [
        ("Euler a", 2),
        ("Euler a", 4),
        ("DDIM", 2),
        ("DDIM", 4),
    ]
    assert all(c["seconds"] > 0 for c in info["cells"])
    # Each cell says what made it (they were all "text2img - seed 123").
    assert [c["caption"] for c in cells] == [
        "Euler a · 2 steps · guidance 7 · seed 123",
        "Euler a · 4 steps · guidance 7 · seed 123",
        "DDIM · 2 steps · guidance 7 · seed 123",
        "DDIM · 4 steps · guidance 7 · seed 123",
    ]
    with Image.open(grid) as im:
        assert im.width > 2 * 64 and im.height > 2 * 64, "two columns and two rows plus labels"
    with pytest.raises(AppError, match="Values must be numbers"):
        client.predict(
            prompt="x",
            negative_prompt="",
            schedulers=["DDIM"],
            axis="steps",
            values="ten",
            steps=20,
            guidance_scale=7.0,
            width=64,
            height=64,
            seed=1,
            safety_checker=False,
            api_name="/compare",
        )


def test_companion_tasks_say_what_to_load(client):
    with pytest.raises(AppError, match=r"needs its own checkpoint .*demo-ldm3d"):
        client.predict(
            prompt="x",
            negative_prompt="",
            steps=2,
            guidance_scale=7.0,
            width=64,
            height=64,
            seed=1,
            scheduler="default",
            num_images=1,
            safety_checker=False,
            api_name="/rgbd",
        )


def test_lora_through_the_api_reaches_every_view_and_unloads_cleanly(client):
    def first(**extra):
        gallery, _info = client.predict(**{**T2I, **extra}, api_name="/text2img")
        return Image.open(files(gallery)[0]).tobytes()

    before = first()
    info = client.predict(source="demo-lora", weight=1.0, api_name="/load_lora")
    try:
        assert "demo_lora" in info["loras"] and "img2img" in info["affects"]
        assert first() != before
        info = client.predict(name="demo_lora", weight=0.0, api_name="/set_lora_weight")
        assert info["loras"]["demo_lora"]["weight"] == 0.0 and first() == before, "weight 0: no effect, in place"
    finally:
        info = client.predict(name="demo_lora", api_name="/unload_lora")
    assert info["loras"] == {} and first() == before


def test_an_sdxl_checkpoint_through_the_api(client):
    try:
        info = client.predict(source="demo-sdxl", variant="auto", dtype="float32", api_name="/load_model")
        assert info["pipeline"] == "StableDiffusionXLPipeline" and info["default_size"] == 1024
        gallery, run = client.predict(**{**T2I, "safety_checker": True}, api_name="/text2img")
        assert run["pipeline"] == "StableDiffusionXLPipeline" and run["nsfw"] is None
        assert Image.open(files(gallery)[0]).size == (64, 64)
        report = client.predict(api_name="/memory")
        assert {"text_encoder", "text_encoder_2"} <= {c["name"] for c in report["components"]}
        assert "refiner" in info["options"]
        client.predict(kind="refiner", source="demo-refiner", api_name="/load_companion")
        refined, run = client.predict(**{**T2I, "refiner_switch": 0.6}, api_name="/text2img")
        assert run["refiner"] == "demo-refiner" and run["refiner_switch"] == 0.6
        assert Image.open(files(refined)[0]).tobytes() != Image.open(files(gallery)[0]).tobytes()
        rows = {c["name"]: c for c in client.predict(api_name="/memory")["components"]}
        assert rows["refiner/vae"]["shared_with"] == ["demo-sdxl"]
    finally:
        client.predict(kind="refiner", api_name="/unload_companion")
        client.predict(source="demo", variant="default", dtype="float32", api_name="/load_model")


def test_ip_adapter_through_the_api_takes_an_image_prompt_and_unloads_cleanly(client, tmp_path):
    from gradio_client import handle_file

    red, blue = tmp_path / "red.png", tmp_path / "blue.png"
    Image.new("RGB", (48, 48), (220, 30, 30)).save(red)
    Image.new("RGB", (48, 48), (30, 30, 220)).save(blue)

    def first(**extra):
        gallery, info = client.predict(**{**T2I, **extra}, api_name="/text2img")
        return Image.open(files(gallery)[0]).tobytes(), info

    before, _ = first()
    info = client.predict(source="demo-ip-adapter", scale=1.0, api_name="/load_ip_adapter")
    try:
        assert info["ip_adapter"] == {"source": "demo-ip-adapter", "scale": 1.0}
        assert {"text2img", "img2img", "inpaint"} <= set(info["affects"])
        with pytest.raises(AppError, match="needs an image prompt"):
            first()
        with_red, run = first(ip_adapter_image=handle_file(str(red)))
        with_blue, _ = first(ip_adapter_image=handle_file(str(blue)))
        assert with_red != with_blue and with_red != before
        assert "pipe.load_ip_adapter(" in run["code"]
        report = client.predict(api_name="/memory")
        assert "image_encoder" in {c["name"] for c in report["components"]}
    finally:
        info = client.predict(api_name="/unload_ip_adapter")
    assert info["ip_adapter"] is None
    after, run = first(ip_adapter_image=handle_file(str(red)))
    assert after == before and any("image prompt was not used" in w for w in run["warnings"])


def test_an_sd3_checkpoint_through_the_api(client):
    try:
        info = client.predict(source="demo-sd3", variant="auto", dtype="float32", api_name="/load_model")
        assert info["pipeline"] == "StableDiffusion3Pipeline" and info["size_multiple"] == 16
        assert info["options"] == ["pag"] and info["safety_checker"] is False
        gallery, run = client.predict(**{**T2I, "width": 80, "height": 64}, api_name="/text2img")
        assert run["pipeline"] == "StableDiffusion3Pipeline" and Image.open(files(gallery)[0]).size == (80, 64)
        with pytest.raises(AppError, match="multiple of 16"):
            client.predict(**{**T2I, "width": 72}, api_name="/text2img")
        with pytest.raises(AppError, match="SAG is not available"):
            client.predict(**{**T2I, "sag_scale": 0.5}, api_name="/text2img")
    finally:
        client.predict(source="demo", variant="default", dtype="float32", api_name="/load_model")


def test_memory_says_what_a_second_checkpoint_shares(client):
    before = client.predict(api_name="/memory")["pool_bytes"]
    client.predict(kind="inpaint", source="demo-inpaint", api_name="/load_companion")
    try:
        report = client.predict(api_name="/memory")
        rows = {c["name"]: c for c in report["components"]}
        assert report["pool_bytes"] - before == rows["inpaint/unet"]["bytes"], "nothing shared was loaded twice"
        assert rows["inpaint/text_encoder"]["shared_with"] == ["demo"]
        assert rows["inpaint/vae"]["shared_with"] == ["demo"]
        assert rows["inpaint/unet"]["shared_with"] == [], "the 9-channel UNet is its own"
        assert rows["text_encoder"]["shared_with"] == ["demo-inpaint"]
    finally:
        client.predict(kind="inpaint", api_name="/unload_companion")


def test_an_alternative_vae_through_the_api_replaces_the_vae_in_every_task(client, tmp_path, demo_dir):
    import torch
    from diffusers import AutoencoderKL

    vae = AutoencoderKL.from_pretrained(demo_dir, subfolder="vae")
    torch.manual_seed(78)
    with torch.no_grad():
        for p in vae.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    vae.save_pretrained(tmp_path / "vae")

    def first():
        gallery, info = client.predict(**T2I, api_name="/text2img")
        return Image.open(files(gallery)[0]).tobytes(), info

    before, _ = first()
    bytes_before = client.predict(api_name="/memory")["pool_bytes"]
    info = client.predict(source=str(tmp_path), api_name="/set_vae")
    try:
        assert info["vae"] == str(tmp_path)
        swapped, run = first()
        assert swapped != before and run["vae"] == str(tmp_path)
        assert client.predict(api_name="/memory")["pool_bytes"] == bytes_before, "the old VAE was released"
    finally:
        client.predict(source="default", api_name="/set_vae")
    assert first()[0] == before


def test_memory_modes_through_the_api(client):
    before, _ = client.predict(**T2I, api_name="/text2img")
    with pytest.raises(AppError, match="nothing to offload"):
        client.predict(offload="model", attention_slicing=False, vae_slicing=False, vae_tiling=False,
                       api_name="/set_memory_modes")  # fmt: skip
    info = client.predict(
        offload="none", attention_slicing=True, vae_slicing=True, vae_tiling=True, api_name="/set_memory_modes"
    )
    try:
        assert info["memory_modes"]["vae_tiling"] is True
        assert client.predict(api_name="/memory")["memory_modes"]["attention_slicing"] is True
        _gallery, run = client.predict(**T2I, api_name="/text2img")
        assert run["memory_modes"]["vae_slicing"] is True
    finally:
        client.predict(
            offload="none", attention_slicing=False, vae_slicing=False, vae_tiling=False, api_name="/set_memory_modes"
        )
    after, run = client.predict(**T2I, api_name="/text2img")
    assert "memory_modes" not in run
    assert Image.open(files(after)[0]).tobytes() == Image.open(files(before)[0]).tobytes()


def test_live_previews_stream_before_the_result(client):
    job = client.submit(**{**T2I, "steps": 8, "num_images": 2}, preview_every=2, api_name="/text2img")
    gallery, info = job.result()
    outputs = job.outputs()
    assert len(outputs) >= 2, "at least one preview came before the result"
    preview, last = outputs[0], outputs[-1]
    assert len(preview[0]) == 2, "one preview per image"
    assert Image.open(files(preview[0])[0]).size == (8, 8), "the latents' size: no VAE decode"
    assert last[1]["seeds"] == info["seeds"] and Image.open(files(gallery)[0]).size == (64, 64)
    plain, _ = client.predict(**{**T2I, "steps": 8, "num_images": 2}, api_name="/text2img")
    assert Image.open(files(plain)[0]).tobytes() == Image.open(files(gallery)[0]).tobytes()


def test_a_lora_sent_during_a_run_waits_for_it_and_applies_to_the_next(client, running_app):
    """Changes to the shared modules run on the worker, between generations (before, a load landed mid-run)."""
    studio, worker = running_app.studio, running_app.ctx.worker
    request = GenerationRequest(**T2I)
    plain = studio.generate(request).images[0].tobytes()
    started, go = threading.Event(), threading.Event()

    def a_run():  # a generation holding the worker: it starts once the LoRA request is on its way
        started.set()
        go.wait(30)
        return studio.generate(request).images[0].tobytes()

    run = worker.submit(a_run)
    started.wait(10)
    answer: dict = {}
    sender = threading.Thread(
        target=lambda: answer.update(client.predict(source="demo-lora", weight=1.0, api_name="/load_lora"))
    )
    sender.start()
    try:
        time.sleep(1.5)
        assert not studio.loras.loras, "the load waits for the run in progress"
        go.set()
        assert run.result(60) == plain, "the run in progress is made without the LoRA"
        sender.join(60)
        assert "demo_lora" in answer["loras"]
        assert studio.generate(request).images[0].tobytes() != plain, "the next run has it"
    finally:
        go.set()
        sender.join(60)
        client.predict(name="demo_lora", api_name="/unload_lora")


def test_the_views_over_the_demo_through_their_endpoints(client, running_app, tmp_path):
    """Attend-and-Excite, SEGA, panorama and DiffEdit: each its own endpoint, each a view (no memory)."""
    bytes_before = running_app.studio.pool.unique_bytes()
    common = {k: v for k, v in T2I.items() if k not in ("width", "height")}
    _gallery, info = client.predict(
        **common, width=64, height=64, excite_words="bridge", max_iter_to_alter=2, api_name="/attend_excite"
    )
    assert info["pipeline"] == "StableDiffusionAttendAndExcitePipeline" and info["excite_words"] == ["bridge"]
    _gallery, info = client.predict(
        **common, width=64, height=64, edit_prompt_1="fog", edit_direction_1="remove", api_name="/semantic"
    )
    assert info["edits"] == [{"prompt": "fog", "direction": "remove", "scale": 5.0}]
    gallery, info = client.predict(**common, width=256, height=64, circular_padding=True, api_name="/panorama")
    with Image.open(files(gallery)[0]) as im:
        assert im.size == (256, 64) and info["circular_padding"] is True
    Image.new("RGB", (64, 64), (90, 140, 30)).save(tmp_path / "photo.png")
    from gradio_client import handle_file

    gallery, mask, info = client.predict(
        image=handle_file(str(tmp_path / "photo.png")), source_prompt="a field", prompt="a lake",
        negative_prompt="", mask_strength=0.5, strength=0.8, steps=5, guidance_scale=7.0, seed=2,
        safety_checker=False, api_name="/diffedit",
    )  # fmt: skip
    with Image.open(mask) as im:
        assert im.size == (64, 64)
    assert info["pipeline"] == "StableDiffusionDiffEditPipeline" and info["strength"] == 0.8
    assert running_app.studio.pool.unique_bytes() == bytes_before
