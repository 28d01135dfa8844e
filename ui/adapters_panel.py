"""Adapters on the shared modules: LoRAs (several, with weights) and an IP-Adapter (an image prompt with a scale).
They change the pool's modules, so every task over them sees them."""

from __future__ import annotations

from typing import Any

import gradio as gr

from core.tasks import view_labels
from ui.common import GPU_QUEUE, AppContext, change_shared, user_errors
from ui.controls import ImageUpload

WARNING = (
    "A LoRA changes the pool's shared modules, so **every task view built over them uses it** (diffusers' "
    '"Modify from_pipe components"). Unloading removes its layers: images are exactly as before.'
)


def affects_words(info: dict) -> str:
    """The tasks an adapter changes, as their tabs name them (the API answer keeps the endpoint names)."""
    return ", ".join(view_labels(list(info.get("affects") or [])))


def adapters_markdown(info: dict) -> str:
    if not info.get("loras"):
        return "No LoRA loaded."
    count = len(info["loras"])
    return f"{count} LoRA{'s' if count > 1 else ''} loaded. Affects: {affects_words(info)}."


IP_WARNING = (
    "An IP-Adapter adds image-prompt layers to the shared UNet, so **while it is loaded every task over that UNet "
    "takes the image prompt below** (text to image, image to image, inpaint, SAG/PAG, safe, animate). Unloading "
    "removes the layers and the image encoder: images are exactly as before."
)


def ip_adapter_markdown(info: dict) -> str:
    if not info.get("ip_adapter"):
        return "No IP-Adapter loaded."
    spec = info["ip_adapter"]
    return f"Loaded: `{spec['source']}` at scale {spec['scale']:g}. Affects: {affects_words(info)}."


def build_adapters_panel(ctx: AppContext) -> tuple[gr.Image, gr.JSON]:
    """Accordions above the tabs: `/load_lora(source, weight)`, `/unload_lora(name)`,
    `/load_ip_adapter(source, scale)` and `/unload_ip_adapter()`. Returns the image prompt component, which the
    task tabs take as an input, and the loaded LoRAs (their change follows every load and removal)."""
    with gr.Column(scale=1, min_width=200):
        image_prompt = build_ip_adapter_panel(ctx)
    # A public server's visitors can't change the shared modules, and no adapter source is on its allowlist.
    with (
        gr.Column(scale=1, min_width=200),
        gr.Accordion("LoRA adapters", open=False, elem_id="lora-panel", visible=not ctx.settings.public),
    ):
        gr.Markdown(WARNING)
        with gr.Row(equal_height=True):
            source = gr.Dropdown(
                # The LCM-LoRA makes any SD 1.5 checkpoint a few-step one (core.few_step).
                ["demo-lora", "demo-lcm-lora", "latent-consistency/lcm-lora-sdv1-5"],
                value="demo-lora",
                allow_custom_value=not ctx.settings.public,
                scale=4,
                label="LoRA",
                info="a .safetensors file, a folder, or a Hub id",
                elem_id="lora-source",
            )
            weight = gr.Slider(-2, 2, value=1.0, step=0.05, label="Weight", scale=2)
            load = gr.Button("Load LoRA", scale=1, elem_id="lora-load")
        status = gr.Markdown("No LoRA loaded.", elem_id="lora-status")
        info = gr.JSON(visible=False)  # the last answer: the loaded LoRAs with their weights, for the list below

        @gr.render(inputs=info)
        def loaded_list(answer: dict | None) -> None:
            """One row per loaded LoRA: its weight (changed in place on release) and Remove."""
            for lora_name, lora in ((answer or {}).get("loras") or {}).items():
                with gr.Row(equal_height=True, elem_classes=["lora-row"]):
                    gr.Markdown(f"**{lora_name}** · {lora['source']}", elem_classes=["lora-name"])
                    row_weight = gr.Slider(
                        -2,
                        2,
                        value=lora["weight"],
                        step=0.05,
                        label="Weight",
                        scale=2,
                        interactive=True,
                        key=f"w-{lora_name}",
                    )
                    remove = gr.Button("Remove", scale=0, min_width=90, size="sm", key=f"r-{lora_name}")
                # Their answer goes to `info` only: it re-draws this list (these buttons with it), so nothing may be
                # chained to them; the status line follows `info` below.
                weight_changed, removed = row_handlers(lora_name)
                row_weight.release(weight_changed, row_weight, info, api_visibility="private", concurrency_id=GPU_QUEUE)
                remove.click(removed, None, info, api_visibility="private", concurrency_id=GPU_QUEUE)

        info.change(adapters_markdown, info, status, api_visibility="private", queue=False)

    def row_handlers(name: str) -> tuple:
        def weight_changed(weight: float, request: gr.Request) -> dict:
            return set_lora_weight(name, weight, request)

        def removed(request: gr.Request) -> dict:
            return unload_lora(name, request)

        return weight_changed, removed

    @user_errors
    def load_lora(source: str, weight: float, request: gr.Request = None) -> dict:
        """Load a LoRA onto the shared modules with a weight; returns the loaded adapters and the tasks affected."""
        return change_shared(ctx, request, "Loading a LoRA", ctx.studio.load_lora, source, weight)

    @user_errors
    def set_lora_weight(name: str, weight: float, request: gr.Request = None) -> dict:
        """Change a loaded LoRA's weight (-2 to 2) in place; returns the loaded adapters and the tasks affected."""
        return change_shared(
            ctx, request, "Changing a LoRA's weight", ctx.studio.set_lora_weight, str(name or "").strip(), weight
        )

    @user_errors
    def unload_lora(name: str, request: gr.Request = None) -> dict:
        """Unload a LoRA by its name (see /load_lora's answer)."""
        return change_shared(ctx, request, "Unloading a LoRA", ctx.studio.unload_lora, str(name or "").strip())

    wire(((load, load_lora, [source, weight]),), info, status, adapters_markdown)
    # Scripts name the LoRA; the page has a row per LoRA. Endpoints with no widget of their own: gr.api.
    gr.api(unload_lora, api_name="unload_lora", concurrency_id=GPU_QUEUE)
    gr.api(set_lora_weight, api_name="set_lora_weight", concurrency_id=GPU_QUEUE)

    def now() -> tuple:
        answer = ctx.studio.loras.info(ctx.studio.pool) if ctx.studio.is_loaded else {"loras": {}, "affects": []}
        return answer, adapters_markdown(answer)

    ctx.on_page_open.append((now, [info, status]))

    return image_prompt, info


def build_ip_adapter_panel(ctx: AppContext) -> gr.Image:
    with gr.Accordion(
        "IP-Adapter (image prompt)", open=False, elem_id="ip-adapter-panel", visible=not ctx.settings.public
    ):
        gr.Markdown(IP_WARNING)
        with gr.Row(equal_height=True):
            with gr.Column(scale=3):
                source = gr.Dropdown(
                    ["demo-ip-adapter", "h94/IP-Adapter"],
                    value="demo-ip-adapter",
                    allow_custom_value=not ctx.settings.public,
                    label="IP-Adapter",
                    info="a Hub id laid out like h94/IP-Adapter, org/name/folder/file.safetensors, or a local file",
                    elem_id="ip-adapter-source",
                )
                scale = gr.Slider(
                    0, 2, value=0.6, step=0.05, label="Scale", info="how strongly the image prompt counts"
                )
                with gr.Row():
                    load = gr.Button("Load IP-Adapter / set scale", elem_id="ip-adapter-load")
                    unload = gr.Button("Unload IP-Adapter")
                status = gr.Markdown("No IP-Adapter loaded.", elem_id="ip-adapter-status")
            image_prompt = ImageUpload(
                label="Image prompt", type="pil", image_mode="RGB", format="png", scale=2, elem_id="ip-adapter-image"
            )
        info = gr.JSON(visible=False)

    @user_errors
    def load_ip_adapter(source: str, scale: float, request: gr.Request = None) -> dict:
        """Load an IP-Adapter into the shared UNet with a scale (or change the scale of the loaded one); every
        task then takes `ip_adapter_image`."""
        return change_shared(ctx, request, "Loading an IP-Adapter", ctx.studio.load_ip_adapter, source, scale)

    @user_errors
    def unload_ip_adapter(request: gr.Request = None) -> dict:
        """Unload the IP-Adapter and its image encoder."""
        return change_shared(ctx, request, "Unloading the IP-Adapter", ctx.studio.unload_ip_adapter)

    wire(
        ((load, load_ip_adapter, [source, scale]), (unload, unload_ip_adapter, None)), info, status, ip_adapter_markdown
    )

    def now() -> str:
        adapter = ctx.studio.ip_adapter if ctx.studio.is_loaded else None
        return ip_adapter_markdown(adapter.info(ctx.studio.pool) if adapter is not None else {})

    ctx.on_page_open.append((now, [status]))
    return image_prompt


def wire(buttons: tuple, info: gr.JSON, status: gr.Markdown, describe: Any) -> None:
    """Each (button, handler, inputs) becomes the endpoint named after its handler, on the model queue; its
    answer goes to `info` and, described, to the status line."""
    for button, fn, inputs in buttons:
        button.click(fn, inputs, info, api_name=fn.__name__, concurrency_id=GPU_QUEUE).success(
            describe, info, status, api_visibility="private"
        )
