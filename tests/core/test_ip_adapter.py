"""IP-Adapter on the shared pool: an image prompt reaches every view over the UNet, unloading restores the exact
images, the memory panel shows its image encoder, the snippet repeats it, and failures leave the pool serving."""

from __future__ import annotations

import runpy

import pytest
from PIL import Image

from core.errors import InvalidRequest, LoadError
from core.generation import GenerationRequest
from core.studio import Studio, StudioOptions

T2I = dict(prompt="a lamp", steps=3, width=64, height=64, seed=17, safety_checker=False)
I2I = dict(task="img2img", image=Image.new("RGB", (64, 64), (120, 40, 200)), strength=0.8, **T2I)
RED, BLUE = Image.new("RGB", (48, 48), (220, 30, 30)), Image.new("RGB", (48, 48), (30, 30, 220))


@pytest.fixture
def studio() -> Studio:
    studio = Studio(StudioOptions(device="cpu", offline=True))
    studio.load("demo", variant="default", dtype="float32")
    return studio


def image(studio: Studio, **fields) -> bytes:
    return studio.generate(GenerationRequest(**fields)).images[0].tobytes()


def test_the_image_prompt_steers_every_view_and_unloading_restores_the_exact_images(studio):
    before = {
        "text2img": image(studio, **T2I),
        "img2img": image(studio, **I2I),
        "sag": image(studio, **T2I, sag_scale=0.5),
    }
    unet, bytes_before = studio.pool.base.unet, studio.pool.unique_bytes()

    info = studio.load_ip_adapter("demo-ip-adapter", scale=1.0)
    assert info["ip_adapter"] == {"source": "demo-ip-adapter", "scale": 1.0}
    assert {"text2img", "img2img", "inpaint", "sag", "pag", "animate"} <= set(info["affects"])
    assert studio.pool.base.unet is unet, "the adapter goes into the shared UNet, nothing is reloaded"
    encoder = studio.pool.components["image_encoder"]
    assert type(encoder).__name__ == "CLIPVisionModelWithProjection"
    rows = {row["name"]: row for row in studio.memory_report()["components"]}
    assert "image_encoder" in rows and "text2img" in rows["image_encoder"]["used_by"]
    assert studio.model_info()["adapters"]["ip_adapter"] == "demo-ip-adapter"

    for name, fields in (("text2img", T2I), ("img2img", I2I), ("sag", {**T2I, "sag_scale": 0.5})):
        red, blue = image(studio, **fields, ip_adapter_image=RED), image(studio, **fields, ip_adapter_image=BLUE)
        assert red != blue, f"{name}: the image prompt changes the result"
        assert red != before[name]

    studio.unload_ip_adapter()
    assert studio.pool.components.get("image_encoder") is None
    assert studio.pool.unique_bytes() == bytes_before
    after = {
        "text2img": image(studio, **T2I),
        "img2img": image(studio, **I2I),
        "sag": image(studio, **T2I, sag_scale=0.5),
    }
    assert after == before


def test_a_loaded_adapter_asks_for_an_image_prompt_and_a_missing_one_is_a_clear_error(studio):
    studio.load_ip_adapter("demo-ip-adapter")
    with pytest.raises(InvalidRequest, match="needs an image prompt"):
        studio.generate(GenerationRequest(**T2I))
    assert studio.generate(GenerationRequest(**T2I, ip_adapter_image=RED)).images, "and serves after the error"


def test_scale_zero_is_the_plain_model_and_reloading_the_same_adapter_changes_the_scale(studio):
    plain = image(studio, **T2I)
    studio.load_ip_adapter("demo-ip-adapter", scale=0.0)
    assert image(studio, **T2I, ip_adapter_image=RED) == plain
    info = studio.load_ip_adapter("demo-ip-adapter", scale=0.8)
    assert info["ip_adapter"]["scale"] == 0.8
    assert image(studio, **T2I, ip_adapter_image=RED) != plain


def test_without_an_adapter_an_image_prompt_is_ignored_with_a_note(studio):
    plain = studio.generate(GenerationRequest(**T2I))
    result = studio.generate(GenerationRequest(**T2I, ip_adapter_image=RED))
    assert result.images[0].tobytes() == plain.images[0].tobytes()
    assert any("image prompt was not used" in w for w in result.info["warnings"])


def test_the_snippet_loads_the_adapter_and_makes_the_same_image(studio, tmp_path, monkeypatch):
    studio.load_ip_adapter("demo-ip-adapter", scale=0.7)
    result = studio.generate(GenerationRequest(**T2I, ip_adapter_image=RED))
    code = result.info["code"]
    assert "pipe.load_ip_adapter(" in code and "pipe.set_ip_adapter_scale(0.7)" in code
    (tmp_path / "reproduce.py").write_text(code)
    RED.save(tmp_path / "ip_adapter_image.png")
    monkeypatch.chdir(tmp_path)
    runpy.run_path(str(tmp_path / "reproduce.py"), run_name="__main__")
    assert Image.open(tmp_path / "image.png").tobytes() == result.images[0].tobytes()


def test_animation_takes_the_image_prompt_too(studio):
    studio.load_companion("motion_adapter", "demo-motion-adapter")
    fields = dict(task="animate", prompt="a lamp", steps=2, width=64, height=64, seed=3, num_frames=2)
    plain = image(studio, **fields)
    studio.load_ip_adapter("demo-ip-adapter", scale=1.0)
    red, blue = image(studio, **fields, ip_adapter_image=RED), image(studio, **fields, ip_adapter_image=BLUE)
    assert red != blue
    studio.unload_ip_adapter()
    assert image(studio, **fields) == plain


def test_bad_adapters_fail_clearly_and_leave_the_pool_serving(studio, tmp_path):
    plain = image(studio, **T2I)
    with pytest.raises(LoadError, match="not an IP-Adapter file or Hub id"):
        studio.load_ip_adapter(str(tmp_path / "missing.safetensors"))
    (tmp_path / "ip.bin").write_bytes(b"x")
    with pytest.raises(LoadError, match=r"\.safetensors file"):
        studio.load_ip_adapter(str(tmp_path / "ip.bin"))
    with pytest.raises(InvalidRequest, match="between 0 and 2"):
        studio.load_ip_adapter("demo-ip-adapter", scale=3)
    # A LoRA file is a .safetensors file too, but not an IP-Adapter: the library's refusal becomes a LoadError.
    from core.demo.families import demo_lora_path

    lora = demo_lora_path(studio.options.cache_dir) / "pytorch_lora_weights.safetensors"
    with pytest.raises(LoadError, match="Loading the IP-Adapter"):
        studio.load_ip_adapter(str(lora))
    assert studio.ip_adapter is None and studio.pool.components.get("image_encoder") is None
    assert image(studio, **T2I) == plain


def test_other_families_get_a_clear_refusal():
    studio = Studio(StudioOptions(device="cpu", offline=True))
    studio.load("demo-sd3", dtype="float32")
    with pytest.raises(InvalidRequest, match="does not take the studio's IP-Adapters"):
        studio.load_ip_adapter("demo-ip-adapter")


def test_a_hub_id_laid_out_like_h94_finds_the_adapter_of_the_loaded_family(studio, tmp_path, hub_cache):
    import shutil

    from core.demo.families import IP_ADAPTER_WEIGHTS, demo_ip_adapter_path

    repo = tmp_path / "repo" / "models"
    shutil.copytree(demo_ip_adapter_path(studio.options.cache_dir), repo)
    (repo / IP_ADAPTER_WEIGHTS).rename(repo / "ip-adapter_sd15.safetensors")
    hub_cache(tmp_path / "repo", "h94/IP-Adapter")
    info = studio.load_ip_adapter("h94/IP-Adapter", scale=0.5)
    assert info["ip_adapter"]["source"] == "h94/IP-Adapter"
    assert studio.ip_adapter.subfolder == "models" and studio.ip_adapter.weight_name == "ip-adapter_sd15.safetensors"
    assert image(studio, **T2I, ip_adapter_image=RED) != image(studio, **T2I, ip_adapter_image=BLUE)
    studio.unload_ip_adapter()
    with pytest.raises(LoadError, match=r"Loading the IP-Adapter 'h94/IP-Adapter/other/x\.safetensors' failed"):
        studio.load_ip_adapter("h94/IP-Adapter/other/x.safetensors")
