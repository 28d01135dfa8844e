"""The live memory panel: device memory now and over the last minutes, and what each component costs."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gradio as gr
import pandas as pd

from ui import zerogpu
from ui.common import GPU_QUEUE, AppContext, change_shared, fmt_bytes, user_errors

POLL_SECONDS = 2.0
MODE_LABELS = {"attention_slicing": "attention slicing", "vae_slicing": "VAE slicing", "vae_tiling": "VAE tiling"}
HISTORY_SECONDS = 300


def summary_markdown(report: dict[str, Any]) -> str:
    """The headline numbers, in words."""
    if not report:
        return ""
    device = report["device"]
    used = report["total_bytes"] - report["free_bytes"]
    if report.get("readable") is False:
        line = (
            f"**{report['device_name']}** (it is attached only while a generation runs, e.g. on ZeroGPU) · this "
            f"process **{fmt_bytes(report['process_rss_bytes'])}** of host RAM"
        )
    elif device.startswith(("cuda", "xpu")) or device == "mps":
        line = (
            f"**{report['device_name']}** · VRAM used **{fmt_bytes(used)}** of {fmt_bytes(report['total_bytes'])} · "
            f"allocated by torch {fmt_bytes(report['allocated_bytes'])} "
            f"(reserved {fmt_bytes(report['reserved_bytes'])}, peak {fmt_bytes(report['peak_bytes'])})"
        )
    else:
        line = (
            f"**{report['device_name']}** · this process **{fmt_bytes(report['process_rss_bytes'])}** "
            f"(peak {fmt_bytes(report['peak_bytes'])}) · system RAM used {fmt_bytes(used)} of "
            f"{fmt_bytes(report['total_bytes'])}"
        )
    modes = report.get("memory_modes") or {}
    active = [MODE_LABELS[k] for k, v in modes.items() if k in MODE_LABELS and v]
    if modes.get("offload", "none") != "none":
        active.insert(0, f"{modes['offload']} CPU offload")
    if active:
        line += f"\n\nMemory modes on: {', '.join(active)}."
    pool, naive = report["pool_bytes"], report["naive_bytes"]
    if pool:
        saved = naive - pool
        line += (
            f"\n\nModel weights in the pool: **{fmt_bytes(pool)}**. Loading each task's pipeline on its own would "
            f"take {fmt_bytes(naive)}; sharing one pool saves **{fmt_bytes(saved)}** ({naive / pool:.1f}× less)."
        )
    return line


def panel_label(report: dict[str, Any]) -> gr.Accordion:
    """The folded panel's one line: memory in use now and the pool's weights."""
    if not report:
        return gr.Accordion(label="Memory")
    if report.get("readable") is False:
        used = f"host RAM {fmt_bytes(report['process_rss_bytes'])}"
    elif report["device"] == "cpu":
        used = f"this process {fmt_bytes(report['process_rss_bytes'])}"
    else:
        used = f"VRAM {fmt_bytes(report['total_bytes'] - report['free_bytes'])} of {fmt_bytes(report['total_bytes'])}"
    pool = f" · model weights {fmt_bytes(report['pool_bytes'])}" if report["pool_bytes"] else ""
    return gr.Accordion(label=f"Memory · {report['device_name']}: {used}{pool}")


def components_table(report: dict[str, Any]) -> pd.DataFrame:
    rows = [
        {
            "component": r["name"],
            "class": r["class"],
            "dtype": r["dtype"],
            "device": r["device"],
            "size": fmt_bytes(r["bytes"]),
            "used by": ", ".join(r["used_by"]),
            "checkpoint": r.get("checkpoint", ""),
            "shared with": ", ".join(r.get("shared_with") or []),
        }
        for r in report.get("components", [])
    ]
    columns = ["component", "class", "dtype", "device", "size", "used by", "checkpoint", "shared with"]
    return pd.DataFrame(rows, columns=columns)


@dataclass
class MemoryPanel:
    """The panel, and a way to refresh it right after something changed memory (a load, a generation)."""

    refresh_after: Callable[[Any], Any]


def build_memory_panel(ctx: AppContext) -> MemoryPanel:
    """Build the panel; its timer's event is the `/memory` endpoint."""
    # Folded to one line (its label says the headline) until opened.
    with gr.Accordion("Memory", open=False, elem_id="memory-panel") as panel:
        with gr.Row(equal_height=True):
            summary = gr.Markdown(elem_id="memory-summary")
            plot = gr.LinePlot(
                x="seconds ago",
                y="GB",
                color="series",
                height=160,
                show_label=False,
                elem_id="memory-plot",
                x_lim=[-HISTORY_SECONDS, 0],
            )
        with gr.Accordion("Components and who shares them", open=False):
            table = gr.Dataframe(interactive=False, wrap=True, elem_id="memory-components")
        build_modes(ctx)
        build_compile(ctx)
    report = gr.JSON(visible=False)
    history = gr.State([])
    timer = gr.Timer(POLL_SECONDS)

    def memory() -> dict:
        """Device memory now, the pool's size, and each component with the tasks that share it."""
        return ctx.studio.memory_report()

    def render(report: dict, samples: list) -> tuple:
        now = time.time()
        if report:
            used = report["allocated_bytes"] if report["device"] != "cpu" else report["process_rss_bytes"]
            samples = [s for s in samples if now - s[0] <= HISTORY_SECONDS]
            samples.append((now, used, report["pool_bytes"]))
        frame = pd.DataFrame(
            [(t - now, b / 1e9, "used") for t, b, _p in samples]
            + [(t - now, p / 1e9, "model weights") for t, _b, p in samples],
            columns=["seconds ago", "GB", "series"],
        )
        return summary_markdown(report), frame, components_table(report or {}), samples, panel_label(report)

    # Polling has its own queue with no limit, so it never waits behind a running generation.
    polled = timer.tick(
        memory, None, report, api_name="memory", concurrency_id="memory", concurrency_limit=None, show_progress="hidden"
    )
    polled.then(
        render,
        [report, history],
        [summary, plot, table, history, panel],
        api_visibility="private",
        concurrency_id="memory",
        concurrency_limit=None,
        show_progress="hidden",
    )

    def refresh_after(event: Any) -> Any:
        return event.then(memory, None, report, api_visibility="private", show_progress="hidden").then(
            render,
            [report, history],
            [summary, plot, table, history, panel],
            api_visibility="private",
            show_progress="hidden",
        )

    return MemoryPanel(refresh_after)


def build_compile(ctx: AppContext) -> None:
    """The compiled-UNet mode: `/set_compile(on)`."""
    with gr.Accordion("Compiled UNet (faster runs after a one-time compile per image size)", open=False):
        with gr.Row(equal_height=True):
            on = gr.Checkbox(
                label="Compile the denoiser's repeated blocks (torch.compile, regional)",
                info="for GPUs (on a 2-core CPU it measured 0.94x); every tab and the checkpoints loaded after; the "
                "first run at each size and batch compiles (seconds to a minute), kept on disk for restarts",
                elem_id="compile-on",
            )
            apply = gr.Button("Apply", scale=0, elem_id="compile-apply")
        status = gr.Markdown(elem_id="compile-status")
        result = gr.JSON(visible=False)

    @user_errors
    def set_compile(on: bool, request: gr.Request = None) -> dict:
        """Turn the compiled-UNet mode on or off for every task; nothing is reloaded."""
        if on is True and zerogpu.ON_ZERO_GPU:
            # Each run is a fresh forked worker there: what it compiles dies with it, so every run would compile.
            raise gr.Error("On ZeroGPU every run starts a new GPU worker, which would compile again each time; the "
                           "compiled UNet stays off here.", print_exception=False)  # fmt: skip
        return change_shared(ctx, request, "Changing the compiled UNet", ctx.studio.set_compile, on)

    def describe(info: dict) -> str:
        if not info["compiled"]:
            return "The UNet runs uncompiled."
        return f"Compiled: {info['compiled_blocks']} blocks ({info['backend']}); the first run at each size compiles."

    apply.click(set_compile, on, result, api_name="set_compile", concurrency_id=GPU_QUEUE).success(
        describe, result, status, api_visibility="private"
    )


def build_modes(ctx: AppContext) -> None:
    """Memory modes: `/set_memory_modes(offload, attention_slicing, vae_slicing, vae_tiling)`."""
    on_gpu = ctx.studio.device.type != "cpu"
    with gr.Accordion("Memory modes (less memory, a little slower; off again without reloading)", open=False):
        with gr.Row(equal_height=True):
            offload = gr.Radio(
                ["none", "model", "sequential"],
                value="none",
                label="CPU offload",
                info="model: one model on the GPU at a time; sequential: layer by layer (least memory, slowest)"
                if on_gpu
                else "needs a GPU (this server runs on the CPU)",
                interactive=on_gpu,
                elem_id="mode-offload",
            )
            attention = gr.Checkbox(label="Attention slicing", info="for GPUs without SDPA", elem_id="mode-attention")
            vae_slicing = gr.Checkbox(label="VAE slicing", info="decode a batch one image at a time")
            vae_tiling = gr.Checkbox(label="VAE tiling", info="decode large images in tiles", elem_id="mode-tiling")
            apply = gr.Button("Apply", scale=0, elem_id="mode-apply")
        status = gr.Markdown(elem_id="mode-status")
        result = gr.JSON(visible=False)

    @user_errors
    def set_memory_modes(
        offload: str, attention_slicing: bool, vae_slicing: bool, vae_tiling: bool, request: gr.Request = None
    ) -> dict:
        """Turn memory modes on or off for every task (offload: none, model or sequential; needs a GPU)."""
        modes = (offload, attention_slicing, vae_slicing, vae_tiling)
        return change_shared(ctx, request, "Changing memory modes", ctx.studio.set_memory_modes, *modes)

    def describe(info: dict) -> str:
        modes = info["memory_modes"]
        on = [MODE_LABELS[k] for k, v in modes.items() if k in MODE_LABELS and v]
        if modes["offload"] != "none":
            on.insert(0, f"{modes['offload']} CPU offload")
        return f"On: {', '.join(on)}." if on else "All memory modes are off."

    apply.click(
        set_memory_modes,
        [offload, attention, vae_slicing, vae_tiling],
        result,
        api_name="set_memory_modes",
        concurrency_id=GPU_QUEUE,
    ).success(describe, result, status, api_visibility="private")
