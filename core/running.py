"""Running requests: the half of the Studio that turns a request into images (checked before any work, denoised on
a view of the pool, described, saved), alone or with other visitors' in one call (core.batching). The other half,
core.studio, loads and changes what the requests run on."""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
from diffusers import DiffusionPipeline

from core import (
    adapters,
    batching,
    compile_mode,
    describe,
    memory_modes,
    previews,
    runs,
    schedulers,
    step_cache,
    uploads,
)
from core.errors import InvalidRequest, NotLoaded, OutOfMemory, Stopped
from core.generation import GenerationRequest, GenerationResult
from core.pool import Pool
from core.runs import StepCallback
from core.tasks import Serving, Task, family_of, get_task

if TYPE_CHECKING:
    from core.adapters import IpAdapter, MotionAdapterState
    from core.memory_modes import ModeState
    from core.outputs import OutputStore
    from core.settings import StudioOptions

logger = logging.getLogger("core.studio")


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


def _still_wanted(member: batching.Member) -> bool:
    """False, with the member told so, when its visitor stopped it (or closed the tab) while it waited: it runs no
    step, saves nothing, and takes no time from the others."""
    if member.cancel is None or not member.cancel.is_set():
        return True
    member.fail(Stopped("Stopped before it started: nothing ran."))
    return False


class RunsRequests:
    """What core.studio.Studio does with a request. It reads the Studio's state (declared below) and changes none
    of it but the compiled shapes it has seen."""

    options: StudioOptions
    device: torch.device
    outputs: OutputStore | None
    memory: ModeState
    motion: MotionAdapterState | None
    tiny_vae: previews.TinyVae | None
    compiled: bool
    _compiled_shapes: set[tuple]
    _pool: Pool | None
    _companions: dict[str, Pool]

    pool: Pool  # the Studio's properties and methods these use
    ip_adapter: IpAdapter | None
    controls: dict
    control_map: Any
    loras: Any
    _release: Callable[[], None]

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
            if not _still_wanted(member):
                continue
            try:
                admitted.append((member, self._admit(member.request)))
            except Exception as e:
                member.fail(e)
        groups: dict[Any, list] = {}
        for member, run in admitted:  # keyed again: a task's `prepare` may have changed what the key reads
            key = batching.batch_key(run.request) if run.pipe_batches else None
            groups.setdefault((id(run.pool), key) if key is not None else id(member), []).append((member, run))
        for group in groups.values():
            group = [(member, run) for member, run in group if _still_wanted(member)]  # Stop while the others ran
            if not group:
                continue
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
            member.start()
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
        for member, _run in group:
            member.start()
        batch = batching.BatchRun(
            [(member, run.request, run.seeds) for member, run in group],
            [self._previewer(run, member.preview if member.on_preview else None) for member, run in group],
        )
        started = time.perf_counter()
        pipe, _arguments, output, _stopped_at, switched = self._denoise_checked(
            first,
            lambda: self._denoise(first, batch.step, batch.all_stopped, batch.latents, merge=batch.merge),
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

    def _denoise_checked(self, run: _Admitted, denoise: Callable[[], tuple]) -> tuple:
        """`denoise()`, with its errors said in the user's terms: running out of memory (with what to change) and a
        pipeline that can't run in bfloat16."""
        pool = run.pool
        try:
            return denoise()
        except torch.OutOfMemoryError:
            pass
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
