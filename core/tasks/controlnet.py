"""ControlNet: the loaded checkpoint steered by condition maps (edges, depth, a scribble) through one or two
control modules (ControlNet or T2I-Adapter) that join the pool as companions.

What runs follows from the inputs, as in the tools people know: a control image alone is text to image; with a
start image it is image to image; with a start image and a mask, inpainting. Each control image passes through
its preprocessor first (core.control); the maps the model saw come back beside the results, so they can be
downloaded and used as is (preprocessor `none`). The views are `from_pipe(base, controlnet=...)`: the base's
modules are shared, the control module is the only new weight.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import diffusers
from diffusers import DiffusionPipeline
from PIL import Image

from core.control import PREPROCESSORS, SLOTS
from core.errors import InvalidRequest, NotLoaded
from core.snippet import Code
from core.tasks.base import (
    IMAGE_PROMPT,
    PREVIEW,
    REQUIRED,
    RUN,
    SIZE,
    STEPS_GUIDANCE,
    TEXT,
    Group,
    Output,
    Param,
    Serving,
    TaskSpec,
    checker_overrides,
    strength,
)

if TYPE_CHECKING:
    from core.control import ControlModel
    from core.generation import GenerationRequest, GenerationResult, Limits
    from core.pool import Pool
    from core.snippet import Snippet

# The pipeline of each (family, control module kind, mode), and the view name it is served under.
PIPELINES = {
    ("stable-diffusion", "controlnet_model", "text2img"): "StableDiffusionControlNetPipeline",
    ("stable-diffusion", "controlnet_model", "img2img"): "StableDiffusionControlNetImg2ImgPipeline",
    ("stable-diffusion", "controlnet_model", "inpaint"): "StableDiffusionControlNetInpaintPipeline",
    ("stable-diffusion-xl", "controlnet_model", "text2img"): "StableDiffusionXLControlNetPipeline",
    ("stable-diffusion-xl", "controlnet_model", "img2img"): "StableDiffusionXLControlNetImg2ImgPipeline",
    ("stable-diffusion-xl", "controlnet_model", "inpaint"): "StableDiffusionXLControlNetInpaintPipeline",
    ("stable-diffusion", "t2i_adapter", "text2img"): "StableDiffusionAdapterPipeline",
    ("stable-diffusion-xl", "t2i_adapter", "text2img"): "StableDiffusionXLAdapterPipeline",
    ("stable-diffusion", "controlnet_xs", "text2img"): "StableDiffusionControlNetXSPipeline",
    ("stable-diffusion-xl", "controlnet_xs", "text2img"): "StableDiffusionXLControlNetXSPipeline",
}
BASES = {"StableDiffusionPipeline": "stable-diffusion", "StableDiffusionXLPipeline": "stable-diffusion-xl"}
MODES = {"text2img": "a prompt", "img2img": "a start image", "inpaint": "a start image and a mask"}


def view_name(kind: str, mode: str) -> str:
    if kind in ("t2i_adapter", "controlnet_xs"):
        return kind
    return "controlnet" if mode == "text2img" else f"controlnet_{mode}"


def _unit(suffix: str, group: str | None, label: str, preprocessor: str) -> tuple[Param, ...]:
    """One control unit's inputs: its image, preprocessor, weight and the part of the steps it acts on."""
    row = f"unit{suffix or '_1'}"
    return (
        Param(
            f"control_image{suffix}",
            "control",
            label,
            api_default=None if suffix else REQUIRED,
            row=row,  # the unit's other controls sit right under it: their rows start with this one's
            group=group,
            elem_id=f"controlnet-control-image{suffix.replace('_', '-')}",
        ),
        Param(
            f"preprocessor{suffix}",
            "choice",
            "Preprocessor",
            preprocessor,
            choices=PREPROCESSORS,
            row=f"{row}-preprocessor",
            group=group,
            info="none = the image is already a map (white lines / depth on black)",
        ),
        Param(
            f"control_scale{suffix}",
            "slider",
            "Control weight",
            1.0,
            minimum=0.0,
            maximum=2.0,
            step=0.05,
            row=row,
            group=group,
        ),
        Param(
            f"control_start{suffix}",
            "slider",
            "Starts at",
            0.0,
            minimum=0.0,
            maximum=1.0,
            step=0.05,
            row=row,
            group=group,
            info="fraction of the run",
        ),
        Param(
            f"control_end{suffix}",
            "slider",
            "Ends at",
            1.0,
            minimum=0.0,
            maximum=1.0,
            step=0.05,
            row=row,
            group=group,
            info="fraction of the run",
        ),
    )


def _optional(params: Sequence[Param]) -> list[Param]:
    """`params` with their page defaults as API defaults (images: none)."""
    return [
        dataclasses.replace(p, api_default=p.default if p.kind != "control" else None)
        if p.api_default is REQUIRED
        else p
        for p in params
    ]


class ControlNet(TaskSpec):
    name, label, kind, order = "controlnet", "ControlNet", "module", 35
    pipeline_class = "StableDiffusionControlNetPipeline"
    table_pipeline = (
        "`StableDiffusion(XL)ControlNetPipeline`, `…ControlNetImg2ImgPipeline`, `…ControlNetInpaintPipeline` "
        "(`from_pipe(base, controlnet=...)`, one or two ControlNets)"
    )
    table_shares = "everything; the ControlNet is a companion module (`lllyasviel/control_v11p_sd15_canny`, ...)"
    table_options = (
        (
            "with a ControlNet-XS in the slot",
            "`StableDiffusion(XL)ControlNetXSPipeline`",
            "everything but the UNet, which it fuses with the adapter (a copy, kept while both are loaded)",
        ),
        (
            "with a T2I-Adapter in the slot",
            "`StableDiffusion(XL)AdapterPipeline` (`from_pipe(base, adapter=...)`)",
            "everything; the adapter is a companion module (`TencentARC/t2iadapter_canny_sd15v2`, ...)",
        ),
    )
    companions = SLOTS
    option_views: ClassVar[Mapping[str, str]] = {
        "controlnet_img2img": "a start image",
        "controlnet_inpaint": "a mask",
        "t2i_adapter": "a T2I-Adapter",
        "controlnet_xs": "a ControlNet-XS",
    }
    description = (
        "Make images steered by control_image (through its preprocessor: canny, depth, scribble, invert, or none "
        "for a ready map) with the ControlNet or T2I-Adapter loaded in the first control slot; control_image_2 adds "
        "the second slot's. With image it is image to image, with image and mask inpainting. Returns the images, "
        "the control maps used, and the info."
    )
    companion_note = (
        "a ControlNet or a T2I-Adapter made for the loaded checkpoint's family (e.g. "
        "`lllyasviel/control_v11p_sd15_canny` for SD 1.5); the checkpoint's own modules are reused with `from_pipe`."
    )
    groups: ClassVar[Mapping[str, Group]] = {
        "canny": Group("Canny thresholds"),
        "second": Group(
            "Second control (multi-ControlNet)",
            companions=("controlnet_2",),
            note="a second ControlNet (or T2I-Adapter, with a T2I-Adapter in the first slot) for a second map.",
        ),
        "start": Group("Start from an image (image to image; add a mask to inpaint)"),
    }
    params = (
        *_unit("", None, "Control image", "canny"),
        Param("canny_low", "slider", "Low", 100, minimum=1, maximum=255, step=1, whole=True, group="canny"),
        Param("canny_high", "slider", "High", 200, minimum=1, maximum=255, step=1, whole=True, group="canny"),
        *TEXT,
        *STEPS_GUIDANCE,
        *SIZE,
        *RUN,
        # Optional in the API from here on (scripts that only steer text to image never name them).
        *_optional(_unit("_2", "second", "Second control image (optional)", "depth")),
        Param("image", "image", "Start image (optional)", api_default=None, group="start"),
        Param("mask", "image", "Mask (optional; white = repaint)", mode="L", api_default=None, group="start"),
        *_optional([dataclasses.replace(strength(0.75), group="start")]),
        IMAGE_PROMPT,
        PREVIEW,
    )
    outputs = (Output("control_maps", "gallery", "Control maps (what the model saw)"),)

    # The start image is optional here: the inputs choose the mode.
    @property
    def needs_image(self) -> bool:
        return False

    def views_over(self, base_class: str, family: str | None) -> dict[str, type]:
        family = BASES.get(base_class)
        views = {}
        for (fam, kind, mode), cls in PIPELINES.items():
            if fam == family:
                views[view_name(kind, mode)] = getattr(diffusers, cls)
        return views

    # -- checking -------------------------------------------------------------------------------------

    def check(self, request: GenerationRequest, limits: Limits) -> None:
        for suffix in ("", "_2"):
            start, end = getattr(request, f"control_start{suffix}"), getattr(request, f"control_end{suffix}")
            if start >= end:
                raise InvalidRequest(
                    f"control_start{suffix} ({start:g}) must be below control_end{suffix} ({end:g}): the control "
                    "acts from the first fraction of the steps to the second."
                )
        if request.canny_low > request.canny_high:
            raise InvalidRequest(f"canny_low ({request.canny_low}) must be at most canny_high ({request.canny_high}).")
        if request.control_image is None:
            raise InvalidRequest("ControlNet needs a control image: upload one (a photo, a drawing, or a ready map).")
        for name in ("control_image", "control_image_2", "image", "mask"):
            value = getattr(request, name)
            if value is not None and not isinstance(value, Image.Image):
                raise InvalidRequest(f"The {name.replace('_', ' ')} could not be read as an image; upload a PNG.")
            if value is not None and min(value.size) < limits.min_side:
                w, h = value.size
                raise InvalidRequest(
                    f"The {name.replace('_', ' ')} is {w}x{h}; it must be at least {limits.min_side} px a side."
                )
        if request.mask is not None and request.image is None:
            raise InvalidRequest("A mask needs a start image to repaint: upload the start image too.")
        if request.mask is not None and request.mask.size != request.image.size:
            (mw, mh), (w, h) = request.mask.size, request.image.size
            raise InvalidRequest(f"The mask is {mw}x{mh} but the start image is {w}x{h}; they must be the same size.")

    @staticmethod
    def mode(request: GenerationRequest) -> str:
        if request.image is None:
            return "text2img"
        return "inpaint" if request.mask is not None else "img2img"

    def _units(self, request: GenerationRequest, serving: Serving) -> list[tuple[str, ControlModel]]:
        """The (field suffix, control module) of each control the request uses."""
        units = []
        for suffix, slot in zip(("", "_2"), SLOTS, strict=True):
            if getattr(request, f"control_image{suffix}") is None:
                continue
            model = serving.controls.get(slot)
            if model is None:
                which = "first" if not suffix else "second"
                raise NotLoaded(
                    f"The {which} control image needs a ControlNet or T2I-Adapter in the {which} control slot: load "
                    f"one in the ControlNet tab (`demo-controlnet` offline) first."
                )
            units.append((suffix, model))
        return units

    def check_pool(self, pool: Pool, request: GenerationRequest, serving: Serving) -> None:
        family = BASES.get(type(pool.base).__name__)
        if family is None:
            raise NotLoaded(
                f"ControlNet runs over Stable Diffusion 1.x/2.x and SDXL checkpoints; the loaded one is a "
                f"{pool.files.pipeline_class}."
            )
        units = self._units(request, serving)
        if not units:
            return  # no control image: validation says so
        kinds = {model.kind for _suffix, model in units}
        if len(kinds) > 1:
            raise InvalidRequest(
                "The two control slots hold a ControlNet and a T2I-Adapter; diffusers combines two of one kind only. "
                "Load two ControlNets (or two T2I-Adapters), or clear the second control image."
            )
        for _suffix, model in units:
            model.check_fits(pool.base.unet)
        mode = self.mode(request)
        kind = kinds.pop()
        what = {"t2i_adapter": "A T2I-Adapter", "controlnet_xs": "A ControlNet-XS"}.get(kind, "This module")
        if (family, kind, mode) not in PIPELINES:
            raise InvalidRequest(
                f"{what} steers text to image only; remove the start image (and mask), or load a ControlNet "
                f"for {MODES[mode]}."
            )
        if kind == "controlnet_xs":
            if len(units) > 1:
                raise InvalidRequest("ControlNet-XS takes one control image; clear the second one.")
            if serving.loras:
                # Its pipeline runs a fused copy of the UNet, built from the plain one: a LoRA would be ignored.
                raise InvalidRequest(
                    f"ControlNet-XS can't use a LoRA yet (it runs a fused copy of the plain UNet); unload "
                    f"{', '.join(serving.loras)} in the LoRA panel first."
                )
        if units[0][1].kind == "t2i_adapter":
            if any(getattr(request, f"control_start{s}") > 0 for s, _m in units):
                raise InvalidRequest(
                    "A T2I-Adapter acts from the first step; set control_start to 0 (control_end says when it stops)."
                )
            if family == "stable-diffusion" and any(getattr(request, f"control_end{s}") < 1 for s, _m in units):
                raise InvalidRequest(
                    "diffusers' SD 1.x/2.x T2I-Adapter pipeline acts on every step; set control_end to 1 (SDXL's "
                    "can stop early)."
                )
        if pool.base.unet.config.in_channels != 4 and mode != "inpaint":
            raise InvalidRequest(
                "The loaded checkpoint has an inpainting UNet; ControlNet runs it with a start image and a mask only."
            )

    # -- running --------------------------------------------------------------------------------------

    def prepare(self, request: GenerationRequest, serving: Serving, pool: Pool) -> GenerationRequest:
        """Each control image through its preprocessor: the request then carries the maps the model sees."""
        changes = {}
        for suffix in ("", "_2"):
            picture = getattr(request, f"control_image{suffix}")
            if picture is not None:
                preprocessor = getattr(request, f"preprocessor{suffix}")
                changes[f"control_image{suffix}"] = serving.control_map(
                    picture, preprocessor, request.canny_low, request.canny_high
                )
        return dataclasses.replace(request, **changes)

    def view(
        self, pool: Pool, request: GenerationRequest, scheduler: Any, run_checker: bool, serving: Serving
    ) -> DiffusionPipeline:
        units = self._units(request, serving)
        modules = [model.module for _suffix, model in units]
        kind = units[0][1].kind
        module = modules[0] if len(modules) == 1 else modules
        slot = {"controlnet_model": "controlnet", "t2i_adapter": "adapter", "controlnet_xs": "controlnet"}[kind]
        extra = {"unet": units[0][1].fused_unet(pool.base.unet)} if kind == "controlnet_xs" else {}
        return pool.view_as(
            view_name(kind, self.mode(request)),
            scheduler=scheduler,
            **{slot: module},
            **extra,
            **checker_overrides(pool, run_checker),
        )

    def arguments(self, request: GenerationRequest, pipe: DiffusionPipeline, args: dict[str, Any]) -> dict[str, Any]:
        maps = [request.control_image]
        if request.control_image_2 is not None:
            maps.append(request.control_image_2)
        suffixes = ("", "_2")[: len(maps)]
        # diffusers checks these are floats (a page's slider may send 1 for 1.0)
        scales = [float(getattr(request, f"control_scale{s}")) for s in suffixes]
        starts = [float(getattr(request, f"control_start{s}")) for s in suffixes]
        ends = [float(getattr(request, f"control_end{s}")) for s in suffixes]
        one = len(maps) == 1
        pick = (lambda values: values[0]) if one else list
        mode = self.mode(request)
        extra: dict[str, Any] = {}
        if mode != "text2img":  # the start image sets the size, rounded down to the family's size rule
            start, multiple = request.image.convert("RGB"), pipe.vae_scale_factor
            width, height = start.width - start.width % multiple, start.height - start.height % multiple
            extra.update(image=start, width=width, height=height, strength=request.strength)
            if mode == "inpaint":
                extra["mask_image"] = request.mask.convert("L")
        else:
            args.pop("image", None)
            args.pop("strength", None)
        control_key = "image" if mode == "text2img" else "control_image"
        extra[control_key] = pick(maps)
        if isinstance(getattr(pipe, "adapter", None), (diffusers.T2IAdapter, diffusers.MultiAdapter)):
            extra["adapter_conditioning_scale"] = pick(scales)
            if "adapter_conditioning_factor" in inspect.signature(pipe.__call__).parameters:  # SDXL's only
                extra["adapter_conditioning_factor"] = max(ends)  # it acts from the first step to this
        else:
            extra.update(
                controlnet_conditioning_scale=pick(scales),
                control_guidance_start=pick(starts),
                control_guidance_end=pick(ends),
            )
        return extra

    def collect(self, output: Any, arguments: dict[str, Any]) -> tuple[list[Image.Image], dict[str, Any]]:
        maps = arguments.get("control_image", arguments.get("image"))
        return list(output.images), {"control_maps": maps if isinstance(maps, list) else [maps]}

    def output_values(self, result: GenerationResult) -> dict[str, Any]:
        return {"control_maps": result.extras.get("control_maps") or None}

    # -- describing -----------------------------------------------------------------------------------

    def info_fields(self, request: GenerationRequest, serving: Serving) -> dict[str, Any]:
        fields: dict[str, Any] = {"mode": self.mode(request)}
        if request.image is not None:
            fields["strength"] = request.strength
        controls = []
        for suffix, slot in zip(("", "_2"), SLOTS, strict=True):
            if getattr(request, f"control_image{suffix}") is None:
                continue
            model = serving.controls.get(slot)
            controls.append(
                {
                    "model": model.source if model else None,
                    "preprocessor": getattr(request, f"preprocessor{suffix}"),
                    "scale": getattr(request, f"control_scale{suffix}"),
                    "start": getattr(request, f"control_start{suffix}"),
                    "end": getattr(request, f"control_end{suffix}"),
                }
            )
        fields["controls"] = controls
        if any(c["preprocessor"] == "canny" for c in controls):
            fields.update(canny_low=request.canny_low, canny_high=request.canny_high)
        return fields

    def add_to_snippet(
        self, snippet: Snippet, request: GenerationRequest, seeds: list[int], serving: Serving, load: dict[str, Any]
    ) -> None:
        units = self._units(request, serving)
        names = []
        for i, (_suffix, model) in enumerate(units, 1):
            name = "controlnet" if i == 1 else f"controlnet_{i}"
            if model.kind == "t2i_adapter":
                name = name.replace("controlnet", "adapter")
            snippet.imports.append(model.class_name)
            snippet.before_load.append(
                f"{name} = {model.class_name}.from_pretrained({model.location!r}, dtype=torch.{snippet.dtype})"
            )
            names.append(name)
        key = "adapter" if units[0][1].kind == "t2i_adapter" else "controlnet"
        load[key] = Code(names[0] if len(names) == 1 else f"[{', '.join(names)}]")
        control_key = "image" if self.mode(request) == "text2img" else "control_image"
        snippet.input_files[control_key] = "control.png" if len(names) == 1 else "control-{i}.png"
        snippet.input_notes[control_key] = "the control map the app used (in its Control maps)"


SPEC = ControlNet()
