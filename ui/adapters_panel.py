"""LoRA adapters: load several with weights; they change the shared modules, so every task sees them."""

from __future__ import annotations

import gradio as gr

from ui.common import GPU_QUEUE, AppContext, user_errors

WARNING = (
    "A LoRA changes the pool's shared modules, so **every task view built over them uses it** (diffusers' "
    '"Modify from_pipe components"). Unloading removes its layers: images are exactly as before.'
)


def adapters_markdown(info: dict) -> str:
    if not info.get("loras"):
        return "No LoRA loaded."
    loras = ", ".join(f"`{name}` × {spec['weight']:g}" for name, spec in info["loras"].items())
    return f"Loaded: {loras}. Affects: {', '.join(info['affects'])}."


def build_adapters_panel(ctx: AppContext) -> None:
    """An accordion above the tabs; its buttons are `/load_lora(source, weight)` and `/unload_lora(name)`."""
    with gr.Accordion("LoRA adapters", open=False, elem_id="lora-panel"):
        gr.Markdown(WARNING)
        with gr.Row(equal_height=True):
            source = gr.Dropdown(
                ["demo-lora"],
                value="demo-lora",
                allow_custom_value=not ctx.settings.public,
                scale=4,
                label="LoRA",
                info="a .safetensors file, a folder, or a Hub id",
                elem_id="lora-source",
            )
            weight = gr.Slider(-2, 2, value=1.0, step=0.05, label="Weight", scale=2)
            load = gr.Button("Load LoRA", scale=1, elem_id="lora-load")
        with gr.Row(equal_height=True):
            name = gr.Textbox(label="Unload by name", scale=4, placeholder="e.g. demo_lora")
            unload = gr.Button("Unload", scale=1)
        status = gr.Markdown("No LoRA loaded.", elem_id="lora-status")
        info = gr.JSON(visible=False)

    @user_errors
    def load_lora(source: str, weight: float) -> dict:
        """Load a LoRA onto the shared modules with a weight; returns the loaded adapters and the tasks affected."""
        return ctx.studio.load_lora(source, weight)

    @user_errors
    def unload_lora(name: str) -> dict:
        """Unload a LoRA by its name (see /load_lora's answer)."""
        return ctx.studio.unload_lora(name.strip())

    for button, fn, inputs, api in (
        (load, load_lora, [source, weight], "load_lora"),
        (unload, unload_lora, name, "unload_lora"),
    ):
        button.click(fn, inputs, info, api_name=api, concurrency_id=GPU_QUEUE).success(
            adapters_markdown, info, status, api_visibility="private"
        )
