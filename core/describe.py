"""Describing a run: its `info` (DESIGN.md, "Public surfaces") and the diffusers-only script that repeats it."""

from __future__ import annotations

import dataclasses
import json
from typing import TYPE_CHECKING, Any

import torch
from diffusers import DiffusionPipeline

from core import checkpoints, devices, few_step, infotext, schedulers, step_cache
from core.checkpoints import compat, loading
from core.generation import GenerationRequest
from core.pool import Pool, component_row
from core.snippet import Code, Snippet, generators
from core.tasks import TASKS, Serving, Task, family_of, get_task
from core.tasks.pipeline import SPEC as PIPELINE_SPEC
from core.tasks.pipeline import pool_signature

if TYPE_CHECKING:
    from core.studio import Studio


PIPELINE_TASK = PIPELINE_SPEC.name


def model_info(studio: Studio) -> dict[str, Any]:
    """What is loaded: checkpoint, pipeline class, variant(s), dtype, device, tasks, load time."""
    pool = studio.pool
    return {
        "model": pool.files.source,
        "model_path": None if studio.options.public else _model_path(pool),  # no server paths to the public
        "pipeline": pool.files.pipeline_class,
        "variant": pool.variant,
        "variants": list(pool.files.variants),
        "dtype": devices.dtype_name(pool.dtype),
        "device": str(studio.device),
        "vae": pool.vae_source,
        "safety_checker": pool.has_safety_checker,
        "tasks": list(pool.task_classes),
        "task_pipelines": {task: cls.__name__ for task, cls in pool.task_classes.items()},
        "schedulers": studio.scheduler_names(),
        "load_seconds": round(pool.load_seconds, 3),
        "default_size": pool.default_size,
        "size_multiple": pool.size_multiple,
        "options": [name for name in ("sag", "pag") if pool.supports(name)]
        + (["refiner"] if family_of(type(pool.base).__name__) == "stable-diffusion-xl" else [])
        + (["step_cache"] if step_cache.supports(pool.components.get("unet"), pool.family) else []),
        "is_demo": pool.files.source == checkpoints.DEMO,
        "compiled": studio.compiled,
        "few_step": fast.as_dict() if (fast := studio.few_step()) is not None else None,
        "adapters": {
            "loras": list(studio.loras.loras),
            "ip_adapter": studio.ip_adapter.source if studio.ip_adapter is not None else None,
        },
        # The Pipeline tab's reading of the pipeline's __call__ (core.signature), where that tab serves it.
        "signature": pool_signature(pool).as_dict() if pool.supports(PIPELINE_TASK) else None,
    }


def run_info(
    studio: Studio,
    pool: Pool,
    request: GenerationRequest,
    pipe: DiffusionPipeline,
    seeds: list[int],
    images: list,
    nsfw: list[bool] | None,
    serving: Serving,
) -> dict[str, Any]:
    """The `info` of a finished run (without timings and code, which the caller adds)."""
    width, height = images[0].size if images else (request.width, request.height)
    # What AUTOMATIC1111 calls the scheduler that ran (for `default` too): its infotext's two fields.
    sampler, schedule_type = infotext.sampler_and_schedule(pipe.components.get("scheduler"))
    info: dict[str, Any] = {
        "task": request.task,
        "pipeline": diffusers_class(pipe),
        "model": pool.files.source,
        "model_path": None if studio.options.public else _model_path(pool),
        "variant": pool.variant,
        "dtype": devices.dtype_name(pool.dtype),
        "device": str(studio.device),
        "vae": pool.vae_source,
        "scheduler": request.scheduler,
        "scheduler_class": type(pipe.scheduler).__name__ if "scheduler" in pipe.components else None,
        "sampler": sampler,
        "schedule_type": schedule_type,
        "prompt": request.prompt,
        "negative_prompt": request.negative_prompt,
        "seeds": seeds,
        "steps": request.steps,
        "guidance_scale": request.guidance_scale,
        "width": width,
        "height": height,
        "num_images": len(images),
        "nsfw": [bool(x) for x in nsfw] if nsfw is not None else None,
        "warnings": prompt_warnings(pool, request)
        + black_image_warnings(pool, images, nsfw)
        + (few_step.warnings(studio.few_step(), request.steps, request.guidance_scale) if pool is studio.pool else []),
    }
    task = get_task(request.task)
    info.update(task.info_fields(request, serving))
    if request.step_cache > step_cache.OFF:
        info["step_cache"] = request.step_cache
    if request.tiny_decode and serving.tiny_vae is not None:
        info["tiny_vae"] = serving.tiny_vae.source
    info["model_hash"] = infotext.model_hash(pool.files.single_file)
    if pool is studio.pool and task.lora_applies and studio.loras.loras:
        info["loras"] = [
            {
                "name": infotext.lora_name(lora),
                "adapter": lora.name,
                "source": lora.source,
                "weight": lora.weight,
                "hash": infotext.lora_hash(lora),
            }
            for lora in studio.loras.loras.values()
        ]
    if studio.memory.modes.active:
        info["memory_modes"] = studio.memory.modes.as_dict()
    return info


def run_snippet(
    studio: Studio,
    pool: Pool,
    task: Task,
    request: GenerationRequest,
    pipe: DiffusionPipeline,
    arguments: dict[str, Any],
    seeds: list[int],
    serving: Serving,
) -> Snippet:
    """The script that makes the run again with diffusers alone: the whole batch, with the same generators."""
    cls, overrides = schedulers.resolve(request.scheduler, pool.components.get("scheduler"), type(pool.base))
    counts = ("num_images_per_prompt", "num_videos_per_prompt")
    call = {k: v for k, v in arguments.items() if k not in ("generator", "depth_map", *counts)}
    call["generator"] = generators(seeds)
    if len(seeds) > 1:  # a batch is made again as a batch: single calls round differently (see core.snippet)
        call.update({k: arguments[k] for k in counts if k in arguments})
    if "depth_map" in arguments and request.depth_map is not None:
        call["depth_map"] = request.depth_map
    load: dict[str, Any] = {}
    if pool.variant != "default":
        load["variant"] = pool.variant
    optional = set(getattr(type(pool.base), "_optional_components", []))
    for name, spec in pool.files.model_index.items():  # required but absent, e.g. SD3 without its T5 encoder
        if isinstance(spec, list) and spec and spec[0] is None and name not in optional:
            load[name] = None
    if "safety_checker" in pool.components and pipe.components.get("safety_checker") is None:
        load["safety_checker"] = None
    snippet = Snippet(
        pipeline_class=task.snippet_class(pool, request, pipe),
        model_path=pool.files.source if pool.files.is_hub else str(pool.files.path),
        dtype=devices.dtype_name(pool.dtype),
        device=str(studio.device),
        scheduler_class=cls.__name__ if cls is not None else "",
        scheduler_overrides=overrides,
        load_arguments=load,
        call_arguments=call,
        output=task.output,
        count=len(seeds),
    )
    for library, module in loading.moved_libraries(pool.files).items():
        # A fresh process has no alias: diffusers won't import a library just because model_index.json names it.
        snippet.before_load += [
            f"import {module}",
            f"# the checkpoint names its library `{library}`, which diffusers has since moved",
            f"{module.rsplit('.', 2)[0]}.{library} = {module}",
        ]
    if pool.files.single_file is not None:
        _single_file(snippet, pool, pipe, load)
    snippet.after_load += compat.snippet_lines(pool.files.pipeline_class)
    replaced = compat.snippet_replacements(
        pool.files.model_index, pool.files.pipeline_class, snippet.model_path, snippet.dtype
    )
    if replaced and pool.files.single_file is None:
        snippet.before_load += replaced
        load["language_model"] = Code("language_model")
    if pool.vae_source != "default":
        snippet.imports.append("AutoencoderKL")
        snippet.before_load.append(
            f"vae = AutoencoderKL.from_pretrained({pool.vae_source!r}, dtype=torch.{snippet.dtype})"
        )
        load["vae"] = Code("vae")
    if pool is studio.pool:
        snippet.after_load += studio.loras.snippet_lines()
        if studio.ip_adapter is not None:
            snippet.after_load += studio.ip_adapter.snippet_lines()
    task.add_to_snippet(snippet, request, seeds, serving, load)
    if studio.compiled and pool is studio.pool:
        name = "unet" if "unet" in pool.components else "transformer"
        snippet.after_load.append(f"pipe.{name}.compile_repeated_blocks()  # regional torch.compile, as the studio ran")
    snippet.after_load += step_cache.snippet_lines(request.step_cache)
    if request.tiny_decode and serving.tiny_vae is not None:
        snippet.imports.append("AutoencoderTiny")
        source = serving.tiny_vae.source
        if source == "demo-tiny-vae":
            from core.demo.companions import companion_path

            source = str(companion_path("tiny_vae", serving.cache_dir))
        load = f"AutoencoderTiny.from_pretrained({source!r}, dtype=torch.{snippet.dtype})"
        snippet.after_load.append(f"pipe.vae = {load}.to({snippet.device!r})")
    return snippet


def diffusers_class(pipe: DiffusionPipeline) -> str:
    """The diffusers class `pipe` is, or extends (a task's own subclass, e.g. Pix2Pix Zero's with its inversion)."""
    return next(c.__name__ for c in type(pipe).__mro__ if c.__module__.startswith("diffusers."))


def _model_path(pool: Pool) -> str:
    if pool.files.single_file is not None:
        return str(pool.files.single_file)
    return pool.files.source if pool.files.is_hub else str(pool.files.path)


def _single_file(snippet: Snippet, pool: Pool, pipe: DiffusionPipeline, load: dict[str, Any]) -> None:
    """A single-file checkpoint: loaded with its config; its safety checker (never in the file) from there too."""
    snippet.single_file, snippet.base_class = str(pool.files.single_file), pool.files.pipeline_class
    snippet.model_path = pool.files.config_source or str(pool.files.path)
    if snippet.pipeline_class != snippet.base_class:
        snippet.imports.append(snippet.base_class)
    if pipe.components.get("safety_checker") is not None:
        snippet.before_load.append(
            "from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker"
        )
        snippet.before_load.append(
            f"safety_checker = StableDiffusionSafetyChecker.from_pretrained({snippet.model_path!r}, "
            f"subfolder='safety_checker', dtype=torch.{snippet.dtype})"
        )
        load["safety_checker"] = Code("safety_checker")


def black_image_warnings(pool: Pool, images: list, nsfw: list[bool] | None) -> list[str]:
    """A warning when an image came out all black without the safety checker blacking it out: the sign of a VAE
    overflowing in float16 (NaNs become black pixels)."""
    flagged = nsfw or [False] * len(images)
    black = [
        i + 1
        for i, image in enumerate(images)
        if hasattr(image, "getextrema") and max(high for _low, high in _extrema(image)) == 0 and not flagged[i]
    ]
    if not black:
        return []
    hint = (
        "in float16 some VAEs overflow (SDXL's does): pick an fp16-fixed VAE (e.g. madebyollin/sdxl-vae-fp16-fix), "
        "or load with dtype bfloat16 or float32"
        if pool.dtype == torch.float16
        else "check the VAE and the prompt"
    )
    return [f"Image {', '.join(map(str, black))} came out all black; {hint}."]


def _extrema(image: Any) -> list[tuple[int, int]]:
    extrema = image.getextrema()
    return [extrema] if isinstance(extrema[0], (int, float)) else list(extrema)


def prompt_warnings(pool: Pool, request: GenerationRequest) -> list[str]:
    """A warning for each prompt longer than the text encoder reads."""
    tokenizer = pool.thread_tokenizers().get("tokenizer")
    if tokenizer is None or not get_task(request.task).uses_prompt:
        return []
    warnings = []
    limit = tokenizer.model_max_length
    for label, text in (("prompt", request.prompt), ("negative prompt", request.negative_prompt)):
        count = len(tokenizer(text, truncation=False).input_ids) if text else 0
        if count > limit:
            warnings.append(
                f"The {label} is {count} tokens; the text encoder reads only the first {limit}, "
                "so the rest was ignored. Shorten it or put what matters first."
            )
    return warnings


def memory_report(studio: Studio) -> dict[str, Any]:
    """Device memory now, and every component in the pool (main checkpoint, companions, adapters) with its
    size and the tasks that share it."""
    report = dataclasses.asdict(devices.read_memory(studio.device))
    pools = studio.loaded_pools()
    holders: dict[int, set[str]] = {}  # module -> the loaded checkpoints that hold it
    for pool in pools:
        for module in pool.components.values():
            holders.setdefault(id(module), set()).add(pool.files.source)
    rows, seen, unique = [], set(), 0
    for pool in pools:
        for row in pool.component_rows():
            module = pool.components[row["name"]]
            row["checkpoint"] = pool.files.source
            row["shared_with"] = sorted(holders[id(module)] - {pool.files.source})
            if pool.companion_kind:
                row["name"] = f"{pool.companion_kind}/{row['name']}"
            if id(module) not in seen:  # a module two checkpoints share is counted once
                seen.add(id(module))
                unique += row["bytes"]
            rows.append(row)
    if studio.motion is not None:
        motion_rows = _motion_rows(studio)
        rows += motion_rows
        unique += sum(row["bytes"] for row in motion_rows)
    if studio.tiny_vae is not None:  # every task's previews use it; text2img also decodes with it
        row = {**component_row("tiny_vae", studio.tiny_vae.vae, list(TASKS)), "checkpoint": studio.tiny_vae.source}
        rows.append(row)
        unique += row["bytes"]
    module_rows = _control_rows(studio)
    rows += module_rows
    unique += sum(row["bytes"] for row in module_rows)
    report["pool_bytes"] = unique
    report["memory_modes"] = studio.memory.modes.as_dict()
    report["naive_bytes"] = sum(pool.naive_bytes() for pool in pools) + sum(
        row["bytes"] for row in rows if row["name"].startswith("motion")
    )
    # A control run loaded on its own is the whole base checkpoint plus the control module.
    if studio.controls and studio.is_loaded:
        report["naive_bytes"] += sum(row["bytes"] for row in module_rows)
    report["components"] = rows
    report["model"] = studio.pool.files.source if studio.is_loaded else None
    return report


def _motion_rows(studio: Studio) -> list[dict[str, Any]]:
    motion = studio.motion
    users = [name for name, task in TASKS.items() if "motion_adapter" in task.companions]
    modules = (("motion_adapter", motion.adapter), ("motion_unet", motion.motion_unet))
    return [
        {**component_row(name, module, users), "checkpoint": motion.source}
        for name, module in modules
        if module is not None
    ]


def _control_rows(studio: Studio) -> list[dict[str, Any]]:
    """The control modules in their slots, and the depth estimator that makes depth maps when it is loaded on its
    own (the depth companion's is listed with that companion)."""
    users = [name for name, task in TASKS.items() if any(slot in task.companions for slot in studio.controls)]
    rows = [
        {**component_row(slot, model.module, users), "checkpoint": model.source}
        for slot, model in studio.controls.items()
    ]
    rows += [  # ControlNet-XS runs a fused copy of the UNet: held while both are loaded
        {**component_row(f"{slot}/fused_unet", model.fused, users), "checkpoint": model.source}
        for slot, model in studio.controls.items()
        if model.fused is not None
    ]
    if studio.map_estimator is not None and studio.companion("depth") is None:
        rows.append({**component_row("depth_estimator", studio.map_estimator[0], users), "checkpoint": "depth map"})
    return rows


def inspect(studio: Studio) -> dict[str, Any]:
    """The loaded checkpoint explained: model_index.json, components with parameter counts, files."""
    pool = studio.pool
    rows = pool.component_rows()
    for row in rows:
        module = pool.components[row["name"]]
        row["library"] = type(module).__module__.split(".")[0]
        row["parameters"] = sum(p.numel() for p in module.parameters()) if isinstance(module, torch.nn.Module) else 0
    return {
        "model_index": pool.files.model_index,
        "pipeline": type(pool.base).__name__,
        "components": rows,
        "files": checkpoints.file_tree(pool.files),
        "schedulers": studio.scheduler_names(),
        "model_index_json": json.dumps(pool.files.model_index, indent=2),
    }
