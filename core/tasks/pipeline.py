"""Any pipeline: the tab for a loaded checkpoint whose pipeline no other spec serves (unconditional DDPM, class-
conditional DiT, Dance Diffusion audio, Marigold depth, ...). Its controls are read from the pipeline's `__call__`
signature (core.signature): the tab shows those the pipeline takes, with the pipeline's own defaults, offers its
other scalar parameters as typed JSON, and says which it could not offer. The output is shown by what it is:
images, audio (a WAV, with the spectrograms it was made from where the pipeline returns them), frames (GIF and MP4)
or a depth-like array (a grey image).
"""

from __future__ import annotations

import dataclasses
import inspect
import tempfile
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch
from diffusers import DiffusionPipeline
from PIL import Image

from core import signature
from core.errors import InvalidRequest
from core.tasks.base import (
    NUM_IMAGES,
    SAFETY_CHECKER,
    SCHEDULER,
    SEED,
    Output,
    Param,
    Serving,
    TaskSpec,
    checker_overrides,
    guidance,
    size,
    steps,
)
from core.tasks.params import MAX_SEED

if TYPE_CHECKING:
    from core.generation import GenerationRequest, GenerationResult, Limits
    from core.pool import Pool

# Denoisers whose position embeddings fix the image's size (UniDiffuser's U-ViT: one token per latent patch).
FIXED_SIZE = ("UniDiffuserModel",)
LABEL_SEPARATOR = ";"  # ImageNet's label names have commas in them ("tench, Tinca tinca")


class AnyPipeline(TaskSpec):
    name, label, kind, order = "pipeline", "Any pipeline", "signature", 200
    tab_label = "Pipeline"
    pipeline_class = "DiffusionPipeline"  # whichever class the checkpoint's model_index.json names
    table_pipeline = "the loaded checkpoint's own class (`model_index.json`), controls read from its `__call__`"
    table_shares = "everything: it is the loaded pipeline"
    description = (
        "Run the loaded pipeline when no other tab serves it: the parameters it takes among these are passed "
        "(prompt, images, steps, guidance, size, frames, audio_seconds, class_labels: names or ids separated by ;), "
        'other_parameters is a JSON object of its other scalar parameters (e.g. {"eta": 0.5}); model info\'s '
        "`signature` lists what the pipeline takes."
    )
    note = (
        "The loaded pipeline's own parameters, read from its signature: only those it takes are shown, with its "
        "defaults."
    )
    count_argument = ""  # read from the signature (num_images_per_prompt, batch_size, ...)
    lora_applies = False
    params = (
        Param("prompt", "prompt", "Prompt", api_default=""),
        Param("negative_prompt", "negative", "Negative prompt", api_default=""),
        Param("image", "image", "Input image", api_default=None),
        Param("mask", "mask", "Mask (white = repaint)", mode="L", api_default=None),
        Param(
            "class_labels", "labels", "Class labels", "", api_default="",
            info="the classes to draw, one image each (names or numbers; ; between them in the API)",
        ),
        Param(
            "strength", "slider", "Strength", 0.75, api_default=0.75, minimum=0.0, maximum=1.0, step=0.01,
            row="strength",
        ),
        dataclasses.replace(steps(), api_default=25),
        dataclasses.replace(guidance(), api_default=7.5),
        dataclasses.replace(size("width"), api_default=512),
        dataclasses.replace(size("height"), api_default=512),
        Param(
            "num_frames", "slider", "Frames", 16, api_default=16, minimum=1, maximum="max_frames", step=1,
            whole=True, row="media",
        ),
        Param(
            "audio_seconds", "slider", "Audio length (s)", 0.0, api_default=0.0, minimum=0.0,
            maximum="max_audio_seconds", step=0.5, row="media", info="0 = the pipeline's own length",
        ),
        Param(
            "mesh", "check", "3D mesh (PLY) instead of renders", False, api_default=False, row="media",
            info="a mesh you can turn in the page; saved as PLY with the run's info in its header",
        ),
        Param(
            "other_parameters", "text", "Other parameters (JSON)", "{}", api_default="{}",
            info='the pipeline\'s other parameters that you change, e.g. {"eta": 0.5}; the list is above',
        ),
        # Every input has a default: a script passes only what the pipeline takes.
        dataclasses.replace(SEED, api_default=-1),
        dataclasses.replace(SCHEDULER, api_default="default"),
        dataclasses.replace(NUM_IMAGES, api_default=1),
        dataclasses.replace(SAFETY_CHECKER, api_default=True),
    )  # fmt: skip
    outputs = (
        Output("audio", "audio", "Audio", before_results=True, hidden=True),
        Output("mp4", "video", "Video", before_results=True, hidden=True),
        Output("model3d", "model3d", "3D mesh", before_results=True, hidden=True),
        Output("text", "text", "Text", before_results=True, hidden=True),
    )
    fixed: ClassVar[Mapping[str, Any]] = {}

    @property
    def needs_image(self) -> bool:  # optional here: the pipeline's signature says whether it needs one
        return False

    def views_over(self, base_class: str, family: str | None) -> dict[str, type]:
        """Any pipeline class of diffusers' (core.tasks.views_over asks only where no other spec serves it)."""
        import diffusers

        cls = getattr(diffusers, base_class, None)
        return {self.name: cls} if isinstance(cls, type) and issubclass(cls, DiffusionPipeline) else {}

    def view(
        self, pool: Pool, request: GenerationRequest, scheduler: Any, run_checker: bool, serving: Serving
    ) -> DiffusionPipeline:
        """The loaded pipeline's own class over its modules. `from_pipe` drops a model whose class its annotation
        doesn't name, and then fails for want of it; the loaded pipeline was made with it, so each goes over as it is
        (teticio/audio-diffusion-ddim-256's UNet2DModel, which diffusers 0.42 annotates UNet2DConditionModel though
        the pipeline runs both)."""
        from diffusers import ModelMixin

        expected = type(pool.base)._get_signature_types()
        unnamed = {
            name: module
            for name, module in pool.components.items()
            if isinstance(module, ModelMixin) and name in expected and type(module) not in expected[name]
        }
        return pool.view_as(self.name, scheduler=scheduler, **checker_overrides(pool, run_checker), **unnamed)

    # -- the signature of the pipeline that runs ------------------------------------------------------

    @staticmethod
    def signature_of(pipe: DiffusionPipeline) -> signature.SignatureInfo:
        return signature.read(type(pipe))

    def check_options(self, pool: Pool, request: GenerationRequest) -> None:
        info = pool_signature(pool)
        if info.unmet:
            raise InvalidRequest(
                f"{info.pipeline} needs {', '.join(info.unmet)}, which this tab has no control for; run it from "
                "Python (diffusers' docs for the pipeline show the call)."
            )
        missing = [c for c in info.required if _value(request, c) in (None, "")]
        if missing:
            raise InvalidRequest(
                f"{info.pipeline} needs {', '.join(_words(c) for c in missing)}: "
                + ("upload it." if set(missing) <= {"image", "mask"} else "fill it in.")
            )
        if request.image is not None and "image" not in info.offered:
            raise InvalidRequest(f"{info.pipeline} takes no input image; remove it.")
        if request.mesh and "mesh" not in info.offered:
            raise InvalidRequest(f"{info.pipeline} makes no 3D meshes; untick 3D mesh.")
        fixed = pool.default_size
        sized = "width" in info.offered and request.image is None  # an image to caption sets no size
        denoiser = type(pool.components.get("unet")).__name__
        if sized and denoiser in FIXED_SIZE and (request.width, request.height) != (fixed, fixed):
            raise InvalidRequest(
                f"{info.pipeline} makes images only at the size it was trained at: set width and height to {fixed}."
            )
        counted = "num_images" in info.offered or "class_labels" in info.offered
        if request.num_images > 1 and not counted:
            raise InvalidRequest(f"{info.pipeline} makes one result per run; set the image count to 1.")

    def check(self, request: GenerationRequest, limits: Limits) -> None:
        for what, picture in (("input image", request.image), ("mask", request.mask)):
            if picture is None:
                continue
            if not isinstance(picture, Image.Image):
                raise InvalidRequest(f"The {what} could not be read as an image; upload a PNG, JPEG or WebP.")
            if min(picture.size) < limits.min_side:
                width, height = picture.size
                raise InvalidRequest(
                    f"The {what} is {width}x{height}; it must be at least {limits.min_side} px on each side."
                )
        if not isinstance(request.class_labels, str):
            raise InvalidRequest("class_labels must be text: names or numbers separated by ;.")
        if len(request.class_labels) > 4000:
            raise InvalidRequest(
                f"class_labels is {len(request.class_labels):,} characters; this app takes at most 4,000 (a run "
                f"makes at most {limits.max_images} images, one per label)."
            )
        if not isinstance(request.mesh, bool):
            raise InvalidRequest("mesh must be true or false.")
        if not isinstance(request.other_parameters, str):
            raise InvalidRequest('other_parameters must be text: a JSON object such as {"eta": 0.5}.')

    def prepare(self, request: GenerationRequest, serving: Serving, pool: Pool) -> GenerationRequest:
        """Class labels become ids, one image each (times the image count); the other parameters are checked."""
        info = pool_signature(pool)
        signature.other_values(info, request.other_parameters, public=serving.public)
        if "class_labels" not in info.offered or not request.class_labels.strip():
            return request
        ids = label_ids(info, request.class_labels, pool)
        total = len(ids) * request.num_images
        if total > serving.max_images:
            raise InvalidRequest(
                f"{len(ids)} class labels x {request.num_images} images is {total} images; this app makes at most "
                f"{serving.max_images} per run."
            )
        if request.seed != -1 and request.seed > MAX_SEED - total:
            raise InvalidRequest(f"seed must be -1 (random) or between 0 and {MAX_SEED - total}.")
        expanded = LABEL_SEPARATOR.join(str(i) for i in ids for _ in range(request.num_images))
        return dataclasses.replace(request, class_labels=expanded, num_images=total)

    # -- the call ---------------------------------------------------------------------------------------

    def call_arguments(
        self, request: GenerationRequest, pipe: DiffusionPipeline, seeds: list[int], multiple: int = 8
    ) -> dict[str, Any]:
        info = self.signature_of(pipe)
        offered = info.offered
        args: dict[str, Any] = {}

        def put(control: str, value: Any) -> None:
            if control in offered and value is not None:
                args[offered[control]] = value

        put("prompt", request.prompt if request.prompt or "prompt" in info.required else None)
        put("negative_prompt", request.negative_prompt or None)
        if request.image is not None:
            put("image", request.image.convert("RGB"))
            put("strength", request.strength)
        if request.mask is not None:
            put("mask", request.mask.convert("L"))
        put("steps", request.steps)
        put("guidance_scale", request.guidance_scale)
        if "width" in offered and "height" in offered:
            put("width", request.width)
            put("height", request.height)
        put("num_frames", request.num_frames)
        put("audio_seconds", request.audio_seconds or None)
        if "class_labels" in offered and request.class_labels.strip():
            args[offered["class_labels"]] = [int(i) for i in request.class_labels.split(LABEL_SEPARATOR)]
            if offered.get("num_images") == "batch_size":  # e.g. consistency models: one image per label
                args["batch_size"] = len(seeds)
        else:
            put("num_images", request.num_images)
        generators = [torch.Generator("cpu").manual_seed(s) for s in seeds]
        # One seed, one generator: a list must match what the pipeline counts (Marigold: its ensemble members).
        args["generator"] = generators[0] if len(generators) == 1 else generators
        args.update(signature.other_values(info, request.other_parameters, public=False))  # checked in prepare
        if request.mesh:
            args["output_type"] = "mesh"  # checked in check_options: a component decodes meshes
        elif info.output == "frames" and "output_type" in inspect.signature(pipe.__call__).parameters:
            args.setdefault("output_type", "pil")  # frames as pictures: what the GIF, the MP4 and the snippet save
        return args

    def collect_from(
        self, output: Any, arguments: dict[str, Any], pipe: DiffusionPipeline
    ) -> tuple[list[Image.Image], dict[str, Any]]:
        audios = getattr(output, "audios", None)
        if audios is not None:  # what is heard; pictures beside it are what it was made from (Audio Diffusion's mels)
            images = getattr(output, "images", None)
            shown = to_pil(images) if images is not None else []
            return shown, {"audio": {"rate": sample_rate(pipe), "clips": [np.asarray(a) for a in audios]}}
        frames = getattr(output, "frames", None)
        if frames is not None:
            videos = [to_pil(video) for video in frames]
            return [video[0] for video in videos], {"frames": videos}
        images = getattr(output, "images", None)
        text = getattr(output, "text", None)
        if text is not None:  # UniDiffuser: captions of the image given, or beside the image made (or none)
            return (to_pil(images) if images is not None else []), {"text": [str(t) for t in text]}
        if arguments.get("output_type") == "mesh":  # Shap-E: one mesh (vertices, faces, colours) per prompt
            return [], {"meshes": list(images)}
        if isinstance(images, list) and images and isinstance(images[0], list):  # Shap-E: renders turning round
            videos = [to_pil(video) for video in images]
            return [video[0] for video in videos], {"frames": videos, "renders": True}
        if images is None:  # Marigold and the like: a prediction array, shown as a grey image
            images = getattr(output, "prediction", None)
            return to_pil(images, signed=bool(np.asarray(images).min() < 0)), {"prediction": True}
        return to_pil(images), {}

    def output_values(self, result: GenerationResult) -> dict[str, Any]:
        audio = result.extras.get("audio")
        wav = result.files.get("wav")
        if audio is not None and wav is None:  # not saved (no outputs folder): the samples themselves
            wav = (audio["rate"], audio["clips"][0].T)
        mesh = result.files.get("glb")
        if mesh is None and result.extras.get("meshes"):  # not saved: a file for the viewer all the same
            from core.outputs import glb_bytes

            with tempfile.NamedTemporaryFile(suffix=".glb", delete=False) as f:
                f.write(glb_bytes(result.extras["meshes"][0]))
            mesh = f.name
        text = result.extras.get("text")
        return {
            "audio": wav,
            "mp4": result.files.get("mp4"),
            "model3d": mesh,
            "text": "\n".join(text) if text is not None else None,
        }

    # -- describing a run -------------------------------------------------------------------------------

    def info_fields(self, request: GenerationRequest, serving: Serving) -> dict[str, Any]:
        fields: dict[str, Any] = {}
        if request.class_labels:
            fields["class_labels"] = [int(i) for i in request.class_labels.split(LABEL_SEPARATOR)]
        if request.other_parameters.strip() not in ("", "{}"):
            fields["other_parameters"] = request.other_parameters
        return fields

    def run_fields(self, pipe: DiffusionPipeline, arguments: dict[str, Any]) -> dict[str, Any]:
        """Info fields only the run knows: which parameters went in, and what the pipeline made."""
        info = self.signature_of(pipe)
        fields: dict[str, Any] = {"arguments": sorted(k for k in arguments if k != "generator"), "output": info.output}
        for control in ("num_frames", "audio_seconds", "strength"):
            if control in info.offered and info.offered[control] in arguments:
                fields[control] = arguments[info.offered[control]]
        if arguments.get("output_type") == "mesh":
            fields["output"] = "mesh"
        if fields["output"] in ("audio", "mesh"):  # no picture, no size
            fields.update(width=None, height=None)
        return fields


def _value(request: GenerationRequest, control: str) -> Any:
    return getattr(request, control, None)


def _words(control: str) -> str:
    return {
        "image": "an input image",
        "mask": "a mask",
        "class_labels": "at least one class label",
        "prompt": "a prompt",
    }.get(control, control.replace("_", " "))


def pool_signature(pool: Pool) -> signature.SignatureInfo:
    """What the Pipeline tab offers for the pool's pipeline."""
    return signature.read(type(pool.base), class_names(pool.base, pool.files.model_index))


def class_names(pipe: DiffusionPipeline, model_index: Mapping[str, Any] | None = None) -> tuple[str, ...]:
    """A class-conditional pipeline's label names by id, else (). DiT's checkpoints list ImageNet's in model_index.json
    (`id2label`); the pipeline keeps only `labels`, each synonym -> its id, which is the fallback."""
    id2label = (model_index or {}).get("id2label")
    if isinstance(id2label, dict) and id2label:
        try:
            ordered = sorted((int(i), str(name)) for i, name in id2label.items())
            return tuple(name for _i, name in ordered)
        except ValueError:
            pass
    labels = getattr(pipe, "labels", None)
    if not isinstance(labels, dict) or not labels:
        return ()
    by_id: dict[int, list[str]] = {}
    for name, i in labels.items():
        by_id.setdefault(int(i), []).append(str(name))
    return tuple(", ".join(sorted(by_id[i])) if i in by_id else str(i) for i in range(max(by_id) + 1))


def label_ids(info: signature.SignatureInfo, text: str, pool: Pool) -> list[int]:
    denoiser = pool.components.get("transformer") or pool.components.get("unet")
    config = getattr(denoiser, "config", None)
    bound = getattr(config, "num_embeds_ada_norm", None) or getattr(config, "num_class_embeds", None)
    return signature.class_ids(info, text, bound, separator=LABEL_SEPARATOR)


def sample_rate(pipe: DiffusionPipeline | None) -> int:
    """The audio's sample rate, where the pipeline keeps it: the vocoder (AudioLDM, MusicLDM), the UNet (Dance
    Diffusion), the mel converter (Audio Diffusion)."""
    for owner, key in (("vocoder", "sampling_rate"), ("unet", "sample_rate"), ("mel", "sample_rate")):
        config = getattr(getattr(pipe, owner, None), "config", None)
        rate = getattr(config, key, None) if config is not None else None
        if rate:
            return int(rate)
    return 16000


def to_pil(images: Any, signed: bool = False) -> list[Image.Image]:
    """PIL images of what a pipeline returned: PIL already, or arrays (N, H, W, C) in [0, 1] ([-1, 1] when `signed`)
    as diffusers' `numpy_to_pil` converts them."""
    from diffusers.utils import numpy_to_pil

    if isinstance(images, Image.Image):
        return [images]
    if isinstance(images, (list, tuple)) and images and all(isinstance(i, Image.Image) for i in images):
        return list(images)
    if isinstance(images, torch.Tensor):
        images = images.detach().float().cpu().numpy()
    array = np.asarray(images, dtype=np.float32)
    if signed:
        array = (array + 1) / 2
    if array.ndim == 3:
        array = array[None]
    return numpy_to_pil(np.clip(array, 0, 1))


SPEC = AnyPipeline()
