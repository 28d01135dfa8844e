"""Nothing half-done: a crash mid-write leaves no truncated PNG, and a generation during a load runs on the
complete previous pool, never on part of the new one."""

from __future__ import annotations

import threading

import pytest
from PIL import Image

from core.generation import GenerationRequest
from core.outputs import save_png_atomically
from core.studio import Studio, StudioOptions

TINY = dict(prompt="x", steps=2, width=64, height=64, seed=3, safety_checker=False)


def test_a_crash_while_writing_leaves_no_truncated_png(tmp_path, monkeypatch):
    image = Image.effect_noise((64, 64), 60).convert("RGB")
    target = tmp_path / "out" / "image.png"
    save_png_atomically(image, target)
    before = target.read_bytes()
    real_save = Image.Image.save

    def crash_halfway(self, fp, *args, **kwargs):
        real_save(self, fp, *args, **kwargs)
        fp.truncate(100)  # half a file is on disk...
        raise OSError("No space left on device")  # ...when the disk fills up

    monkeypatch.setattr(Image.Image, "save", crash_halfway)
    with pytest.raises(OSError, match="No space left"):
        save_png_atomically(image.rotate(90), target)
    assert target.read_bytes() == before, "the earlier file at that name is untouched"
    assert [p.name for p in target.parent.iterdir()] == ["image.png"], "no temporary file is left behind"
    with pytest.raises(OSError):
        save_png_atomically(image, tmp_path / "out" / "new.png")
    assert not (tmp_path / "out" / "new.png").exists(), "a new image is either whole or absent"


def test_a_generation_during_a_load_runs_on_the_previous_pool(monkeypatch):
    from diffusers import DiffusionPipeline

    studio = Studio(StudioOptions(device="cpu", offline=True))
    studio.load("demo", variant="default", dtype="float32")
    release, entered = threading.Event(), threading.Event()
    real = DiffusionPipeline.from_pretrained.__func__

    def slow_load(cls, *args, **kwargs):
        entered.set()
        assert release.wait(30)
        return real(cls, *args, **kwargs)

    monkeypatch.setattr(DiffusionPipeline, "from_pretrained", classmethod(slow_load))
    loader = threading.Thread(target=studio.load, args=("demo-sdxl",), kwargs={"dtype": "float32"})
    loader.start()
    assert entered.wait(30)
    during = studio.generate(GenerationRequest(**TINY))
    assert during.info["pipeline"] == "StableDiffusionPipeline" and during.info["model"] == "demo"
    release.set()
    loader.join(60)
    after = studio.generate(GenerationRequest(**TINY))
    assert after.info["pipeline"] == "StableDiffusionXLPipeline"


def test_public_mode_turns_off_remote_code(monkeypatch):
    import app as app_module
    from core.settings import from_args

    monkeypatch.delenv("DIFFUSERS_DISABLE_REMOTE_CODE", raising=False)
    app_module.build_app(from_args(["--public"], env={}))
    import os

    assert os.environ["DIFFUSERS_DISABLE_REMOTE_CODE"] == "1"
