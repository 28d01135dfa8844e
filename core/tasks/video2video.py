"""Video to video: a text-to-video checkpoint (ModelScope, Zeroscope) redraws an uploaded clip toward the prompt, as
image to image does a picture: the clip's latents are noised to the strength's step and denoised from there. A
`from_pipe` view over the loaded text-to-video checkpoint, which the Pipeline tab keeps serving (its text to video).

The clip is read frame by frame and only as far as it is used (the first `max_frames`), after its size is known: a
long or large video would otherwise be decoded whole before anything could refuse it. diffusers' `load_video`
reads every frame, so this reads with the same decoders (imageio's ffmpeg, PIL for a GIF) itself."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import diffusers
from diffusers import DiffusionPipeline
from PIL import Image

from core.errors import InvalidRequest
from core.snippet import Code
from core.tasks.base import SEED, TEXT, Output, Param, Serving, TaskSpec, guidance, steps, strength

if TYPE_CHECKING:
    from core.generation import GenerationRequest, GenerationResult, Limits
    from core.pool import Pool
    from core.snippet import Snippet


@dataclass(frozen=True)
class Clip:
    """An uploaded video as the run uses it: its first frames, and the rate it was made at."""

    frames: list[Image.Image]
    fps: float | None


MAX_VIDEO_BYTES = 50_000_000  # an upload's size, checked before it is opened
VIDEO_FILE = "input.mp4"  # what the snippet reads: the clip the user gave the app


def video_frames(path: Any, limits: Limits) -> tuple[list[Image.Image], float | None]:
    """The clip's first frames (at most `limits.max_frames`, RGB) and its frame rate, its size checked before any
    frame is decoded."""
    if not isinstance(path, (str, os.PathLike)) or not os.path.isfile(path):
        raise InvalidRequest("Video to video needs a video: upload one (MP4, WebM or GIF).")
    size = os.path.getsize(path)
    if size > MAX_VIDEO_BYTES:
        raise InvalidRequest(
            f"The video is {size:,} bytes; this app reads at most {MAX_VIDEO_BYTES:,}. Cut it shorter."
        )
    try:
        if str(path).lower().endswith(".gif"):
            return _gif_frames(path, limits)
        return _ffmpeg_frames(path, limits)
    except InvalidRequest:
        raise
    except Exception as e:  # the decoders' errors: any of them means "not a video we can read"
        raise InvalidRequest(f"The video could not be read ({type(e).__name__}); upload an MP4, WebM or GIF.") from e


def _check_size(width: int, height: int, limits: Limits) -> None:
    if max(width, height) > limits.max_side or min(width, height) < limits.min_side:
        raise InvalidRequest(
            f"The video is {width}x{height}; this app redraws clips of {limits.min_side} to {limits.max_side} px a "
            "side. Resize it."
        )


def _gif_frames(path: Any, limits: Limits) -> tuple[list[Image.Image], float | None]:
    with Image.open(path) as gif:
        _check_size(*gif.size, limits)
        duration = gif.info.get("duration")
        frames = []
        for index in range(min(getattr(gif, "n_frames", 1), limits.max_frames)):
            gif.seek(index)
            frames.append(gif.copy().convert("RGB"))  # as load_video's default conversion
    return frames, (1000 / duration if duration else None)


def _ffmpeg_frames(path: Any, limits: Limits) -> tuple[list[Image.Image], float | None]:
    import imageio

    with imageio.get_reader(path) as reader:  # what diffusers' load_video opens
        meta = reader.get_meta_data()
        if "size" in meta:
            _check_size(*meta["size"], limits)
        frames = []
        for frame in reader:
            image = Image.fromarray(frame)
            _check_size(*image.size, limits)
            frames.append(image.convert("RGB"))
            if len(frames) == limits.max_frames:
                break
    return frames, meta.get("fps")


class VideoToVideo(TaskSpec):
    name, label, kind, order = "video2video", "Video to video", "feature", 93
    pipeline_class = "VideoToVideoSDPipeline"
    table_shares = "everything (a `from_pipe` view over a text-to-video checkpoint)"
    beside_signature_tab = True  # the checkpoint's own text to video stays in the Pipeline tab
    sizes_follow_image = True
    output = "frames"  # the snippet's: `result.frames`, one list of frames per clip
    description = (
        "Redraw a video toward the prompt (a text-to-video checkpoint: ModelScope, Zeroscope); strength is how far "
        "each frame may go. The first max_frames frames are used. Returns a GIF, an MP4 and the info."
    )
    note = (
        "Video to video (`from_pipe` over the loaded text-to-video checkpoint: no extra memory) noises the clip to "
        "the strength's step and denoises it toward the prompt, all frames at once. Only its first frames are used "
        "(as many as the longest clip this app makes)."
    )
    params = (
        Param("video", "video", "Video to redraw", api_default=None),
        *(dataclasses.replace(p, api_default="") for p in TEXT),
        dataclasses.replace(strength(0.6), api_default=0.6),
        dataclasses.replace(steps(25), api_default=25),
        dataclasses.replace(guidance(15.0), api_default=15.0),
        dataclasses.replace(SEED, api_default=-1),
    )
    outputs = (Output("gif", "gif", "GIF", before_results=True), Output("mp4", "video", "MP4", before_results=True))
    results_label = "First frame"

    def views_over(self, base_class: str, family: str | None) -> dict[str, type]:
        return {self.name: diffusers.VideoToVideoSDPipeline} if base_class == "TextToVideoSDPipeline" else {}

    def check(self, request: GenerationRequest, limits: Limits) -> None:
        if request.video is None:
            raise InvalidRequest("Video to video needs a video: upload one (MP4, WebM or GIF).")
        if not request.prompt.strip():
            raise InvalidRequest("Video to video needs a prompt: what the clip should become.")

    def prepare(self, request: GenerationRequest, serving: Serving, pool: Pool) -> GenerationRequest:
        """The clip's frames read (checked first), for the run, its info and its snippet."""
        frames, fps = video_frames(request.video, serving.limits)
        return dataclasses.replace(request, video=Clip(frames, fps), num_images=1)

    def progress_bars(self, request: GenerationRequest) -> int:
        """Its progress bar counts the steps the strength leaves (its step callback counts all of them)."""
        return 1

    def call_arguments(
        self, request: GenerationRequest, pipe: DiffusionPipeline, seeds: list[int], multiple: int = 8
    ) -> dict[str, Any]:
        args = super().call_arguments(request, pipe, seeds, multiple)
        for key in ("width", "height", "num_images_per_prompt"):
            args.pop(key, None)
        args.update(video=request.video.frames, strength=float(request.strength), output_type="pil")
        # One generator, not the usual list of one: with a list, diffusers 0.42 encodes only the clip's first frame
        # (it splits the frames as if they were the batch) and then fails to shape the latents.
        args["generator"] = args["generator"][0]
        return args

    def collect(self, output: Any, arguments: dict[str, Any]) -> tuple[list[Image.Image], dict[str, Any]]:
        frames = list(output.frames[0])
        return [frames[0]], {"frames": [frames]}

    def output_values(self, result: GenerationResult) -> dict[str, Any]:
        return {"gif": result.files.get("gif"), "mp4": result.files.get("mp4")}

    def info_fields(self, request: GenerationRequest, serving: Serving) -> dict[str, Any]:
        clip = request.video
        return {"strength": float(request.strength), "num_frames": len(clip.frames), "input_fps": clip.fps}

    def add_to_snippet(
        self, snippet: Snippet, request: GenerationRequest, seeds: list[int], serving: Serving, load: dict[str, Any]
    ) -> None:
        snippet.after_load += [
            "from diffusers.utils import load_video",
            f"video = load_video({VIDEO_FILE!r})[:{len(request.video.frames)}]  # the clip you gave the app",
        ]
        snippet.call_arguments["video"] = Code("video")


SPEC = VideoToVideo()
