"""Text to image, with its options over the same pool: self-attention guidance (SAG), perturbed-attention guidance
(PAG) and, for SDXL, the refiner as a second stage (the "ensemble of expert denoisers" split)."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import diffusers
import torch
from diffusers import AutoPipelineForText2Image, DiffusionPipeline
from diffusers.pipelines.auto_pipeline import AUTO_TEXT2IMAGE_PIPELINES_MAPPING

from core import schedulers
from core.errors import InvalidRequest, NotLoaded
from core.runs import PreviewCallback, StepCallback, run_pipeline
from core.snippet import Code, generators
from core.tasks.base import (
    IMAGE_PROMPT,
    PREVIEW,
    RUN,
    SIZE,
    SPEED_AND_TINY_VAE,
    STEP_CACHE,
    STEPS_GUIDANCE,
    TEXT,
    TINY_DECODE,
    Group,
    Param,
    Serving,
    TaskSpec,
    checker_overrides,
    extra_input_channels,
    family_of,
)

if TYPE_CHECKING:
    from core.generation import GenerationRequest, Limits
    from core.pool import Pool
    from core.snippet import Snippet

REFINER_FAMILY = "stable-diffusion-xl"


class Text2Img(TaskSpec):
    name, label, kind, order = "text2img", "Text to image", "auto", 10
    auto_class = AutoPipelineForText2Image
    mapping = AUTO_TEXT2IMAGE_PIPELINES_MAPPING
    companions = ("refiner",)  # SDXL's refiner, as an optional second stage
    companion_pipelines: ClassVar[Mapping[str, str]] = {"refiner": "StableDiffusionXLImg2ImgPipeline"}
    size_follows_family = True
    table_shares = "everything (a `from_pipe` view)"
    option_views: ClassVar[Mapping[str, str]] = {
        "sag": "self-attention guidance (SAG)",
        "pag": "perturbed-attention guidance (PAG)",
    }
    table_options = (
        ("with SAG (`sag_scale`)", "`StableDiffusionSAGPipeline`", "everything: same memory as plain SD"),
        ("with PAG (`pag_scale`)", "`StableDiffusionPAGPipeline` (`enable_pag`)", "everything"),
        (
            "SDXL refiner (`refiner_switch`)",
            "`StableDiffusionXLImg2ImgPipeline` on the base's latents (`denoising_end` / `denoising_start`)",
            "companion `stabilityai/stable-diffusion-xl-refiner-1.0`, which takes the base's second text encoder "
            "and VAE from memory",
        ),
    )
    description = (
        "Make images from a prompt; sag_scale > 0 adds self-attention guidance, pag_scale > 0 perturbed-attention "
        "guidance (one at a time); refiner_switch > 0 hands SDXL's last steps to the loaded refiner; "
        "ip_adapter_image is the image prompt of a loaded IP-Adapter."
    )
    groups: ClassVar[Mapping[str, Group]] = {
        "guidance": Group("Guidance features (same memory, built with from_pipe)"),
        "speed": SPEED_AND_TINY_VAE,
        "refiner": Group(
            "SDXL refiner (second stage)",
            option="refiner",
            companions=("refiner",),
            note="SDXL's refiner does the last, low-noise steps; it shares the base's second text encoder and VAE.",
        ),
    }
    params = (
        *TEXT,
        *STEPS_GUIDANCE,
        *SIZE,
        *RUN,
        Param(
            "sag_scale",
            "slider",
            "Self-attention guidance (SAG) scale",
            0,
            0.0,
            0,
            10,
            0.05,
            info="0 = off",
            group="guidance",
            option="sag",
            elem_id="sag-scale",
        ),
        Param(
            "pag_scale",
            "slider",
            "Perturbed-attention guidance (PAG) scale",
            0,
            0.0,
            0,
            10,
            0.1,
            info="0 = off",
            group="guidance",
            option="pag",
            elem_id="pag-scale",
        ),
        Param(
            "refiner_switch",
            "slider",
            "Refiner takes over at",
            0,
            0.0,
            0,
            1,
            0.05,
            info="the fraction of the steps the base does; 0 = off, 0.8 is usual",
            below=True,
            group="refiner",
            elem_id="refiner-switch",
        ),
        IMAGE_PROMPT,
        PREVIEW,
        STEP_CACHE,
        TINY_DECODE,
    )

    def unfit(self, pool: Pool) -> str | None:
        return extra_input_channels(pool)

    def views_over(self, base_class: str, family: str | None) -> dict[str, type]:
        views = super().views_over(base_class, family)
        if family == "stable-diffusion" and base_class == "StableDiffusionPipeline":
            views["sag"] = diffusers.StableDiffusionSAGPipeline
            views["pag"] = diffusers.StableDiffusionPAGPipeline
        elif family is not None and f"{family}-pag" in AUTO_TEXT2IMAGE_PIPELINES_MAPPING:
            views["pag"] = AUTO_TEXT2IMAGE_PIPELINES_MAPPING[f"{family}-pag"]
        return views

    def check(self, request: GenerationRequest, limits: Limits) -> None:
        if request.sag_scale > 0 and request.pag_scale > 0:
            raise InvalidRequest("Use self-attention guidance or perturbed-attention guidance, not both: set one to 0.")

    def batches(self, request: GenerationRequest) -> bool:
        # The plain call only: SAG and PAG change attention for a whole call, the refiner is a second call.
        return all(getattr(request, name) == 0 for name in ("sag_scale", "pag_scale", "refiner_switch"))

    def check_options(self, pool: Pool, request: GenerationRequest) -> None:
        for option, view in (("sag_scale", "sag"), ("pag_scale", "pag")):
            if getattr(request, option) > 0 and not pool.supports(view):
                raise InvalidRequest(
                    f"{view.upper()} is not available for {pool.files.pipeline_class}; set {option} to 0."
                )
        if request.tiny_decode and request.refiner_switch > 0:
            raise InvalidRequest("With the refiner, the refiner's VAE makes the image: turn off the tiny VAE decode.")

    def view(
        self, pool: Pool, request: GenerationRequest, scheduler: Any, run_checker: bool, serving: Serving
    ) -> DiffusionPipeline:
        checker = checker_overrides(pool, run_checker)
        if request.sag_scale > 0:
            return pool.view_as("sag", scheduler=scheduler, **checker)
        if request.pag_scale > 0:
            # The layers PAG perturbs are the PAG class's own default: the UNet's "mid" block, a transformer's
            # first block ("blocks.1": SD3, PixArt-Σ), where the same name would match nothing.
            return pool.view_as("pag", scheduler=scheduler, **checker)
        return super().view(pool, request, scheduler, run_checker, serving)

    def second_stage(self, pool: Pool, request: GenerationRequest, serving: Serving) -> DiffusionPipeline | None:
        """The refiner's view for a two-stage SDXL run, or None for a one-stage run."""
        if request.refiner_switch <= 0:
            return None
        if family_of(type(pool.base).__name__) != REFINER_FAMILY:
            raise InvalidRequest(f"The refiner is SDXL's second stage, not {type(pool.base).__name__}'s: set it to 0.")
        refiner = serving.companions.get("refiner")
        if refiner is None:
            raise NotLoaded("Load the SDXL refiner in Text to image (`demo-refiner` offline) first, or set it to 0.")
        return refiner.view_as("text2img", scheduler=schedulers.build(request.scheduler, refiner.base.scheduler))

    def run_second_stage(
        self,
        refiner: DiffusionPipeline,
        request: GenerationRequest,
        first: Any,
        seeds: list[int],
        *,
        on_step: StepCallback | None,
        cancel: threading.Event | None,
        on_latents: PreviewCallback | None = None,
    ) -> tuple[Any, int | None]:
        """The refiner denoises the base's latents from `refiner_switch` on. Returns (output, the step of both
        stages a Stop ended it at, or None); a Stop during the first stage ends this one after its first step, so
        the images are still decoded."""
        args: dict[str, Any] = {
            "prompt": request.prompt,
            "negative_prompt": request.negative_prompt or None,
            "image": first.images,
            "num_inference_steps": request.steps,
            "denoising_start": request.refiner_switch,
            "guidance_scale": request.guidance_scale,
            "generator": [torch.Generator("cpu").manual_seed(s) for s in seeds],
            "num_images_per_prompt": len(seeds),
        }
        done_before = round(request.steps * request.refiner_switch)

        def report(done: int, _total: int) -> None:
            if on_step is not None:
                on_step(min(done_before + done, request.steps), request.steps)

        def latents_at(done: int, latents: Any) -> None:
            if on_latents is not None:
                on_latents(done_before + done, latents)

        output, stopped_at = run_pipeline(
            refiner, args, steps=request.steps, on_step=report, cancel=cancel, on_latents=latents_at
        )
        return output, (None if stopped_at is None else done_before + stopped_at)

    def arguments(self, request: GenerationRequest, pipe: DiffusionPipeline, args: dict[str, Any]) -> dict[str, Any]:
        extra: dict[str, Any] = {}
        if request.sag_scale > 0:
            extra["sag_scale"] = request.sag_scale
        if request.pag_scale > 0:
            extra["pag_scale"] = request.pag_scale
        if request.refiner_switch > 0:  # the first stage hands its latents to the refiner
            extra.update(denoising_end=request.refiner_switch, output_type="latent")
        return extra

    def info_fields(self, request: GenerationRequest, serving: Serving) -> dict[str, Any]:
        fields = {k: getattr(request, k) for k in ("sag_scale", "pag_scale", "refiner_switch") if getattr(request, k)}
        refiner = serving.companions.get("refiner")
        if "refiner_switch" in fields and refiner is not None:
            fields["refiner"] = refiner.files.source
        return fields

    def snippet_class(self, pool: Pool, request: GenerationRequest, pipe: DiffusionPipeline) -> str:
        # StableDiffusionPipeline takes **kwargs and would silently ignore sag_scale: a SAG run names its class.
        if request.pag_scale > 0:
            return "AutoPipelineForText2Image"
        return type(pipe).__name__ if request.sag_scale else super().snippet_class(pool, request, pipe)

    def add_to_snippet(
        self, snippet: Snippet, request: GenerationRequest, seeds: list[int], serving: Serving, load: dict[str, Any]
    ) -> None:
        if request.pag_scale > 0:
            load.update(enable_pag=True)
        if request.refiner_switch > 0:
            _second_stage_lines(snippet, serving, request, seeds)


def _second_stage_lines(snippet: Snippet, serving: Serving, request: GenerationRequest, seeds: list[int]) -> None:
    """The refiner lines of a two-stage SDXL run: it reuses the base's second text encoder and VAE."""
    refiner = serving.companions["refiner"]
    path = refiner.files.source if refiner.files.is_hub else str(refiner.files.path)
    cls = type(refiner.base).__name__
    snippet.imports.append(cls)
    lines = [
        f"refiner = {cls}.from_pretrained({path!r}, text_encoder_2=pipe.text_encoder_2, vae=pipe.vae, "
        f"dtype=torch.{snippet.dtype}, use_safetensors=True).to({snippet.device!r})"
    ]
    if request.scheduler != schedulers.DEFAULT:
        scheduler, overrides = schedulers.resolve(request.scheduler, refiner.base.scheduler)
        snippet.imports.append(scheduler.__name__)
        extra = "".join(f", {k}={v!r}" for k, v in overrides.items())
        lines.append(f"refiner.scheduler = {scheduler.__name__}.from_config(refiner.scheduler.config{extra})")
    call = {
        "prompt": request.prompt,
        "negative_prompt": request.negative_prompt or None,
        "image": Code("result.images"),
        "num_inference_steps": request.steps,
        "denoising_start": request.refiner_switch,
        "guidance_scale": request.guidance_scale,
        "generator": generators(seeds),
    }
    if len(seeds) > 1:
        call["num_images_per_prompt"] = len(seeds)
    lines.append(f"result = refiner({', '.join(f'{k}={v!r}' for k, v in call.items())})")
    snippet.after_call += lines


SPEC = Text2Img()
