"""Few-step models on the page (core.few_step): a line above the tabs says what the loaded checkpoint (or its
LCM-LoRA) is and what it needs, and the tabs' steps and guidance and the scheduler picker are set to that after a
load, after a LoRA is loaded or removed, and when a page opens; when the few-step model goes, the tabs' own
defaults come back. A value the user sets afterwards stays theirs.

Gradio drops updates of controls that are not on the page, and a tab's controls are only there once it was opened
(`render_children` did not change that in 6.31): so each tab takes the values when it is first opened after a
change, and this page remembers which tabs have them.
"""

from __future__ import annotations

from typing import Any

import gradio as gr

from ui.common import AppContext


def build_few_step_note() -> gr.Markdown:
    return gr.Markdown("", visible=False, elem_id="few-step-note")


def note_text(few: dict[str, Any]) -> str:
    scheduler = "its own scheduler" if few["scheduler"] == "default" else f"the {few['scheduler']} scheduler"
    if few.get("family"):
        return (
            f"🎛 **{few['name']}**: its pipeline's defaults, {few['steps']} steps and guidance "
            f"{few['guidance_scale']:g}, set on every tab ({few['note']})."
        )
    return (
        f"⚡ **{few['name']}**: {few['steps']} steps, guidance {few['guidance_scale']:g}, {scheduler}, set on every "
        f"tab ({few['note']})."
    )


def wire_few_step(
    ctx: AppContext, note: gr.Markdown, scheduler: Any, tabs: dict[str, tuple[Any, Any]], triggers: list[Any]
) -> None:
    """`tabs`: by task name, (its gr.Tab, its ui.task_tab.TaskTab) for the tabs whose steps and guidance follow;
    `triggers`: the events after which the loaded model may have become, or stopped being, a few-step one."""
    followers = {name: pair for name, pair in tabs.items() if "steps" in pair[1].inputs}
    plain = {
        name: tuple(p.default for p in tab.spec.params if p.name in ("steps", "guidance_scale"))
        for name, (_tab, tab) in followers.items()
    }
    # This page's target values (None: leave the tabs alone) and the tabs opened so far: those are on the page, so
    # an update reaches them at once; the first (the open one when a page loads) always is.
    first = next(iter(followers), None)
    state = gr.State({"values": None, "seen": [first]})

    def target(was: dict) -> tuple[dict[str, Any] | None, dict[str, tuple] | None]:
        info = ctx.studio.model_info() if ctx.studio.is_loaded else {}
        few = info.get("few_step")
        if few is not None:
            steps = min(few["steps"], ctx.settings.limits.max_steps)  # a family's default may pass the server's
            return few, {name: (steps, few["guidance_scale"]) for name in followers}
        # Back to the tabs' defaults only where a few-step model had set them.
        return None, (plain if isinstance(was, dict) and was.get("few") else None)

    def apply(was: Any) -> tuple:
        few, values = target(was)
        info = ctx.studio.model_info() if ctx.studio.is_loaded else {}
        line = gr.update(visible=few is not None, value=note_text(few) if few else "")
        seen = was.get("seen", [first]) if isinstance(was, dict) else [first]
        if values is None:
            return (line, gr.skip(), *(gr.skip() for _ in followers for _ in range(2)), was)
        picker = gr.update(choices=info.get("schedulers"), value=few["scheduler"] if few else "default")
        updates = [gr.update(value=v) for name in followers for v in values[name]]
        # The tabs on the page take them now; the others when they are first opened (see the module's docstring).
        return (line, picker, *updates, {"values": values, "seen": seen, "few": few is not None})

    sliders = [s for _tab, tab in followers.values() for s in (tab.inputs["steps"], tab.inputs["guidance_scale"])]
    outputs = [note, scheduler, *sliders, state]
    for event in triggers:
        event(apply, state, outputs, api_visibility="private", queue=False)
    ctx.on_page_open.append((lambda: apply({"values": None, "seen": [first]}), outputs))

    for name, (gr_tab, tab) in followers.items():

        def opened(now: Any, name: str = name) -> tuple:
            if not isinstance(now, dict) or name in now.get("seen", []):
                return gr.skip(), gr.skip(), gr.skip()
            now = {**now, "seen": [*now.get("seen", []), name]}
            values = now.get("values") or {}
            if name not in values:
                return gr.skip(), gr.skip(), now
            steps, guidance = values[name]
            return gr.update(value=steps), gr.update(value=guidance), now

        gr_tab.select(
            opened, state, [tab.inputs["steps"], tab.inputs["guidance_scale"], state],
            api_visibility="private", queue=False,
        )  # fmt: skip
