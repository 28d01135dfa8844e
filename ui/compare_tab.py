"""The Compare tab: an X/Y grid of schedulers x steps (or x guidance) from one prompt and seed."""

from __future__ import annotations

import gradio as gr

from core import schedulers as catalog
from core.compare import compare as run_compare
from core.compare import parse_values
from core.generation import GenerationRequest
from ui import zerogpu
from ui.common import GPU_QUEUE, AppContext, session_of, user_errors, visitor_of
from ui.controls import named_range, wire_stop
from ui.model_panel import ModelPanel

INTRO = (
    "Schedulers trade speed for quality differently. Pick a few, an axis and its values: every cell uses the "
    "same prompt and seed, so only the scheduler and the axis change. Each cell shows how long it took."
)


def cell_captions(info: dict) -> list[str]:
    """Each cell's caption: its scheduler, steps and guidance (one of them is the axis), and the shared seed."""
    captions = []
    for cell in info.get("cells", []):
        steps = cell.get("steps", info.get("steps"))
        guidance = cell.get("guidance_scale", info.get("guidance_scale"))
        captions.append(f"{cell['scheduler']} · {steps} steps · guidance {guidance:g} · seed {info.get('seed')}")
    return captions


def build_compare_tab(ctx: AppContext, panel: ModelPanel) -> None:
    gr.Markdown(INTRO)
    names = [c.name for c in catalog.CATALOG]
    with gr.Row():
        with gr.Column():
            prompt = gr.Textbox(label="Prompt", lines=2, elem_id="compare-prompt")
            negative = gr.Textbox(label="Negative prompt")
            chosen = gr.Dropdown(
                names,
                value=["Euler a", "DPM++ 2M Karras", "UniPC"],
                multiselect=True,
                label="Schedulers (rows)",
                elem_id="compare-schedulers",
            )
            with gr.Row():
                axis = gr.Radio(["steps", "guidance_scale"], value="steps", label="Columns")
                values = gr.Textbox(value="10, 20, 30", label="Values (comma-separated)", elem_id="compare-values")
            limits = ctx.settings.limits  # the ranges the engine checks (core.generation.Limits)
            with gr.Row():
                steps = gr.Slider(1, limits.max_steps, value=20, step=1, label="Steps (when columns are guidance)")
                guidance = gr.Slider(
                    0, limits.max_guidance, value=7.5, step=0.5, label="Guidance (when columns are steps)"
                )
            with gr.Row():
                width = gr.Slider(limits.min_side, limits.max_side, value=512, step=8, label="Width")
                height = gr.Slider(limits.min_side, limits.max_side, value=512, step=8, label="Height")
            seed = gr.Number(value=-1, precision=0, minimum=-1, label="Seed (-1 = random, the same for every cell)")
            for control, name in ((steps, "steps"), (guidance, "guidance_scale"), (width, "width"), (height, "height")):
                named_range(control, name)
            named_range(seed, "seed", "-1 (random) or a whole number from 0")
            with gr.Row():
                go = gr.Button("Compare", variant="primary", elem_id="compare-generate")
                stop = gr.Button("Stop", variant="stop")
        with gr.Column():
            grid = gr.Image(label="Grid", format="png", elem_id="compare-grid")
            cells = gr.Gallery(label="Each image", format="png", columns=3, height=300, elem_id="compare-gallery")
            with gr.Accordion("Info", open=False):
                info = gr.JSON(label="info", elem_id="compare-info")

    @user_errors
    def compare(
        prompt,
        negative_prompt,
        schedulers,
        axis,
        values,
        steps,
        guidance_scale,
        width,
        height,
        seed,
        safety_checker,
        ip_adapter_image=None,
        request: gr.Request = None,
        progress=gr.Progress(),
    ):
        """One image per (scheduler, value) with the same seed; returns the labelled grid, the images and info."""
        numbers = parse_values(axis, values)
        base = GenerationRequest(
            task="text2img",
            prompt=prompt,
            negative_prompt=negative_prompt,
            steps=int(steps),
            guidance_scale=guidance_scale,
            width=int(width),
            height=int(height),
            seed=int(seed),
            safety_checker=safety_checker,
            ip_adapter_image=ip_adapter_image,
        )
        session = session_of(request)
        flag = ctx.cancel_flags.start(session)
        try:
            if zerogpu.ON_ZERO_GPU:
                result = ctx.worker.call(
                    zerogpu.run_compare, base, list(schedulers or []), axis, numbers, visitor_of(request)
                )
            else:
                result = ctx.worker.call(
                    run_compare,
                    ctx.studio,
                    base,
                    list(schedulers or []),
                    axis,
                    numbers,
                    session=visitor_of(request),  # whose outputs folder the grid is saved in
                    cancel=flag,
                    on_cell=lambda i, n: progress((i, n), desc=f"Image {i} of {n}", unit="images"),
                )
        finally:
            ctx.cancel_flags.finish(session, flag)
        grid = result.info.get("grid_path") or result.grid
        if ctx.settings.public:  # the grid goes out as a file; its place on the server does not
            result.info.pop("grid_path", None)
        return grid, list(zip(result.images, cell_captions(result.info), strict=True)), result.info

    inputs = [prompt, negative, chosen, axis, values, steps, guidance, width, height, seed, panel.safety_checker]
    inputs.append(panel.image_prompt)
    event = go.click(
        compare, inputs, [grid, cells, info], api_name="compare", concurrency_id=GPU_QUEUE, concurrency_limit=1
    )

    wire_stop(ctx, stop, event, "compare")
