"""Video (zero-shot): Text2Video-Zero makes a short clip with the loaded SD checkpoint itself, no video model. It
denoises the first frame's latents most of the way, copies them to every frame shifted along a motion field (a
camera pan), adds the noise back and finishes all frames together, each frame's self-attention reading the first
frame's keys and values so that they stay alike. A `from_pipe` view: no memory beyond the frames' latents; its
cross-frame attention processors are put back on the shared UNet after every run, a stopped or failed one too
(`core.runs.run_pipeline`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import diffusers
import numpy as np
from diffusers import DiffusionPipeline
from PIL import Image

from core.errors import InvalidRequest
from core.tasks.base import SCHEDULER, SEED, SIZE, STEPS_GUIDANCE, TEXT, Output, Param, TaskSpec

if TYPE_CHECKING:
    from core.generation import GenerationRequest, GenerationResult, Limits

# The paper's (and the pipeline's defaults') split of 50 steps: the first frame alone down to step index 47 from
# the end (t1), then to 44 (t0), where the frames are made from it; scaled to the steps asked for.
T0, T1, OF_STEPS = 44, 47, 50
MIN_STEPS = 3  # t0 < t1 < steps


def split(steps: int) -> tuple[int, int]:
    """(t0, t1) for `steps` denoising steps, in the pipeline's proportions: 0 <= t0 < t1 <= steps - 1."""
    t1 = min(steps - 1, round(steps * T1 / OF_STEPS))
    t0 = min(t1 - 1, round(steps * T0 / OF_STEPS))
    return t0, t1


class VideoZero(TaskSpec):
    name, label, kind, order = "video_zero", "Video (zero-shot)", "feature", 92
    pipeline_class = "TextToVideoZeroPipeline"
    table_pipeline = "`TextToVideoZeroPipeline` (Text2Video-Zero) → GIF and MP4"
    table_shares = "everything (a `from_pipe` view; its cross-frame attention is put back after each run)"
    output = "frame_array"  # the snippet's: `result.images` is the clip's frames as one array
    description = (
        "A short clip from the loaded SD checkpoint alone (Text2Video-Zero): frames made from the first one along a "
        "camera pan, kept alike by cross-frame attention. Returns a GIF, an MP4 and the info."
    )
    note = (
        "Text2Video-Zero needs no video model: the first frame is denoised most of the way, shifted along the motion "
        "(pixels per frame, x and y) for each frame, and all frames are finished together; their self-attention "
        "reads the first frame's. The steps count three passes: the last one over every frame."
    )
    fixed: ClassVar[Mapping[str, Any]] = {"num_images": 1}  # one clip per run: its loop treats a batch as frames
    params = (
        *TEXT,
        Param("num_frames", "slider", "Frames", 8, minimum=2, maximum="max_frames", step=1, whole=True, row="frames"),
        Param("fps", "slider", "Frames per second", 4, minimum=1, maximum=30, step=1, whole=True, row="frames"),
        Param("motion_x", "slider", "Motion x (px per frame)", 12.0, minimum=-32.0, maximum=32.0, step=1.0,
              row="motion"),
        Param("motion_y", "slider", "Motion y (px per frame)", 12.0, minimum=-32.0, maximum=32.0, step=1.0,
              row="motion"),
        *STEPS_GUIDANCE,
        *SIZE,
        SEED,
        SCHEDULER,
        Param("safety_checker", "panel"),
    )  # fmt: skip
    outputs = (Output("gif", "gif", "GIF", before_results=True), Output("mp4", "video", "MP4", before_results=True))
    results_label = "First frame"

    def views_over(self, base_class: str, family: str | None) -> dict[str, type]:
        return {self.name: diffusers.TextToVideoZeroPipeline} if base_class == "StableDiffusionPipeline" else {}

    def check(self, request: GenerationRequest, limits: Limits) -> None:
        if request.steps < MIN_STEPS:
            raise InvalidRequest(
                f"Text2Video-Zero needs at least {MIN_STEPS} steps (the first frame's two passes, then all frames); "
                f"got {request.steps}."
            )

    def arguments(self, request: GenerationRequest, pipe: DiffusionPipeline, args: dict[str, Any]) -> dict[str, Any]:
        t0, t1 = split(request.steps)
        return {
            "video_length": request.num_frames,
            "motion_field_strength_x": float(request.motion_x),
            "motion_field_strength_y": float(request.motion_y),
            "t0": t0,
            "t1": t1,
            "output_type": "np",
        }

    def extra_step_calls(self, request: GenerationRequest) -> int:
        """Its passes call back once per step each, and the t1 - t0 steps between its splits run twice."""
        t0, t1 = split(request.steps)
        return t1 - t0

    def collect(self, output: Any, arguments: dict[str, Any]) -> tuple[list[Image.Image], dict[str, Any]]:
        frames = [Image.fromarray((np.clip(f, 0, 1) * 255).round().astype("uint8")) for f in output.images]
        return [frames[0]], {"frames": [frames]}

    def output_values(self, result: GenerationResult) -> dict[str, Any]:
        return {"gif": result.files.get("gif"), "mp4": result.files.get("mp4")}

    def info_fields(self, request: GenerationRequest, serving: Any) -> dict[str, Any]:
        t0, t1 = split(request.steps)
        return {
            "num_frames": request.num_frames,
            "fps": request.fps,
            "motion": [float(request.motion_x), float(request.motion_y)],
            "t0": t0,
            "t1": t1,
        }

    def frames(self, request: GenerationRequest) -> int:
        return max(getattr(request, "num_frames", 1) or 1, 1)


SPEC = VideoZero()
