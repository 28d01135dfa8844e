"""LoRA on the shared pool: every view sees it, unloading restores the exact images, the snippet repeats it."""

from __future__ import annotations

import runpy

import pytest
from PIL import Image

from core.errors import InvalidRequest, LoadError
from core.generation import GenerationRequest
from core.studio import Studio, StudioOptions

T2I = dict(prompt="a lamp", steps=3, width=64, height=64, seed=17, safety_checker=False)
I2I = dict(task="img2img", image=Image.new("RGB", (64, 64), (120, 40, 200)), strength=0.8, **T2I)


@pytest.fixture
def studio() -> Studio:
    studio = Studio(StudioOptions(device="cpu", offline=True))
    studio.load("demo", variant="default", dtype="float32")
    return studio


def image(studio: Studio, **fields) -> bytes:
    return studio.generate(GenerationRequest(**fields)).images[0].tobytes()


def test_a_lora_changes_every_view_and_unloading_restores_the_exact_images(studio):
    before = {
        "text2img": image(studio, **T2I),
        "img2img": image(studio, **I2I),
        "sag": image(studio, **T2I, sag_scale=0.5),
    }
    info = studio.load_lora("demo-lora", weight=1.0)
    assert info["loras"] == {"demo_lora": {"source": "demo-lora", "weight": 1.0}}
    assert {"text2img", "img2img", "inpaint", "sag", "pag"} <= set(info["affects"])
    during = {
        "text2img": image(studio, **T2I),
        "img2img": image(studio, **I2I),
        "sag": image(studio, **T2I, sag_scale=0.5),
    }
    assert all(during[k] != before[k] for k in before), "the adapter reaches every view"
    info = studio.unload_lora("demo_lora")
    assert info == {"loras": {}, "affects": []}
    after = {
        "text2img": image(studio, **T2I),
        "img2img": image(studio, **I2I),
        "sag": image(studio, **T2I, sag_scale=0.5),
    }
    assert after == before


def test_weight_scales_the_effect_and_zero_is_no_effect(studio):
    plain = image(studio, **T2I)
    studio.load_lora("demo-lora", weight=0.0)
    assert image(studio, **T2I) == plain
    studio.unload_lora("demo_lora")
    studio.load_lora("demo-lora", weight=0.5)
    assert image(studio, **T2I) != plain


def test_the_snippet_loads_the_lora_too(studio, tmp_path, monkeypatch):
    studio.load_lora("demo-lora", weight=0.8)
    result = studio.generate(GenerationRequest(**T2I))
    assert "pipe.load_lora_weights(" in result.info["code"] and "set_adapters(['demo_lora']" in result.info["code"]
    (tmp_path / "reproduce.py").write_text(result.info["code"])
    monkeypatch.chdir(tmp_path)
    runpy.run_path(str(tmp_path / "reproduce.py"), run_name="__main__")
    assert Image.open(tmp_path / "image.png").tobytes() == result.images[0].tobytes()


def test_bad_lora_requests_say_what_to_do(studio, tmp_path):
    with pytest.raises(LoadError, match="not a LoRA file, folder or Hub id"):
        studio.load_lora(str(tmp_path / "missing.safetensors"))
    (tmp_path / "weights.bin").write_bytes(b"x")
    with pytest.raises(LoadError, match="safetensors only"):
        studio.load_lora(str(tmp_path / "weights.bin"))
    pickled = tmp_path / "pickled-lora"
    pickled.mkdir()
    (pickled / "pytorch_lora_weights.bin").write_bytes(b"not opened")  # diffusers would torch.load it
    with pytest.raises(LoadError, match=r"only pickle \(\.bin\) weights.*--allow-unsafe"):
        studio.load_lora(str(pickled))
    with pytest.raises(InvalidRequest, match="No LoRA named 'nope' is loaded"):
        studio.unload_lora("nope")
    with pytest.raises(InvalidRequest, match="between -2 and 2"):
        studio.load_lora("demo-lora", weight=5.0)
    studio.load_lora("demo-lora")
    with pytest.raises(InvalidRequest, match="already loaded"):
        studio.load_lora("demo-lora")


@pytest.mark.parametrize("unload_first", [False, True])
def test_reloading_the_same_checkpoint_gives_clean_modules(studio, unload_first):
    """The files' fingerprint matched, so a reload reused the UNet still carrying the LoRA's layers: the panel
    listed no LoRA, unload refused, and every image kept the LoRA."""
    plain = image(studio, **T2I)
    loaded_unet, vae = studio.pool.components["unet"], studio.pool.components["vae"]
    studio.load_lora("demo-lora")
    if unload_first:  # the last unload removes peft's wrapper layers too: the UNet is plain again, and shared
        studio.unload_lora("demo_lora")
    studio.load("demo", variant="default", dtype="float32")
    reused = studio.pool.components["unet"] is loaded_unet
    assert reused == unload_first, "a UNet carrying a LoRA is never reused; a plain one is"
    assert studio.pool.components["vae"] is vae, "what no adapter touched is still shared"
    assert image(studio, **T2I) == plain
    studio.load_lora("demo-lora")  # and the new one takes a LoRA as the first did
    assert image(studio, **T2I) != plain


def test_a_lora_sent_during_a_load_goes_onto_the_model_that_load_leaves(studio):
    """The LoRA call waits for the load under way and applies to the new model (it once took the old pool before
    waiting, and the panel then listed a LoRA the new model did not carry)."""
    import threading
    import time

    from core.checkpoints.fingerprints import carries_adapters

    old_unet = studio.pool.components["unet"]
    holding = threading.Event()

    def reload() -> None:
        with studio._load_lock:
            holding.set()
            time.sleep(0.3)  # the LoRA call arrives meanwhile
            studio.load("demo-inpaint", variant="default", dtype="float32")

    loader = threading.Thread(target=reload)
    loader.start()
    holding.wait(10)
    info = studio.load_lora("demo-lora", weight=1.0)
    loader.join(30)
    assert studio.pool.files.source == "demo-inpaint" and info["loras"]
    assert carries_adapters(studio.pool.components["unet"]) and not carries_adapters(old_unet)


def test_adapter_calls_check_their_own_values_first_and_unloading_nothing_is_fine():
    """Before any model is loaded: a bad weight or scale is told as such, and unloading an IP-Adapter that isn't
    there is a no-op (not "No checkpoint is loaded")."""
    studio = Studio(StudioOptions(device="cpu", offline=True))
    with pytest.raises(InvalidRequest, match="LoRA weight must be between -2 and 2"):
        studio.load_lora("demo-lora", 5.0)
    with pytest.raises(InvalidRequest, match="IP-Adapter scale must be between 0 and 2"):
        studio.load_ip_adapter("demo-ip-adapter", 9.0)
    assert studio.unload_ip_adapter() == {"ip_adapter": None, "affects": []}


def test_a_weight_changes_in_place_as_if_loaded_with_it(studio):
    """The panel's weight slider: no unload and load again; the image is the one a fresh load at that weight
    makes, and the snippet repeats the new weight."""
    studio.load_lora("demo-lora", weight=0.5)
    at_half = image(studio, **T2I)
    studio.unload_lora("demo_lora")
    studio.load_lora("demo-lora", weight=1.0)
    info = studio.set_lora_weight("demo_lora", 0.5)
    assert info["loras"]["demo_lora"]["weight"] == 0.5
    result = studio.generate(GenerationRequest(**T2I))
    assert result.images[0].tobytes() == at_half
    assert "adapter_weights=[0.5]" in result.info["code"]
    with pytest.raises(InvalidRequest, match="No LoRA named 'nope'"):
        studio.set_lora_weight("nope", 1.0)
    with pytest.raises(InvalidRequest, match="between -2 and 2"):
        studio.set_lora_weight("demo_lora", 3)
