"""DiffEdit: edit an image from two prompts, with no mask drawn: the model compares what it predicts for "what the
image shows" and "what it should show", makes the mask where they differ, inverts the image into latents with DDIM,
and repaints only the masked part. A `from_pipe` view over the loaded SD checkpoint: no memory.

The mask and the inversion run before the denoising the progress bar follows (about as long again)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import diffusers
import numpy as np
import torch
from diffusers import DiffusionPipeline
from PIL import Image

from core.errors import InvalidRequest
from core.snippet import Code
from core.tasks.base import (
    SAFETY_CHECKER,
    SEED,
    Output,
    Param,
    Serving,
    TaskSpec,
    checker_overrides,
    guidance,
    image,
    negative,
    steps,
    strength,
)

if TYPE_CHECKING:
    from core.generation import GenerationRequest, GenerationResult, Limits
    from core.pool import Pool
    from core.snippet import Snippet


class DiffEdit(TaskSpec):
    name, label, kind, order = "diffedit", "DiffEdit", "feature", 46
    pipeline_class = "StableDiffusionDiffEditPipeline"
    table_shares = "everything (a `from_pipe` view, with DDIM and its inverse)"
    sizes_follow_image = True
    run_label = "Edit"
    description = (
        "Edit image from source_prompt (what it shows) to prompt (what it should show): the mask is made where the "
        "two differ, the rest is kept; strength is how far the masked part is repainted."
    )
    note = (
        "DiffEdit (`from_pipe` over the loaded checkpoint: no extra memory) finds the mask itself from the two "
        "prompts; the mask it made is shown. It runs DDIM, and the mask and the inversion take about as long as "
        "the edit."
    )
    fixed: ClassVar[Mapping[str, Any]] = {"scheduler": "DDIM", "num_images": 1}
    params = (
        image("Image to edit"),
        Param("source_prompt", "text", "What the image shows", "", info="e.g. a bowl of fruits", row="above-prompt"),
        Param("prompt", "prompt", "What it should show"),
        negative(),
        Param(
            "mask_strength",
            "slider",
            "Mask noise",
            0.5,
            minimum=0.0,
            maximum=1.0,
            step=0.05,
            above=True,
            info="how much noise the mask comparison adds (more: a larger mask)",
        ),
        strength(0.8),
        steps(25),
        guidance(7.5),
        SEED,
        SAFETY_CHECKER,
    )
    outputs = (Output("mask", "image", "The mask DiffEdit made"),)

    def views_over(self, base_class: str, family: str | None) -> dict[str, type]:
        if base_class != "StableDiffusionPipeline":
            return {}
        return {self.name: diffusers.StableDiffusionDiffEditPipeline}

    def check(self, request: GenerationRequest, limits: Limits) -> None:
        if not request.source_prompt.strip() or not request.prompt.strip():
            raise InvalidRequest(
                "DiffEdit needs both prompts: what the image shows (source_prompt) and what it should show (prompt)."
            )

    def prepare(self, request: GenerationRequest, serving: Serving, pool: Pool) -> GenerationRequest:
        """DDIM whatever was asked: the inversion is DDIM's, and the edit must walk the same timesteps back."""
        return dataclasses.replace(request, scheduler="DDIM")

    def view(
        self, pool: Pool, request: GenerationRequest, scheduler: Any, run_checker: bool, serving: Serving
    ) -> DiffusionPipeline:
        inverse = diffusers.DDIMInverseScheduler.from_config(scheduler.config)
        return pool.view_as(
            self.name, scheduler=scheduler, inverse_scheduler=inverse, **checker_overrides(pool, run_checker)
        )

    @staticmethod
    def strength_used(request: GenerationRequest) -> float:
        """`strength` rounded so that steps × strength is whole: the inversion keeps int(steps × strength)
        latents and the edit counts its own steps from the same product, rounding the other way (4 × 0.8 failed)."""
        return max(1, round(request.steps * request.strength)) / request.steps

    def _stage(self, request: GenerationRequest, seed: int) -> dict[str, Any]:
        """The arguments the mask and the inversion share (each with its own generator of the run's seed)."""
        return {
            "num_inference_steps": request.steps,
            "guidance_scale": float(request.guidance_scale),
            "generator": torch.Generator("cpu").manual_seed(seed),
        }

    def arguments(self, request: GenerationRequest, pipe: DiffusionPipeline, args: dict[str, Any]) -> dict[str, Any]:
        picture = args.pop("image")
        args.pop("strength", None)
        seed = args["generator"][0].initial_seed()
        mask = pipe.generate_mask(
            image=picture,
            source_prompt=request.source_prompt,
            target_prompt=request.prompt,
            mask_encode_strength=float(request.mask_strength),
            **self._stage(request, seed),
        )
        inverted = pipe.invert(
            prompt=request.source_prompt,
            image=picture,
            inpaint_strength=self.strength_used(request),
            **self._stage(request, seed),
        )
        return {"mask_image": mask, "image_latents": inverted.latents, "inpaint_strength": self.strength_used(request)}

    def collect(self, output: Any, arguments: dict[str, Any]) -> tuple[list[Image.Image], dict[str, Any]]:
        images = list(output.images)
        mask = np.asarray(arguments["mask_image"])[0]
        shown = Image.fromarray((mask * 255).round().astype(np.uint8), mode="L")
        size = images[0].size if images else shown.size
        return images, {"mask": [shown.resize(size, Image.Resampling.NEAREST)]}

    def output_values(self, result: GenerationResult) -> dict[str, Any]:
        return {"mask": (result.extras.get("mask") or [None])[0]}

    def info_fields(self, request: GenerationRequest, serving: Serving) -> dict[str, Any]:
        return {
            "source_prompt": request.source_prompt,
            "mask_strength": request.mask_strength,
            "strength": self.strength_used(request),
        }

    def add_to_snippet(
        self, snippet: Snippet, request: GenerationRequest, seeds: list[int], serving: Serving, load: dict[str, Any]
    ) -> None:
        snippet.imports += ["DDIMInverseScheduler"]
        shared = f"num_inference_steps={request.steps}, guidance_scale={float(request.guidance_scale)!r}"
        generator = f"generator=torch.Generator('cpu').manual_seed({seeds[0]})"
        snippet.after_load += [
            "pipe.inverse_scheduler = DDIMInverseScheduler.from_config(pipe.scheduler.config)",
            "from diffusers.utils import load_image",
            "image = load_image('input.png')  # the image you gave the app",
            f"mask_image = pipe.generate_mask(image=image, source_prompt={request.source_prompt!r}, "
            f"target_prompt={request.prompt!r}, mask_encode_strength={float(request.mask_strength)!r}, {shared}, "
            f"{generator})",
            f"image_latents = pipe.invert(prompt={request.source_prompt!r}, image=image, "
            f"inpaint_strength={self.strength_used(request)!r}, {shared}, {generator}).latents",
        ]
        snippet.call_arguments["mask_image"] = Code("mask_image")
        snippet.call_arguments["image_latents"] = Code("image_latents")


SPEC = DiffEdit()
