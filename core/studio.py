"""The Studio: the one object the UI talks to. It owns the pool and turns requests into images."""

from __future__ import annotations

import dataclasses
import gc
import json
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import diffusers
import torch
from diffusers import DiffusionPipeline

from core import checkpoints, devices, schedulers
from core.checkpoints import DEFAULT_VARIANT, CheckpointFiles
from core.errors import InvalidRequest, LoadError, NotLoaded, StudioError
from core.generation import GenerationRequest, GenerationResult, Limits, reproduction_code
from core.outputs import OutputStore
from core.pool import Pool
from core.tasks import TASKS, get_task

logger = logging.getLogger(__name__)

StepCallback = Callable[[int, int], None]  # (steps done, steps in all)
_VAE_CLASSES = ("AutoencoderKL", "AutoencoderTiny", "AsymmetricAutoencoderKL", "ConsistencyDecoderVAE")


@dataclasses.dataclass(frozen=True)
class StudioOptions:
    """How the engine runs; built once by the entry point from flags and environment."""

    device: str = "auto"
    outputs_dir: Path | None = None
    cache_dir: Path | None = None  # where the demo checkpoint is written; None: $DIFFUSION_STUDIO_CACHE or ~/.cache
    offline: bool = False
    allow_unsafe: bool = False  # allow pickle (.bin) weights from local folders
    public: bool = False
    limits: Limits = dataclasses.field(default_factory=Limits)
    allowed_models: tuple[str, ...] | None = None  # public mode: only these sources load
    allowed_vaes: tuple[str, ...] | None = None


class Studio:
    """One loaded checkpoint at a time, serving every task from one pool of components."""

    def __init__(self, options: StudioOptions | None = None) -> None:
        self.options = options or StudioOptions()
        self.device = devices.resolve_device(self.options.device)
        self.outputs = OutputStore(self.options.outputs_dir) if self.options.outputs_dir else None
        self._pool: Pool | None = None
        # Loads and VAE swaps replace the pool as a whole (a new Pool object); a generation takes the pool it
        # started with, so it never sees half of one. The lock only keeps two loads from running at once.
        self._load_lock = threading.Lock()
        self.loading: str | None = None  # the source being loaded right now, for status lines

    # -- loading -----------------------------------------------------------------------------------------

    @property
    def pool(self) -> Pool:
        """The loaded pool; `NotLoaded` if nothing is loaded yet."""
        if self._pool is None:
            if self.loading:
                raise NotLoaded(f"{self.loading!r} is still loading; try again when the status line says it's ready.")
            raise NotLoaded("No checkpoint is loaded yet: load one (a Hub id, a local folder, or `demo`).")
        return self._pool

    @property
    def is_loaded(self) -> bool:
        return self._pool is not None

    def load(self, source: str, variant: str = "auto", dtype: str = "auto") -> dict[str, Any]:
        """Load a checkpoint into a new pool; on any failure the previous pool stays loaded and serving."""
        self._check_allowed(source, self.options.allowed_models, "checkpoints")
        with self._load_lock:
            started = time.perf_counter()
            self.loading = source
            try:
                torch_dtype = devices.resolve_dtype(dtype, self.device)
                files = checkpoints.resolve(source, demo_dir=self.options.cache_dir, offline=self.options.offline)
                chosen = self._choose_variant(files, variant, torch_dtype)
                base = self._load_pipeline(files, chosen, torch_dtype)
            finally:
                self.loading = None
            pool = Pool(files, base, chosen, torch_dtype, self.device, time.perf_counter() - started)
            if not pool.task_classes:
                raise LoadError(
                    f"{source!r} is a {files.pipeline_class}, which none of the studio's tasks "
                    f"({', '.join(TASKS)}) can run. Load a text-to-image checkpoint such as Stable Diffusion."
                )
            self._replace_pool(pool)
            return self.model_info()

    @staticmethod
    def _check_allowed(source: str, allowed: tuple[str, ...] | None, what: str) -> None:
        if allowed is not None and source.strip() not in allowed:
            raise InvalidRequest(f"This public server only loads these {what}: {', '.join(allowed)}.")

    def _choose_variant(self, files: CheckpointFiles, variant: str, dtype: torch.dtype) -> str:
        if variant not in checkpoints.VARIANT_CHOICES and variant not in files.variants:
            raise InvalidRequest(
                f"Unknown variant {variant!r}; choose one of {', '.join(checkpoints.VARIANT_CHOICES)}."
            )
        if variant == "auto":
            half = dtype in (torch.float16, torch.bfloat16)
            if half and "fp16" in files.variants:
                return "fp16"  # half the bytes to read, and the dtype it is cast to loses nothing more
            return DEFAULT_VARIANT if DEFAULT_VARIANT in files.variants or not files.variants else files.variants[0]
        if variant not in files.variants:
            raise LoadError(
                f"{files.source!r} has no {variant!r} variant. It has: {', '.join(files.variants) or 'no weights'}. "
                "Pick one of those, or `auto`."
            )
        return variant

    def _load_pipeline(self, files: CheckpointFiles, variant: str, dtype: torch.dtype) -> DiffusionPipeline:
        use_safetensors = True
        if not files.has_safetensors and files.has_pickle:
            if not (self.options.allow_unsafe and not files.is_hub and not self.options.public):
                raise LoadError(
                    f"{files.source!r} has only pickle (.bin/.ckpt) weights, which can run arbitrary code when "
                    "loaded. Use a safetensors copy of it, or, for a local folder you trust, start the app with "
                    "--allow-unsafe."
                )
            use_safetensors = False
        location = files.source if files.is_hub else str(files.path)
        try:
            base = DiffusionPipeline.from_pretrained(
                location,
                dtype=dtype,
                variant=None if variant == DEFAULT_VARIANT else variant,
                use_safetensors=use_safetensors,
                local_files_only=self.options.offline,
            )
            return base.to(self.device)
        except torch.OutOfMemoryError as e:
            raise LoadError(
                f"Not enough {self.device.type} memory to load {files.source!r} in {devices.dtype_name(dtype)}. "
                "Try a half-precision dtype, the fp16 variant, or a smaller checkpoint."
            ) from e
        except StudioError:
            raise
        except Exception as e:  # any library failure here means "this checkpoint can't be loaded"
            raise LoadError(
                f"Loading {files.source!r} ({variant} weights) failed: {type(e).__name__}: {e}. "
                "If a weight file is damaged, delete it (or its cache entry) and load again."
            ) from e

    def _replace_pool(self, pool: Pool) -> None:
        old, self._pool = self._pool, pool
        del old
        gc.collect()
        devices.release_cached_memory(self.device)

    def set_vae(self, source: str) -> dict[str, Any]:
        """Use the VAE at `source` (Hub id or folder, with or without a `vae` subfolder), or `default` for the
        checkpoint's own, in every task; the VAE it replaces is released."""
        source = source.strip() or "default"
        if source != "default":
            self._check_allowed(source, self.options.allowed_vaes, "VAEs")
        with self._load_lock:
            pool = self.pool
            if source == pool.vae_source:
                return self.model_info()
            if source == "default":
                vae = self._load_vae(str(pool.files.path), "vae", pool, label="the checkpoint's own VAE")
            else:
                vae = self._load_vae_from(source, pool)
            base = type(pool.base).from_pipe(pool.base, vae=vae.to(self.device), dtype=pool.dtype)
            new_pool = dataclasses.replace(pool, base=base, vae_source=source)
            del pool, base, vae
            self._replace_pool(new_pool)
            return self.model_info()

    def _load_vae_from(self, source: str, pool: Pool) -> torch.nn.Module:
        path = Path(source).expanduser()
        if path.is_dir():
            for folder, subfolder in ((path, None), (path / "vae", "vae")):
                if (folder / "config.json").is_file():
                    return self._load_vae(str(path), subfolder, pool, label=source)
            raise LoadError(f"{source!r} holds no VAE: there is no config.json in it or in a `vae` subfolder.")
        if not checkpoints.looks_like_repo_id(source):
            raise LoadError(f"{source!r} is neither a folder nor a Hub id (org/name); give the VAE's folder or id.")
        folder, names = checkpoints.hub_file_names(source, offline=self.options.offline)
        del folder
        subfolder = None if "config.json" in names else "vae" if "vae/config.json" in names else ""
        if subfolder == "":
            raise LoadError(f"The Hub repo {source!r} holds no VAE (no config.json at its root or in `vae/`).")
        return self._load_vae(source, subfolder, pool, label=source)

    def _load_vae(self, location: str, subfolder: str | None, pool: Pool, *, label: str) -> torch.nn.Module:
        try:
            config = diffusers.AutoencoderKL.load_config(
                location, subfolder=subfolder, local_files_only=self.options.offline
            )
            class_name = config.get("_class_name", "AutoencoderKL")
            if class_name not in _VAE_CLASSES:
                raise LoadError(f"{label!r} is a {class_name}, not a VAE ({', '.join(_VAE_CLASSES)}).")
            cls = getattr(diffusers, class_name)
            variant = pool.variant if pool.variant != DEFAULT_VARIANT else None
            try:
                return cls.from_pretrained(
                    location,
                    subfolder=subfolder,
                    dtype=pool.dtype,
                    variant=variant,
                    use_safetensors=True,
                    local_files_only=self.options.offline,
                )
            except (OSError, ValueError):
                if variant is None:
                    raise
                # This VAE has no file for the checkpoint's variant: its default weights, cast, are the same VAE.
                return cls.from_pretrained(
                    location,
                    subfolder=subfolder,
                    dtype=pool.dtype,
                    use_safetensors=True,
                    local_files_only=self.options.offline,
                )
        except StudioError:
            raise
        except Exception as e:  # any library failure here means "this VAE can't be loaded"
            raise LoadError(f"Loading the VAE {label!r} failed: {type(e).__name__}: {e}") from e

    # -- generating --------------------------------------------------------------------------------------

    def generate(
        self,
        request: GenerationRequest,
        *,
        session: str = "local",
        on_step: StepCallback | None = None,
        cancel: threading.Event | None = None,
    ) -> GenerationResult:
        """Run one request on the loaded pool and return its images and info (saved first, if outputs is set)."""
        pool = self.pool
        task = get_task(request.task)
        if not pool.supports(task.name):
            raise NotLoaded(f"The loaded {pool.files.pipeline_class} can't do {task.label}.")
        if self.options.public and not request.safety_checker and pool.has_safety_checker:
            raise InvalidRequest("The safety checker can't be turned off on a public server.")
        request.validate(self.options.limits, size_multiple=pool.base.vae_scale_factor)
        seeds = request.resolved_seeds()
        started = time.perf_counter()
        scheduler = schedulers.build(request.scheduler, pool.base.scheduler)
        run_checker = request.safety_checker and pool.has_safety_checker
        pipe = pool.view(task, scheduler=scheduler, safety_checker=run_checker)
        switched = time.perf_counter()

        def step_end(pipe: DiffusionPipeline, step: int, timestep: Any, tensors: dict) -> dict:
            if on_step is not None:
                on_step(step + 1, pipe.num_timesteps)
            if cancel is not None and cancel.is_set():
                pipe._interrupt = True  # the documented way: the denoising loop skips its remaining steps
            return tensors

        output = pipe(
            **self._call_arguments(request, pool),
            num_inference_steps=request.steps,
            guidance_scale=request.guidance_scale,
            num_images_per_prompt=request.num_images,
            generator=[torch.Generator("cpu").manual_seed(s) for s in seeds],
            callback_on_step_end=step_end,
        )
        finished = time.perf_counter()
        images = list(output.images)
        nsfw = getattr(output, "nsfw_content_detected", None) if run_checker else None
        info = self._info(pool, request, pipe, seeds, images, nsfw)
        info["interrupted"] = bool(cancel is not None and cancel.is_set())
        info["timings"] = {
            "switch_ms": round((switched - started) * 1000, 2),
            "generate_ms": round((finished - switched) * 1000, 2),
            "total_ms": round((finished - started) * 1000, 2),
        }
        cls, overrides = schedulers.resolve(request.scheduler, pool.base.scheduler)
        info["code"] = reproduction_code(info, scheduler_class=cls.__name__, scheduler_overrides=overrides)
        paths = self.outputs.save(images, info, session) if self.outputs else []
        return GenerationResult(images=images, info=info, paths=paths)

    def _call_arguments(self, request: GenerationRequest, pool: Pool) -> dict[str, Any]:
        args: dict[str, Any] = {"prompt": request.prompt, "negative_prompt": request.negative_prompt or None}
        if request.task == "text2img":
            args.update(width=request.width, height=request.height)
            return args
        image = request.image.convert("RGB")
        args.update(image=image, strength=request.strength)
        if request.task == "inpaint":
            # The inpaint pipeline defaults to the UNet's native size, not the image's; keep the image's.
            multiple = pool.base.vae_scale_factor
            args.update(
                mask_image=request.mask.convert("L"),
                width=image.width - image.width % multiple,
                height=image.height - image.height % multiple,
            )
        return args

    def _info(
        self,
        pool: Pool,
        request: GenerationRequest,
        pipe: DiffusionPipeline,
        seeds: list[int],
        images: list,
        nsfw: list[bool] | None,
    ) -> dict[str, Any]:
        width, height = images[0].size
        info: dict[str, Any] = {
            "task": request.task,
            "pipeline": type(pipe).__name__,
            "model": pool.files.source,
            "model_path": pool.files.source if pool.files.is_hub else str(pool.files.path),
            "variant": pool.variant,
            "dtype": devices.dtype_name(pool.dtype),
            "device": str(self.device),
            "vae": pool.vae_source,
            "vae_path": pool.vae_source,
            "has_safety_checker": pool.has_safety_checker,
            "scheduler": request.scheduler,
            "scheduler_class": type(pipe.scheduler).__name__,
            "prompt": request.prompt,
            "negative_prompt": request.negative_prompt,
            "seeds": seeds,
            "steps": request.steps,
            "guidance_scale": request.guidance_scale,
            "width": width,
            "height": height,
            "num_images": len(images),
            "nsfw": [bool(x) for x in nsfw] if nsfw is not None else None,
            "warnings": self._prompt_warnings(pool, request),
        }
        if get_task(request.task).needs_image:
            info["strength"] = request.strength
        return info

    def _prompt_warnings(self, pool: Pool, request: GenerationRequest) -> list[str]:
        tokenizer = pool.components.get("tokenizer")
        if tokenizer is None:
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

    # -- reporting ---------------------------------------------------------------------------------------

    def scheduler_names(self) -> list[str]:
        """The scheduler names that work with the loaded checkpoint."""
        return schedulers.compatible_names(self.pool.base.scheduler)

    def model_info(self) -> dict[str, Any]:
        """What is loaded: checkpoint, pipeline class, variant(s), dtype, device, tasks, load time."""
        pool = self.pool
        return {
            "model": pool.files.source,
            "model_path": pool.files.source if pool.files.is_hub else str(pool.files.path),
            "pipeline": pool.files.pipeline_class,
            "variant": pool.variant,
            "variants": list(pool.files.variants),
            "dtype": devices.dtype_name(pool.dtype),
            "device": str(self.device),
            "vae": pool.vae_source,
            "safety_checker": pool.has_safety_checker,
            "tasks": list(pool.task_classes),
            "task_pipelines": {task: cls.__name__ for task, cls in pool.task_classes.items()},
            "schedulers": self.scheduler_names(),
            "load_seconds": round(pool.load_seconds, 3),
            "is_demo": pool.files.source == checkpoints.DEMO,
        }

    def memory_report(self) -> dict[str, Any]:
        """Device memory now, and the pool's components with their sizes and the tasks that share them."""
        report = dataclasses.asdict(devices.read_memory(self.device))
        pool = self._pool
        report["pool_bytes"] = pool.unique_bytes() if pool else 0
        report["naive_bytes"] = pool.naive_bytes() if pool else 0
        report["components"] = pool.component_rows() if pool else []
        report["model"] = pool.files.source if pool else None
        return report

    def inspect(self) -> dict[str, Any]:
        """The loaded checkpoint explained: model_index.json, components with parameter counts, files."""
        pool = self.pool
        rows = pool.component_rows()
        for row in rows:
            module = pool.components[row["name"]]
            row["library"] = type(module).__module__.split(".")[0]
            row["parameters"] = (
                sum(p.numel() for p in module.parameters()) if isinstance(module, torch.nn.Module) else 0
            )
        return {
            "model_index": pool.files.model_index,
            "pipeline": type(pool.base).__name__,
            "components": rows,
            "files": checkpoints.file_tree(pool.files),
            "schedulers": self.scheduler_names(),
            "model_index_json": json.dumps(pool.files.model_index, indent=2),
        }
