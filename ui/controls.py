"""Controls the generation tabs share: prompts, steps and guidance, size, seed, run and stop buttons."""

from __future__ import annotations

import time
from typing import Any

import gradio as gr
from PIL import ImageOps

from core.errors import StudioError
from core.uploads import read_image
from ui.common import GPU_QUEUE, AppContext, session_of, toast_text
from ui.results import notice_and_code


def prompts(task: str, label: str = "Prompt", value: str | None = None) -> tuple[gr.Textbox, gr.Textbox]:
    """Prompt (or what the task calls it: an instruction, what the image should show) and negative prompt; with a
    `value`, both start with it and the API takes them as optional (Gradio's client reads defaults from values)."""
    prompt = gr.Textbox(
        value=value, label=label, lines=2, placeholder="a watercolor lighthouse at dawn", elem_id=f"{task}-prompt"
    )
    negative = gr.Textbox(value=value, label="Negative prompt", lines=1, placeholder="blurry, low quality")
    return prompt, negative


def named_range(component: Any, name: str, allowed: str | None = None) -> Any:
    """Gradio's own range check of a slider or a number says "Value 7 is less than minimum value 64." (which value?)
    and prints a traceback for it; say which parameter and what it takes, as the engine's checks do, quietly."""
    original = component.preprocess

    def preprocess(payload: Any) -> Any:
        try:
            return original(payload)
        except gr.Error:
            takes = allowed or f"between {component.minimum:g} and {component.maximum:g}"
            raise gr.Error(f"{name} must be {takes}, got {payload}.", print_exception=False) from None

    component.preprocess = preprocess  # type: ignore[method-assign]
    return component


def wire_stop(ctx: AppContext, stop: gr.Button, event: Any, task: str, results: Any = None) -> None:
    """Stop ends the visitor's run after its current step. With `results` (ui.results.Results), the stopped
    image, which the run still saves, is shown when it comes, marked "stopped at step N": cancelling the event
    closed the handler that would have shown it."""
    moment = gr.State()

    def stop_job(request: gr.Request) -> float:
        ctx.cancel_flags.cancel(session_of(request))
        return time.monotonic()

    stopped = stop.click(stop_job, None, moment, cancels=[event], api_name=f"stop_{task}", queue=False)
    if results is None:
        return

    def show_stopped(since: float | None, request: gr.Request) -> tuple:
        session, since = session_of(request), since if isinstance(since, float) else time.monotonic()
        # The run ends after its current step (on a CPU a step can take seconds), and a visitor stopped in a call
        # shared with others has their image when the call ends: wait while the session has a run under way.
        deadline, cap = time.monotonic() + 120, time.monotonic() + 3600
        while time.monotonic() < deadline or (ctx.cancel_flags.running(session) and time.monotonic() < cap):
            found = ctx.shown.since(session, task, since)
            if found is not None:
                items, info = found
                return items, info, *notice_and_code(info)
            if not ctx.cancel_flags.running(session):
                time.sleep(0.3)  # finished: its result is recorded right after; one more look
                if ctx.shown.since(session, task, since) is None:
                    break
            time.sleep(0.1)
        return gr.skip(), gr.skip(), gr.skip(), gr.skip()

    outputs = [results.gallery, results.info, results.notice, results.code]
    stopped.then(show_stopped, moment, outputs, api_visibility="private", queue=False)


def whole(value: Any) -> Any:
    """Sliders and numbers arrive as floats; whole floats become ints, the rest is left for validation."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


GPU = dict(concurrency_id=GPU_QUEUE, concurrency_limit=1)


def ImageUpload(what: str | None = None, **kwargs: Any) -> gr.Image:
    """A gr.Image whose uploads are read by the studio (core.uploads), so a damaged or non-image file gets a message
    that says what to do instead of Gradio's "could not preprocess", and an animation's first frame or a 16-bit
    image is used with a note in the run's warnings (Gradio's own conversion clips 16-bit pixels).

    The reading replaces this one component's `preprocess`: a gr.Image subclass would do the same, but Gradio
    writes a `.pyi` stub next to the module of every component subclass it sees imported."""
    component = gr.Image(**kwargs)
    label, mode = what or (kwargs.get("label") or "image").lower(), kwargs.get("image_mode") or "RGB"

    def preprocess(payload: Any) -> Any:
        if payload is None or payload.path is None:
            return None
        try:
            image, notes = read_image(payload.path, label, mode)
        except StudioError as e:
            raise gr.Error(toast_text(str(e)), print_exception=False) from e
        image = ImageOps.exif_transpose(image) or image
        image.info["studio_notes"] = notes
        return image

    component.preprocess = preprocess  # type: ignore[method-assign]
    return component
