"""Versatile Diffusion: one checkpoint (`VersatileDiffusionPipeline`, an image and a text UNet, CLIP text and image
encoders) that draws from a prompt, varies an image, or mixes the two (dual-guided). The combined pipeline has no
call of its own, only methods that build a pipeline per mode from its components; this task builds the same
pipelines as views over the pool's modules (`from_pipe`), one per run, by the mode asked for.

Two modes move the shared UNets' attention blocks for their run, as diffusers' own methods do: text to image
swaps the two UNets' blocks, dual-guided wraps each of the image UNet's with the text UNet's beside it. `release`
puts every block back where the pool had it, after a Stop or an error too.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from diffusers import (
    DiffusionPipeline,
    VersatileDiffusionDualGuidedPipeline,
    VersatileDiffusionImageVariationPipeline,
    VersatileDiffusionPipeline,
    VersatileDiffusionTextToImagePipeline,
)
from diffusers.models import DualTransformer2DModel, Transformer2DModel

from core.errors import InvalidRequest
from core.tasks.base import (
    NUM_IMAGES,
    SAFETY_CHECKER,
    SCHEDULER,
    SEED,
    Param,
    Serving,
    TaskSpec,
    guidance,
    image,
    size,
    steps,
)

if TYPE_CHECKING:
    from core.generation import GenerationRequest, Limits
    from core.pool import Pool
    from core.snippet import Snippet

TEXT_TO_IMAGE, VARIATION, DUAL = "text to image", "image variation", "dual guided"
# Each mode's pipeline: what VersatileDiffusionPipeline.text_to_image, .image_variation and .dual_guided build.
MODES: dict[str, type[DiffusionPipeline]] = {
    TEXT_TO_IMAGE: VersatileDiffusionTextToImagePipeline,
    VARIATION: VersatileDiffusionImageVariationPipeline,
    DUAL: VersatileDiffusionDualGuidedPipeline,
}
_KEPT = "_studio_placement"  # on the view: where the pool held its attention blocks before the view moved them

# diffusers 0.42's DualTransformer2DModel.forward takes no `encoder_attention_mask`, which every cross-attention
# block of the UNet passes it (None here: the pipeline gives the UNet no mask), so every dual-guided run failed
# with a TypeError (diffusers issue 13651). The snippet mends its pipeline's blocks the same way.
_DUAL_MEND = """\
from diffusers.models import DualTransformer2DModel
def _without_encoder_mask(forward):  # diffusers 0.42 passes a mask it doesn't take (diffusers issue 13651)
    return lambda *args, encoder_attention_mask=None, **kwargs: forward(*args, **kwargs)
for block in pipe.image_unet.modules():
    if isinstance(block, DualTransformer2DModel):
        block.forward = _without_encoder_mask(block.forward)"""


def _without_encoder_mask(forward: Callable[..., Any]) -> Callable[..., Any]:
    def call(*args: Any, encoder_attention_mask: Any = None, **kwargs: Any) -> Any:
        return forward(*args, **kwargs)

    return call


@dataclass
class _Placement:
    """Where the pool's UNets hold their attention blocks (each block's container and key), and the image UNet's
    dual flag: what a text-to-image or dual-guided view moves for its run."""

    blocks: list[tuple[torch.nn.Module, str, torch.nn.Module]]
    image_unet: torch.nn.Module
    dual: bool

    @classmethod
    def of(cls, components: dict[str, Any]) -> _Placement:
        blocks = []
        for unet in (components["image_unet"], components.get("text_unet")):
            for name, module in unet.named_modules() if unet is not None else ():
                if isinstance(module, Transformer2DModel):
                    parent, key = name.rsplit(".", 1)
                    blocks.append((unet.get_submodule(parent), key, module))
        unet = components["image_unet"]
        return cls(blocks, unet, bool(unet.config.get("dual_cross_attention", False)))

    def restore(self) -> None:
        for container, key, block in self.blocks:
            setattr(container, key, block)
        if bool(self.image_unet.config.get("dual_cross_attention", False)) != self.dual:
            self.image_unet.register_to_config(dual_cross_attention=self.dual)


class Versatile(TaskSpec):
    name, label, kind, order = "versatile", "Versatile Diffusion", "feature", 96
    tab_label = "Versatile"
    pipeline_class = "VersatileDiffusionPipeline"
    table_pipeline = (
        "`VersatileDiffusionTextToImagePipeline`, `…ImageVariationPipeline` or `…DualGuidedPipeline` (by mode)"
    )
    table_shares = "everything (views over `VersatileDiffusionPipeline`'s modules; blocks moved for a run go back)"
    description = (
        "Versatile Diffusion, by mode: text to image (prompt, negative_prompt), image variation (image) or dual "
        "guided (prompt and image, mixed by dual_strength: 1 = the prompt alone, 0 = the image alone)."
    )
    note = (
        "Versatile Diffusion's three pipelines over the one loaded checkpoint (`from_pipe`: no extra memory). "
        "*Text to image* reads the prompt and negative prompt, *image variation* the image, *dual guided* the "
        "prompt and the image, mixed by *Text vs image*."
    )
    params = (
        Param("versatile_mode", "choice", "Mode", TEXT_TO_IMAGE, api_default=TEXT_TO_IMAGE, choices=tuple(MODES)),
        Param("prompt", "prompt", "Prompt", api_default=""),
        Param("negative_prompt", "negative", "Negative prompt (text to image)", api_default=""),
        image("Image (image variation, dual guided)", optional=True),
        Param(
            "dual_strength", "slider", "Text vs image (dual guided)", 0.5, api_default=0.5, minimum=0.0,
            maximum=1.0, step=0.05, info="1 = the prompt alone, 0 = the image alone",
        ),
        dataclasses.replace(steps(), api_default=25),
        dataclasses.replace(guidance(), api_default=7.5),
        dataclasses.replace(size("width"), api_default=512),
        dataclasses.replace(size("height"), api_default=512),
        dataclasses.replace(SEED, api_default=-1),
        dataclasses.replace(SCHEDULER, api_default="default"),
        dataclasses.replace(NUM_IMAGES, api_default=1),
        dataclasses.replace(SAFETY_CHECKER, api_default=True),
    )  # fmt: skip

    @property
    def needs_image(self) -> bool:  # only some modes read one (checked in `check`)
        return False

    def views_over(self, base_class: str, family: str | None) -> dict[str, type]:
        return {self.name: VersatileDiffusionPipeline} if base_class == "VersatileDiffusionPipeline" else {}

    def check(self, request: GenerationRequest, limits: Limits) -> None:
        mode = request.versatile_mode
        if mode != VARIATION and not request.prompt.strip():
            raise InvalidRequest(f"Versatile Diffusion's {mode} needs a prompt: write what to draw.")
        if mode != TEXT_TO_IMAGE and request.image is None:
            raise InvalidRequest(f"Versatile Diffusion's {mode} needs an input image: upload one.")

    def check_options(self, pool: Pool, request: GenerationRequest) -> None:
        if request.versatile_mode != VARIATION and pool.components.get("text_unet") is None:
            raise InvalidRequest(
                "This checkpoint has no text UNet (it was saved without one), so it runs image variation only; pick "
                "that mode."
            )

    def prepare(self, request: GenerationRequest, serving: Serving, pool: Pool) -> GenerationRequest:
        """The request without what its mode doesn't read, so that the info and snippet say what ran."""
        mode = request.versatile_mode
        if mode == TEXT_TO_IMAGE:
            return dataclasses.replace(request, image=None)
        if mode == VARIATION:
            return dataclasses.replace(request, prompt="", negative_prompt="")
        return dataclasses.replace(request, negative_prompt="")  # dual-guided's unconditional side is fixed

    def view(
        self, pool: Pool, request: GenerationRequest, scheduler: Any, run_checker: bool, serving: Serving
    ) -> DiffusionPipeline:
        """The mode's pipeline over the pool's modules, with what its construction moves recorded to put back."""
        cls = MODES[request.versatile_mode]
        expected, _options = cls._get_signature_keys(cls)
        tokenizers = {name: t for name, t in pool.thread_tokenizers().items() if name in expected}
        placement = _Placement.of(pool.components)
        try:
            # Building the dual-guided pipeline wraps each image-UNet block in a DualTransformer2DModel made with two
            # new, randomly initialised transformers, then puts the UNets' own blocks in their place: at the real
            # checkpoint's size seconds and gigabytes thrown away on every run. Made on the meta device, they cost
            # nothing (a weight left there would fail the run loudly, not change it).
            with torch.device("meta") if cls is VersatileDiffusionDualGuidedPipeline else contextlib.nullcontext():
                # dtype= always: without it, from_pipe casts the shared modules to float32 (diffusers issue 12754).
                pipe = cls.from_pipe(pool.base, dtype=pool.dtype, scheduler=scheduler, **tokenizers)
            for block in pipe.image_unet.modules():
                if isinstance(block, DualTransformer2DModel):  # the view's own blocks, dropped by `release`
                    block.forward = _without_encoder_mask(block.forward)
        except BaseException:
            placement.restore()
            raise
        setattr(pipe, _KEPT, placement)
        pipe.set_progress_bar_config(disable=True)
        return pipe

    def arguments(self, request: GenerationRequest, pipe: DiffusionPipeline, args: dict[str, Any]) -> dict[str, Any]:
        mode = request.versatile_mode
        if mode != TEXT_TO_IMAGE:
            args.pop("negative_prompt", None)  # variation's negative is an image; dual-guided has none
            args["image"] = request.image.convert("RGB")
        if mode == VARIATION:
            args.pop("prompt", None)
        if mode == DUAL:
            return {"text_to_image_strength": float(request.dual_strength)}
        return {}

    def release(self, pipe: DiffusionPipeline) -> None:
        """Put the pool's attention blocks back where it held them (text to image swapped them between the UNets,
        dual-guided wrapped the image UNet's), and its dual flag."""
        placement = getattr(pipe, _KEPT, None)
        if placement is not None:
            placement.restore()

    def info_fields(self, request: GenerationRequest, serving: Serving) -> dict[str, Any]:
        fields: dict[str, Any] = {"versatile_mode": request.versatile_mode}
        if request.versatile_mode == DUAL:
            fields["dual_strength"] = float(request.dual_strength)
        return fields

    def add_to_snippet(
        self, snippet: Snippet, request: GenerationRequest, seeds: list[int], serving: Serving, load: dict[str, Any]
    ) -> None:
        # The mode's pipeline loads from the combined checkpoint itself (each takes the components it uses), as
        # VersatileDiffusionPipeline's methods build it; its call is the method's.
        if request.versatile_mode == DUAL:
            snippet.after_load += _DUAL_MEND.splitlines()


SPEC = Versatile()
