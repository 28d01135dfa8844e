"""The model panel above the tabs: checkpoint, variant, dtype, VAE, scheduler, safety checker, status."""

from __future__ import annotations

import contextvars
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import gradio as gr

from core import schedulers
from core.checkpoints import VARIANT_CHOICES
from core.devices import DTYPE_CHOICES
from ui import zerogpu
from ui.common import GPU_QUEUE, AppContext, change_shared, fmt_bytes, user_errors

DEMO_BANNER = (
    "**You are on the offline demo checkpoint**: tiny random weights, so every image is noise. For real images, "
    "load a real model (the bar below) while online."
)
PUBLIC_DEMO_BANNER = (
    "**This server runs the offline demo checkpoint**: tiny random weights, so every image is noise. Its owner "
    "picks the model."
)

ZERO_GPU_NOTE = (
    "**Running on ZeroGPU**: a GPU is lent for each generation, so Stop and live previews are off here, and a "
    "queue may form. Run the studio locally for the full set."
)


@dataclass
class ModelPanel:
    """The panel's components, for the tabs to read and the app to wire."""

    source: gr.Dropdown
    variant: gr.Dropdown
    dtype: gr.Dropdown
    load_button: gr.Button
    vae: gr.Dropdown
    vae_button: gr.Button
    scheduler: gr.Dropdown
    safety_checker: gr.Checkbox
    status: gr.Markdown
    banner: gr.Markdown
    info: gr.JSON
    loaded: list[Any]  # the events that end a load or a VAE swap, for other panels to refresh after
    refresh: Callable[..., tuple]  # the panel's own refresh (scheduler, typed source): page load, the status timer
    refresh_outputs: list[Any]
    image_prompt: Any = None  # the IP-Adapter's image prompt (set by the adapters panel), an input of every task
    model_loads: list[Any] = field(default_factory=list)  # the events that load a checkpoint (Load, the cache tab)
    load_model: Callable[..., dict] | None = None  # the Load button's function (with its download progress)
    progress: Any = None  # the line under the bar where load progress (and a failure's pill) shows

    def wire_load(self, trigger: Callable[..., Any], fn: Callable[..., dict], inputs: list[Any]) -> None:
        """Another button that loads a checkpoint: the model queue, progress under the bar, the panel's refresh (after
        a failure too: it shows what still serves), and whatever the page refreshes after a load."""
        event = trigger(
            fn, inputs, self.info, api_visibility="private", concurrency_id=GPU_QUEUE, show_progress_on=self.progress
        )
        event.success(self.refresh, self.scheduler, self.refresh_outputs, api_visibility="private")
        event.failure(self.refresh, self.scheduler, self.refresh_outputs, api_visibility="private")
        self.model_loads.append(event)
        self.loaded.append(event)


def preflight_markdown(report: dict | None) -> str:
    """The preflight card: what a load would download and need in memory, and whether it fits."""
    if not report:
        return ""
    icon = {"fits": "✅", "tight": "⚠️", "does not fit": "⛔"}[report["verdict"]]
    cached = report["total_bytes"] - report["download_bytes"]
    lines = [
        f"{icon} **{report['model']}** is a `{report['pipeline']}` with variants {', '.join(report['variants'])}.",
        f"Variant **{report['variant']}**: download **{fmt_bytes(report['download_bytes'])}**"
        + (f" ({fmt_bytes(cached)} {'already cached' if report['hub'] else 'on disk'})" if cached else "")
        + f"; in {report['dtype']} it needs **{fmt_bytes(report['memory_bytes'])}** on {report['device']}, which has "
        f"{fmt_bytes(report['free_bytes'])} free: **{report['verdict']}**.",
        "",
        "| component | parameters | stored as | in memory |",
        "| --- | ---: | --- | ---: |",
        *(
            f"| {c['name']} | {c['parameters']:,} | {', '.join(c['stored_dtypes']) or 'pickle (not read)'} | "
            f"{fmt_bytes(c['bytes'])} |"
            for c in report["components"]
        ),
    ]
    if report["verdict"] == "does not fit":
        lines.append("\nTry a smaller dtype (bfloat16/float16), the fp16 variant, or a memory mode (offload).")
    return "\n".join(lines)


def status_markdown(ctx: AppContext) -> str:
    """One line saying what is loaded, or what is loading."""
    studio = ctx.studio
    if not studio.is_loaded:
        if studio.loading:
            return f"⏳ Loading **{studio.loading}**…"
        if ctx.starting:  # between the start-up model failing and the demo's fallback
            return f"⏳ Loading the start-up model (**{ctx.settings.model}**, or the offline demo if it can't be had)…"
        return "No model loaded yet. Pick one and press **Load**."
    info = studio.model_info()
    parts = [
        f"**{info['pipeline']}**",
        f"`{info['model']}`",
        info["device"],
        info["dtype"],
        f"variant {info['variant']}",
        f"VAE {info['vae']}",
        f"loaded in {info['load_seconds']:.1f} s",
    ]
    loading = f" · ⏳ loading **{studio.loading}**…" if studio.loading else ""
    return "✅ " + " · ".join(parts) + loading


def banner_markdown(ctx: AppContext) -> str:
    studio = ctx.studio
    notes = [ctx.startup_notice] if ctx.startup_notice else []
    if studio.is_loaded and studio.model_info()["is_demo"]:
        # A public server's visitors can't load another model (its owner does): don't tell them to.
        notes.append(PUBLIC_DEMO_BANNER if ctx.settings.public else DEMO_BANNER)
    if zerogpu.ON_ZERO_GPU:
        notes.append(ZERO_GPU_NOTE)
    return "\n\n".join(notes)


def _banner(ctx: AppContext) -> dict:
    text = banner_markdown(ctx)
    return gr.update(value=text, visible=bool(text))  # an empty banner would still draw its coloured bar


def build_model_panel(ctx: AppContext) -> ModelPanel:
    """Build the panel; its Load and VAE buttons are the `/load_model` and `/set_vae` endpoints."""
    settings = ctx.settings
    public = settings.public
    model_choices = [(m.label, m.id) for m in settings.curated_models]
    if settings.model not in [m.id for m in settings.curated_models]:
        model_choices.insert(0, (settings.model, settings.model))
    banner = gr.Markdown(banner_markdown(ctx), elem_id="banner", elem_classes=["banner"], visible=True)
    status = gr.Markdown(status_markdown(ctx), elem_id="model-status")
    # A compact bar above the tabs (a phone folds it on page open: assets/app.js), so the prompt comes first.
    with gr.Accordion("Model, VAE and scheduler", open=True, elem_id="model-bar"):
        with gr.Row(equal_height=True, elem_id="model-panel"):
            source = gr.Dropdown(
                model_choices,
                value=settings.model,
                label="Checkpoint",
                info="Set by this server's owner"
                if public
                else "a curated model, a Hub id (org/name), a folder or a .safetensors file",
                allow_custom_value=not public,
                scale=4,
                min_width=240,
                elem_id="model-source",
            )
            variant = gr.Dropdown(
                list(VARIANT_CHOICES),
                value=settings.variant,
                label="Variant",
                allow_custom_value=True,  # a saved variant (e.g. bf16); the engine checks it against the files
                scale=1,
                min_width=120,
            )
            dtype = gr.Dropdown(list(DTYPE_CHOICES), value=settings.dtype, label="dtype", scale=1, min_width=120)
            with gr.Column(scale=1, min_width=110):
                load_button = gr.Button("Load", variant="primary", size="sm", elem_id="load-button")
                check_button = gr.Button("Check size", size="sm", elem_id="check-button")
            vae = gr.Dropdown(
                ["default", *settings.curated_vaes],
                value="default",
                label="VAE",
                info="default = the checkpoint's own" + ("" if public else "; or a Hub id / folder"),
                allow_custom_value=not public,
                scale=2,
                min_width=160,
                elem_id="vae-source",
            )
            with gr.Column(scale=0, min_width=100):
                vae_button = gr.Button("Apply VAE", size="sm", elem_id="vae-apply")
            # Built with every catalog name: gradio checks API values against these, not a session's narrowed
            # list; the engine rejects a name the loaded checkpoint can't use, with the list of those it can.
            scheduler = gr.Dropdown(
                [schedulers.DEFAULT, *(c.name for c in schedulers.CATALOG)],
                value=schedulers.DEFAULT,
                label="Scheduler",  # the list holds only those this model can use
                scale=2,
                min_width=160,
                elem_id="scheduler",
            )
            safety_checker = gr.Checkbox(
                value=True,
                label="Safety checker",
                info="Always on for a public server" if public else None,
                interactive=not public,
                scale=1,
                min_width=120,
                elem_id="safety-checker",
            )
        # Load and VAE progress (and a failure's red pill) show here, so the status line above stays readable.
        progress_line = gr.Markdown(elem_id="load-progress")
    preflight_card = gr.Markdown(visible=False, elem_id="preflight")
    info = gr.JSON(visible=False)
    preflight_info = gr.JSON(visible=False)

    @user_errors
    def load_model(source: str, variant: str, dtype: str, request: gr.Request = None, progress=gr.Progress()) -> dict:
        """Load a checkpoint (Hub id, local folder or `demo`) with a variant and dtype; returns what loaded.
        A Hub checkpoint's files of that variant are downloaded first, with a progress bar."""
        progress(0, desc=f"Loading {source}…")
        # Gradio finds the running event through context variables; the download reports from its worker threads,
        # so each report runs in a copy of this thread's context.
        context = contextvars.copy_context()

        def downloading(done: int, total: int) -> None:
            desc = f"Downloading {source}: {fmt_bytes(done)} of {fmt_bytes(total)}"
            context.copy().run(progress, done / total, desc=desc)

        def load() -> dict:
            return ctx.studio.load(source, variant=variant, dtype=dtype, on_progress=downloading)

        return change_shared(ctx, request, "Loading a checkpoint", load)

    @user_errors
    def preflight(source: str, variant: str, dtype: str) -> dict:
        """Before downloading: the pipeline class, variants, download size of the chosen variant, the memory it
        needs (from safetensors headers) and whether that fits on this device."""
        return ctx.studio.preflight(source, variant=variant, dtype=dtype)

    @user_errors
    def set_vae(source: str, request: gr.Request = None, progress=gr.Progress(track_tqdm=True)) -> dict:
        """Use another VAE (Hub id or folder), or `default` for the checkpoint's own, in every task."""
        progress(0, desc=f"Loading VAE {source}…")
        return change_shared(ctx, request, "Changing the VAE", ctx.studio.set_vae, source)

    def refresh(current_scheduler: str, typed: str | None = None) -> tuple:
        """The panel after a load (or a failed one: the picker shows what still serves). With `typed`, the picker's
        value now (page open, the status timer): a source the user is typing is kept."""
        if not ctx.studio.is_loaded:
            return status_markdown(ctx), _banner(ctx), gr.update(), gr.update(), gr.update(), gr.update()
        info = ctx.studio.model_info()
        schedulers = info["schedulers"]
        # After a load, the picker shows what serves. On page open and from the timer, only when that differs from
        # the value the page was built with (a fallback to the demo, a model loaded since): writing it back always
        # replaced what a user was typing when the answer came.
        rewrite = typed is None or (typed == settings.model and info["model"] != typed)
        return (
            status_markdown(ctx),
            _banner(ctx),
            gr.update(value=info["model"]) if rewrite else gr.update(),
            # The value only when it must change: this also runs on a timer, and writing back the value it read
            # would undo a choice made meanwhile (e.g. by PNG info's Send).
            gr.update(choices=schedulers)
            if current_scheduler in schedulers
            else gr.update(choices=schedulers, value="default"),
            gr.update(choices=["auto", *info["variants"]]),
            # A model without a checker (SDXL) gets no toggle rather than one that does nothing.
            gr.update(visible=info["safety_checker"], interactive=not public, value=True),
        )

    refresh_outputs = [status, banner, source, scheduler, variant, safety_checker]
    check_button.click(preflight, [source, variant, dtype], preflight_info, api_name="preflight").success(
        lambda report: gr.update(value=preflight_markdown(report), visible=True),
        preflight_info,
        preflight_card,
        api_visibility="private",
    )
    load_event = load_button.click(
        load_model,
        [source, variant, dtype],
        info,
        api_name="load_model",
        concurrency_id=GPU_QUEUE,
        show_progress_on=progress_line,  # `info` is hidden: the download and load progress shows under the bar
    )
    # On success the panel shows the new model; on failure it goes back to the one still serving (the bad id
    # would otherwise stay in the box as if it were loaded).
    # (.success and .failure: Gradio's page runs no `.then` after an event that failed.)
    load_event.success(refresh, scheduler, refresh_outputs, api_visibility="private")
    load_event.failure(refresh, scheduler, refresh_outputs, api_visibility="private")
    vae_event = vae_button.click(
        set_vae, vae, info, api_name="set_vae", concurrency_id=GPU_QUEUE, show_progress_on=progress_line
    )
    vae_event.success(refresh, scheduler, refresh_outputs, api_visibility="private")
    vae_event.failure(refresh, scheduler, refresh_outputs, api_visibility="private")
    panel = ModelPanel(
        source,
        variant,
        dtype,
        load_button,
        vae,
        vae_button,
        scheduler,
        safety_checker,
        status,
        banner,
        info,
        [load_event, vae_event],
        refresh,
        refresh_outputs,
        model_loads=[load_event],
        load_model=load_model,
        progress=progress_line,
    )
    return panel
