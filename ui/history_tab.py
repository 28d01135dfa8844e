"""The History tab: an outputs browser over the saved PNGs (with their metadata) in the outputs folder.

Locally it shows every image saved there, newest first, so a reload (or a restart) loses nothing; on a public
server each visitor sees only their own, by the visitor cookie, so across reloads too (ui.common.visitor_of). A
selection is an index into the list the server showed that visitor (ui.common.ShownResults), never a path from the
browser.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

import gradio as gr

from core.errors import InvalidRequest
from core.png_info import text_chunks
from ui.common import NOTHING_CHOSEN, AppContext, session_of, user_errors, visitor_of

SHOWN_KEY = "history"  # ShownResults' key for what the History gallery showed
MOST = 200


def history_items(ctx: AppContext, request: gr.Request | None) -> list[tuple[str, str]]:
    """(path, caption) of the saved images this visitor may see, newest first."""
    if ctx.studio.outputs is None:
        return []
    session = session_of(request)
    everyone = not ctx.settings.public  # locally the owner sees every saved image, from any browser session
    items, paths = [], []
    for path in ctx.studio.outputs.list(None if everyone else visitor_of(request))[:MOST]:
        try:
            stamp = path.stat().st_mtime_ns
        except OSError:
            continue  # deleted meanwhile (the outputs cap)
        items.append((str(path), caption(str(path), stamp)))
        paths.append(str(path))
    ctx.shown.put(session, SHOWN_KEY, paths)
    return items


@lru_cache(maxsize=4096)
def caption(path: str, _mtime_ns: int) -> str:
    """A saved image's caption from its text chunks (never its pixels), read once per file version: task,
    scheduler, steps and seed, then the prompt."""
    try:
        meta = json.loads(text_chunks(path).get("diffusion_studio", "{}"))
        seed = meta["seeds"][meta.get("image_index", 0)]
        parts = [meta.get("task"), meta.get("scheduler"), f"{meta.get('steps')} steps", f"seed {seed}"]
        return " · ".join(str(p) for p in parts if p) + f" · {meta.get('prompt', '')[:60]}"
    except (InvalidRequest, ValueError, KeyError, IndexError, TypeError):
        return Path(path).name  # an image without our metadata still shows, captioned by its file name


def build_history_tab(ctx: AppContext, png_info: Any, tabs: gr.Tabs) -> tuple[gr.Gallery, Any]:
    """Build the tab; returns the gallery and its fill function. `png_info` is ui.png_info_tab.PngInfoTab."""
    folder = ctx.settings.outputs
    whose = (
        "You see only your own session's images."
        if ctx.settings.public
        else "It lists every image saved there, newest first, so a reload or a restart loses nothing."
    )
    gr.Markdown(
        f"Every image is saved as a PNG with its parameters in `{folder}` before it is shown. {whose} Click one, "
        "then send its settings back to the tab that made it, or open it in PNG info."
    )
    gallery = gr.Gallery(
        label="Saved images", format="png", columns=4, height=520, elem_id="history-gallery", allow_preview=True
    )
    with gr.Row():
        refresh = gr.Button("Refresh", size="sm", elem_id="history-refresh")
        send = gr.Button("Send to its tab", size="sm", variant="primary", elem_id="history-send")
        open_png = gr.Button("Open in PNG info", size="sm", elem_id="history-png-info")
    selected = gr.State(None)

    def fill(request: gr.Request) -> list:
        return history_items(ctx, request)

    def remember(evt: gr.SelectData) -> Any:
        return evt.index if isinstance(evt.index, int) and not isinstance(evt.index, bool) else None

    def chosen(index: Any, request: gr.Request) -> str:
        path = ctx.shown.get(session_of(request), SHOWN_KEY, index)
        if path is None:
            raise gr.Error(NOTHING_CHOSEN, print_exception=False)
        return path

    @user_errors
    def send_it(index: Any, request: gr.Request) -> tuple:
        return png_info.send_to_its_tab(chosen(index, request))

    @user_errors
    def open_it(index: Any, request: gr.Request) -> tuple:
        return png_info.open(chosen(index, request))

    gallery.select(remember, None, selected, api_visibility="private", queue=False)
    refresh.click(fill, None, gallery, api_visibility="private", concurrency_limit=None)
    send.click(send_it, selected, png_info.send_outputs, api_visibility="private", concurrency_limit=None)
    open_png.click(open_it, selected, png_info.open_outputs, api_visibility="private", concurrency_limit=None)
    return gallery, fill
