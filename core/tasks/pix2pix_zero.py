"""Pix2Pix Zero: edit an image along a direction between two concepts ("cat" → "dog") with no training and no
prompt rewriting, keeping its layout. The direction is the difference of the mean text embeddings of sentences about
each concept; a first pass records the image's cross-attention maps, a second adds the direction while gradient
steps on the latents keep those maps (cross-attention guidance). On an uploaded image the run first inverts it into
latents (DDIM inversion, with the caption the user gives); without one it edits the prompt's own image.

A `from_pipe` view over the loaded SD checkpoint, on DDIM (its inversion is DDIM's inverse). Its loop turns on
gradients in the shared UNet's cross-attention: they are turned back off after every run."""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import diffusers
from diffusers import DiffusionPipeline
from PIL import Image

from core.errors import InvalidRequest
from core.snippet import Code
from core.tasks.base import (
    SAFETY_CHECKER,
    SEED,
    TEXT,
    Param,
    Serving,
    TaskSpec,
    checker_overrides,
    guidance,
    image,
    size,
    steps,
)

if TYPE_CHECKING:
    from core.generation import GenerationRequest, Limits
    from core.pool import Pool
    from core.snippet import Snippet

MAX_SENTENCES = 64  # per concept: each is a text-encoder pass before the run
UNET_CALLS_PER_STEP = 5  # its first pass 1, its guided pass 2 forward and a backward (about 2); inversion 1 more
_KEPT = "_studio_requires_grad"  # on the view: the shared UNet's requires_grad flags before the run


class Pix2PixZeroView(diffusers.StableDiffusionPix2PixZeroPipeline):
    """The pipeline with its inversion inside the call: `invert_image` is inverted first (same prompt, steps and
    generator), so that one run reports progress and honours Stop through inversion and edit alike."""

    def __call__(self, *args: Any, invert_image: Image.Image | None = None, **kwargs: Any) -> Any:
        if invert_image is not None:
            generator = kwargs["generator"]  # one image: its regularisation takes a single generator, not a list
            kwargs["latents"] = self.invert(
                prompt=kwargs["prompt"],
                image=invert_image,
                num_inference_steps=kwargs["num_inference_steps"],
                generator=generator[0] if isinstance(generator, list) else generator,
            ).latents
        return super().__call__(*args, **kwargs)


_parent = inspect.signature(diffusers.StableDiffusionPix2PixZeroPipeline.__call__)
Pix2PixZeroView.__call__.__signature__ = _parent.replace(  # type: ignore[attr-defined]
    parameters=[*_parent.parameters.values(), inspect.Parameter("invert_image", inspect.Parameter.KEYWORD_ONLY)]
)


def sentences(text: str) -> list[str]:
    """The concept's sentences: one per line, blank lines dropped."""
    return [line.strip() for line in text.splitlines() if line.strip()]


class Pix2PixZero(TaskSpec):
    name, label, kind, order = "pix2pix_zero", "Zero-shot edit", "feature", 51
    tab_label = "Pix2Pix Zero"
    pipeline_class = "StableDiffusionPix2PixZeroPipeline"
    table_pipeline = "`StableDiffusionPix2PixZeroPipeline` (Pix2Pix Zero), inversion with `DDIMInverseScheduler`"
    table_shares = "everything (a `from_pipe` view, with DDIM and its inverse)"
    run_label = "Edit"
    description = (
        "Edit from source_concept to target_concept (sentences about each, one per line), keeping the layout: the "
        "uploaded image (prompt: what it shows), or without one the prompt's own image (Pix2Pix Zero)."
    )
    note = (
        "Pix2Pix Zero (`from_pipe` over the loaded checkpoint: no extra memory) moves the image along the direction "
        "from one concept to another, e.g. *a cat* → *a dog*; more sentences per concept give a steadier direction. "
        "An uploaded image is inverted first (as long again). It runs DDIM."
    )
    fixed: ClassVar[Mapping[str, Any]] = {"scheduler": "DDIM", "num_images": 1}
    # The image is optional and comes first: every input after it has an API default too.
    params = (
        image("Image to edit (optional: without one, the prompt's image is edited)", optional=True),
        *(dataclasses.replace(p, api_default="") for p in TEXT),
        Param("source_concept", "lines", "Change", "", api_default="", row="concepts",
              info="sentences about it, one per line: a cat"),
        Param("target_concept", "lines", "Into", "", api_default="", row="concepts",
              info="the same sentences about the new one: a dog"),
        Param("cross_attention_guidance", "slider", "Keep the layout", 0.1, api_default=0.1, minimum=0.0,
              maximum=1.0, step=0.01, info="the step size of the guidance that holds the image's attention maps"),
        dataclasses.replace(steps(50), api_default=50),
        dataclasses.replace(guidance(7.5), api_default=7.5),
        dataclasses.replace(size("width"), api_default=512),
        dataclasses.replace(size("height"), api_default=512),
        dataclasses.replace(SEED, api_default=-1),
        dataclasses.replace(SAFETY_CHECKER, api_default=True),  # where the checkpoint has one
    )  # fmt: skip

    @property
    def needs_image(self) -> bool:  # optional: without one the prompt's own image is edited
        return False

    def views_over(self, base_class: str, family: str | None) -> dict[str, type]:
        return {self.name: Pix2PixZeroView} if base_class == "StableDiffusionPipeline" else {}

    def check(self, request: GenerationRequest, limits: Limits) -> None:
        source, target = sentences(request.source_concept), sentences(request.target_concept)
        if not source or not target:
            raise InvalidRequest(
                "Pix2Pix Zero needs both concepts: a sentence or more (one per line) about what to change "
                "(source_concept, e.g. 'a cat') and about what it becomes (target_concept, e.g. 'a dog')."
            )
        if max(len(source), len(target)) > MAX_SENTENCES:
            raise InvalidRequest(f"Give at most {MAX_SENTENCES} sentences per concept.")
        if not request.prompt.strip():
            raise InvalidRequest("Pix2Pix Zero needs a prompt: what the image shows (or, without one, what to draw).")
        self._check_work(request, limits)

    def _check_work(self, request: GenerationRequest, limits: Limits) -> None:
        # Per step: the first pass's UNet call, the guided pass's two and the gradient through one (about two
        # more), and with an image the inversion's. Within the largest single generation's work, as a grid is.
        picture = request.image if isinstance(request.image, Image.Image) else None  # checked after this
        calls = UNET_CALLS_PER_STEP + (picture is not None)
        width, height = picture.size if picture is not None else (request.width, request.height)
        work = calls * request.steps * width * height
        if work > limits.max_work:
            raise InvalidRequest(
                f"Pix2Pix Zero does about {calls} UNet passes per step: {request.steps} steps at "
                f"{width}x{height} is {work / limits.max_work:.1f}x the largest single generation "
                "this app makes. Lower the steps or the size."
            )

    def prepare(self, request: GenerationRequest, serving: Serving, pool: Pool) -> GenerationRequest:
        """DDIM whatever was asked: the inversion is DDIM's inverse, and the edit must walk back the same way."""
        return dataclasses.replace(request, scheduler="DDIM", num_images=1)

    def view(
        self, pool: Pool, request: GenerationRequest, scheduler: Any, run_checker: bool, serving: Serving
    ) -> DiffusionPipeline:
        inverse = diffusers.DDIMInverseScheduler.from_config(scheduler.config)
        pipe = pool.view_as(
            self.name,
            scheduler=scheduler,
            inverse_scheduler=inverse,
            caption_generator=None,
            caption_processor=None,
            **checker_overrides(pool, run_checker),
        )
        setattr(pipe, _KEPT, {name: p.requires_grad for name, p in pipe.unet.named_parameters()})
        return pipe

    def arguments(self, request: GenerationRequest, pipe: DiffusionPipeline, args: dict[str, Any]) -> dict[str, Any]:
        extra = {
            "source_embeds": pipe.get_embeds(sentences(request.source_concept)),
            "target_embeds": pipe.get_embeds(sentences(request.target_concept)),
            "cross_attention_guidance_amount": float(request.cross_attention_guidance),
        }
        if request.image is not None:
            picture = request.image.convert("RGB")
            # The inversion resizes it to the size's multiple below (the pipeline's image processor); the edit
            # makes that size.
            multiple = pipe.vae_scale_factor
            w, h = picture.width - picture.width % multiple, picture.height - picture.height % multiple
            extra.update(invert_image=picture, width=w, height=h)
        return extra

    def progress_bars(self, request: GenerationRequest) -> int:
        """Its inversion (of an uploaded image), its first pass and its guided second pass."""
        return 3 if request.image is not None else 2

    def release(self, pipe: DiffusionPipeline) -> None:
        """The shared UNet's gradients off again, as before the run (its loop turned them on in cross-attention)."""
        kept = getattr(pipe, _KEPT, None)
        if kept is None:
            return
        for name, p in pipe.unet.named_parameters():
            p.requires_grad_(kept[name])
            p.grad = None

    def info_fields(self, request: GenerationRequest, serving: Serving) -> dict[str, Any]:
        return {
            "source_concept": request.source_concept,
            "target_concept": request.target_concept,
            "cross_attention_guidance": float(request.cross_attention_guidance),
            "inverted": request.image is not None,
        }

    def snippet_class(self, pool: Pool, request: GenerationRequest, pipe: DiffusionPipeline) -> str:
        return self.pipeline_class

    def add_to_snippet(
        self, snippet: Snippet, request: GenerationRequest, seeds: list[int], serving: Serving, load: dict[str, Any]
    ) -> None:
        snippet.imports += ["DDIMInverseScheduler"]
        call = snippet.call_arguments
        lines = [
            "pipe.inverse_scheduler = DDIMInverseScheduler.from_config(pipe.scheduler.config)",
            f"source_embeds = pipe.get_embeds({sentences(request.source_concept)!r})",
            f"target_embeds = pipe.get_embeds({sentences(request.target_concept)!r})",
        ]
        call["source_embeds"], call["target_embeds"] = Code("source_embeds"), Code("target_embeds")
        if call.pop("invert_image", None) is not None:
            lines += [
                f"generator = {call['generator']!r}  # the inversion draws from it first, then the edit",
                "from diffusers.utils import load_image",
                "image = load_image('input.png')  # the image you gave the app",
                f"latents = pipe.invert(prompt={request.prompt!r}, image=image, "
                f"num_inference_steps={request.steps}, generator=generator).latents",
            ]
            call["generator"], call["latents"] = Code("generator"), Code("latents")
        snippet.after_load += lines


SPEC = Pix2PixZero()
