"""The History tab: this visitor's images of this session, as saved (with metadata) in the outputs folder."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import gradio as gr

from core.errors import InvalidRequest
from core.png_info import text_chunks
from ui.common import AppContext, session_of


def history_items(ctx: AppContext, request: gr.Request | None) -> list[tuple[str, str]]:
    """(path, caption) of the visitor's saved images, newest first."""
    if ctx.studio.outputs is None:
        return []
    items = []
    for path in ctx.studio.outputs.list(session_of(request))[:200]:
        try:
            stamp = path.stat().st_mtime_ns
        except OSError:
            continue  # deleted meanwhile (the outputs cap)
        items.append((str(path), _caption(str(path), stamp)))
    return items


@lru_cache(maxsize=4096)
def _caption(path: str, _mtime_ns: int) -> str:
    """A saved image's caption from its text chunks (never its pixels), read once per file version."""
    try:
        meta = json.loads(text_chunks(path).get("diffusion_studio", "{}"))
        return f"{meta.get('task')} · seed {meta['seeds'][meta.get('image_index', 0)]} · {meta.get('prompt', '')[:60]}"
    except (InvalidRequest, ValueError, KeyError, IndexError, TypeError):
        return Path(path).name  # an image without our metadata still shows, captioned by its file name


def build_history_tab(ctx: AppContext) -> tuple[gr.Gallery, object]:
    """Build the tab; returns the gallery and its refresh function."""
    folder = ctx.settings.outputs
    gr.Markdown(
        f"Every image is saved as a PNG with its parameters in `{folder}` before it is shown, so closing the "
        "browser loses nothing. You see only your own session's images."
    )
    gallery = gr.Gallery(label="This session", format="png", columns=4, height=520, elem_id="history-gallery")
    return gallery, lambda request: history_items(ctx, request)
