"""The studio's answers in AUTOMATIC1111's shapes: a run's info as A1111's `info`, the samplers and schedule types
the loaded checkpoint runs, and PNG info's `parameters` (ui.sdapi_fields turns A1111's requests into the studio's)."""

from __future__ import annotations

import time
from typing import Any

from core import infotext, schedulers
from core.outputs import parameters_text
from core.studio import Studio
from ui.sdapi_fields import Translation, a1111_pair, a1111_pairs

_A1111_SCHEDULE_NAMES = ("Automatic", *schedulers.A1111_SCHEDULES)


def a1111_info(translation: Translation, info: dict[str, Any], studio: Studio, *, inpainting_unet: bool) -> dict:
    """A run's info as A1111's `info` (Processed.js()), with the studio's own info under `diffusion_studio`."""
    seeds = info.get("seeds") or []
    count = len(seeds)
    sampler, schedule = info.get("sampler"), info.get("schedule_type")
    if sampler is None:
        sampler, schedule = a1111_pair(studio, info.get("scheduler", schedulers.DEFAULT))
    negative = translation.request.negative_prompt
    vae = info.get("vae")
    with_image = translation.request.image is not None
    return {
        "prompt": translation.prompt,
        "all_prompts": [translation.prompt] * count,
        "negative_prompt": negative,
        "all_negative_prompts": [negative] * count,
        "seed": seeds[0] if seeds else None,
        "all_seeds": seeds,
        "subseed": -1,
        "all_subseeds": [-1] * count,
        "subseed_strength": 0,
        "width": info.get("width"),
        "height": info.get("height"),
        "sampler_name": sampler,
        "scheduler": schedule,
        "cfg_scale": info.get("guidance_scale"),
        "steps": info.get("steps"),
        "batch_size": translation.batch_size,
        "restore_faces": False,
        "face_restoration_model": None,
        "sd_model_name": infotext.model_name(info.get("model")),
        "sd_model_hash": info.get("model_hash"),
        "sd_vae_name": infotext.model_name(vae) if vae and vae != "default" else None,
        "sd_vae_hash": None,
        "seed_resize_from_w": -1,
        "seed_resize_from_h": -1,
        "denoising_strength": translation.request.strength if with_image else None,
        "extra_generation_params": {"Schedule type": schedule, "RNG": "CPU", **translation.extra},
        "index_of_first_image": 0,
        "infotexts": [parameters_text(info, i) for i in range(count)],
        "styles": [],
        "job_timestamp": time.strftime("%Y%m%d%H%M%S"),
        "clip_skip": 1,
        "is_using_inpainting_conditioning": inpainting_unet,
        "version": infotext.VERSION,
        "diffusion_studio": {**info, "warnings": [*info.get("warnings", []), *translation.notes]},
    }


def schedule_types() -> list[dict[str, Any]]:
    """GET /sdapi/v1/schedulers: A1111's schedule types that the catalog runs (and Automatic, each sampler's own)."""
    return [
        {
            "name": label.lower(),
            "label": label,
            "aliases": None,
            "default_rho": 7.0 if label == "Karras" else -1.0,
            "need_inner_model": label == "Uniform",
        }
        for label in _A1111_SCHEDULE_NAMES
    ]


def samplers(studio: Studio) -> list[dict[str, Any]]:
    """GET /sdapi/v1/samplers: the A1111 samplers the loaded checkpoint can run, each once."""
    found: dict[str, dict[str, Any]] = {}
    for sampler, _schedule, _name in a1111_pairs(studio):
        automatic = schedulers.A1111_AUTOMATIC.get(sampler)
        found.setdefault(sampler, {"name": sampler, "aliases": [], "options": {"scheduler": automatic.lower()}
                                   if automatic else {}})  # fmt: skip
    return list(found.values())


def png_info_parameters(found: dict[str, Any]) -> dict[str, Any]:
    """What A1111's png-info puts under `parameters`: the infotext's fields by A1111's names, as text."""
    fields, other = found.get("fields") or {}, found.get("other") or {}
    names = {"steps": "Steps", "guidance_scale": "CFG scale", "seed": "Seed", "strength": "Denoising strength"}
    parameters: dict[str, Any] = {
        "Prompt": fields.get("prompt", ""),
        "Negative prompt": fields.get("negative_prompt", ""),
        **{label: str(fields[key]) for key, label in names.items() if key in fields},
    }
    if "width" in fields and "height" in fields:
        parameters.update({"Size-1": str(fields["width"]), "Size-2": str(fields["height"])})
    entry = schedulers.choice(fields.get("scheduler") or "")
    if entry is not None:
        parameters["Sampler"], parameters["Schedule type"] = entry.a1111
    parameters.update({key: str(value) for key, value in other.items()})
    return parameters
