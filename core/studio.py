"""The Studio: the one object the UI talks to. It owns the pool and turns requests into images."""

from __future__ import annotations

import dataclasses
import gc
import logging
import threading
import time
from typing import Any

import torch
from diffusers import DiffusionPipeline

from core import (
    adapters,
    checkpoint_tools,
    checkpoints,
    compile_mode,
    control,
    describe,
    devices,
    few_step,
    infotext,
    memory_modes,
    previews,
    schedulers,
)
from core.adapters import IpAdapter, LoraSet, MotionAdapterState
from core.checkpoints import fingerprints, hub, loading, single_file
from core.errors import InvalidRequest, LoadError, NotLoaded, OutOfMemory
from core.few_step import FewStep
from core.outputs import OutputStore
from core.pool import Pool
from core.running import RunsRequests
from core.settings import StudioOptions  # where the options live; here too for the engine's callers
from core.tasks import COMPANION_PIPELINES, TASKS, views_over

logger = logging.getLogger(__name__)
# Companions that are modules joining the main pool rather than checkpoints of their own.
MODULE_COMPANIONS = ("motion_adapter", "tiny_vae", *control.SLOTS)
COMPANION_KINDS = (*COMPANION_PIPELINES, *MODULE_COMPANIONS)


def signature_only(pipeline_class: str) -> bool:
    """Whether the Pipeline tab (built from the signature) serves a checkpoint of this class: no spec vouches for its
    own call (a task beside the tab may run over it, as video to video over text to video)."""
    return any(view in TASKS and TASKS[view].kind == "signature" for view in views_over(pipeline_class))


def _check_pipeline_class(source: str, name: str) -> None:
    """Refuse, saying why, a checkpoint whose class `DiffusionPipeline.from_pretrained` can't build: one diffusers
    doesn't export (diffusers.experimental's value-guided planner: an agent's actions in a gym environment that no
    checkpoint carries, not images or sound)."""
    import diffusers
    from diffusers import DiffusionPipeline

    cls = getattr(diffusers, name, None) if isinstance(name, str) else None
    if isinstance(cls, type) and issubclass(cls, DiffusionPipeline):
        return
    import diffusers.experimental

    why = f"{source!r} is a {name}, which diffusers {diffusers.__version__} does not export as a pipeline"
    if isinstance(name, str) and hasattr(diffusers.experimental, name):
        why += (
            " (it is in diffusers.experimental: it plans a reinforcement-learning agent's actions in a gym "
            "environment, which the checkpoint can't carry, and makes no images or sound)"
        )
    raise LoadError(f"{why}. This app loads what `DiffusionPipeline.from_pretrained` loads; pick another checkpoint.")


class Studio(RunsRequests):
    """One loaded checkpoint at a time, serving every task from one pool of components (plus companions).

    The one object the UI talks to: it loads pools and runs requests itself, and hands the adapters
    (core.adapters.Adapters) and the checkpoint tools (core.checkpoint_tools.CheckpointTools) what they use."""

    def __init__(self, options: StudioOptions | None = None) -> None:
        self.options = options or StudioOptions()
        self.device = devices.resolve_device(self.options.device)
        options = self.options
        self.outputs = (
            OutputStore(options.outputs_dir, options.outputs_max_bytes, options.outputs_max_session_bytes)
            if options.outputs_dir
            else None
        )
        self._pool: Pool | None = None
        self._companions: dict[str, Pool] = {}
        self.motion: MotionAdapterState | None = None
        self.tiny_vae: previews.TinyVae | None = None  # live previews' decoder, and text2img's fast decode
        self.compiled = False  # the compiled-UNet mode (core.compile_mode), for every checkpoint loaded after too
        self._compiled_shapes: set[tuple] = set()  # the sizes and batches torch has compiled the denoiser for
        self.controls: dict[str, control.ControlModel] = {}  # ControlNets / T2I-Adapters by slot
        self.map_estimator: tuple[Any, Any] | None = None  # (DPT model, its processor) for the depth map
        # Loads and VAE swaps replace a pool as a whole (a new Pool object); a generation takes the pool it
        # started with, so it never sees half of one. The lock only keeps two loads from running at once.
        self._load_lock = threading.RLock()  # held by every change to the pool's modules (and by memory_report)
        self._last_report: dict[str, Any] | None = None
        self.loading: str | None = None  # the source being loaded right now, for status lines
        self.adapters = adapters.Adapters(  # LoRA, IP-Adapter
            self.options,
            self._load_lock,
            pool=lambda: self.pool,
            attention_slicing=lambda: self.memory.modes.attention_slicing,
            check_allowed=lambda source: self._check_allowed(source, self.options.allowed_models, "adapters"),
            release=self._release,
        )
        self.memory = memory_modes.ModeState()  # offload, slicing and tiling, kept across loads
        self.tools = checkpoint_tools.CheckpointTools(self.options, self.device, self._load_lock, self._resolve)
        self._hashes = fingerprints.FileHashes()
        self._shared = fingerprints.SharedModules()

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

    def load(
        self, source: str, variant: str = "auto", dtype: str = "auto", on_progress: hub.ProgressFn | None = None
    ) -> dict[str, Any]:
        """Load a checkpoint into a new pool; on any failure the previous pool stays loaded and serving.

        A Hub checkpoint's files of the chosen variant are downloaded first (`on_progress(done, total)` in bytes).
        """
        self._check_allowed(source, self.options.allowed_models, "checkpoints")
        with self._load_lock:
            started = time.perf_counter()
            self.loading = source
            try:  # `loading` is cleared once the new pool serves: the status line never says "nothing loaded" between
                torch_dtype = devices.resolve_dtype(dtype, self.device)
                files = self._resolve(source)
                _check_pipeline_class(source, files.pipeline_class)
                if dtype == "auto" and torch_dtype == torch.bfloat16 and signature_only(files.pipeline_class):
                    # Older pipelines (DDPM, Dance Diffusion, ...) hand the model's tensors to numpy, which has no
                    # bfloat16; where no spec vouches for the pipeline, `auto` on a CPU is float32.
                    torch_dtype = torch.float32
                chosen = loading.choose_variant(files, variant, torch_dtype)
                base = self._load_sharing(files, chosen, torch_dtype, on_progress)
                pool = Pool(files, base, chosen, torch_dtype, self.device, time.perf_counter() - started)
                if not pool.task_classes:
                    raise LoadError(
                        f"{source!r} is a {files.pipeline_class}, which none of the studio's main tasks can run. "
                        "Load a text-to-image checkpoint such as Stable Diffusion (or load it as a companion of a "
                        "task)."
                    )
                self.memory.apply([pool.base], self.memory.modes, self.device)
                if self.compiled and compile_mode.supports(pool.denoiser):
                    compile_mode.compile_unet(pool.denoiser)
                self._pool = pool
                # A1111's model hash is in every run's infotext: a multi-GB file is hashed here, once, not in the
                # first run's time (core.infotext caches it).
                infotext.model_hash(files.single_file)
            finally:
                self.loading = None
            self.adapters.reset()  # they lived on the old pool's modules
            if self.motion is not None:
                self.motion.forget()  # built over the old pool's UNet, a copy of its weights
            # Control modules and the depth-map estimator stay loaded across checkpoints, in the new one's dtype (a
            # float32 ControlNet beside a bfloat16 UNet fails inside the run).
            for model in self.controls.values():
                model.module.to(dtype=torch_dtype)
                model.fused = model.fused_from = None  # ControlNet-XS's copy of the old UNet
            if self.map_estimator is not None:
                self.map_estimator[0].to(dtype=torch_dtype)
            if self.tiny_vae is not None:
                self.tiny_vae.vae.to(dtype=torch_dtype)
            self._release()
            return self.model_info()

    def _load_sharing(
        self,
        files: checkpoints.CheckpointFiles,
        variant: str,
        dtype: torch.dtype,
        on_progress: hub.ProgressFn | None = None,
    ) -> DiffusionPipeline:
        """Load a pipeline, taking every component whose files are identical to one in memory from memory."""
        if files.is_hub:  # only this variant's files, then diffusers reads the snapshot folder, never the Hub
            hub.download(files, variant, on_progress, offline=self.options.offline)
        dtype_name, device = devices.dtype_name(dtype), str(self.device)
        reuse = {}
        folders = files.component_folders
        for name in files.components:
            key = fingerprints.component_fingerprint(folders, name, variant, self._hashes) if folders else None
            module = self._shared.find(key, dtype_name, device) if key else None
            if module is not None:
                reuse[name] = module
        base = loading.load_pipeline(files, variant, dtype, self.device, self.options, reuse=reuse)
        for name in files.components:  # after loading, a Hub checkpoint's weight files are in the cache
            module = base.components.get(name)
            key = fingerprints.component_fingerprint(folders, name, variant, self._hashes) if folders else None
            if key and isinstance(module, torch.nn.Module):
                self._shared.add(key, dtype_name, device, module)
        return base

    def _resolve(self, source: str) -> checkpoints.CheckpointFiles:
        return checkpoints.resolve(source, demo_dir=self.options.cache_dir, offline=self.options.offline)

    @staticmethod
    def _check_allowed(source: str, allowed: tuple[str, ...] | None, what: str) -> None:
        if allowed is not None and source.strip() not in allowed:
            raise InvalidRequest(f"This public server only loads these {what}: {', '.join(allowed)}.")

    def _release(self) -> None:
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
            label = "the checkpoint's own VAE" if source == "default" else source
            vae = base = None
            try:
                vae = self._load_vae(source, pool, label)
                base = type(pool.base).from_pipe(pool.base, vae=vae.to(self.device), dtype=pool.dtype)
            except torch.OutOfMemoryError:
                pass  # handled below, outside the except: its traceback would keep the half-loaded VAE alive
            if base is None:
                vae = None
                self._release()
                raise OutOfMemory(
                    f"Not enough {self.device.type} memory to load {label}; the current VAE stays in use. Free some "
                    "(unload a companion or an adapter, or turn on a memory mode such as model offload) and retry."
                )
            self.memory.apply([base], self.memory.modes, self.device)
            self._pool = dataclasses.replace(pool, base=base, vae_source=source)
            del pool, base, vae
            self._release()
            return self.model_info()

    def _load_vae(self, source: str, pool: Pool, label: str) -> torch.nn.Module:
        if source == "default" and pool.files.single_file is not None:
            return single_file.load_vae(pool.files, pool.dtype)
        if source == "default":
            location, subfolder = str(pool.files.path), "vae"
        else:
            location, subfolder = loading.find_vae(source, self.options)
        return loading.load_vae(
            location, subfolder, variant=pool.variant, dtype=pool.dtype, options=self.options, label=label
        )

    def load_companion(self, kind: str, source: str) -> dict[str, Any]:
        """Load the checkpoint a task needs beside the main one (`demo-<kind>` for the offline demo's)."""
        if kind not in COMPANION_KINDS:
            raise InvalidRequest(f"Unknown companion {kind!r}; choose one of {', '.join(COMPANION_KINDS)}.")
        self._check_allowed(source, self.options.allowed_models, "companion checkpoints")
        dtype = self.pool.dtype
        if self.options.public and kind not in MODULE_COMPANIONS:
            self._check_companion_fits(kind, source, dtype)
        with self._load_lock:
            self.loading = source
            try:
                if kind == "motion_adapter":
                    adapter = loading.load_motion_adapter(source, dtype, self.device, self.options)
                    self.motion = MotionAdapterState(source, adapter)
                    self._release()
                    return self.companions_info()
                if kind == "tiny_vae":
                    self.tiny_vae = None  # the one it replaces is freed first
                    self.tiny_vae = previews.TinyVae(
                        source, loading.load_tiny_vae(source, dtype, self.device, self.options)
                    )
                    self._release()
                    return self.companions_info()
                if kind in control.SLOTS:
                    self.controls.pop(kind, None)  # the module it replaces is freed before the new one loads
                    self._release()
                    self.controls[kind] = control.load_control_model(source, dtype, self.device, self.options)
                    self._release()
                    return self.companions_info()
                started = time.perf_counter()
                files = self._resolve(source)
                expected = COMPANION_PIPELINES[kind]
                if files.pipeline_class != expected:
                    raise LoadError(f"{source!r} is a {files.pipeline_class}; the {kind} companion is a {expected}.")
                chosen = loading.choose_variant(files, "auto", dtype)
                base = self._load_sharing(files, chosen, dtype)
            finally:
                self.loading = None
            companion = Pool(
                files, base, chosen, dtype, self.device, time.perf_counter() - started, companion_kind=kind
            )
            self.memory.apply([companion.base], self.memory.modes, self.device)
            self._companions[kind] = companion
            self._release()
            return self.companions_info()

    def _check_companion_fits(self, kind: str, source: str, dtype: torch.dtype) -> None:
        """A public server's visitors load the companions their tabs need; the budget is what the device has free
        (with preflight's headroom), read from the safetensors headers before anything is loaded."""
        if kind in self._companions and self._companions[kind].files.source == source:
            return  # already loaded: nothing more is needed
        report = self.preflight(source, "auto", devices.dtype_name(dtype))
        if report["verdict"] == "does not fit":
            raise InvalidRequest(
                f"The {kind} companion needs about {report['memory_bytes'] / 2**30:.1f} GiB and the device has "
                f"{report['free_bytes'] / 2**30:.1f} GiB free; this server can't add it now. Try again later, or "
                "ask its owner to unload a companion."
            )

    def unload_companion(self, kind: str) -> dict[str, Any]:
        """Drop a companion and free its memory."""
        with self._load_lock:
            if kind == "motion_adapter":
                self.motion = None
            elif kind == "tiny_vae":
                self.tiny_vae = None
            else:
                self._companions.pop(kind, None)
                self.controls.pop(kind, None)
            self._release()
            return self.companions_info()

    def companion(self, kind: str) -> Pool | None:
        """The loaded companion checkpoint of `kind`, if any."""
        return self._companions.get(kind)

    def companions_info(self) -> dict[str, Any]:
        """Which companion checkpoints are loaded, by kind."""
        loaded = {kind: pool.files.source for kind, pool in self._companions.items()}
        if self.motion is not None:
            loaded["motion_adapter"] = self.motion.source
        if self.tiny_vae is not None:
            loaded["tiny_vae"] = self.tiny_vae.source
        loaded.update({slot: model.source for slot, model in self.controls.items()})
        return {"companions": loaded}

    # -- condition maps ---------------------------------------------------------------------------------

    def control_map(self, image: Any, preprocessor: str, canny_low: int = 100, canny_high: int = 200) -> Any:
        """The condition map `preprocessor` makes of `image` (a PIL image), as a control run would use it."""
        if preprocessor == "canny":
            return control.canny(image, canny_low, canny_high)
        if preprocessor == "scribble":
            return control.scribble(image)
        if preprocessor == "invert":
            return control.invert(image)
        if preprocessor == "depth":
            estimator, processor = self.depth_estimator()
            return control.depth(image, estimator, processor, self.device)
        return image.convert("RGB")

    def depth_estimator(self) -> tuple[Any, Any]:
        """The DPT depth estimator and its processor: the depth companion's own when it is loaded (no second
        copy), else loaded once from the depth checkpoint's `depth_estimator` folder (the twin's with the demo)."""
        depth = self._companions.get("depth")
        if depth is not None:
            return depth.base.depth_estimator, depth.base.feature_extractor
        with self._load_lock:
            if self.map_estimator is None:
                on_demo = self._pool is None or self._pool.files.source.startswith(checkpoints.DEMO)
                source = "demo-depth" if on_demo or self.options.offline else self.options.depth_source
                dtype = self._pool.dtype if self._pool is not None else torch.float32
                if self.options.public:  # a visitor's depth map loads it: the budget of a companion applies
                    self._check_companion_fits("depth", source, dtype)
                files = self._resolve(source)
                self.map_estimator = loading.load_depth_estimator(
                    files, dtype, self.device, offline=self.options.offline
                )
            return self.map_estimator

    # -- adapters, memory modes, checkpoint tools ----------------------------------------------------------

    @property
    def loras(self) -> LoraSet:
        """The LoRAs on the main pool's modules."""
        return self.adapters.loras

    @property
    def ip_adapter(self) -> IpAdapter | None:
        """The image-prompt adapter in the main pool's UNet, if any."""
        return self.adapters.ip_adapter

    def load_lora(self, source: str, weight: float = 1.0) -> dict[str, Any]:
        """Load a LoRA (a .safetensors file, a folder, a Hub id, or `demo-lora`) onto the shared modules: every
        task view sees it."""
        return self.adapters.load_lora(source, weight)

    def set_lora_weight(self, name: str, weight: float) -> dict[str, Any]:
        """Change a loaded LoRA's weight (every task sees it at once); nothing is loaded again."""
        return self.adapters.set_lora_weight(name, weight)

    def unload_lora(self, name: str) -> dict[str, Any]:
        """Remove a LoRA; the shared modules are as they were before it was loaded."""
        return self.adapters.unload_lora(name)

    def load_ip_adapter(self, source: str, scale: float = 0.6) -> dict[str, Any]:
        """Load an IP-Adapter into the shared UNet: every task over it then takes an image prompt."""
        return self.adapters.load_ip_adapter(source, scale)

    def unload_ip_adapter(self) -> dict[str, Any]:
        """Remove the IP-Adapter and its image encoder; the UNet is exactly as before it was loaded."""
        return self.adapters.unload_ip_adapter()

    def set_memory_modes(
        self,
        offload: str = "none",
        attention_slicing: bool = False,
        vae_slicing: bool = False,
        vae_tiling: bool = False,
    ) -> dict[str, Any]:
        """Turn memory modes on or off for every loaded checkpoint and every task view; nothing is reloaded."""
        modes = memory_modes.MemoryModes(str(offload), bool(attention_slicing), bool(vae_slicing), bool(vae_tiling))
        modes.check(self.device)
        with self._load_lock:
            if self.ip_adapter is not None and modes.attention_slicing != self.memory.modes.attention_slicing:
                raise InvalidRequest(
                    "An IP-Adapter is loaded and brings its own attention processors; unload it to change "
                    "attention slicing."
                )
            self.memory.apply([pool.base for pool in self.loaded_pools()], modes, self.device)
            self._release()
        return {"memory_modes": modes.as_dict()}

    def set_compile(self, on: bool) -> dict[str, Any]:
        """Turn the compiled-UNet mode on or off for every task (core.compile_mode); nothing is reloaded. The first
        run at each size and batch pays the compile."""
        if not isinstance(on, bool):
            raise InvalidRequest(f"on must be true or false, got {on!r}.")
        with self._load_lock:
            denoiser = self.pool.denoiser
            if on and not compile_mode.supports(denoiser):
                raise InvalidRequest(
                    f"{type(denoiser).__name__} has no repeated blocks for diffusers to compile; the mode stays off."
                )
            if on:
                compile_mode.keep_cache_in(self.options.cache_dir)
                compile_mode.compile_unet(denoiser)
            elif denoiser is not None:
                compile_mode.uncompile_unet(denoiser)
            self.compiled = on
            return self.compile_info()

    def compile_info(self) -> dict[str, Any]:
        denoiser = self.pool.denoiser if self.is_loaded else None
        blocks = compile_mode.compiled_blocks(denoiser) if denoiser is not None else 0
        return {"compiled": self.compiled, "compiled_blocks": blocks, "backend": compile_mode.backend()}

    def preflight(self, source: str, variant: str = "auto", dtype: str = "auto") -> dict[str, Any]:
        """What loading would download and need in memory, with a fits / tight / does not fit verdict; loads
        nothing."""
        self._check_allowed(source, self.options.allowed_models, "checkpoints")
        return self.tools.preflight(source, variant, dtype)

    def cached_checkpoints(self) -> list[dict[str, Any]]:
        """The model repos in the local Hugging Face cache (not offered on a public server)."""
        return self.tools.cached_checkpoints()

    def delete_cached(self, repo_id: str) -> dict[str, Any]:
        """Delete a repo from the local cache, unless something loaded now came from it."""
        return self.tools.delete_cached(repo_id, self._sources_in_use())

    def save_variant(self, folder: str, variant: str = "fp16", dtype: str = "float16") -> dict[str, Any]:
        """Write the loaded checkpoint's weights as `variant` files in `dtype` (core.checkpoint_tools)."""
        self.tools.refuse_in_public("Saving checkpoints")  # before anything else: no detail of the server either
        offload = self.memory.modes.offload
        return self.tools.save_variant(
            self.pool, folder, variant, dtype, adapters_loaded=self.adapters.any_loaded, offload=offload
        )

    def _sources_in_use(self) -> dict[str, str]:
        used: dict[str, str] = {}
        if self.is_loaded:
            used[self.pool.files.source] = "the checkpoint"
            used[self.pool.vae_source] = "the VAE"
        for kind, pool in self._companions.items():
            used[pool.files.source] = f"the {kind} companion"
        return used

    # -- reporting ---------------------------------------------------------------------------------------

    def few_step(self) -> FewStep | None:
        """The few-step model the main checkpoint (with its LoRAs) is, with the settings it needs, or the
        settings its family's pipeline defaults to (Flux, Kandinsky, ...), or None."""
        pool = self.pool
        few = few_step.recognise(
            type(pool.base).__name__,
            pool.components.get("unet"),
            pool.files.source,
            pool.family,
            [lora.source for lora in self.loras.loras.values()],
        )
        return few or few_step.family_settings(type(pool.base), pool.family)

    def scheduler_names(self) -> list[str]:
        """The scheduler names that work with the loaded checkpoint."""
        return schedulers.compatible_names(self.pool.components.get("scheduler"), type(self.pool.base))

    def model_info(self) -> dict[str, Any]:
        """What is loaded: checkpoint, pipeline class, variant(s), dtype, device, tasks, load time."""
        return describe.model_info(self)

    def loaded_pools(self) -> list[Pool]:
        """The main checkpoint's pool (if loaded) and every companion's."""
        return ([self._pool] if self._pool else []) + list(self._companions.values())

    def memory_report(self) -> dict[str, Any]:
        """Device memory now, and every component in the pool (main checkpoint, companions, adapters) with its
        size, the tasks that share it and the checkpoints it came from. While a change to the modules is under way
        (peft injecting layers, a load) it does not walk them: the last walk's rows come back, marked `changing`."""
        if self._load_lock.acquire(timeout=0.5):
            try:
                self._last_report = describe.memory_report(self)
                return self._last_report
            finally:
                self._load_lock.release()
        if self._last_report is None:
            return {
                **dataclasses.asdict(devices.read_memory(self.device)),
                "pool_bytes": 0,
                "naive_bytes": 0,
                "components": [],
                "changing": True,
            }
        return {**self._last_report, **dataclasses.asdict(devices.read_memory(self.device)), "changing": True}

    def inspect(self) -> dict[str, Any]:
        """The loaded checkpoint explained: model_index.json, components with parameter counts, files."""
        return describe.inspect(self)
