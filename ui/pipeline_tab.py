"""The Pipeline tab's controls follow the loaded pipeline's signature (core.signature): after each load, and when
the tab opens (Gradio drops updates to a tab that was never opened), only the controls it takes are shown, with its
defaults, and a card says what else it takes and what the tab could not offer."""

from __future__ import annotations

from typing import Any

import gradio as gr

from ui.common import AppContext
from ui.task_tab import TaskTab

# Controls shown whatever the pipeline takes: the seeds are the app's, not the pipeline's.
ALWAYS = ("seed",)


def signature_card(signature: dict[str, Any] | None, max_steps: int | None = None) -> str:
    """What the tab makes of the loaded pipeline, in a user's words."""
    if not signature:
        return "Load a checkpoint whose pipeline has no tab of its own (e.g. `demo-ddpm` offline) to use this tab."
    if signature.get("unmet"):
        return (
            f"**{signature['pipeline']}** needs {', '.join(signature['unmet'])}, which this tab has no control for: "
            "it can't run here. Run it from Python."
        )
    lines = [f"**{signature['pipeline']}**, read from its signature. Its parameters with a control here: "]
    lines[0] += ", ".join(f"`{name}`" for name in signature["offered"].values()) or "none"
    steps = signature["defaults"].get("steps")
    if max_steps is not None and isinstance(steps, int) and steps > max_steps:
        lines.append("")
        lines.append(f"Its default is {steps} steps; this app runs at most {max_steps}, so Steps starts there.")
    if signature["others"]:
        lines.append("")
        lines.append('Its other parameters (type them into *Other parameters* as JSON, e.g. `{"name": value}`):')
        lines.append("")
        lines.append("| parameter | type | default |")
        lines.append("| --- | --- | --- |")
        for name, other in signature["others"].items():
            kind = other["type"] + (" or null" if other["optional"] else "")
            lines.append(f"| `{name}` | {kind} | `{other['default']!r}` |")
    if signature["not_offered"]:
        lines.append("")
        lines.append(
            "Not offered: " + "; ".join(f"`{name}` ({why})" for name, why in signature["not_offered"].items()) + "."
        )
    return "\n".join(lines)


def wire_signature_tab(
    ctx: AppContext, tab: TaskTab, tab_component: gr.Tab, tabs: gr.Tabs, loads: list[Any]
) -> tuple[Any, list[Any]]:
    """Wire the tab to follow each load and its own opening; returns the refresh (for the page's opening) and the
    components it updates."""
    controls = {name: control for name, control in tab.inputs.items() if control is not None}
    outputs = [*controls.values(), *tab.outputs.values(), tab.card, tabs]
    by_name = {p.name: p for p in tab.spec.params}
    limits = ctx.settings.limits

    def follow(select_tab: bool) -> tuple:
        if not ctx.studio.is_loaded:
            return tuple(gr.update() for _ in outputs)
        info = ctx.studio.model_info()
        signature = info.get("signature")
        offered = (signature or {}).get("offered", {})
        defaults = (signature or {}).get("defaults", {})
        updates = []
        for name, control in controls.items():
            shown = name in offered or name in ALWAYS
            if name == "num_images":
                shown = "num_images" in offered or "class_labels" in offered
            elif name == "other_parameters":
                shown = bool((signature or {}).get("others"))
            elif name == "mask":
                shown = "mask" in offered
            elif name == "image":
                shown = "image" in offered or "mask" in offered
            update: dict[str, Any] = {"visible": shown}
            default = defaults.get(name)
            if name == "class_labels":
                update.update(choices=list(signature["class_names"]) if signature else [], value=[])
            elif name in ("width", "height") and default is None and shown:
                default = info["default_size"]  # the model's own size where the pipeline picks one
            if isinstance(control, gr.Slider) and isinstance(default, (int, float)) and name in by_name:
                low, high = by_name[name].page_range(limits)  # the page refuses a run with a value outside
                update["value"] = min(max(default, low), high)
            elif name == "audio_seconds":
                update["value"] = 0
            updates.append(gr.update(**update))
        kind = (signature or {}).get("output")
        for name in tab.outputs:
            meshes = signature is not None and "mesh" in signature["offered"]
            text = signature is not None and signature.get("makes_text", False)
            shown = {"audio": kind == "audio", "mp4": kind == "frames", "model3d": meshes, "text": text}.get(
                name, False
            )
            updates.append(gr.update(visible=shown))
        updates.append(signature_card(signature, limits.max_steps))
        only_here = signature is not None and info["tasks"] == [tab.spec.name]
        updates.append(gr.Tabs(selected=tab.spec.name) if select_tab and only_here else gr.update())
        return tuple(updates)

    for event in loads:
        event.success(lambda: follow(True), None, outputs, api_visibility="private")
    tab_component.select(lambda: follow(False), None, outputs, api_visibility="private", queue=False)
    return follow, outputs
