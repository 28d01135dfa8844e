"""The box a task tab shows when it needs a companion checkpoint: what it is, Load, Unload."""

from __future__ import annotations

import gradio as gr

from core.checkpoints import DEMO
from core.demo.companions import demo_choices
from ui.common import GPU_QUEUE, AppContext, change_shared, user_errors


def companion_choices(ctx: AppContext, kind: str) -> list[str]:
    """The curated Hub checkpoint for this companion, and the offline demo's twins (not in public mode, unless the
    demo is one of its models)."""
    curated = ctx.settings.curated_companions.get(kind)
    demos = [] if ctx.settings.public and DEMO not in ctx.settings.model_choices else list(demo_choices(kind))
    return ([curated] if curated else []) + demos


def default_companion(ctx: AppContext, kind: str) -> str:
    """The picker's first choice: the tiny twin while the app serves the offline demo (it fell back to it when the
    start-up model could not be had) or runs offline, where a Hub id could not load; else the real checkpoint."""
    choices = companion_choices(ctx, kind)
    studio = ctx.studio
    # The pool's own source, not model_info(): this runs for every companion picker each time a page opens.
    on_demo = ctx.settings.model == DEMO or (studio.is_loaded and studio.pool.files.source == DEMO)
    demos = [c for c in choices if c.startswith(DEMO + "-")]
    return demos[0] if demos and (on_demo or ctx.settings.offline) else choices[0]


def companion_status(ctx: AppContext, kinds: tuple[str, ...]) -> str:
    loaded = ctx.studio.companions_info()["companions"]
    parts = []
    for kind in kinds:
        name = kind.replace("_", " ")
        parts.append(f"✅ {name}: `{loaded[kind]}`" if kind in loaded else f"⬜ {name}: not loaded")
    return " · ".join(parts)


def build_companion_box(ctx: AppContext, kinds: tuple[str, ...], purpose: str, *, needed: bool = True) -> gr.Markdown:
    """A row to load or unload each companion `kinds` names (one the task `needed`, or an option); returns the
    status line."""
    with gr.Group():
        intro = (
            "This task needs its own checkpoint beside the loaded one:"
            if needed
            else "Optional, beside the loaded one:"
        )
        gr.Markdown(f"{intro} {purpose}")
        status = gr.Markdown(companion_status(ctx, kinds), elem_id=f"companion-status-{kinds[0]}")
        for kind in kinds:
            choices = companion_choices(ctx, kind)
            with gr.Row(equal_height=True):
                source = gr.Dropdown(
                    choices,
                    value=default_companion(ctx, kind),  # set again when a page opens (see below)
                    label=f"{kind.replace('_', ' ')} checkpoint",
                    allow_custom_value=not ctx.settings.public,
                    scale=4,
                    elem_id=f"companion-source-{kind}",
                )
                load = gr.Button("Load", scale=1, elem_id=f"companion-load-{kind}")
                unload = gr.Button("Unload", scale=1, variant="secondary")

            on_load, on_unload = _handlers(ctx, kind, kinds)
            load.click(on_load, source, status, api_visibility="private", concurrency_id=GPU_QUEUE)
            unload.click(on_unload, None, status, api_visibility="private", concurrency_id=GPU_QUEUE)
            ctx.on_page_open.append((lambda kind=kind: default_companion(ctx, kind), [source]))
    ctx.on_page_open.append((lambda: companion_status(ctx, kinds), [status]))
    return status


def _handlers(ctx: AppContext, kind: str, kinds: tuple[str, ...]):
    @user_errors
    def on_load(source: str, progress=gr.Progress(track_tqdm=True)) -> str:
        progress(0, desc=f"Loading {source}…")
        ctx.worker.call(ctx.studio.load_companion, kind, source)  # any visitor may add what a tab needs
        return companion_status(ctx, kinds)

    @user_errors
    def on_unload(request: gr.Request = None) -> str:
        change_shared(ctx, request, "Unloading a companion", ctx.studio.unload_companion, kind)
        return companion_status(ctx, kinds)

    return on_load, on_unload
