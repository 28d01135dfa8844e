"""The Inspect tab: the loaded pipeline explained, from model_index.json to each file on disk."""

from __future__ import annotations

import gradio as gr
import pandas as pd

from ui.common import AppContext, fmt_bytes

INTRO = (
    "A diffusers checkpoint is a folder: `model_index.json` names the pipeline class and, for each component, "
    "the library and class that load its subfolder. Every task tab runs a pipeline built with `from_pipe` over "
    "the **same** component objects listed here, so switching tasks loads nothing."
)


def inspect_views(ctx: AppContext) -> tuple:
    """The tab's contents for whatever is loaded now."""
    if not ctx.studio.is_loaded:
        return "Nothing loaded yet.", {}, pd.DataFrame(), pd.DataFrame(), ""
    data = ctx.studio.inspect()
    info = ctx.studio.model_info()
    heading = (
        f"### {data['pipeline']}\n`{info['model']}` · loaded variant **{info['variant']}** "
        f"(this checkpoint has: {', '.join(info['variants'])}) · {info['dtype']} on {info['device']}\n\n"
        + "Tasks: "
        + ", ".join(f"{task} → `{cls}`" for task, cls in info["task_pipelines"].items())
    )
    components = pd.DataFrame(
        [
            {
                "component": r["name"],
                "library": r["library"],
                "class": r["class"],
                "dtype": r["dtype"],
                "device": r["device"],
                "parameters": f"{r['parameters']:,}",
                "size": fmt_bytes(r["bytes"]),
            }
            for r in data["components"]
        ]
    )
    loaded = info["variant"]
    files = pd.DataFrame(
        [
            {
                "file": f["file"],
                "size": fmt_bytes(f["bytes"]),
                "variant": f["variant"] or "",
                "loaded": "✓" if f["variant"] == loaded else "",
            }
            for f in data["files"]
        ]
    )
    return heading, data["model_index"], components, files, ", ".join(data["schedulers"])


def build_inspect_tab(ctx: AppContext) -> tuple[list, object]:
    """Build the tab; returns its outputs and the function that fills them, for refreshing after a load."""
    gr.Markdown(INTRO)
    heading = gr.Markdown(elem_id="inspect-heading")
    with gr.Row():
        model_index = gr.JSON(label="model_index.json", elem_id="inspect-model-index")
        components = gr.Dataframe(label="Components", interactive=False, elem_id="inspect-components")
    files = gr.Dataframe(label="Files (✓ = the variant in use)", interactive=False, elem_id="inspect-files")
    schedulers = gr.Textbox(label="Compatible schedulers", interactive=False)
    outputs = [heading, model_index, components, files, schedulers]
    return outputs, lambda: inspect_views(ctx)
