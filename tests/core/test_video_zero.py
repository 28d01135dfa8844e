"""Text2Video-Zero over the loaded SD checkpoint (core/tasks/video_zero.py): a clip from the shared pool like the
plain diffusers call, its frames following the motion, GIF and MP4 saved, the snippet making it again, the steps
counted over its three passes, and the shared UNet's attention as it found it (after a Stop too)."""

from __future__ import annotations

import runpy
import threading

import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler, TextToVideoZeroPipeline
from PIL import Image, ImageSequence

from core.errors import InvalidRequest
from core.generation import GenerationRequest
from core.studio import Studio, StudioOptions
from core.tasks.video_zero import split

# DDIM, as the paper: SD 1.5's PNDM repeats a timestep at its warm-up, and at a few steps that falls between t1 and
# t0, where the frames' noise is added back (none is: two frames can come out alike).
BASE = dict(task="video_zero", prompt="a red barn", steps=4, width=64, height=64, seed=5, num_frames=4, fps=4)
BASE["scheduler"] = "DDIM"


@pytest.fixture(scope="module")
def studio(tmp_path_factory) -> Studio:
    studio = Studio(StudioOptions(device="cpu", offline=True, outputs_dir=tmp_path_factory.mktemp("outputs")))
    studio.load("demo", variant="default", dtype="float32")
    return studio


def processors(studio: Studio) -> dict[str, type]:
    return {k: type(v) for k, v in studio.pool.base.unet.attn_processors.items()}


def gif_frames(path) -> list[bytes]:
    with Image.open(path) as gif:
        return [frame.convert("RGB").tobytes() for frame in ImageSequence.Iterator(gif)]


def test_a_clip_from_the_shared_pool_like_the_plain_call(studio, demo_dir, tmp_path, monkeypatch):
    before, attention = studio.pool.unique_bytes(), processors(studio)
    progress = []
    result = studio.generate(GenerationRequest(**BASE), on_step=lambda done, total: progress.append((done, total)))
    frames = result.extras["frames"][0]
    assert result.info["pipeline"] == "TextToVideoZeroPipeline" and len(frames) == 4 and result.images == [frames[0]]
    assert (result.info["t0"], result.info["t1"]) == split(4) == (2, 3) and result.info["motion"] == [12.0, 12.0]
    # Three passes that each count from 0, some steps twice: shown as one climb to the steps asked for.
    assert [d for d, _ in progress] == sorted(d for d, _ in progress) and progress[-1] == (4, 4)
    assert studio.pool.unique_bytes() == before and processors(studio) == attention

    plain = TextToVideoZeroPipeline.from_pretrained(demo_dir, torch_dtype=torch.float32)
    plain.scheduler = DDIMScheduler.from_config(plain.scheduler.config)
    plain.set_progress_bar_config(disable=True)
    theirs = plain(
        prompt="a red barn", num_inference_steps=4, width=64, height=64, video_length=4, t0=2, t1=3,
        output_type="np", generator=torch.Generator("cpu").manual_seed(5),
    ).images  # fmt: skip
    assert [f.tobytes() for f in frames] == [
        Image.fromarray((np.clip(f, 0, 1) * 255).round().astype("uint8")).tobytes() for f in theirs
    ]
    assert len({f.tobytes() for f in frames}) == 4, "each frame moved along the motion field"
    still = studio.generate(GenerationRequest(**{**BASE, "motion_x": 0.0, "motion_y": 0.0}))
    assert still.extras["frames"][0][0].tobytes() == frames[0].tobytes(), "the first frame doesn't move"
    assert still.extras["frames"][0][3].tobytes() != frames[3].tobytes(), "the motion moves the others"

    saved = gif_frames(result.files["gif"])  # a GIF's palette is 256 colours: not the frames' bytes
    assert len(saved) == 4 and len(set(saved)) == 4
    assert result.files["mp4"].endswith(".mp4")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "reproduce.py").write_text(result.info["code"])
    runpy.run_path(str(tmp_path / "reproduce.py"), run_name="__main__")
    assert gif_frames(tmp_path / "animation.gif") == saved


def test_too_few_steps_are_refused_and_a_stop_leaves_the_unet_as_it_was(studio):
    with pytest.raises(InvalidRequest, match="Text2Video-Zero needs at least 3 steps"):
        studio.generate(GenerationRequest(**{**BASE, "steps": 2}))
    plain = studio.generate(
        GenerationRequest(task="text2img", prompt="a red barn", steps=3, width=64, height=64, seed=2)
    )
    attention, cancel = processors(studio), threading.Event()
    stopped = studio.generate(
        GenerationRequest(**{**BASE, "steps": 12}), on_step=lambda done, total: cancel.set(), cancel=cancel
    )
    assert stopped.info["interrupted"] is True and stopped.info["stopped_at_step"] < 12
    assert processors(studio) == attention, "cross-frame attention left on the shared UNet"
    again = studio.generate(
        GenerationRequest(task="text2img", prompt="a red barn", steps=3, width=64, height=64, seed=2)
    )
    assert again.images[0].tobytes() == plain.images[0].tobytes()
