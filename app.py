"""Diffusion Studio's entry point: read the settings, build the Studio and the UI, load the model, launch."""

from __future__ import annotations

import logging
import os
import sys
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path

if "--verbose" not in sys.argv[1:]:
    # Quiet by default: transformers' and diffusers' notes (the torchvision fallback of image processors, "should
    # be kept in float32: []") come at import time, before the flags are parsed; --verbose keeps them.
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")

import ui.zerogpu  # first (isort keeps plain imports first): on ZeroGPU it imports `spaces` before torch
from core import settings as settings_module
from core.access import Owners, PasswordCheck
from core.checkpoints import DEMO
from core.errors import StudioError
from core.jobs import CancelFlags, Worker
from core.settings import Settings
from core.studio import Studio

logger = logging.getLogger("diffusion_studio")


def initial_load(studio: Studio, settings: Settings) -> str:
    """Load the start-up model; if it can't be had (offline, not cached), fall back to the demo.

    Returns a notice for the page when it fell back, else an empty string.
    """
    try:
        studio.load(settings.model, variant=settings.variant, dtype=settings.dtype)
        return ""
    except StudioError as e:
        if settings.model == DEMO:
            raise
        logger.warning("Could not load %s (%s); starting on the offline demo checkpoint.", settings.model, e)
        studio.load(DEMO, variant="auto", dtype=settings.dtype)
        return f"Could not load `{settings.model}`: {e} Started on the offline demo checkpoint instead."


def build_app(settings: Settings):
    """The Studio, the context the UI shares, and the Blocks app; nothing is loaded yet."""
    from ui.common import AppContext
    from ui.layout import build_ui

    if settings.public:
        os.environ["DIFFUSERS_DISABLE_REMOTE_CODE"] = "1"  # public servers never run code from a repo
    from PIL import Image

    # Pillow's own decompression-bomb check (at open, from the header) matches the app's limit.
    Image.MAX_IMAGE_PIXELS = settings.limits.max_image_pixels
    studio = Studio(settings.studio_options())
    ui.zerogpu.bind(studio)
    ctx = AppContext(
        studio=studio,
        settings=settings,
        cancel_flags=CancelFlags(),
        worker=Worker(),
        owners=Owners(settings.admin),
    )
    return studio, ctx, build_ui(ctx)


def load_initial_model(ctx, settings: Settings, *, background: bool) -> threading.Thread | None:
    """Load the start-up model, in a thread beside the running page when `background`.

    Start it after `launch()`: gradio patches tqdm when its queue starts, and a progress bar created before the
    patch and closed after it crashes.
    """

    def load() -> None:
        try:
            ctx.startup_notice = initial_load(ctx.studio, settings)
        except StudioError as e:
            ctx.startup_notice = f"Could not load `{settings.model}`: {e}"
            logger.error("%s", ctx.startup_notice)
        finally:
            ctx.starting = False

    ctx.starting = True  # the status line says a model is on its way from the first page view, fallback and all
    if not background:
        load()
        return None
    thread = threading.Thread(target=load, name="initial-load", daemon=True)
    thread.start()
    return thread


def outputs_warning(settings: Settings) -> str:
    """Public mode hands out saved images through Gradio, which serves files only from the working folder and the
    temp folder when no path is explicitly allowed; an outputs folder elsewhere would fail every gallery."""
    if not settings.public:
        return ""
    outputs = settings.outputs.resolve()
    servable = [Path.cwd().resolve(), Path(os.environ.get("GRADIO_TEMP_DIR") or tempfile.gettempdir()).resolve()]
    if any(outputs == root or root in outputs.parents for root in servable):
        return ""
    return (
        f"--outputs {outputs} is outside the working folder and the temp folder; in public mode Gradio will not hand "
        "images out from there. Pick an --outputs folder under the working folder."
    )


def public_blocked_paths(settings: Settings) -> list[str]:
    """What Gradio must never serve in public mode: everything in the working folder and in the app's own folder
    (the code, `.git`, configs) but the outputs folder, the page's assets and Gradio's upload cache. Gradio would
    hand out any file there that a handler returned; handlers return only server-side results, and this is the
    second lock."""
    uploads = Path(os.environ.get("GRADIO_TEMP_DIR") or Path(tempfile.gettempdir()) / "gradio")
    keep = [settings.outputs, Path(__file__).parent / "assets", uploads]
    keep = [path.resolve() for path in keep]
    blocked: list[str] = []

    def block_all_but_kept(folder: Path) -> None:
        for child in sorted(folder.iterdir()):
            child = child.resolve()
            if child in keep:
                continue
            if any(child in path.parents for path in keep) and child.is_dir():
                block_all_but_kept(child)  # an ancestor of a kept folder: block its other entries
            else:
                blocked.append(str(child))

    for root in dict.fromkeys([Path.cwd().resolve(), Path(__file__).resolve().parent]):
        block_all_but_kept(root)
    return sorted(set(blocked))


def launch(settings: Settings, app, *, ctx=None, prevent_thread_lock: bool = False):
    """Start the server with the settings' address, sharing, login and public-mode rules; with the UI's `ctx`, the
    AUTOMATIC1111-compatible API (`/sdapi/v1/...`, ui.sdapi) beside the page."""
    from ui.layout import css, page_script, theme

    warning = outputs_warning(settings)
    if warning:
        logger.warning("%s", warning)

    app.queue(default_concurrency_limit=1, max_size=settings.queue_size)
    under_way = ctx.cancel_flags.count if ctx is not None else None
    app_kwargs: dict = {"middleware": visitor_limits(settings, app, under_way)} if settings.public else {}
    if ctx is not None:
        from ui.sdapi import sdapi_routes

        # Routes given to FastAPI() come first in its router, before every route Gradio adds (none of which matches
        # /sdapi/ anyway), and serve wherever the page does, a share link too.
        app_kwargs["routes"] = sdapi_routes(ctx)
    return app.launch(
        server_name=settings.host,
        server_port=settings.port,
        share=settings.share,
        # A callable, so wrong passwords are throttled (Gradio's own check has no limit).
        auth=visitor_check(settings, ctx),
        show_error=not settings.public,  # public visitors see messages, never tracebacks
        # Public visitors get their images through Gradio's cache (content-hashed copies); the outputs folder itself
        # is not served, so no one fetches another visitor's file by its path.
        allowed_paths=[] if settings.public else [str(settings.outputs.resolve())],
        blocked_paths=public_blocked_paths(settings) if settings.public else None,
        max_file_size=settings.max_upload_bytes,
        inbrowser=settings.open_browser,
        prevent_thread_lock=prevent_thread_lock,
        css=css(),
        js=page_script(),
        theme=theme(),
        footer_links=["api", "gradio"],
        quiet=not settings.verbose,  # Gradio's own lines ("set `share=True` in `launch()`": our flag is --share)
        app_kwargs=app_kwargs or None,
        # Server-side rendering puts Gradio's Node proxy in front, which forwards only Gradio's own paths
        # (gradio/templates/node/build/proxy_routes.js): /sdapi/ would get the page's 404. Off is Gradio's default,
        # which GRADIO_SSR_MODE=true (as a Space may set) would change.
        ssr_mode=False,
    )


def visitor_check(settings: Settings, ctx) -> PasswordCheck | None:
    """`--auth`'s password check: the context's, which the HTTP API shares (one throttle on guesses for both)."""
    if ctx is not None and ctx.visitors is not None:
        return ctx.visitors
    return PasswordCheck(dict([settings.auth])) if settings.auth else None


def visitor_limits(settings: Settings, app, under_way=None) -> list:
    """Public mode: per-visitor caps on uploads and on waiting requests (ui.visitor_limits); `under_way(session)`
    counts a session's generations handed to the worker."""
    from starlette.middleware import Middleware

    from ui.visitor_limits import VisitorCookieMiddleware, VisitorLimits, VisitorLimitsMiddleware, waiting_in

    per_file = settings.max_upload_bytes or 10 * 1024 * 1024
    limits = VisitorLimits(max_upload_request_bytes=4 * per_file + 64 * 1024)
    return [
        Middleware(VisitorLimitsMiddleware, limits=limits, waiting=waiting_in(app, under_way)),
        Middleware(VisitorCookieMiddleware),  # History survives a reload: the visitor's own images, by a cookie
    ]


def main(argv: Sequence[str] | None = None, *, open_browser: bool = False) -> int:
    """`python app.py [flags]`; see `--help`."""
    settings = settings_module.from_args(argv, open_browser_default=open_browser)
    # Quiet by default: warnings and errors, and the ready line below; --verbose: every library's info too.
    logging.basicConfig(
        level=logging.INFO if settings.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    _studio, ctx, app = build_app(settings)
    ctx.worker.claim()  # generations run on this (the main) thread, which would otherwise only wait
    if ui.zerogpu.ON_ZERO_GPU:  # models are loaded (onto the emulated CUDA device) before the GPU workers fork
        load_initial_model(ctx, settings, background=False)
    _server, local_url, share_url = launch(settings, app, ctx=ctx, prevent_thread_lock=True)
    if not ui.zerogpu.ON_ZERO_GPU:
        # The page answers within seconds; a large checkpoint loads beside it and the status line follows.
        load_initial_model(ctx, settings, background=True)
    print(ready_line(settings, local_url, share_url), flush=True)
    try:
        ctx.worker.serve()
    except KeyboardInterrupt:
        print("Stopping the server.")
        app.close()
    return 0


def ready_line(settings: Settings, local_url: str, share_url: str | None) -> str:
    """The one line the console shows when the page is up: where to open it, and what it is loading."""
    where = share_url or local_url
    return (
        f"Diffusion Studio is ready: open {where}" + (f" (on this machine: {local_url})" if share_url else "") + " · "
        f"loading {settings.model} beside it; Ctrl+C stops the server."
    )


def cli() -> int:
    """The `diffusion-studio` console command: the same app, opening a browser tab on it (`--no-browser`: not)."""
    return main(open_browser=True)


if __name__ == "__main__":
    sys.exit(main())
