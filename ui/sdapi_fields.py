"""AUTOMATIC1111's request fields and what the studio makes of them: a txt2img or img2img body becomes one
`GenerationRequest` (with a mask, after A1111's own steps around inpainting: ui.sdapi_images), and a run's info
becomes A1111's `info`.

Every field that changes the result is either carried over or refused with a message saying why and what to send
instead; the harmless ones (whether to send or save images) are honoured or ignored. The field names and defaults
are A1111's (its modules/api/models.py and processing.py); `safety_checker` is the studio's own, and a public
server refuses to turn it off.
"""

from __future__ import annotations

import base64
import binascii
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from core import infotext, schedulers
from core.generation import GenerationRequest, Limits
from core.studio import Studio
from core.uploads import read_image
from ui.sdapi_images import MaskSettings, prepare_inpaint, resize_image

TEXT2IMG, IMG2IMG, INPAINT = "text2img", "img2img", "inpaint"  # the studio's tasks behind the two endpoints

# A1111's defaults for what it reads (StableDiffusionProcessing and its API models), echoed back as `parameters`.
TXT2IMG_DEFAULTS: dict[str, Any] = {
    "prompt": "", "negative_prompt": "", "styles": [], "seed": -1, "subseed": -1, "subseed_strength": 0,
    "seed_resize_from_h": -1, "seed_resize_from_w": -1, "sampler_name": None, "scheduler": None, "batch_size": 1,
    "n_iter": 1, "steps": 50, "cfg_scale": 7.0, "width": 512, "height": 512, "restore_faces": None, "tiling": None,
    "do_not_save_samples": False, "do_not_save_grid": False, "eta": None, "s_min_uncond": None, "s_churn": None,
    "s_tmax": None, "s_tmin": None, "s_noise": None, "override_settings": {},
    "override_settings_restore_afterwards": True, "refiner_checkpoint": None, "refiner_switch_at": None,
    "disable_extra_networks": False, "enable_hr": False, "script_name": None, "script_args": [], "send_images": True,
    "save_images": False, "alwayson_scripts": {}, "infotext": None, "safety_checker": True,
}  # fmt: skip
IMG2IMG_DEFAULTS: dict[str, Any] = {
    **{k: v for k, v in TXT2IMG_DEFAULTS.items() if k != "enable_hr"},
    "init_images": None, "resize_mode": 0, "denoising_strength": 0.75, "image_cfg_scale": None, "mask": None,
    "mask_blur_x": 4, "mask_blur_y": 4, "mask_blur": None, "inpainting_fill": 0, "inpaint_full_res": True,
    "inpaint_full_res_padding": 0, "inpainting_mask_invert": 0, "initial_noise_multiplier": None,
    "latent_mask": None, "include_init_images": False,
}  # fmt: skip

# Fields that change the result, the value at which they change nothing, and what to say when they are set.
_NOT_SUPPORTED: tuple[tuple[str, Any, str], ...] = (
    ("enable_hr", False, "hires fix (enable_hr) is not supported: ask for the final size, or upscale the image with "
     "the studio's upscale task"),
    ("restore_faces", False, "face restoration (restore_faces) is not supported"),
    ("tiling", False, "tiling is not supported"),
    ("subseed_strength", 0, "variation seeds (subseed_strength) are not supported"),
    ("s_churn", 0, "s_churn is not supported (the studio's samplers run without churn)"),
    ("s_noise", 1, "s_noise is not supported (the studio's samplers add noise at 1)"),
    ("s_min_uncond", 0, "s_min_uncond is not supported"),
    ("initial_noise_multiplier", 1, "initial_noise_multiplier is not supported (the studio noises at 1)"),
)  # fmt: skip
# What an A1111 server would take that the studio has no counterpart for (non-empty: refused).
_NOT_SUPPORTED_IF_GIVEN = {
    "styles": "prompt styles are not supported: write the style into the prompt",
    "script_name": "scripts are not supported",
    "alwayson_scripts": "extension scripts (alwayson_scripts) are not supported",
    "refiner_checkpoint": "a refiner checkpoint is not supported through this API",
    "infotext": "infotext is not read: send the fields themselves",
    "latent_mask": "latent_mask is not supported",
}
# What the studio already runs with, as A1111's options name it: GET /options reports these, and override_settings
# may repeat them (a client that sends its whole settings each time); another value would change the result.
FIXED_OPTIONS: dict[str, Any] = {
    "CLIP_stop_at_last_layers": 1,
    "samples_format": "png",
    "randn_source": "CPU",  # every generator here is a CPU one
    "eta_ddim": 0.0,
    "eta_ancestral": 1.0,
    "s_churn": 0.0,
    "s_noise": 1.0,
    "s_min_uncond": 0.0,
}


_STATUS_NAMES = {
    401: "Unauthorized",
    403: "Forbidden",
    413: "PayloadTooLarge",
    415: "UnsupportedMediaType",
    422: "InvalidRequest",
    429: "TooManyRequests",
    503: "ServiceUnavailable",
}


class ApiError(Exception):
    """A request the API refuses: its HTTP status, and a message saying what to do."""

    def __init__(self, status: int, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status, self.detail, self.headers = status, detail, headers or {}
        self.error = _STATUS_NAMES.get(status, "Error")


def refuse(detail: str) -> ApiError:
    return ApiError(422, detail)


@dataclass
class Translation:
    """One A1111 request as the studio runs it, and what its answer needs besides the run's result."""

    request: GenerationRequest
    prompt: str  # as sent, with its LoRA tags: what A1111 reports as the prompt
    batch_size: int
    send_images: bool
    parameters: dict[str, Any]  # the request's fields with A1111's defaults, echoed back
    finish: Callable[[Image.Image], Image.Image] = lambda image: image  # an inpainting's paste over the original
    extra: dict[str, Any] = field(default_factory=dict)  # A1111's extra_generation_params beyond the schedule
    notes: list[str] = field(default_factory=list)  # what was adapted in the uploaded images


# -- reading fields ----------------------------------------------------------------------------------------------


def _whole(body: dict, key: str, default: int) -> int:
    value = body.get(key, default)
    if value is None:
        return default
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise refuse(f"{key} must be a whole number, got {value!r}.")
    return value


def _number(body: dict, key: str, default: float) -> float:
    value = body.get(key, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise refuse(f"{key} must be a number, got {value!r}.")
    return float(value)


def _flag(body: dict, key: str, default: bool) -> bool:
    value = body.get(key, default)
    if value is None:
        return default
    if isinstance(value, bool) or value in (0, 1):
        return bool(value)
    raise refuse(f"{key} must be true or false, got {value!r}.")


def _text(body: dict, key: str, limit: int) -> str:
    value = body.get(key) or ""
    if not isinstance(value, str):
        raise refuse(f"{key} must be text, got {type(value).__name__}.")
    if len(value) > limit:  # before any parsing of it (the LoRA tags)
        raise refuse(f"{key} is {len(value):,} characters; this server takes at most {limit:,}. Shorten it.")
    return value


def _given(value: Any) -> bool:
    return value not in (None, "", [], {}, "None")


def refuse_unsupported(body: dict) -> None:
    """Raise one 422 naming every field set to something the studio can't do (hires fix, scripts, ...)."""
    problems = []
    for key, neutral, why in _NOT_SUPPORTED:
        value = body.get(key)
        if value is not None and value != neutral:
            problems.append(f"{why} (got {key}={value!r})")
    problems += [why for key, why in _NOT_SUPPORTED_IF_GIVEN.items() if _given(body.get(key))]
    for key in ("seed_resize_from_w", "seed_resize_from_h"):
        value = body.get(key)
        if isinstance(value, (int, float)) and value > 0:
            problems.append(f"seed resizing ({key}) is not supported")
            break
    if problems:
        raise refuse("This studio can't do what this request asks: " + "; ".join(problems) + ".")


def same_option(options: dict[str, Any], key: str, value: Any) -> bool:
    """Whether setting `key` to `value` changes nothing. A1111's VAE "None" (no separate VAE file) is the
    checkpoint's own, as "Automatic" is where none lies beside the checkpoint."""
    if key == "sd_vae" and options.get(key) == "Automatic" and value in ("Automatic", "None"):
        return True
    return key in options and options[key] == value


def check_overrides(body: dict, options: dict[str, Any], is_loaded_model: Callable[[str], bool]) -> None:
    """override_settings may name the loaded model and repeat what the studio runs with; anything else is refused
    (switching the model for one request would change it for everyone: POST /sdapi/v1/options does that)."""
    overrides = body.get("override_settings") or {}
    if not isinstance(overrides, dict):
        raise refuse("override_settings must be an object of option names and values.")
    for key, value in overrides.items():
        if key == "sd_model_checkpoint":
            if not isinstance(value, str) or not is_loaded_model(value):
                raise refuse(
                    f"override_settings asks for the model {value!r}, but {options.get('sd_model_checkpoint')!r} is "
                    "loaded; the loaded model is shared by every user of this server: switch it with POST "
                    "/sdapi/v1/options (its owner's, on a public server), or leave sd_model_checkpoint out."
                )
        elif not same_option(options, key, value):
            raise refuse(
                f"override_settings.{key}={value!r} is not supported; this studio can't change that per request "
                f"(it runs with {', '.join(f'{k}={v!r}' for k, v in options.items() if k != 'sd_model_checkpoint')})."
            )


# -- sampler and schedule ----------------------------------------------------------------------------------------


def a1111_pairs(studio: Studio) -> list[tuple[str, str, str]]:
    """(A1111 sampler, schedule type, studio name) of every scheduler the loaded checkpoint can use."""
    return [(*schedulers.choice(name).a1111, name) for name in studio.scheduler_names()[1:]]


def scheduler_from(body: dict, studio: Studio) -> str:
    """The studio's scheduler for A1111's `sampler_name` (or the older `sampler_index`) and `scheduler`: no sampler
    is the checkpoint's own (`default`); a pair the loaded checkpoint can't run is refused, with the pairs it can."""
    sampler = body.get("sampler_name") or body.get("sampler_index") or ""
    schedule = body.get("scheduler") or ""
    if not isinstance(sampler, str) or not isinstance(schedule, str):
        raise refuse("sampler_name and scheduler must be text, e.g. 'DPM++ 2M' and 'Karras'.")
    if not sampler.strip():
        if schedule.strip().lower() not in ("", "automatic"):
            raise refuse(f"Schedule type {schedule!r} needs a sampler_name too (e.g. 'DPM++ 2M').")
        return schedulers.DEFAULT
    name, read_as = schedulers.from_a1111(sampler, schedule or None)
    pairs = a1111_pairs(studio)
    if name is None or name not in [studio_name for _s, _t, studio_name in pairs]:
        by_sampler: dict[str, list[str]] = {}
        for offered_sampler, offered_schedule, _name in pairs:
            by_sampler.setdefault(offered_sampler, []).append(offered_schedule)
        offered = "; ".join(f"{s} ({', '.join(types)})" for s, types in by_sampler.items())
        automatic = schedule.strip().lower() in ("", "automatic")
        what = f"Sampler {sampler.strip()!r} with schedule type {schedule.strip() or 'Automatic'!r}"
        what += f" (its automatic one is {read_as})" if automatic else ""
        where = "is not one this studio has" if name is None else "does not work with the loaded checkpoint"
        raise refuse(
            f"{what} {where}. The samplers here, with their schedule types: {offered}. Or leave sampler_name empty "
            "for the checkpoint's own."
        )
    return name


def refuse_eta(body: dict, sampler: str) -> None:
    """eta changes what ancestral, SDE and DDIM samplers do; the studio's run at A1111's defaults (1, DDIM 0)."""
    eta = body.get("eta")
    if eta is None:
        return
    if isinstance(eta, bool) or not isinstance(eta, (int, float)):
        raise refuse(f"eta must be a number, got {eta!r}.")
    if sampler.upper().startswith("DDIM"):
        runs_at = 0.0
    elif sampler.endswith(" a") or "SDE" in sampler:
        runs_at = 1.0
    else:
        return  # A1111's other samplers have no eta either
    if eta != runs_at:
        raise refuse(f"eta {eta:g} is not supported with {sampler}: this studio runs it at eta {runs_at:g}; send that "
                     "or leave eta out.")  # fmt: skip


def a1111_pair(studio: Studio, name: str) -> tuple[str | None, str | None]:
    """(Sampler, Schedule type) for a studio scheduler name; `default` is the checkpoint's own scheduler's."""
    if name == schedulers.DEFAULT:
        return infotext.sampler_and_schedule(studio.pool.components.get("scheduler"))
    entry = schedulers.choice(name)
    return entry.a1111 if entry is not None else (name, None)


# -- LoRA tags ---------------------------------------------------------------------------------------------------


def strip_lora_tags(prompt: str, studio: Studio, disabled: bool) -> str:
    """The prompt without its `<lora:name:weight>` tags, each checked against the loaded LoRAs: LoRAs are shared
    state that the server's owner loads, so a tag can only name one that is loaded, at the weight it is loaded at."""
    loaded = studio.loras.loras.values()
    names = {}
    for lora in loaded:
        for name in (infotext.lora_name(lora), lora.name, Path(lora.source.rstrip("/")).name):
            names.setdefault(name.removesuffix(".safetensors").lower(), lora)
    if disabled and loaded:
        raise refuse(
            "disable_extra_networks asks for a run without LoRAs, but this server has "
            f"{', '.join(infotext.lora_name(lora) for lora in loaded)} loaded for everyone; leave it out."
        )
    problems = []
    cleaned, tags = infotext.network_tags(prompt)
    for tag, kind, args in tags:
        if kind not in ("lora", "lyco"):
            problems.append(f"{tag}: {kind} extra networks are not supported")
            continue
        lora = names.get(args[0].strip().lower())
        if lora is None:
            offered = ", ".join(infotext.lora_name(lora) for lora in loaded) or "none"
            problems.append(
                f"{tag}: no LoRA named {args[0].strip()!r} is loaded (loaded: {offered}); LoRAs are shared by "
                "everyone on this server: load it first (the page's LoRA panel, its owner's on a public server)"
            )
            continue
        try:
            weight = float(args[1]) if len(args) > 1 and args[1].strip() else 1.0
        except ValueError:
            weight = None
        if len(args) > 2 or weight is None:
            problems.append(f"{tag}: write a LoRA tag as <lora:name:weight>")
        elif abs(weight - lora.weight) > 1e-6:
            problems.append(
                f"{tag}: {args[0].strip()} is loaded at weight {lora.weight:g} for everyone; a request can't "
                f"change it: write <lora:{args[0].strip()}:{lora.weight:g}>, or leave the tag out"
            )
    if problems:
        raise refuse("; ".join(problems) + ".")
    return cleaned


# -- images ------------------------------------------------------------------------------------------------------


def base64_bytes(data: Any, label: str, max_bytes: int) -> bytes:
    """The bytes of a base64 image (raw, or a `data:image/...;base64,` URL), its size checked before decoding."""
    if not isinstance(data, str) or not data.strip():
        raise refuse(f"{label} must be a base64-encoded image (PNG, JPEG or WebP).")
    data = data.strip()
    if data.startswith(("http://", "https://")):
        raise refuse(f"{label} is a URL; this server fetches nothing: send the image itself, base64-encoded.")
    if data.startswith("data:"):
        data = data.partition(",")[2]
    if len(data) // 4 * 3 > max_bytes:
        raise ApiError(
            413, f"{label} is about {len(data) // 4 * 3 / 2**20:.1f} MB; this server takes images up to "
            f"{max_bytes / 2**20:.1f} MB. Send a smaller one (a PNG of the size you ask for is enough)."
        )  # fmt: skip
    try:
        return base64.b64decode("".join(data.split()), validate=True)
    except (binascii.Error, ValueError):
        raise refuse(f"{label} is not valid base64; send the image file's bytes base64-encoded.") from None


def decode_image(data: Any, label: str, mode: str, *, max_bytes: int, max_pixels: int) -> tuple[Image.Image, list]:
    """A base64 image as a PIL image in `mode`, and notes on what was adapted. Its size in bytes is checked before
    the base64 is decoded, its size in pixels from its header before the pixels are (core.uploads.read_image,
    which reads files: the bytes go to a temporary one)."""
    raw = base64_bytes(data, label, max_bytes)
    with tempfile.TemporaryDirectory(prefix="sdapi-") as folder:
        path = Path(folder) / "upload"
        path.write_bytes(raw)
        image, notes = read_image(str(path), label, mode, max_pixels)
        image.load()
    return image, notes


# -- requests ----------------------------------------------------------------------------------------------------


def _size(body: dict, limits: Limits, multiple: int) -> tuple[int, int]:
    width, height = _whole(body, "width", 512), _whole(body, "height", 512)
    for label, value in (("width", width), ("height", height)):
        if not limits.min_side <= value <= limits.max_side:
            raise refuse(f"{label} must be between {limits.min_side} and {limits.max_side} here, got {value}.")
        if value % multiple:
            lower = value - value % multiple
            raise refuse(f"{label} must be a multiple of {multiple}, got {value}; try {lower or multiple}.")
    return width, height


def _common(
    body: Any, studio: Studio, limits: Limits, defaults: dict, options: dict, is_loaded: Callable
) -> tuple[dict[str, Any], str, int]:
    """The fields both endpoints share as GenerationRequest fields, the prompt as sent and the batch size;
    refusals first, before any image is read."""
    if not isinstance(body, dict):
        raise refuse("The request body must be a JSON object of A1111's txt2img/img2img fields.")
    refuse_unsupported(body)
    check_overrides(body, options, is_loaded)
    prompt = _text(body, "prompt", limits.max_prompt_chars)
    scheduler = scheduler_from(body, studio)
    refuse_eta(body, a1111_pair(studio, scheduler)[0] or "")
    batch_size, n_iter = _whole(body, "batch_size", 1), _whole(body, "n_iter", 1)
    if batch_size < 1 or n_iter < 1 or batch_size * n_iter > limits.max_images:
        raise refuse(
            f"batch_size x n_iter is {batch_size} x {n_iter}; this server makes 1 to {limits.max_images} images per "
            "request."
        )
    shared = {
        "prompt": strip_lora_tags(prompt, studio, _flag(body, "disable_extra_networks", False)),
        "negative_prompt": _text(body, "negative_prompt", limits.max_prompt_chars),
        "seed": _whole(body, "seed", -1),
        "scheduler": scheduler,
        "num_images": batch_size * n_iter,
        "steps": _whole(body, "steps", defaults["steps"]),
        "guidance_scale": _number(body, "cfg_scale", defaults["cfg_scale"]),
        "safety_checker": _flag(body, "safety_checker", True),
    }
    return shared, prompt, batch_size


def txt2img(body: dict, studio: Studio, limits: Limits, options: dict, is_loaded: Callable) -> Translation:
    """A txt2img body as the studio's text-to-image request."""
    fields, prompt, batch_size = _common(body, studio, limits, TXT2IMG_DEFAULTS, options, is_loaded)
    width, height = _whole(body, "width", 512), _whole(body, "height", 512)
    request = GenerationRequest(task=TEXT2IMG, width=width, height=height, **fields)
    request.validate(limits, size_multiple=studio.pool.size_multiple)
    return Translation(request, prompt, batch_size, _flag(body, "send_images", True), {**TXT2IMG_DEFAULTS, **body})


def img2img(
    body: dict, studio: Studio, limits: Limits, options: dict, is_loaded: Callable, max_image_bytes: int
) -> Translation:
    """An img2img body as the studio's image-to-image request, or, with a `mask`, its inpainting one."""
    fields, prompt, batch_size = _common(body, studio, limits, IMG2IMG_DEFAULTS, options, is_loaded)
    width, height = _size(body, limits, studio.pool.size_multiple)
    resize_mode, fill = _whole(body, "resize_mode", 0), _whole(body, "inpainting_fill", 0)
    if resize_mode not in (0, 1, 2):
        raise refuse(f"resize_mode {resize_mode} is not supported: 0 (just resize), 1 (crop and resize) or 2 (resize "
                     "and fill).")  # fmt: skip
    if fill not in (0, 1):
        raise refuse(f"inpainting_fill {fill} (latent noise or nothing) is not supported: 0 (fill) or 1 (original).")
    images = body.get("init_images")
    if not isinstance(images, list) or len(images) != 1:
        raise refuse("init_images must be a list of one base64 image (one input image per request here).")
    decode = {"max_bytes": max_image_bytes, "max_pixels": limits.max_image_pixels}
    image, notes = decode_image(images[0], "init_images[0]", "RGB", **decode)
    strength = _number(body, "denoising_strength", 0.75)
    parameters = {**IMG2IMG_DEFAULTS, **body}
    if not _flag(body, "include_init_images", False):
        parameters.update(init_images=None, mask=None)
    translation = Translation(
        GenerationRequest(task=IMG2IMG), prompt, batch_size, _flag(body, "send_images", True), parameters, notes=notes
    )
    if _given(body.get("mask")):
        mask, mask_notes = decode_image(body["mask"], "mask", "L", **decode)
        blur = _whole(body, "mask_blur", -1)
        blur_xy = (blur, blur) if blur >= 0 else (_whole(body, "mask_blur_x", 4), _whole(body, "mask_blur_y", 4))
        how = MaskSettings(
            blur=(max(blur_xy[0], 0), max(blur_xy[1], 0)),
            invert=_flag(body, "inpainting_mask_invert", False),
            only_masked=_flag(body, "inpaint_full_res", True),
            padding=max(_whole(body, "inpaint_full_res_padding", 0), 0),
            fill=fill,
            resize_mode=resize_mode,
        )
        run_image, run_mask, translation.finish = prepare_inpaint(image, mask, width, height, how)
        translation.request = GenerationRequest(
            task=INPAINT, image=run_image, mask=run_mask, strength=strength, **fields
        )
        translation.extra = {"Mask blur": how.blur[0]} if how.blur[0] == how.blur[1] else {
            "Mask blur x": how.blur[0], "Mask blur y": how.blur[1]}  # fmt: skip
        translation.notes += mask_notes
    else:
        run_image = resize_image(resize_mode, image, width, height)
        translation.request = GenerationRequest(task=IMG2IMG, image=run_image, strength=strength, **fields)
    translation.request.validate(limits, size_multiple=studio.pool.size_multiple)
    return translation
