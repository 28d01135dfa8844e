"""The whole page: model panel and memory panel above the task tabs, Inspect and History beside them."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import gradio as gr

from core.tasks import TASKS
from ui.adapters_panel import build_adapters_panel
from ui.checkpoints_tab import build_checkpoints_tab
from ui.common import GPU_QUEUE, NOTHING_CHOSEN, AppContext, change_shared, session_of, user_errors
from ui.compare_tab import build_compare_tab
from ui.few_step import build_few_step_note, wire_few_step
from ui.history_tab import build_history_tab
from ui.inspect_tab import build_inspect_tab
from ui.memory_panel import build_memory_panel
from ui.model_panel import build_model_panel
from ui.owner_panel import build_owner_panel
from ui.pipeline_tab import wire_signature_tab
from ui.png_info_tab import build_png_info_tab
from ui.task_tab import TaskTab, build_task_tab

logger = logging.getLogger(__name__)
ASSETS = Path(__file__).resolve().parent.parent / "assets"
TITLE = "Diffusion Studio"
FOLLOW_FEW_STEP = ("auto", "module")  # the kinds of task whose tabs take a few-step model's steps and guidance


def build_ui(ctx: AppContext) -> gr.Blocks:
    """Build the Blocks app over `ctx.studio`; nothing is loaded or launched here."""
    # Gradio's cache (uploads, gallery copies) is swept: in public mode every 15 minutes of files over an hour old
    # (the outputs folder keeps the images; History reads it), locally once a day of a week's.
    sweep = (900, 3600) if ctx.settings.public else (86400, 7 * 86400)
    with gr.Blocks(title=TITLE, delete_cache=sweep) as app:
        gr.Markdown(
            f"# 🧨 {TITLE} <small>one checkpoint, loaded once, serving every task with `from_pipe`</small>",
            elem_id="title",
        )
        panel = build_model_panel(ctx)
        with gr.Row(elem_id="extras"):  # folded, side by side: each is one line until opened
            panel.image_prompt, loras = build_adapters_panel(ctx)
            with gr.Column(scale=2, min_width=240):
                memory = build_memory_panel(ctx)
        few_step_note = build_few_step_note()
        unserved = gr.HTML("", elem_id="unserved-tabs")  # the labels of the disabled tabs, for assets/app.js
        built: dict[str, TaskTab] = {}
        task_tabs: dict[str, gr.Tab] = {}
        with gr.Tabs(elem_id="tasks") as tabs:
            for name, spec in TASKS.items():  # one tab per task module, in its spec's order
                with gr.Tab(spec.tab_label or spec.label, id=name, elem_id=f"tab-{name}") as task_tabs[name]:
                    built[name] = build_task_tab(ctx, panel, spec)
            task_inputs = {name: tab.inputs for name, tab in built.items()}
            with gr.Tab("Compare", id="compare", elem_id="tab-compare"):
                build_compare_tab(ctx, panel)
            with gr.Tab("PNG info", id="png_info", elem_id="tab-png_info"):
                png_info = build_png_info_tab(ctx, panel, tabs, task_inputs, loras)
            if not ctx.settings.public:  # the server's cache and disk are the owner's business
                with gr.Tab("Checkpoints", id="checkpoints", elem_id="tab-checkpoints") as checkpoints_tab:
                    build_checkpoints_tab(ctx, panel, checkpoints_tab)
            with gr.Tab("Inspect", id="inspect", elem_id="tab-inspect"):
                inspect_outputs, inspect_fill = build_inspect_tab(ctx)
            with gr.Tab("History", id="history", elem_id="tab-history") as history_tab:
                history_gallery, history_fill = build_history_tab(ctx, png_info, tabs)

        def send_to_upscale(task: str):
            def send(index: Any, request: gr.Request) -> tuple:
                # By index into what this visitor's gallery showed, never a path from the browser.
                # A lone image needs no click; and the click's own round trip can still be on its way when the
                # button is pressed.
                session = session_of(request)
                image = ctx.shown.get(session, task, index) if index is not None else ctx.shown.only(session, task)
                if image is None:
                    raise gr.Error(NOTHING_CHOSEN, print_exception=False)
                return image, gr.Tabs(selected="upscale")

            return send

        upscale_input = built["upscale"].inputs["image"]
        for task, tab in built.items():
            if tab.send is not None:
                send = send_to_upscale(task)
                # Queued (with no limit): the error of a non-queued event never reached the page.
                tab.send.click(
                    send, tab.selected, [upscale_input, tabs], api_visibility="private", concurrency_limit=None
                )
        build_companion_api(ctx)
        few_step_tabs = {
            name: (task_tabs[name], tab) for name, tab in built.items() if TASKS[name].kind in FOLLOW_FEW_STEP
        }
        triggers = [event.success for event in panel.model_loads] + [loras.change]
        wire_few_step(ctx, few_step_note, panel.scheduler, few_step_tabs, triggers)
        if ctx.settings.public and ctx.owners.enabled:
            build_owner_panel(ctx)

        def fill_history(request: gr.Request) -> list:
            return history_fill(request)

        # Feature tabs (views over the main checkpoint beyond AutoPipeline's, e.g. safe SD, AnimateDiff) are disabled
        # where its family has no such pipeline; AutoPipeline tasks stay (inpaint may run on its companion).
        own_tabs = {name: task_tabs[name] for name, spec in TASKS.items() if spec.needs_its_family}
        auto_tabs = {name: task_tabs[name] for name, spec in TASKS.items() if spec.kind == "auto"}
        followers = [pair for tab in built.values() for pair in tab.follows_family]

        def follow_family() -> tuple:
            """Each family its default size; options and tabs a family lacks are hidden, not left to fail."""
            if not ctx.studio.is_loaded:
                return tuple(gr.update() for _ in family_outputs)
            info = ctx.studio.model_info()
            size, options = info["default_size"], info["options"]
            updates = []
            for control, what in followers:
                if what == "size" and info.get("signature") is not None:
                    updates.append(gr.update())  # not a model of these tabs (an audio UNet's "size" is its samples)
                elif what == "size":
                    updates.append(gr.update(value=size, step=info["size_multiple"]))
                elif isinstance(control, gr.Accordion):  # its option, or any of its controls' ("sag|pag")
                    updates.append(gr.update(visible=any(option in options for option in what.split("|"))))
                else:
                    updates.append(gr.update(visible=what in options, value=0))
            # Gradio 6.31 ignores `visible` updates of a Tab (its button stays); a disabled one is hidden by
            # assets/style.css, and in the overflow menu (whose buttons carry no disabled state) by the page
            # script, which reads the labels from `unserved`.
            # A pipeline that serves none of the AutoPipeline tasks (DDPM and DiT in the Pipeline tab; Versatile
            # Diffusion, BLIP Diffusion, Spectrogram Diffusion in tabs of their own) has them all off, and opens on
            # its own first tab (the Pipeline tab selects itself).
            no_auto = not any(name in info["tasks"] for name in auto_tabs)
            off = [name for name in own_tabs if name not in info["tasks"]]
            off += [name for name in auto_tabs if no_auto and name not in info["tasks"]]
            labels = [TASKS[name].tab_label or TASKS[name].label for name in off]
            tabs_now = (gr.Tab(interactive=name not in off) for name in (*own_tabs, *auto_tabs))
            served = [name for name in TASKS if name in info["tasks"]]
            if info.get("signature") is not None:  # the Pipeline tab first: the checkpoint's own call
                served = sorted(served, key=lambda name: TASKS[name].kind != "signature")
            selected = gr.Tabs(selected=served[0]) if no_auto and served else gr.update()
            return (*updates, *tabs_now, "|".join(labels), selected)

        family_outputs = (
            [control for control, _ in followers]
            + list(own_tabs.values())
            + list(auto_tabs.values())
            + [unserved, tabs]
        )
        for event in panel.model_loads:
            event.success(follow_family, None, family_outputs, api_visibility="private")
        signature_tabs = [name for name, spec in TASKS.items() if spec.kind == "signature"]
        follow_signature = [
            wire_signature_tab(ctx, built[name], task_tabs[name], tabs, panel.model_loads) for name in signature_tabs
        ]
        for event in panel.loaded:
            event.then(inspect_fill, None, inspect_outputs, api_visibility="private")
            memory.refresh_after(event)
        # Filled when the tab opens: a gallery's change event fires on every live-preview frame, and refilling
        # then re-read (and Gradio re-hashed) up to 200 saved PNGs per frame.
        history_tab.select(fill_history, None, history_gallery, api_visibility="private", queue=False)

        def visitor_left(request: gr.Request) -> None:
            """A closed (or reloaded) tab ends that visitor's running generation, as Stop would."""
            ctx.cancel_flags.cancel(session_of(request))
            ctx.shown.forget(session_of(request))

        app.unload(visitor_left)

        # On page open, and every few seconds while a start-up load runs, show what is loaded.
        # With the picker's value: what a user typed meanwhile is kept (a page-open refresh once replaced it).
        app.load(panel.refresh, [panel.scheduler, panel.source], panel.refresh_outputs, api_visibility="private")
        app.load(inspect_fill, None, inspect_outputs, api_visibility="private")
        app.load(follow_family, None, family_outputs, api_visibility="private")
        for follow, signature_outputs in follow_signature:
            app.load(lambda follow=follow: follow(True), None, signature_outputs, api_visibility="private")
        opened = [output for _refresh, outputs in ctx.on_page_open for output in outputs]

        def page_opened() -> tuple:
            values: list = []
            for refresh, outputs in ctx.on_page_open:
                try:
                    value = refresh()
                except Exception:  # e.g. a load replacing the pool meanwhile: that panel keeps what it shows
                    logger.warning("A panel could not be refreshed on page open", exc_info=True)
                    values.extend(gr.update() for _ in outputs)
                    continue
                values.extend(value if len(outputs) > 1 else [value])
            return tuple(values)

        if opened:
            # Queued (on the memory queue, which never waits behind a run): a gr.render that a non-queued event
            # re-draws (the LoRA list) registers no events for its buttons (Gradio 6.31: "KeyError: fn_index").
            app.load(
                page_opened, None, opened, api_visibility="private", concurrency_id="memory", concurrency_limit=None
            )
        status_timer = gr.Timer(1.0, active=ctx.studio.loading is not None or not ctx.studio.is_loaded)

        def poll_status(scheduler: str, typed: str) -> tuple:
            still = ctx.studio.loading is not None or not ctx.studio.is_loaded
            return (*panel.refresh(scheduler, typed), gr.Timer(active=still))

        status_timer.tick(
            poll_status,
            [panel.scheduler, panel.source],
            [*panel.refresh_outputs, status_timer],
            api_visibility="private",
            concurrency_id="memory",
            concurrency_limit=None,
            show_progress="hidden",
        ).then(inspect_fill, None, inspect_outputs, api_visibility="private", show_progress="hidden")
    return app


def build_companion_api(ctx: AppContext) -> None:
    """`/load_companion(kind, source)` and `/unload_companion(kind)` for scripts (the tabs have their own buttons):
    endpoints with no widget, so `gr.api` rather than hidden buttons and textboxes."""

    @user_errors
    def load_companion(kind: str, source: str) -> dict:
        """Load a task's companion checkpoint (kind: inpaint, depth, variation, upscale_x4, upscale_x2, ldm3d,
        motion_adapter) from a Hub id, a folder, or demo-<kind>."""
        # Any visitor may add what a tab needs (public mode: curated sources only); on the worker, between runs.
        return ctx.worker.call(ctx.studio.load_companion, str(kind or ""), str(source or ""))

    @user_errors
    def unload_companion(kind: str, request: gr.Request = None) -> dict:
        """Unload a companion and free its memory."""
        return change_shared(ctx, request, "Unloading a companion", ctx.studio.unload_companion, str(kind or ""))

    gr.api(load_companion, api_name="load_companion", concurrency_id=GPU_QUEUE)
    gr.api(unload_companion, api_name="unload_companion", concurrency_id=GPU_QUEUE)


def css() -> str:
    return (ASSETS / "style.css").read_text(encoding="utf-8")


def page_script() -> str:
    """The page's script: folding the model bar on a phone, Ctrl+Enter, the progress in the tab's title."""
    return (ASSETS / "app.js").read_text(encoding="utf-8")


def theme() -> gr.Theme:
    """Gradio's Soft theme in the colours of the 🧨; it follows the system's light or dark setting."""
    # System fonts: the theme's Google font would be fetched from Google by every visitor's browser (and fails
    # offline).
    fonts = ("ui-sans-serif", "system-ui", "sans-serif")
    mono = ("ui-monospace", "SFMono-Regular", "Menlo", "monospace")
    return gr.themes.Soft(primary_hue="orange", secondary_hue="amber", neutral_hue="slate", font=fonts, font_mono=mono)
