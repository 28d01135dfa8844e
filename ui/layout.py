"""The whole page: model panel and memory panel above the task tabs, Inspect and History beside them."""

from __future__ import annotations

from pathlib import Path

import gradio as gr

from ui.common import AppContext
from ui.generate_tab import build_generate_tab
from ui.history_tab import build_history_tab, history_items
from ui.inspect_tab import build_inspect_tab
from ui.memory_panel import build_memory_panel
from ui.model_panel import build_model_panel

ASSETS = Path(__file__).resolve().parent.parent / "assets"
TITLE = "Diffusion Studio"


def build_ui(ctx: AppContext) -> gr.Blocks:
    """Build the Blocks app over `ctx.studio`; nothing is loaded or launched here."""
    with gr.Blocks(title=TITLE) as app:
        gr.Markdown(f"# 🧨 {TITLE}\nOne checkpoint, loaded once, serving every task with `from_pipe`.", elem_id="title")
        panel = build_model_panel(ctx)
        memory = build_memory_panel(ctx)
        galleries = []
        with gr.Tabs(elem_id="tasks"):
            for task, label in (("text2img", "Text to image"), ("img2img", "Image to image"), ("inpaint", "Inpaint")):
                with gr.Tab(label, id=task, elem_id=f"tab-{task}"):
                    galleries.append(build_generate_tab(ctx, panel, task))
            with gr.Tab("Inspect", id="inspect", elem_id="tab-inspect"):
                inspect_outputs, inspect_fill = build_inspect_tab(ctx)
            with gr.Tab("History", id="history", elem_id="tab-history") as history_tab:
                history_gallery, history_fill = build_history_tab(ctx)

        def fill_history(request: gr.Request) -> list:
            return history_fill(request)

        for event in panel.loaded:
            event.then(inspect_fill, None, inspect_outputs, api_visibility="private")
            memory.refresh_after(event)
        for gallery in galleries:
            gallery.change(fill_history, None, history_gallery, api_visibility="private", queue=False)
        history_tab.select(fill_history, None, history_gallery, api_visibility="private", queue=False)

        # On page open, and every few seconds while a start-up load runs, show what is loaded.
        app.load(panel.refresh, panel.scheduler, panel.refresh_outputs, api_visibility="private")
        app.load(inspect_fill, None, inspect_outputs, api_visibility="private")
        status_timer = gr.Timer(1.0, active=ctx.studio.loading is not None or not ctx.studio.is_loaded)

        def poll_status(scheduler: str) -> tuple:
            still = ctx.studio.loading is not None or not ctx.studio.is_loaded
            return (*panel.refresh(scheduler), gr.Timer(active=still))

        status_timer.tick(
            poll_status,
            panel.scheduler,
            [*panel.refresh_outputs, status_timer],
            api_visibility="private",
            concurrency_id="memory",
            concurrency_limit=None,
            show_progress="hidden",
        ).then(inspect_fill, None, inspect_outputs, api_visibility="private", show_progress="hidden")
    return app


def history_for(ctx: AppContext, request: gr.Request) -> list:
    """Exposed for tests: the history a visitor would see."""
    return history_items(ctx, request)


def css() -> str:
    return (ASSETS / "style.css").read_text(encoding="utf-8")
