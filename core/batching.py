"""Visitors' text-to-image requests that arrive together, run as one pipeline call.

Requests that differ only in what each visitor owns (prompt, negative prompt, seed, number of images, previews) are
gathered while the worker is busy and run together: one UNet call a step for all of them, each image from its own
generator (`seed + i` of its own request), so each visitor's images are those the same request gives alone, within
core.generation.ALONE_TOLERANCE (the batch's shape changes the order of sums, as a batch of one visitor's images
already does). Each visitor keeps their own progress, previews (their rows of the latents) and Stop: a visitor who
stops gets the images their rows had reached at that step, decoded with the others' when the call ends, and the call
ends at once when every visitor in it has stopped.

Nothing waits for company: a request that finds the worker idle runs at once, alone; the ones that arrive during a
run are gathered for the next one.
"""

from __future__ import annotations

import contextvars
import dataclasses
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from core.tasks import TASKS

if TYPE_CHECKING:
    from core.generation import GenerationRequest, GenerationResult
    from core.jobs import Worker
    from core.runs import PreviewCallback, StepCallback

# What each visitor of a batch has of their own; every other field of the requests is the same.
PER_VISITOR = ("prompt", "negative_prompt", "seed", "num_images", "preview_every")
# The pipelines whose batches are tested to give each visitor their alone images (tests/core/test_batching.py): their
# call takes a list of prompts and of generators, and hands the latents to `callback_on_step_end`, rows in order.
BATCHING_PIPELINES = ("StableDiffusionPipeline", "StableDiffusionXLPipeline")


def pipeline_batches(pipeline_class: type) -> bool:
    return pipeline_class.__name__ in BATCHING_PIPELINES


def batch_key(request: GenerationRequest) -> tuple | None:
    """What requests must share to run as one call, or None for one that runs alone: a task that doesn't batch (or
    an option of it that doesn't: SAG, PAG, the refiner), or a visitor's own upload (an image prompt)."""
    task = TASKS.get(request.task) if isinstance(request.task, str) else None
    if task is None or not task.batches(request):
        return None
    shared: list[tuple] = []
    for f in dataclasses.fields(request):
        if f.name in PER_VISITOR:
            continue
        value = getattr(request, f.name)
        if not isinstance(value, (str, int, float, bool, type(None))):
            return None
        shared.append((f.name, type(value).__name__, value))
    # SDXL encodes no negative prompt as zeros and "" as the empty text's embedding: a visitor without one can't
    # share a call with one who has one.
    shared.append(("has_negative_prompt", bool(request.negative_prompt)))
    return tuple(shared)


@dataclass(eq=False)
class Member:
    """One visitor's request in a batch, with their own callbacks (run in the context they were submitted from:
    Gradio's progress finds its event there) and the future their result goes to."""

    request: GenerationRequest
    session: str = "local"  # whose outputs its images are saved as
    on_step: StepCallback | None = None
    cancel: threading.Event | None = None
    on_preview: Callable[[list], None] | None = None
    on_start: Callable[[], None] | None = None  # when its call starts on the worker
    on_result: Callable[[GenerationResult], None] | None = None  # called before the future is told
    future: Future = field(default_factory=Future)
    context: contextvars.Context = field(default_factory=contextvars.copy_context)

    def start(self) -> None:
        if self.on_start is not None:
            self.context.run(self.on_start)

    def step(self, done: int, total: int) -> None:
        if self.on_step is not None:
            self.context.run(self.on_step, done, total)

    def preview(self, pictures: list) -> None:
        if self.on_preview is not None:
            self.context.run(self.on_preview, pictures)

    def succeed(self, result: GenerationResult) -> None:
        if self.on_result is not None:
            self.context.run(self.on_result, result)
        if not self.future.done():
            self.future.set_result(result)

    def fail(self, error: BaseException) -> None:
        if not self.future.done():
            self.future.set_exception(error)


class BatchRun:
    """The step, latents and argument hooks of one call over several members' requests (rows in members' order)."""

    def __init__(
        self, members: list[tuple[Member, GenerationRequest, list[int]]], previews: list[PreviewCallback | None]
    ) -> None:
        """`members`: each member with its request as admitted (checked and prepared) and its seeds."""
        self.members = [member for member, _request, _seeds in members]
        self.requests = [request for _member, request, _seeds in members]
        self.seeds = [seeds for _member, _request, seeds in members]
        self.rows, start = [], 0
        for seeds in self.seeds:
            self.rows.append(slice(start, start + len(seeds)))
            start += len(seeds)
        self.images = start
        self.previews = previews
        self.stopped_at: list[int | None] = [None] * len(self.members)
        self._kept: list[torch.Tensor | None] = [None] * len(self.members)  # rows' latents when their visitor stopped
        self._total: int | None = None
        self._pipe: Any = None
        self.all_stopped = threading.Event()  # the call's own Stop: every visitor in it has stopped

    def merge(self, arguments: dict[str, Any], pipe: Any) -> dict[str, Any]:
        """The first member's call arguments, made the batch's: a prompt (and negative prompt) and a generator per
        image, one image per prompt."""
        self._pipe = pipe
        merged = dict(arguments)
        per_image = list(zip(self.requests, self.seeds, strict=True))
        merged["prompt"] = [request.prompt for request, seeds in per_image for _ in seeds]
        if arguments.get("negative_prompt") is not None:  # the batch's key: all members have one, or none has
            merged["negative_prompt"] = [request.negative_prompt for request, seeds in per_image for _ in seeds]
        merged["generator"] = [torch.Generator("cpu").manual_seed(s) for seeds in self.seeds for s in seeds]
        merged["num_images_per_prompt"] = 1
        return merged

    def step(self, done: int, total: int) -> None:
        self._total = total
        for member, stopped in zip(self.members, self.stopped_at, strict=True):
            if stopped is None:
                member.step(done, total)

    def latents(self, done: int, latents: torch.Tensor) -> None:
        """Each step's latents: a visitor's previews of their rows, and their Stop. At the last step (or when all
        have stopped) a stopped visitor's rows are put back as they were at their stop, for the pipeline to decode.

        `done` counts the scheduler's steps (Heun's 2N-1 for N asked, PNDM's 26 for 25), the progress the steps asked
        for: the last step is the pipeline's own count, as core.runs reads it."""
        total = getattr(self._pipe, "num_timesteps", None) or self._total
        last = total is not None and done >= total
        for i, member in enumerate(self.members):
            if self.stopped_at[i] is not None:
                continue
            if member.cancel is not None and member.cancel.is_set() and not last:  # a Stop at the last step: done
                self.stopped_at[i], self._kept[i] = done, latents[self.rows[i]].clone()
            elif self.previews[i] is not None:
                self.previews[i](done, latents[self.rows[i]])
        if all(stopped is not None for stopped in self.stopped_at):
            self.all_stopped.set()  # core.runs interrupts the call after this step; the pipeline decodes what's here
        if last or self.all_stopped.is_set():
            for rows, kept in zip(self.rows, self._kept, strict=True):
                if kept is not None:
                    latents[rows] = kept  # in place: the very tensor the pipeline's loop goes on with

    def output_of(self, i: int, output: Any) -> Any:
        """Member i's part of the call's output (the pipeline's own output class, its lists cut to their rows)."""
        if output is None:
            return None
        fields = {}
        for f in dataclasses.fields(output):
            value = getattr(output, f.name)
            whole = isinstance(value, (list, tuple)) and len(value) == self.images
            fields[f.name] = value[self.rows[i]] if whole else value
        return dataclasses.replace(output, **fields)

    def describe(self) -> dict[str, int]:
        """The info's `batch`: how many visitors and images shared the call."""
        return {"visitors": len(self.members), "images": self.images}


class Batcher:
    """Hands members to the worker, those that can share a call gathered into one job: at most `max_members` of
    them and `max_images` images a call (one request's largest batch, so a batch needs no more memory than a
    request may)."""

    def __init__(
        self, worker: Worker, run: Callable[[list[Member]], None], max_images: int, max_members: int = 4
    ) -> None:
        self._worker, self._run = worker, run
        self.max_images, self.max_members = max_images, max_members
        self._lock = threading.Lock()
        self._waiting: dict[tuple, list[Member]] = {}  # by key: each list non-empty has one drain job queued

    def submit(self, member: Member) -> Future:
        """Queue the member's request; its future gets the result (or the error)."""
        key = batch_key(member.request)
        if key is None:
            self._worker.submit(self._run_safely, [member])
            return member.future
        with self._lock:
            waiting = self._waiting.setdefault(key, [])
            waiting.append(member)
            first = len(waiting) == 1
        if first:
            self._worker.submit(self._drain, key)
        return member.future

    def waiting(self) -> int:
        """How many members wait for a call (handed in, not yet started)."""
        with self._lock:
            return sum(len(members) for members in self._waiting.values())

    def _drain(self, key: tuple) -> None:
        with self._lock:
            waiting = self._waiting.pop(key, [])
            batch, images = [], 0
            for member in waiting:  # not validated yet: a count out of range is checked (and refused) alone
                count = member.request.num_images
                count = min(max(count, 1), self.max_images) if isinstance(count, int) else 1
                if batch and (images + count > self.max_images or len(batch) == self.max_members):
                    break
                batch.append(member)
                images += count
            rest = waiting[len(batch) :]
            if rest:  # behind the jobs that came meanwhile (another task's run, a load): no key starves the others
                self._waiting[key] = rest
        if rest:
            self._worker.defer(self._drain, key)
        self._run_safely(batch)

    def _run_safely(self, members: list[Member]) -> None:
        try:
            self._run(members)
        except BaseException as e:  # told to whoever is still waiting, then the worker's own handling
            for member in members:
                member.fail(e)
            raise
