"""Reading a pipeline's `__call__` signature: which of its parameters the Pipeline tab offers with its own controls
(prompt, image, steps, size, frames, audio length, class labels, ...), which as typed "other parameters", and which
it cannot offer, with why. The tab for pipelines that have no spec of their own is built from this
(core.tasks.pipeline); nothing here runs a pipeline.
"""

from __future__ import annotations

import functools
import inspect
import json
import types
import typing
from dataclasses import dataclass, field
from typing import Any

from core.errors import InvalidRequest

# The pipeline's parameter -> the tab's control (a GenerationRequest field). The first name a pipeline has wins.
KNOWN: dict[str, tuple[str, ...]] = {
    "prompt": ("prompt",),
    "negative_prompt": ("negative_prompt",),
    "image": ("image",),
    "mask": ("mask_image",),
    "strength": ("strength",),
    "steps": ("num_inference_steps", "steps"),  # Audio Diffusion's is `steps`
    "guidance_scale": ("guidance_scale",),
    "width": ("width",),
    "height": ("height",),
    "num_frames": ("num_frames",),
    "audio_seconds": ("audio_length_in_s",),
    "class_labels": ("class_labels",),
    # how many results one call makes: images, waveforms, videos, or a plain batch
    "num_images": ("num_images_per_prompt", "num_waveforms_per_prompt", "num_videos_per_prompt", "batch_size"),
}
# What the run itself sets (seeds, callbacks, output form); not for the user.
INTERNAL = {
    "generator",
    "return_dict",
    "output_type",
    "callback",
    "callback_steps",
    "callback_on_step_end",
    "callback_on_step_end_tensor_inputs",
}
SCALARS = (bool, int, float, str)
# A parameter that names a file on the server by its path (Audio Diffusion's `audio_file`): only an upload may name a
# file, so none is offered as a typed "other parameter".
PATH_SUFFIXES = ("_file", "_path", "_dir")


@dataclass(frozen=True)
class Other:
    """A parameter offered as an "other parameter": its name, the pipeline's default and the type it takes."""

    name: str
    default: Any
    type: str  # bool | int | float | str
    optional: bool  # None is accepted too (the pipeline picks a value)


@dataclass(frozen=True)
class SignatureInfo:
    """What the Pipeline tab makes of a pipeline class: see the module's docstring."""

    pipeline: str
    offered: dict[str, str]  # control -> the pipeline's parameter
    defaults: dict[str, Any]  # control -> the pipeline's default (None: it picks one itself, e.g. from the model)
    required: tuple[str, ...]  # controls without a default in the pipeline
    others: dict[str, Other]
    not_offered: dict[str, str]  # parameter -> why not
    output: str  # images | audio | frames: what the return annotation says it makes
    takes_callback: str  # step_end | legacy | none: how progress and Stop reach the run
    class_names: tuple[str, ...] = ()  # class-conditional models: their label names, by id
    makes_text: bool = False  # its output carries text too (UniDiffuser's captions)
    unmet: tuple[str, ...] = field(default=())  # what the pipeline requires that no control gives: it can't run here

    def as_dict(self) -> dict[str, Any]:
        return {
            "pipeline": self.pipeline,
            "offered": self.offered,
            "defaults": {k: _jsonable(v) for k, v in self.defaults.items()},
            "required": list(self.required),
            "others": {
                o.name: {"default": o.default, "type": o.type, "optional": o.optional} for o in self.others.values()
            },
            "not_offered": self.not_offered,
            "output": self.output,
            "class_names": list(self.class_names),
            "makes_text": self.makes_text,
            "unmet": list(self.unmet),
        }


def _jsonable(value: Any) -> Any:
    return value if value is None or isinstance(value, SCALARS) else repr(value)


@functools.lru_cache(maxsize=64)
def read(pipeline_class: type, class_names: tuple[str, ...] = ()) -> SignatureInfo:
    """What the tab offers for `pipeline_class` (its label names, for a class-conditional model, from its config).

    Read once per class and label list: model info (asked by every page refresh) and each run's checks, arguments
    and info ask again. Callers only read the result."""
    if not any("__call__" in vars(k) for k in pipeline_class.__mro__ if k not in (object, type)):
        # e.g. Versatile Diffusion's combined pipeline: only methods (text_to_image, image_variation, ...)
        return SignatureInfo(
            pipeline_class.__name__,
            {},
            {},
            (),
            {},
            {},
            "images",
            "none",
            unmet=("a call of its own (it has only methods)",),
        )
    call = _signature(pipeline_class.__call__)
    parameters = call.parameters
    offered, defaults, required, others, not_offered, unmet = {}, {}, [], {}, {}, []
    taken = set()
    for control, names in KNOWN.items():
        if control == "num_images" and "image" in parameters:
            names = tuple(n for n in names if n != "batch_size")  # with an image, a processing batch (Marigold)
        for name in names:
            if name in parameters:
                offered[control] = name
                taken.add(name)
                default = parameters[name].default
                if default is inspect.Parameter.empty:
                    required.append(control)
                    default = None
                defaults[control] = default
                break
    if "output_type" in parameters and makes_meshes(pipeline_class):
        offered["mesh"], defaults["mesh"] = "output_type", False  # output_type="mesh" instead of renders
    for name, p in parameters.items():
        if name == "self" or name in taken or name in INTERNAL:
            continue
        if p.kind in (inspect.Parameter.VAR_KEYWORD, inspect.Parameter.VAR_POSITIONAL):
            continue  # **kwargs: only deprecated arguments pass through there
        kind, optional = scalar_type(p.annotation, p.default)
        if p.default is inspect.Parameter.empty:
            not_offered[name] = f"required, and no control of the tab stands for it ({_why_not(name, p.annotation)})"
            unmet.append(name)
        elif name.endswith(PATH_SUFFIXES):
            not_offered[name] = "takes a path to a file on the server"
        elif kind is None:
            not_offered[name] = _why_not(name, p.annotation)
        else:
            others[name] = Other(name, p.default, kind, optional)
    return SignatureInfo(
        pipeline=pipeline_class.__name__,
        offered=offered,
        defaults=defaults,
        required=tuple(required),
        others=others,
        not_offered=not_offered,
        output=output_kind(call.return_annotation, pipeline_class),
        takes_callback=(
            "step_end" if "callback_on_step_end" in parameters else "legacy" if "callback" in parameters else "none"
        ),
        class_names=class_names if "class_labels" in offered else (),
        makes_text=makes_text(pipeline_class),
        unmet=tuple(unmet),
    )


def makes_text(pipeline_class: type) -> bool:
    """Whether the pipeline's output carries text (UniDiffuser's `ImageTextPipelineOutput.text`: captions of an
    image, or of the image it made): its module's output class has a `text` field. Its `__call__` has no return
    annotation to read."""
    from diffusers.utils import BaseOutput

    module = inspect.getmodule(pipeline_class)
    return any(
        isinstance(value, type) and issubclass(value, BaseOutput) and "text" in getattr(value, "__annotations__", {})
        for value in vars(module).values()
    )


def makes_meshes(pipeline_class: type) -> bool:
    """Whether one of the pipeline's components decodes a 3D mesh (Shap-E's renderer: `output_type="mesh"`)."""
    components = _signature(pipeline_class.__init__).parameters.values()
    return any(isinstance(p.annotation, type) and hasattr(p.annotation, "decode_to_mesh") for p in components)


def _signature(function: Any) -> inspect.Signature:
    """The signature with its annotations as types (a module with `from __future__ import annotations` has strings);
    as written where a name in them can't be resolved."""
    try:
        return inspect.signature(function, eval_str=True)
    except Exception:  # any name error of someone else's annotations: the types are only a help
        return inspect.signature(function)


def scalar_type(annotation: Any, default: Any) -> tuple[str | None, bool]:
    """The scalar type a parameter takes (bool, int, float or str) and whether None is allowed, from its annotation
    (or its default, where it has none); (None, False) for tensors, lists, callables and the like."""
    if annotation is inspect.Parameter.empty or annotation is typing.Any:
        if isinstance(default, SCALARS):
            return type(default).__name__, False
        return None, False
    args = typing.get_args(annotation) if _is_union(annotation) else (annotation,)
    optional = type(None) in args
    kinds = [a for a in args if a is not type(None)]
    if len(kinds) == 1 and kinds[0] in SCALARS:
        return kinds[0].__name__, optional
    if set(kinds) == {int, float}:  # "a number"
        return "float", optional
    return None, False


def _is_union(annotation: Any) -> bool:
    return isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union


def _why_not(name: str, annotation: Any) -> str:
    text = getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")
    if "Tensor" in text or "ndarray" in text:
        return f"takes a tensor ({text})"
    if "Callable" in text:
        return "takes a function"
    if annotation is inspect.Parameter.empty:
        return "no type or default says what it takes"
    return f"takes {text}"


def output_kind(annotation: Any, pipeline_class: type) -> str:
    """What a pipeline makes, from its return annotation (or its class name where it has none): images, audio,
    frames (a video: Shap-E's renders of the object turning too)."""
    text = f"{annotation} {pipeline_class.__name__}"
    if "Audio" in text or "Music" in text:
        return "audio"
    if "Video" in text:
        return "frames"
    if "ShapE" in text:  # renders of the object turning, one list of frames per prompt
        return "frames"
    return "images"


def other_values(info: SignatureInfo, text: str, *, public: bool) -> dict[str, Any]:
    """The "other parameters" of a request (a JSON object), each checked against its parameter's type."""
    text = (text or "").strip()
    if not text or text == "{}":
        return {}
    if public:
        raise InvalidRequest(
            "Other parameters are off on this public server (their cost can't be checked before the run); use the "
            "tab's controls."
        )
    if len(text) > 20_000:
        raise InvalidRequest("The other parameters are longer than 20,000 characters; keep only those you change.")
    try:
        values = json.loads(text, parse_constant=_not_a_number)
    except ValueError as e:
        why = getattr(e, "msg", None) or str(e)
        raise InvalidRequest(
            f'The other parameters are not valid JSON ({why}); write them as {{"name": value}}.'
        ) from None
    if not isinstance(values, dict):
        raise InvalidRequest('The other parameters must be a JSON object: {"name": value, ...}.')
    checked = {}
    for name, value in values.items():
        other = info.others.get(name)
        if other is None:
            offered = ", ".join(info.others) or "none"
            raise InvalidRequest(
                f"{info.pipeline} has no other parameter {name!r} this tab can pass (these are: {offered})."
            )
        checked[name] = _check_value(other, value)
    return checked


def _not_a_number(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON has")


def _check_value(other: Other, value: Any) -> Any:
    if value is None and other.optional:
        return None
    kind = other.type
    ok = {
        "bool": isinstance(value, bool),
        "int": isinstance(value, int) and not isinstance(value, bool),
        "float": isinstance(value, (int, float)) and not isinstance(value, bool),
        "str": isinstance(value, str) and len(value) <= 1000,
    }[kind]
    if not ok:
        raise InvalidRequest(f"{other.name} takes {'a ' if kind != 'int' else 'an '}{kind}, got {value!r}.")
    return float(value) if kind == "float" else value


def class_ids(info: SignatureInfo, text: str, num_classes: int | None, separator: str = ";") -> list[int]:
    """Class labels (names from the model's label list, or numbers, `separator` between them) as ids; a part that is
    no name but numbers with commas ("1, 2") is read as those numbers."""
    items = []
    for part in (text or "").split(separator):
        part = part.strip()
        numbers = [n.strip() for n in part.split(",")]
        items += numbers if len(numbers) > 1 and all(n.isdigit() for n in numbers) else [part] if part else []
    if not items:
        raise InvalidRequest(f"{info.pipeline} makes images of classes: pick at least one class label.")
    lookup = {name.lower(): i for i, name in enumerate(info.class_names)}
    for i, name in enumerate(info.class_names):  # ImageNet's names come in synonyms: "tench, Tinca tinca"
        for synonym in name.split(","):
            lookup.setdefault(synonym.strip().lower(), i)
    ids = []
    for item in items:
        if item.isdigit():
            ids.append(int(item))
        elif item.lower() in lookup:
            ids.append(lookup[item.lower()])
        else:
            raise InvalidRequest(
                f"{item!r} is not one of the model's class labels; pick one from the list or give its number "
                f"({separator} between labels)."
            )
    bound = num_classes if num_classes is not None else len(info.class_names) or None
    for i in ids:
        if bound is not None and not 0 <= i < bound:
            raise InvalidRequest(f"Class {i} is out of range: this model has classes 0 to {bound - 1}.")
    return ids
