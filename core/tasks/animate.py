"""Animate: AnimateDiff's motion adapter turns the loaded SD checkpoint's UNet into a motion UNet that makes short
clips (saved as GIF and MP4 beside the first frame's PNG)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import diffusers
from diffusers import DiffusionPipeline
from PIL import Image

from core.errors import InvalidRequest, NotLoaded
from core.snippet import Code
from core.tasks.base import (
    IMAGE_PROMPT,
    SCHEDULER,
    SEED,
    SIZE,
    STEPS_GUIDANCE,
    TEXT,
    Output,
    Param,
    Serving,
    TaskSpec,
)

if TYPE_CHECKING:
    from core.generation import GenerationRequest, GenerationResult
    from core.pool import Pool
    from core.snippet import Snippet


class Animate(TaskSpec):
    name, label, kind, order = "animate", "Animate", "animate", 90
    pipeline_class = "AnimateDiffPipeline"
    table_pipeline = "`AnimateDiffPipeline.from_pipe(base, motion_adapter=...)` → GIF and MP4"
    table_shares = (
        "everything but the UNet, which AnimateDiff turns into a motion UNet (a copy with the adapter's layers)"
    )
    companions = ("motion_adapter",)
    count_argument = "num_videos_per_prompt"
    output = "frames"
    lora_applies = False  # its motion UNet is built from the plain UNet (see `view`)
    description = "Animate a prompt with AnimateDiff over the loaded checkpoint: returns a GIF, an MP4 and the info."
    companion_note = "a motion adapter; the loaded checkpoint's components are reused with `from_pipe`."
    fixed: ClassVar[Mapping[str, Any]] = {"safety_checker": False}  # no checker runs on frames
    params = (
        *TEXT,
        Param("num_frames", "slider", "Frames", 16, minimum=1, maximum="max_frames", step=1, whole=True, row="frames"),
        Param("fps", "slider", "Frames per second", 8, minimum=1, maximum=30, step=1, whole=True, row="frames"),
        *STEPS_GUIDANCE,
        *SIZE,
        SEED,
        SCHEDULER,
        IMAGE_PROMPT,
    )
    outputs = (Output("gif", "gif", "GIF", before_results=True), Output("mp4", "video", "MP4", before_results=True))
    results_label = "First frame"

    def output_values(self, result: GenerationResult) -> dict[str, Any]:
        return {"gif": result.files.get("gif"), "mp4": result.files.get("mp4")}

    def views_over(self, base_class: str, family: str | None) -> dict[str, type]:
        return {self.name: diffusers.AnimateDiffPipeline} if base_class == "StableDiffusionPipeline" else {}

    def check_pool(self, pool: Pool, request: GenerationRequest, serving: Serving) -> None:
        super().check_pool(pool, request, serving)
        if serving.motion is None:
            raise NotLoaded("Animate needs a motion adapter: load the one offered in its tab first.")

    def view(
        self, pool: Pool, request: GenerationRequest, scheduler: Any, run_checker: bool, serving: Serving
    ) -> DiffusionPipeline:
        if serving.loras:
            # A motion UNet built before the LoRA ignored it; one built after failed inside diffusers'
            # from_unet2d. Say so instead of either.
            raise InvalidRequest(
                "Animate can't use a LoRA yet: AnimateDiff builds its motion UNet from the plain UNet. Unload "
                f"{', '.join(serving.loras)} in the LoRA panel, then animate."
            )
        motion = serving.motion
        assert motion is not None
        return pool.view_as(self.name, scheduler=scheduler, unet=motion.unet_for(pool), motion_adapter=motion.adapter)

    def arguments(self, request: GenerationRequest, pipe: DiffusionPipeline, args: dict[str, Any]) -> dict[str, Any]:
        return {"num_frames": request.num_frames}

    def collect(self, output: Any, arguments: dict[str, Any]) -> tuple[list[Image.Image], dict[str, Any]]:
        frames = [list(video) for video in output.frames]
        return [video[0] for video in frames], {"frames": frames}

    def info_fields(self, request: GenerationRequest, serving: Serving) -> dict[str, Any]:
        return {"num_frames": request.num_frames, "fps": request.fps}

    def add_to_snippet(
        self, snippet: Snippet, request: GenerationRequest, seeds: list[int], serving: Serving, load: dict[str, Any]
    ) -> None:
        if serving.motion is None:
            return
        snippet.imports.append("MotionAdapter")
        snippet.before_load.append(
            f"adapter = MotionAdapter.from_pretrained({_motion_location(serving)!r}, dtype=torch.{snippet.dtype})"
        )
        load["motion_adapter"] = Code("adapter")

    def frames(self, request: GenerationRequest) -> int:
        return max(getattr(request, "num_frames", 1) or 1, 1)


def _motion_location(serving: Serving) -> str:
    motion = serving.motion
    assert motion is not None
    if motion.source == "demo-motion-adapter":
        from core.demo.companions import companion_path

        return str(companion_path("motion_adapter", serving.cache_dir))
    return motion.source


SPEC = Animate()
