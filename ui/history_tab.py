"""The History tab: this visitor's images of this session, as saved (with metadata) in the outputs folder."""

from __future__ import annotations

import json

import gradio as gr
from PIL import Image

from ui.common import AppContext, session_of


def history_items(ctx: AppContext, request: gr.Request | None) -> list[tuple[str, str]]:
    """(path, caption) of the visitor's saved images, newest first."""
    if ctx.studio.outputs is None:
        return []
    items = []
    for path in ctx.studio.outputs.list(session_of(request))[:200]:
        caption = path.name
        try:
            with Image.open(path) as im:
                meta = json.loads(im.text.get("diffusion_studio", "{}"))
            caption = (
                f"{meta.get('task')} · seed {meta['seeds'][meta.get('image_index', 0)]} · {meta.get('prompt', '')[:60]}"
            )
        except (OSError, ValueError, KeyError, IndexError):
            pass  # an image without our metadata still shows, captioned by its file name
        items.append((str(path), caption))
    return items


def build_history_tab(ctx: AppContext) -> tuple[gr.Gallery, object]:
    """Build the tab; returns the gallery and its refresh function."""
    folder = ctx.settings.outputs
    gr.Markdown(
        f"Every image is saved as a PNG with its parameters in `{folder}` before it is shown, so closing the "
        "browser loses nothing. You see only your own session's images."
    )
    gallery = gr.Gallery(label="This session", format="png", columns=4, height=520, elem_id="history-gallery")
    return gallery, lambda request: history_items(ctx, request)
