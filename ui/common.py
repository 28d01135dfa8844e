"""What every UI module shares: error translation, the visitor's session id, small formatting helpers."""

from __future__ import annotations

import functools
import html
import inspect
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import gradio as gr

from core.access import Owners, PasswordCheck
from core.batching import Batcher
from core.errors import StudioError
from core.jobs import CancelFlags, ShownResults, Worker
from core.settings import Settings
from core.studio import Studio
from ui import zerogpu

logger = logging.getLogger("diffusion_studio.ui")
F = TypeVar("F", bound=Callable[..., Any])

GPU_QUEUE = "gpu"  # every event that runs a model shares this queue, one at a time


@dataclass
class AppContext:
    """What the UI builders receive: the engine, the settings, the per-visitor cancel flags and the worker."""

    studio: Studio
    settings: Settings
    cancel_flags: CancelFlags
    worker: Worker  # runs the generations, one at a time (see core.jobs.Worker)
    startup_notice: str = ""  # e.g. why the app fell back to the demo checkpoint
    starting: bool = False  # the start-up load (and its fallback to the demo) is still under way
    # What each page refreshes when it opens (a reload too): (function, outputs) of panels whose state lives on the
    # server (companions, adapters), so a reload never shows "not loaded" for something that serves.
    on_page_open: list[tuple[Callable[[], Any], list[Any]]] = field(default_factory=list)
    shown: ShownResults = field(default_factory=ShownResults)  # what each visitor's galleries show
    owners: Owners = field(default_factory=lambda: Owners(None))  # public mode: who may change shared state
    # `--auth`'s check, one for the page's login and the HTTP API (ui.sdapi): one throttle on guesses for both.
    visitors: PasswordCheck | None = field(init=False, default=None)
    # Visitors' text-to-image requests that arrive together, gathered into one call (core.batching); None: one at a
    # time (`--batch-visitors 1`, and on ZeroGPU, where each run is a forked process of its own).
    batcher: Batcher | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self.visitors = PasswordCheck(dict([self.settings.auth])) if self.settings.auth else None
        if self.settings.batch_visitors > 1 and not zerogpu.ON_ZERO_GPU:
            limits = self.studio.options.limits
            self.batcher = Batcher(
                self.worker, self.studio.generate_batch, max_images=limits.max_images,
                max_members=self.settings.batch_visitors,
            )  # fmt: skip


# What a button that acts on a gallery's clicked image says when none is (a user's mistake: no traceback logged).
NOTHING_CHOSEN = "Click an image in the gallery first, then press this button."


def toast_text(message: str) -> str:
    """An engine message as a toast shows it: Gradio renders a toast's message as HTML, so the text is escaped
    (it can hold what a visitor typed), and the Markdown `code` spans the engine writes (which a toast showed as
    literal backticks) become quotes, which read well in a script's error too."""
    return re.sub(r"`([^`]+)`", r"“\1”", html.escape(message, quote=False))


def user_errors(fn: F) -> F:
    """Show the engine's errors to the user as they are; log anything else and show a short message."""

    def shown(e: Exception) -> gr.Error:
        if isinstance(e, gr.Error):
            return e
        if isinstance(e, StudioError):
            return gr.Error(toast_text(str(e)), print_exception=False)
        # Shown as a message instead of a dead spinner; the traceback goes to the log.
        logger.exception("Unexpected error in %s", fn.__name__)
        return gr.Error(
            f"Something went wrong ({type(e).__name__}). The model is still loaded; try again, and if it "
            "keeps failing, check the server log."
        )

    if inspect.isgeneratorfunction(fn):  # handlers that stream (live previews) fail while being iterated

        @functools.wraps(fn)
        def streaming(*args: Any, **kwargs: Any) -> Any:
            try:
                yield from fn(*args, **kwargs)
            except Exception as e:
                error = shown(e)
                raise error from (None if error is e else e)

        return streaming  # type: ignore[return-value]

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except Exception as e:
            error = shown(e)
            raise error from (None if error is e else e)

    return wrapper  # type: ignore[return-value]


T = TypeVar("T")


def change_shared(ctx: AppContext, request: gr.Request | None, what: str, change: Callable[..., T], *args: Any) -> T:
    """Change what every visitor shares (`what`, e.g. "Loading a checkpoint"): in public mode only the owner may.
    It runs on the worker, between generations, so no run sees the shared modules half-changed."""
    if ctx.settings.public and not ctx.owners.is_owner(session_of(request)):
        how = (
            "log in as the owner first (the Owner panel at the bottom of the page)"
            if ctx.owners.enabled
            else "its owner sets that when starting the server (flags, spaces_config.yaml)"
        )
        raise gr.Error(f"{what} changes what every visitor of this public server gets; {how}.", print_exception=False)
    return ctx.worker.call(change, *args)


def session_of(request: gr.Request | None) -> str:
    """The visitor's session id (`local` when called without a request, e.g. from tests)."""
    return (request.session_hash if request is not None else None) or "local"


def visitor_of(request: gr.Request | None) -> str:
    """Whose saved images these are: the visitor's cookie id on a public server (ui.visitor_limits), which outlives
    the page's session, else the session. Stop flags and gallery selections stay per session."""
    from ui.visitor_limits import visitor_id

    try:
        cookies = dict(request.cookies or {}) if request is not None else {}
    except Exception:  # a request without HTTP behind it (a test's, an API call gradio builds itself)
        cookies = {}
    found = visitor_id(cookies)
    return f"visitor-{found}" if found else session_of(request)


def fmt_bytes(n: int | float | None) -> str:
    """`1536000` -> `1.46 MB`."""
    if n is None:
        return "?"
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1024
    return f"{n:.2f} TB"
