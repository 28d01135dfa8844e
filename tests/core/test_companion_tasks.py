"""Tasks with their own checkpoint, loaded beside the main one on demand; and AnimateDiff on the main pool."""

from __future__ import annotations

import dataclasses
import gc
import hashlib
import runpy
import weakref

import pytest
from PIL import Image

from core.demo.companions import companion_path, write_companion
from core.errors import InvalidRequest, NotLoaded
from core.generation import GenerationRequest
from core.studio import Studio, StudioOptions

IMAGE = Image.new("RGB", (64, 64), (90, 140, 200))
CASES = [  # (kind, request fields, pipeline, expected size of the first image)
    ("depth", dict(task="depth2img", image=IMAGE, strength=0.9), "StableDiffusionDepth2ImgPipeline", (64, 64)),
    ("variation", dict(task="variation", image=IMAGE), "StableDiffusionImageVariationPipeline", (64, 64)),
    (
        "upscale_x4",
        dict(task="upscale", image=Image.new("RGB", (32, 24)), upscaler="x4", noise_level=30),
        "StableDiffusionUpscalePipeline",
        (128, 96),
    ),
    (
        "upscale_x2",
        dict(task="upscale", image=IMAGE, upscaler="x2"),
        "StableDiffusionLatentUpscalePipeline",
        (128, 128),
    ),
    ("ldm3d", dict(task="rgbd", width=64, height=64), "StableDiffusionLDM3DPipeline", (64, 64)),
    (
        "inpaint",
        dict(task="inpaint", image=IMAGE, mask=Image.new("L", (64, 64), 255), strength=1.0),
        "StableDiffusionInpaintPipeline",
        (64, 64),
    ),
]


@pytest.fixture(scope="module")
def studio() -> Studio:
    studio = Studio(StudioOptions(device="cpu", offline=True))
    studio.load("demo", variant="default", dtype="float32")
    return studio


@pytest.mark.parametrize(("kind", "fields", "pipeline", "size"), CASES, ids=[c[0] for c in CASES])
def test_companion_task_runs_beside_the_untouched_main_pool(
    studio, tmp_path, monkeypatch, kind, fields, pipeline, size
):
    main, main_bytes = studio.pool, studio.pool.unique_bytes()
    request = GenerationRequest(prompt="a hill", steps=2, seed=4, safety_checker=False, **fields)
    if kind != "inpaint":
        with pytest.raises(NotLoaded, match=f"demo-{kind.replace('_', '-')}"):
            studio.generate(request)
    studio.load_companion(kind, f"demo-{kind.replace('_', '-')}")
    result = studio.generate(request)
    assert result.info["pipeline"] == pipeline
    assert result.images[0].size == size
    assert studio.pool is main and studio.pool.unique_bytes() == main_bytes, "the main pool is not duplicated"
    names = {row["name"] for row in studio.memory_report()["components"]}
    assert f"{kind}/unet" in names
    if kind in ("depth", "ldm3d"):
        depth = result.extras["depth"][0]
        assert depth.size == size and depth.mode == "L"
    (tmp_path / "reproduce.py").write_text(result.info["code"])
    for name, field in (("input.png", "image"), ("mask.png", "mask")):
        if fields.get(field) is not None:
            fields[field].save(tmp_path / name)  # the script reads the user's inputs from these files
    monkeypatch.chdir(tmp_path)
    runpy.run_path(str(tmp_path / "reproduce.py"), run_name="__main__")
    assert Image.open(tmp_path / "image.png").tobytes() == result.images[0].tobytes()
    unet = weakref.ref(studio._companions[kind].base.unet)
    del result
    studio.unload_companion(kind)
    gc.collect()
    assert unet() is None, "unloading frees the companion"
    assert kind not in studio.companions_info()["companions"]


def test_animate_builds_on_the_main_pool_with_a_motion_adapter(studio, tmp_path):
    outputs = Studio(StudioOptions(device="cpu", offline=True, outputs_dir=tmp_path))
    outputs.load("demo", variant="default", dtype="float32")
    vae, text_encoder = outputs.pool.components["vae"], outputs.pool.components["text_encoder"]
    outputs.load_companion("motion_adapter", "demo-motion-adapter")
    result = outputs.generate(
        GenerationRequest(
            task="animate",
            prompt="waves",
            steps=2,
            width=64,
            height=64,
            num_frames=4,
            fps=4,
            seed=3,
            safety_checker=False,
        )
    )
    assert result.info["pipeline"] == "AnimateDiffPipeline" and result.info["num_frames"] == 4
    assert len(result.extras["frames"][0]) == 4 and result.images[0].size == (64, 64)
    assert result.files["gif"].endswith(".gif") and result.files["mp4"].endswith(".mp4")
    with Image.open(result.files["gif"]) as gif:
        assert gif.n_frames == 4
    view_parts = outputs.memory_report()["components"]
    assert any(row["name"] == "motion_unet" for row in view_parts)
    assert outputs.pool.components["vae"] is vae and outputs.pool.components["text_encoder"] is text_encoder


def test_animate_with_a_lora_says_what_to_do_and_a_new_model_frees_the_motion_unet():
    """A motion UNet built before load_lora silently ignored it (the panel listed animate as affected); one built
    after failed inside diffusers with "Something went wrong"; the old motion UNet outlived a model switch."""
    studio = Studio(StudioOptions(device="cpu", offline=True))
    studio.load("demo", variant="default", dtype="float32")
    studio.load_companion("motion_adapter", "demo-motion-adapter")
    request = GenerationRequest(
        task="animate", prompt="waves", steps=2, width=64, height=64, num_frames=2, fps=4, seed=3, safety_checker=False
    )
    studio.generate(request)
    info = studio.load_lora("demo-lora")
    assert "animate" not in info["affects"] and "img2img" in info["affects"]
    with pytest.raises(InvalidRequest, match=r"Animate can't use a LoRA yet.*Unload demo_lora in the LoRA panel"):
        studio.generate(request)
    studio.unload_lora("demo_lora")
    motion_unet = weakref.ref(studio.motion.unet_for(studio.pool))
    assert studio.generate(request).info["pipeline"] == "AnimateDiffPipeline"
    studio.load("demo", variant="fp16", dtype="float32")  # another model: the motion UNet built over the old one goes
    gc.collect()
    assert motion_unet() is None
    assert len(studio.generate(request).extras["frames"][0]) == 2, "and is built again over the new UNet"


def test_companion_writer_is_deterministic_and_shares_the_demos_files(tmp_path, demo_dir):
    def digest(folder):
        return {
            str(f.relative_to(folder)): hashlib.sha256(f.read_bytes()).hexdigest()
            for f in folder.rglob("*")
            if f.is_file()
        }

    a, b = write_companion("inpaint", tmp_path / "a"), write_companion("inpaint", tmp_path / "b")
    assert digest(a) == digest(b)
    for shared in ("text_encoder/model.safetensors", "vae/diffusion_pytorch_model.safetensors"):
        assert (a / shared).read_bytes() == (demo_dir / shared).read_bytes(), shared
    assert not list(a.rglob("*.bin"))
    assert companion_path("depth", tmp_path) == companion_path("depth", tmp_path)
    with pytest.raises(ValueError, match="choose one of inpaint, depth"):
        write_companion("nope", tmp_path / "c")


def test_depth_is_estimated_on_the_pipelines_execution_device_not_the_modules():
    """Under sequential CPU offload a module's weights sit on `meta` (accelerate's hooks bring them to the GPU per
    call), so `module.device` is meta. No GPU here: a stand-in module with meta weights records where its input
    went; the real offload path needs a GPU and did not run."""
    import types

    import torch

    from core.tasks.depth2img import estimate_depth

    class OffloadedDepth(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.weight = torch.nn.Parameter(torch.empty(1, device="meta"))
            self.seen: list[torch.device] = []

        def forward(self, pixels):
            self.seen.append(pixels.device)
            return types.SimpleNamespace(predicted_depth=torch.zeros(1, 8, 8))

    module = OffloadedDepth()
    pipe = types.SimpleNamespace(
        feature_extractor=lambda images, return_tensors: types.SimpleNamespace(pixel_values=torch.zeros(1, 3, 8, 8)),
        depth_estimator=module,
        _execution_device=torch.device("cpu"),
    )
    estimate_depth(pipe, Image.new("RGB", (8, 8)))
    assert module.seen == [torch.device("cpu")]


def test_a_public_server_loads_a_companion_only_within_the_devices_free_memory(monkeypatch):
    from core import devices

    studio = Studio(StudioOptions(device="cpu", offline=True, public=True))
    studio.load("demo", variant="default", dtype="float32")
    real = devices.read_memory

    def almost_full(device):
        return dataclasses.replace(real(device), free_bytes=1024)

    monkeypatch.setattr(devices, "read_memory", almost_full)
    with pytest.raises(InvalidRequest, match=r"The depth companion needs about .* GiB free; this server can't add"):
        studio.load_companion("depth", "demo-depth")
    assert "depth" not in studio.companions_info()["companions"]
    monkeypatch.setattr(devices, "read_memory", real)
    studio.load_companion("depth", "demo-depth")
    assert "depth" in studio.companions_info()["companions"]
