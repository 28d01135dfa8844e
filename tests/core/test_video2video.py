"""Video to video over a text-to-video checkpoint (core/tasks/video2video.py): an uploaded clip (MP4 or GIF) redrawn
like the plain `VideoToVideoSDPipeline` call on the same frames, its snippet making it again, the Pipeline tab still
serving the checkpoint's text to video, and clips refused from their size before their frames are decoded."""

from __future__ import annotations

import runpy

import diffusers
import numpy as np
import pytest
import torch
from diffusers.utils import export_to_video, load_video
from PIL import Image

from core.demo.companions import companion_path
from core.errors import InvalidRequest
from core.generation import GenerationRequest, Limits
from core.studio import Studio, StudioOptions
from core.tasks import video2video


def clip(frames: int = 4, size: int = 64) -> list[Image.Image]:
    """Frames of a square sliding across: each differs from the last."""
    pictures = []
    for i in range(frames):
        picture = Image.new("RGB", (size, size), (30, 60, 160))
        picture.paste((240, 200, 40), (8 * i, 16, 8 * i + 24, 40))
        pictures.append(picture)
    return pictures


@pytest.fixture(scope="module")
def studio(tmp_path_factory) -> Studio:
    studio = Studio(StudioOptions(device="cpu", offline=True, outputs_dir=tmp_path_factory.mktemp("outputs")))
    info = studio.load("demo-text-to-video", variant="default", dtype="float32")
    assert info["tasks"] == ["video2video", "pipeline"], "its own text to video stays in the Pipeline tab"
    return studio


def test_an_uploaded_clip_is_redrawn_like_the_plain_call_and_its_snippet(studio, tmp_path, monkeypatch):
    upload = tmp_path / "upload.mp4"
    export_to_video(clip(), str(upload), fps=4)
    request = GenerationRequest(
        task="video2video", prompt="a boat at dusk", video=str(upload), strength=0.75, steps=4, seed=8,
        guidance_scale=9.0,
    )  # fmt: skip
    progress = []
    result = studio.generate(request, on_step=lambda done, total: progress.append((done, total)))
    frames = result.extras["frames"][0]
    assert result.info["pipeline"] == "VideoToVideoSDPipeline" and result.info["num_frames"] == 4
    assert len(frames) == 4 and frames[0].size == (64, 64) and set(result.files) == {"gif", "mp4"}
    assert progress[-1] == (3, 3), "the steps the strength leaves (4 x 0.75)"

    plain = diffusers.VideoToVideoSDPipeline.from_pretrained(companion_path("text_to_video"), torch_dtype=torch.float32)
    plain.set_progress_bar_config(disable=True)
    theirs = plain(
        prompt="a boat at dusk", video=load_video(str(upload)), strength=0.75, num_inference_steps=4,
        guidance_scale=9.0, output_type="pil", generator=torch.Generator("cpu").manual_seed(8),
    ).frames[0]  # fmt: skip
    assert [f.tobytes() for f in frames] == [f.tobytes() for f in theirs]
    assert len({f.tobytes() for f in frames}) == 4, "each frame is its own"

    monkeypatch.chdir(tmp_path)
    (tmp_path / video2video.VIDEO_FILE).write_bytes(upload.read_bytes())
    (tmp_path / "reproduce.py").write_text(result.info["code"])
    runpy.run_path(str(tmp_path / "reproduce.py"), run_name="__main__")
    with Image.open(tmp_path / "animation.gif") as again, Image.open(result.files["gif"]) as mine:
        assert again.n_frames == mine.n_frames == 4
        assert again.convert("RGB").tobytes() == mine.convert("RGB").tobytes()


def test_only_the_first_frames_of_a_long_gif_are_read(studio, tmp_path):
    gif = tmp_path / "long.gif"
    first, *rest = clip(frames=6)
    first.save(gif, save_all=True, append_images=rest, duration=250)
    frames, fps = video2video.video_frames(str(gif), Limits(max_frames=3))
    assert len(frames) == 3 and fps == 4 and frames[1].tobytes() == clip(frames=6)[1].tobytes()
    result = studio.generate(GenerationRequest(task="video2video", prompt="a boat", video=str(gif), steps=2, seed=1))
    assert result.info["num_frames"] == 6 and result.info["input_fps"] == 4


def test_a_clip_is_refused_from_its_size_before_it_is_decoded(studio, tmp_path):
    big = tmp_path / "big.gif"
    Image.new("RGB", (4096, 64)).save(big)
    with pytest.raises(InvalidRequest, match="The video is 4096x64; this app redraws clips of 64 to 2048 px"):
        studio.generate(GenerationRequest(task="video2video", prompt="a boat", video=str(big), steps=2))
    with pytest.raises(InvalidRequest, match="Video to video needs a video"):
        studio.generate(GenerationRequest(task="video2video", prompt="a boat", steps=2))
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video at all")
    with pytest.raises(InvalidRequest, match="The video could not be read"):
        studio.generate(GenerationRequest(task="video2video", prompt="a boat", video=str(junk), steps=2))
    still = GenerationRequest(task="pipeline", prompt="a", steps=2, num_frames=2, width=64, height=64)
    assert np.asarray(studio.generate(still).images[0]).shape == (64, 64, 3), "the Pipeline tab still serves"
