"""The Studio: the one object the UI talks to. It owns the pool and turns requests into images."""

from __future__ import annotations

import dataclasses
import gc
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import torch
from diffusers import DiffusionPipeline

from core import (
    adapters,
    batching,
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
    runs,
    schedulers,
    step_cache,
    uploads,
)
from core.adapters import IpAdapter, LoraSet, MotionAdapterState
from core.checkpoints import fingerprints, hub, loading, single_file
from core.errors import InvalidRequest, LoadError, NotLoaded, OutOfMemory
from core.few_step import FewStep
from core.generation import GenerationRequest, GenerationResult
from core.outputs import OutputStore
from core.pool import Pool
from core.runs import StepCallback
from core.settings import StudioOptions  # where the options live; here too for the engine's callers
from core.tasks import COMPANION_PIPELINES, TASKS, Serving, Task, family_of, get_task, views_over

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


@dataclasses.dataclass
class _Admitted:
    """A request checked and prepared (Studio._admit), with what its run uses."""

    task: Task
    serving: Serving
    pool: Pool
    request: GenerationRequest
    seeds: list[int]
    notes: list[str]  # warnings for the info: what was done to the uploads
    run_checker: bool
    pipe_batches: bool = False  # the pool's pipeline runs several visitors' requests as one call (core.batching)


class Studio:
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

    # -- generating --------------------------------------------------------------------------------------

    def generate(
        self,
        request: GenerationRequest,
        *,
        session: str = "local",
        on_step: StepCallback | None = None,
        cancel: threading.Event | None = None,
        on_preview: Callable[[list], None] | None = None,
    ) -> GenerationResult:
        """Run one request and return its images and info (saved first, if outputs is set); with `on_preview`
        and `request.preview_every`, a cheap picture of the latents goes to it every that many steps."""
        run = self._admit(request)
        on_latents = self._previewer(run, on_preview)
        started = time.perf_counter()
        pipe, arguments, output, stopped_at, switched = self._denoise_checked(
            run, lambda: self._denoise(run, on_step, cancel, on_latents)
        )
        finished = time.perf_counter()
        return self._result(run, pipe, arguments, output, stopped_at, (started, switched, finished), session)

    def generate_batch(self, members: list[batching.Member]) -> None:
        """Run visitors' requests that differ only in what each visitor owns (core.batching.batch_key) as one
        pipeline call, and tell each member its own result (or its own error: one bad request fails alone)."""
        admitted = []
        for member in members:
            try:
                member.start()
                admitted.append((member, self._admit(member.request)))
            except Exception as e:
                member.fail(e)
        groups: dict[Any, list] = {}
        for member, run in admitted:  # keyed again: a task's `prepare` may have changed what the key reads
            key = batching.batch_key(run.request) if run.pipe_batches else None
            groups.setdefault((id(run.pool), key) if key is not None else id(member), []).append((member, run))
        for group in groups.values():
            if len(group) == 1:
                self._run_alone(*group[0])
                continue
            try:
                self._run_together(group)
            except Exception:  # out of memory, or one request the shared call could not take
                logger.warning("A shared call of %d requests failed; they run one by one", len(group), exc_info=True)
            else:
                continue
            self._release()  # outside the except: its traceback held the call's tensors
            for member, run in group:  # each alone: nothing is lost to the batch's size, no visitor to another's error
                self._run_alone(member, run)

    def _run_alone(self, member: batching.Member, run: _Admitted) -> None:
        try:
            on_latents = self._previewer(run, member.preview if member.on_preview else None)
            started = time.perf_counter()
            pipe, arguments, output, stopped_at, switched = self._denoise_checked(
                run, lambda: self._denoise(run, member.step, member.cancel, on_latents)
            )
            finished = time.perf_counter()
            times = (started, switched, finished)
            member.succeed(self._result(run, pipe, arguments, output, stopped_at, times, member.session))
        except Exception as e:
            member.fail(e)

    def _run_together(self, group: list) -> None:
        """One call for the group's requests; an error of the call is left to the caller (it runs them alone)."""
        first = group[0][1]
        batch = batching.BatchRun(
            [(member, run.seeds) for member, run in group],
            [self._previewer(run, member.preview if member.on_preview else None) for member, run in group],
        )
        started = time.perf_counter()
        pipe, _arguments, output, _stopped_at, switched = self._denoise_checked(
            first,
            lambda: self._denoise(first, batch.step, batch.all_stopped, batch.latents, merge=batch.merge),
            out_of_memory=False,
        )
        finished = time.perf_counter()
        for i, (member, run) in enumerate(group):
            try:
                own = run.task.call_arguments(run.request, pipe, run.seeds, run.pool.size_multiple)
                result = self._result(
                    run,
                    pipe,
                    own,
                    batch.output_of(i, output),
                    batch.stopped_at[i],
                    (started, switched, finished),
                    member.session,
                    batch=batch.describe(),
                )
                member.succeed(result)
            except Exception as e:
                member.fail(e)

    def _admit(self, request: GenerationRequest) -> _Admitted:
        """Check and prepare a request before any work (InvalidRequest / NotLoaded saying what to change)."""
        task = get_task(request.task)
        serving = self.serving()  # one snapshot per request: every hook of the run sees the same companions
        pool = self._pool_for(task, request, serving)
        if self.options.public and not request.safety_checker and pool.has_safety_checker:
            raise InvalidRequest("The safety checker can't be turned off on a public server.")
        if self.options.public and task.brings_weights and not pool.has_safety_checker:
            raise InvalidRequest(f"{task.label} has no safety checker, so it is off on this public server.")
        request, upload_notes = uploads.read_request_images(request, self.options.limits.max_image_pixels)
        request, fit_notes = uploads.fit_request_images(request, self.options.limits.max_side)
        upload_notes += fit_notes
        request.validate(self.options.limits, size_multiple=pool.size_multiple)
        request, ip_notes = adapters.image_prompt(self.ip_adapter if pool is self._pool else None, task, request)
        task.check_options(pool, request)
        request = task.prepare(request, serving, pool)
        run_checker = request.safety_checker and pool.has_safety_checker
        return _Admitted(
            task, serving, pool, request, request.resolved_seeds(), upload_notes + ip_notes, run_checker,
            pipe_batches=pool is self._pool and batching.pipeline_batches(type(pool.base)),
        )  # fmt: skip

    def _denoise_checked(self, run: _Admitted, denoise: Callable[[], tuple], *, out_of_memory: bool = True) -> tuple:
        """`denoise()`, with its errors said in the user's terms: running out of memory (with what to change) and a
        pipeline that can't run in bfloat16. With `out_of_memory=False` a torch.OutOfMemoryError is left as it is."""
        pool = run.pool
        try:
            return denoise()
        except torch.OutOfMemoryError:
            if not out_of_memory:
                raise
        except TypeError as e:
            if "BFloat16" not in str(e):
                raise
            raise InvalidRequest(
                f"{type(pool.base).__name__} can't run in bfloat16: it hands the model's tensors to numpy, which has "
                "no bfloat16. Load the checkpoint again with dtype float32 (or auto)."
            ) from None
        # Freed here, outside the except block: there the traceback's frames still hold the run's tensors.
        self._release()
        raise OutOfMemory(memory_modes.oom_advice(run.request, pool.dtype, self.device, self.memory.modes))

    def _result(
        self,
        run: _Admitted,
        pipe: DiffusionPipeline,
        arguments: dict[str, Any],
        output: Any,
        stopped_at: int | None,
        times: tuple[float, float, float],
        session: str,
        batch: dict[str, int] | None = None,
    ) -> GenerationResult:
        """The images, info, script and saved files of a run that has ended."""
        task, pool, request, seeds, serving = run.task, run.pool, run.request, run.seeds, run.serving
        started, switched, finished = times
        images, extras = task.collect_from(output, arguments, pipe) if output is not None else ([], {})
        nsfw = getattr(output, "nsfw_content_detected", None) if run.run_checker and output is not None else None
        info = describe.run_info(self, pool, request, pipe, seeds, images, nsfw, serving)
        info.update(task.run_fields(pipe, arguments))
        if extras.get("text") is not None:
            info["text"] = extras["text"]
            if not images:  # UniDiffuser's captions of an image: no picture, no size
                info.update(output="text", width=None, height=None)
        info["warnings"] += run.notes
        if self.compiled and pool is self._pool:
            info["compiled"] = True
            shape = request if batch is None else dataclasses.replace(request, num_images=batch["images"])
            key = compile_mode.shape_key(shape, pool.files.source, pool.dtype)
            if key not in self._compiled_shapes:
                self._compiled_shapes.add(key)
                info["warnings"].append(
                    f"The compiled UNet was compiled for this size and batch in this run "
                    f"(it took {finished - switched:.1f} s with the compile); runs like it from now on skip that."
                )
        info["interrupted"] = stopped_at is not None
        if stopped_at is not None:
            info["stopped_at_step"] = stopped_at
        if batch is not None:
            info["batch"] = batch
        info["timings"] = {
            "switch_ms": round((switched - started) * 1000, 2),
            "generate_ms": round((finished - switched) * 1000, 2),
            "total_ms": round((finished - started) * 1000, 2),
        }
        snippet = describe.run_snippet(self, pool, task, request, pipe, arguments, seeds, serving)
        if extras.get("audio"):  # what a signature-built run made decides how its script saves it
            snippet.output, snippet.sample_rate = "audio", extras["audio"]["rate"]
        elif extras.get("prediction"):
            snippet.output = "prediction"
        elif extras.get("frames") and snippet.output != "frame_array":
            snippet.output = "renders" if extras.get("renders") else "frames"
        elif extras.get("meshes"):
            snippet.output = "mesh"
        if extras.get("text") is not None:
            snippet.output = "images" if images else "text"
            snippet.saves_text = True
        info["code"] = snippet.render()
        stamp = self.outputs.stamp(session) if self.outputs else None  # one for all the run's files
        paths = self.outputs.save(images, info, session, stamp) if self.outputs and images else []
        files: dict[str, str] = {}
        if extras.get("frames") and self.outputs:
            files = self.outputs.save_animation(extras["frames"][0], info, session, stamp)
        if extras.get("audio") and self.outputs:
            files = self.outputs.save_audio(extras["audio"]["clips"], extras["audio"]["rate"], info, session, stamp)
        if extras.get("meshes") and self.outputs:
            files = self.outputs.save_meshes(extras["meshes"], info, session, stamp)
        if extras.get("text") is not None and self.outputs:
            files = self.outputs.save_text(extras["text"], info, session, stamp)
        return GenerationResult(images=images, info=info, paths=paths, extras=extras, files=files)

    def _previewer(self, run: _Admitted, on_preview: Callable[[list], None] | None) -> runs.PreviewCallback | None:
        """What turns a run's latents into `on_preview`'s pictures every `preview_every` steps, or None."""
        request = run.request
        if on_preview is None or request.preview_every <= 0:
            return None
        family, every = family_of(type(run.pool.base).__name__), request.preview_every
        size = (request.width, request.height) if run.task.sizes_from_request else None
        tiny = run.serving.tiny_vae

        def on_latents(done: int, latents: Any) -> None:
            if done % every == 0:
                try:
                    if tiny is not None and tiny.fits(latents):
                        pictures = tiny.preview(latents)
                    else:
                        pictures = previews.latent_preview(latents, family, size)
                except Exception:  # a latent layout the preview doesn't know: the run goes on without
                    logger.warning("No live preview of %s latents %s", family, tuple(latents.shape), exc_info=True)
                    return
                if pictures:
                    on_preview(pictures)

        return on_latents

    def _denoise(
        self,
        run: _Admitted,
        on_step: StepCallback | None,
        cancel: threading.Event | None,
        on_latents: runs.PreviewCallback | None,
        *,
        merge: Callable[[dict[str, Any], DiffusionPipeline], dict[str, Any]] | None = None,
    ) -> tuple[DiffusionPipeline, dict[str, Any], Any, int | None, float]:
        """Build the view(s) and run them: (view, call arguments, output, the step a Stop ended the run at or None,
        when the view was ready). `merge` turns the call's arguments into a batch's (core.batching)."""
        pool, task, request, seeds, serving = run.pool, run.task, run.request, run.seeds, run.serving
        scheduler = schedulers.build(request.scheduler, pool.components.get("scheduler"), type(pool.base))
        tiny = serving.tiny_vae
        if request.tiny_decode and tiny is None:
            raise NotLoaded(
                'Decoding with the tiny VAE needs one loaded: load it under Text to image\'s "Faster" section '
                "(`demo-tiny-vae` offline, madebyollin/taesd for SD 1/2, madebyollin/taesdxl for SDXL) first."
            )
        own = pool.components.get("vae")
        if request.tiny_decode and getattr(own, "config", {}).get("latent_channels") != tiny.vae.config.latent_channels:
            raise InvalidRequest(
                f"The tiny VAE {tiny.source!r} reads {tiny.vae.config.latent_channels}-channel latents and "
                f"{type(pool.base).__name__} makes others; load the tiny VAE of its family, or turn the tiny decode "
                "off."
            )
        pipe = task.view(pool, request, scheduler, run.run_checker, serving)
        if request.tiny_decode:  # another view over the same modules, with the tiny VAE: the pool's stays in place
            # from_pipe casts every module to `dtype`, float32 when not given: the pool's own, shared ones too.
            pipe = type(pipe).from_pipe(pipe, vae=tiny.vae, dtype=pool.dtype)
            pipe.set_progress_bar_config(disable=True)  # as the pool's views: progress goes to the page
        try:
            step_cache.check(request, pipe, pool.family)
            refiner = task.second_stage(pool, request, serving)
            for view in (pipe, refiner) if refiner is not None else (pipe,):
                self.memory.prepare_view(view, self.device)  # offloading is per view (seed 003)
            switched = time.perf_counter()
            arguments = task.call_arguments(request, pipe, seeds, pool.size_multiple)  # may run depth estimation
            if merge is not None:
                arguments = merge(arguments, pipe)
            first_stage = on_step
            if refiner is not None and on_step is not None:  # one progress bar over both stages
                first_stage = lambda done, _total: on_step(done, request.steps)  # noqa: E731
            with step_cache.caching(pipe, request.step_cache):  # the first stage's UNet; the refiner runs whole
                output, stopped_at = runs.run_pipeline(
                    pipe,
                    arguments,
                    steps=request.steps,
                    on_step=first_stage,
                    cancel=cancel,
                    on_latents=on_latents,
                    extra_calls=task.extra_step_calls(request),
                    progress_bars=task.progress_bars(request),
                )
            if refiner is not None and output is not None:
                output, refiner_stopped_at = task.run_second_stage(
                    refiner, request, output, seeds, on_step=on_step, cancel=cancel, on_latents=on_latents
                )
                stopped_at = stopped_at if stopped_at is not None else refiner_stopped_at
            return pipe, arguments, output, stopped_at, switched
        finally:
            task.release(pipe)  # what the run changed on the shared modules, put back

    def serving(self) -> Serving:
        """What a task's hooks may use besides the pool it runs on."""
        return Serving(
            companions=dict(self._companions),
            motion=self.motion,
            tiny_vae=self.tiny_vae,
            controls=dict(self.controls),
            control_map=self.control_map,
            loras=tuple(self.loras.loras),
            cache_dir=self.options.cache_dir,
            public=self.options.public,
            max_images=self.options.limits.max_images,
            limits=self.options.limits,
        )

    def _pool_for(self, task: Task, request: GenerationRequest, serving: Serving) -> Pool:
        """The pool that serves the request: the main checkpoint's, or the companion the task runs on."""
        kind = task.companion_kind(request, self._companions)
        if kind is not None and kind not in self._companions:
            raise NotLoaded(
                f"{task.label} needs its own checkpoint ({kind.replace('_', ' ')}): load the companion "
                f"offered in its tab (e.g. `demo-{kind.replace('_', '-')}` offline) first."
            )
        pool = self._companions[kind] if kind is not None else self.pool
        task.check_pool(pool, request, serving)
        return pool

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
