"""The results block every generation tab shares: gallery, notice, "Reproduce in Python", info."""

from __future__ import annotations

import contextlib
import queue
import time
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import gradio as gr

from core.batching import Member, batch_key
from core.generation import GenerationRequest, GenerationResult
from ui import zerogpu
from ui.common import AppContext

PROGRESS_EVERY_S = 0.5  # the page's progress bar is updated at most this often (and at the last step)
PREVIEW_EVERY_S = 1.0  # and shows a new live preview at most this often (the newest one)
WAITING = "Waiting for the run ahead…"  # a request handed to the worker, before its call starts


@dataclass
class Results:
    gallery: gr.Gallery
    notice: gr.Markdown
    code: gr.Code
    info: gr.JSON


def build_results(task: str, *, label: str = "Results", code: bool = True) -> Results:
    """The gallery (PNG, not gradio's lossy default), a notice line, the reproduction script and the info."""
    gallery = gr.Gallery(label=label, format="png", columns=2, height=400, elem_id=f"{task}-gallery")
    notice = gr.Markdown(elem_id=f"{task}-notice")
    with gr.Accordion("Reproduce in Python", open=False, visible=code):
        code_box = gr.Code(language="python", label="diffusers only", elem_id=f"{task}-code")
    with gr.Accordion("Info", open=False):
        info = gr.JSON(label="info", elem_id=f"{task}-info")
    return Results(gallery, notice, code_box, info)


def notice_markdown(info: dict | None) -> str:
    """What the user must notice about a run: flagged images, a stop, a truncated prompt, and what ran."""
    if not info:
        return ""
    notes = []
    if info.get("nsfw") and any(info["nsfw"]):
        flagged = [str(i + 1) for i, f in enumerate(info["nsfw"]) if f]
        notes.append(f"⚠️ The safety checker flagged image {', '.join(flagged)}; it was replaced by a black image.")
    if info.get("interrupted"):
        at = info.get("stopped_at_step")
        where = f"at step {at} of {info.get('steps')}" if at else "early"
        if info.get("num_images") == 0 and info.get("output") is not None:  # a pipeline with no step callback
            notes.append(f"⏹️ Stopped {where}: this pipeline gives nothing back when it is stopped early.")
        else:
            notes.append(f"⏹️ Stopped {where}: the image shows where denoising had got to (saved like any other).")
    notes += [f"ℹ️ {w}" for w in info.get("warnings", [])]
    if "cells" in info:
        notes.append(f"Seed {info['seed']} · {len(info['cells'])} images")
        return "\n\n".join(notes)
    timings = info.get("timings", {})
    seconds = info.get("audio_seconds")
    if info.get("width"):
        made = f"{info['width']}x{info['height']}"
    else:
        made = {"mesh": "3D mesh", "text": "text"}.get(info.get("output"), f"{seconds} s audio" if seconds else "audio")
    notes.append(
        f"Seeds {info['seeds']} · {info['scheduler']}"
        + (f" ({info['scheduler_class']})" if info.get("scheduler_class") else "")
        + f" · {info['steps']} steps · "
        f"{made} · {info.get('pipeline', '?')} · "
        f"{timings.get('generate_ms', 0) / 1000:.2f} s "
        f"(pipeline switch {timings.get('switch_ms', 0):.1f} ms)" + _shared(info.get("batch"))
    )
    return "\n\n".join(notes)


def _shared(batch: dict | None) -> str:
    if not batch or batch.get("visitors", 1) < 2:
        return ""
    others = batch["visitors"] - 1
    return f" · one call with {others} other visitor{'s' if others > 1 else ''} ({batch['images']} images)"


def run_request(
    ctx: AppContext,
    request: GenerationRequest,
    session: str,
    progress: Any,
    on_preview: Any = None,
    owner: str | None = None,
) -> GenerationResult:
    """Run one request on the worker, with progress and this visitor's Stop flag; the images are saved as
    `owner`'s (ui.common.visitor_of), the session's by default."""
    return _submit(ctx, request, session, progress, on_preview, owner).result()


def _submit(
    ctx: AppContext, request: GenerationRequest, session: str, progress: Any, on_preview: Any, owner: str | None = None
) -> Future:
    flag = ctx.cancel_flags.start(session)
    owner = owner or session
    reported_at = [0.0]

    def on_step(i: int, n: int) -> None:
        # Each report is a message to the page; a model with fast steps (the DDPM twin: 150 steps in 2 s) sent one
        # every 13 ms. At most ten a second, and always the last (what it saves in time was not measured).
        now = time.monotonic()
        if i < n and now - reported_at[0] < PROGRESS_EVERY_S:
            return
        reported_at[0] = now
        progress((i, n), desc=f"Step {i} of {n}", unit="steps")

    batcher = getattr(ctx, "batcher", None)
    if batcher is not None and batch_key(request) is not None:  # it may share a call with others (core.batching)

        def remember(result: GenerationResult) -> None:
            ctx.shown.put(session, request.task, shown(result), result.info)

        member = Member(
            request, owner, on_step=on_step, cancel=flag, on_preview=on_preview,
            on_start=lambda: progress(0, desc="Starting…"), on_result=remember,
        )  # fmt: skip
        progress(0, desc=WAITING)  # on the worker, for a call it may share
        future = batcher.submit(member)
        future.add_done_callback(lambda _done: ctx.cancel_flags.finish(session, flag))
        return future

    def run() -> GenerationResult:
        try:
            progress(0, desc="Starting…")
            if zerogpu.ON_ZERO_GPU:  # in a forked GPU worker: no step callbacks, Stop or previews cross over
                result = zerogpu.run_generation(request, owner)
            else:
                result = ctx.studio.generate(
                    request,
                    session=owner,
                    on_step=on_step,
                    cancel=flag,
                    on_preview=on_preview,
                )
            ctx.shown.put(session, request.task, shown(result), result.info)
            return result
        finally:
            ctx.cancel_flags.finish(session, flag)

    return ctx.worker.submit(run)


def stream_request(
    ctx: AppContext, request: GenerationRequest, session: str, progress: Any, owner: str | None = None
) -> Iterator[list | GenerationResult]:
    """Run one request, yielding its live previews (lists of images) as they come, then its result.

    The run happens on the worker while this generator hands each preview to Gradio. Previews pile up only to
    the newest: a slow browser never holds the run back."""
    if request.preview_every <= 0:
        yield run_request(ctx, request, session, progress, owner=owner)
        return
    newest: queue.Queue = queue.Queue(maxsize=1)

    def offer(images: list) -> None:
        with contextlib.suppress(queue.Empty):
            newest.get_nowait()  # drop a preview nobody has picked up yet
        newest.put_nowait(images)

    reported = _LastProgress(progress)
    future = _submit(ctx, request, session, reported, offer, owner)
    shown_at = 0.0
    while not future.done():
        # At most PREVIEW_EVERY_S apart: each one re-renders the page's gallery, and a fast model's previews every
        # 2 steps kept Chromium busy for 20 s after the run had ended (the page answered nothing meanwhile).
        wait = shown_at + PREVIEW_EVERY_S - time.monotonic()
        if wait > 0:
            future_done_or(wait, future)
            continue
        with contextlib.suppress(queue.Empty):
            yield newest.get(timeout=0.1)
            shown_at = time.monotonic()
            # Gradio's page clears the bar at each yielded output until the next step reports (seconds on a CPU):
            # report the last step again at once.
            reported.again()
    yield future.result()


def future_done_or(seconds: float, future: Future) -> None:
    """Wait `seconds`, or less if the future finishes first."""
    with contextlib.suppress(TimeoutError):
        future.exception(timeout=seconds)


class _LastProgress:
    """A gr.Progress that remembers its last report, to repeat it."""

    def __init__(self, progress: Any) -> None:
        self.progress, self.last = progress, None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.last = (args, kwargs)
        return self.progress(*args, **kwargs)

    def again(self) -> None:
        if self.last is not None:
            self.progress(*self.last[0], **self.last[1])


def shown(result: GenerationResult) -> list:
    """What the gallery shows: the saved PNG files (with their metadata), else the images."""
    return result.paths or result.images


def notice_and_code(info: dict | None) -> tuple[str, str]:
    """The notice line and the "Reproduce in Python" script of a run's info."""
    return notice_markdown(info), (info or {}).get("code", "")


def wire_notice(event: Any, results: Results) -> None:
    """After a run, fill the notice and the code from its info.

    On success only: Gradio's page also runs a `.then` listener when Stop cancels the event, with the inputs as
    they were, so the old info would blank the "stopped at step N" notice that Stop's own listener fills
    (ui.controls.wire_stop), whichever answer came last."""
    event.success(notice_and_code, results.info, [results.notice, results.code], api_visibility="private")
