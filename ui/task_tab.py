"""Every task's tab and endpoint, built from its spec (core.tasks): the controls from `spec.params`, the endpoint's
signature (`/text2img(prompt, negative_prompt, ...)`) from the same list, the outputs from `spec.outputs`.

Layout, top to bottom: the companion box (tasks that bring weights), the input images, the prompts, Generate and
Stop, the task's own controls (side by side where they share a `row`), steps and guidance, the size, the accordions
of `groups`, seed and image count, the live preview; the results on the right.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np
from PIL import Image

from core.errors import StudioError
from core.generation import GenerationRequest, GenerationResult
from core.tasks import TaskSpec
from core.tasks.base import REQUIRED, Param
from core.tasks.params import BOX_COLOURS, boxes_from_canvas
from ui.common import GPU_QUEUE, AppContext, session_of, toast_text, user_errors, visitor_of
from ui.companion_box import build_companion_box
from ui.control_unit import ControlUnit, control_unit, wire_control_unit
from ui.controls import ImageUpload, named_range, prompts, whole, wire_stop
from ui.model_panel import ModelPanel
from ui.results import Results, build_results, run_request, shown, stream_request, wire_notice


@dataclass
class TaskTab:
    """What other parts of the page need from a tab."""

    spec: TaskSpec
    results: Results
    inputs: dict[str, Any]  # the tab's controls by parameter name ("image" is the editor for painted masks)
    send: gr.Button | None = None  # "Upscale the selected image"
    selected: gr.State | None = None  # the index of the clicked image
    # (control, "size" or an option's name; for an accordion, its options joined by "|")
    follows_family: list[tuple[Any, str]] = field(default_factory=list)
    outputs: dict[str, Any] = field(default_factory=dict)  # the outputs besides the gallery, by name
    card: gr.Markdown | None = None  # the Pipeline tab: what it offers of the loaded pipeline's signature


def mask_from_editor(editor: dict | None) -> Image.Image | None:
    """The mask painted in `gr.ImageMask`: white where any layer has paint, black elsewhere."""
    if not editor or editor.get("background") is None:
        return None
    background = editor["background"]
    mask = np.zeros((background.height, background.width), dtype=np.uint8)
    for layer in editor.get("layers") or []:
        if layer is None:
            continue
        alpha = np.asarray(layer.convert("RGBA"))[..., 3]
        mask[alpha > 0] = 255
    return Image.fromarray(mask, mode="L") if mask.any() else None


def build_task_tab(ctx: AppContext, panel: ModelPanel, spec: TaskSpec) -> TaskTab:
    task, limits = spec.name, ctx.settings.limits

    def slider(p: Param, **extra: Any) -> gr.Slider:
        low, high = p.page_range(limits)  # the range the API checks (core.generation), a step in at open ends
        value = min(max(p.default, low), high)  # a public server's limits may be below a default (a panorama's 2048)
        return gr.Slider(
            low, high, value=value, step=p.step, label=p.label, info=p.info,
            elem_id=extra.pop("elem_id", p.elem_id or f"{task}-{p.name.replace('_', '-')}"), **extra,
        )  # fmt: skip

    c: dict[str, Any] = {}
    tab = TaskTab(spec, None, c)  # type: ignore[arg-type]
    if spec.note:
        gr.Markdown(spec.note)
    if spec.kind == "signature":
        tab.card = gr.Markdown(elem_id=f"{task}-signature")
    in_groups = {kind for group in spec.groups.values() for kind in group.companions}
    top = tuple(kind for kind in spec.companions if kind not in in_groups)
    if spec.brings_weights and top:
        build_companion_box(ctx, top, spec.companion_note)
    params = {p.name: p for p in spec.params}
    kinds = {p.kind for p in spec.params if p.group is None}
    painted = "mask" in kinds
    units: list[ControlUnit] = []
    with gr.Row():
        with gr.Column(scale=1):
            for p in spec.params:
                if p.kind == "control" and p.group is None:
                    units.append(control_unit(task, p, c))
                    _own_controls(_unit_params(spec, p), c, slider, tab)
            images = [p for p in spec.params if p.kind in ("image", "mask") and p.group is None]
            if painted:  # the mask is painted on the image (gr.ImageMask); a mask file may replace the paint
                c["image"] = gr.ImageMask(
                    label=params["image"].label, type="pil", format="png", elem_id=f"{task}-editor",
                    brush=gr.Brush(colors=["#ffffff"], color_mode="fixed"),
                )  # fmt: skip
                mask = params["mask"]
                c["mask"] = ImageUpload(
                    what="mask", label=mask.label, type="pil", image_mode=mask.mode, format="png",
                    elem_id=f"{task}-mask", height=160,
                )  # fmt: skip
                images = [p for p in images if p.name not in ("image", "mask")]  # e.g. Paint by example's example
            if images:
                with gr.Row():
                    for p in images:
                        what = None if p.name == "image" else p.name.replace("_", " ")
                        elem = f"{task}-image" if p.name == "image" else f"{task}-{p.name.replace('_', '-')}"
                        c[p.name] = ImageUpload(
                            what=what, label=p.label, type="pil", image_mode=p.mode, format="png", elem_id=elem
                        )
            # Text that the prompt answers (DiffEdit's "what the image shows", GLIGEN's phrases) comes before it.
            _own_controls([p for p in spec.params if p.row == ABOVE_PROMPT], c, slider, tab)
            for p in spec.params:
                if p.kind == "boxes":
                    c[p.name] = box_canvas(task, p)
                if p.kind == "labels":  # picked from the model's label list (filled after a load); typed ones too
                    c[p.name] = gr.Dropdown(
                        [], value=[], multiselect=True, allow_custom_value=True, label=p.label, info=p.info,
                        elem_id=f"{task}-{p.name.replace('_', '-')}",
                    )  # fmt: skip
            if "prompt" in kinds:
                optional = params["prompt"].api_default
                c["prompt"], c["negative_prompt"] = prompts(
                    task, params["prompt"].label, optional if isinstance(optional, str) else None
                )
            # Right under what the user writes, as in the tools people know: the first screen has it.
            with gr.Row(elem_classes=["run-row"]):
                generate = gr.Button(
                    spec.run_label, variant="primary", elem_id=f"{task}-generate", scale=3, min_width=120
                )
                stop = gr.Button("Stop", variant="stop", elem_id=f"{task}-stop", scale=1, min_width=70)
            _own_controls([p for p in spec.params if p.group is None], c, slider, tab)
            if "steps" in kinds:
                with gr.Row():
                    c["steps"] = slider(params["steps"])
                    c["guidance_scale"] = slider(params["guidance_scale"])
            if "size" in kinds:
                with gr.Row():
                    for name in ("width", "height"):
                        c[name] = slider(params[name])
                        if spec.size_follows_family:
                            tab.follows_family.append((c[name], "size"))
            for key, group in spec.groups.items():
                members = [p for p in spec.params if p.group == key]
                with gr.Accordion(group.label, open=False, visible=group.option is None) as box:
                    if group.companions:
                        build_companion_box(ctx, group.companions, group.note, needed=False)
                    for p in members:
                        if p.kind == "control":
                            units.append(control_unit(task, p, c))
                            _own_controls(_unit_params(spec, p), c, slider, tab)
                        elif p.kind in ("image", "mask"):
                            c[p.name] = ImageUpload(
                                what=p.name.replace("_", " "), label=p.label, type="pil", image_mode=p.mode,
                                format="png", elem_id=f"{task}-{p.name.replace('_', '-')}", height=200,
                            )  # fmt: skip
                    _own_controls([p for p in members if p.kind in OWN_KINDS], c, slider, tab)
                if group.option:
                    tab.follows_family.append((box, group.option))
                elif members and all(p.option for p in members):  # shown where any of its options is (SAG, PAG)
                    tab.follows_family.append((box, "|".join(dict.fromkeys(p.option for p in members))))
            with gr.Row(equal_height=True):
                c["seed"] = gr.Number(
                    value=-1, label=params["seed"].label, precision=0, minimum=-1, scale=3, elem_id=f"{task}-seed"
                )
                random_seed = gr.Button("🎲", scale=0, min_width=40, elem_id=f"{task}-random-seed")
                reuse_seed = gr.Button("♻️", scale=0, min_width=40, elem_id=f"{task}-reuse-seed")
                if "count" in kinds:
                    c["num_images"] = slider(params["num_images"], scale=3, elem_id=f"{task}-num-images")
            if "preview" in kinds:
                c["preview_every"] = slider(params["preview_every"], elem_id=f"{task}-preview-every")
        with gr.Column(scale=1):
            extra = {o.name: _output(task, o) for o in spec.outputs if o.before_results}
            results = tab.results = build_results(task, label=spec.results_label)
            extra |= {o.name: _output(task, o) for o in spec.outputs if not o.before_results}
            tab.outputs = extra
            if spec.sends_to_upscale:
                tab.send = gr.Button("Upscale the selected image", size="sm", elem_id=f"{task}-send-upscale")

    for p in spec.params:  # the page's own range checks name the parameter, as the engine's do
        if p.name == "seed":
            named_range(c["seed"], "seed", "-1 (random) or a whole number from 0")
        elif isinstance(c.get(p.name), gr.Slider):
            named_range(c[p.name], p.name)
    panel_inputs = {"scheduler": panel.scheduler, "safety_checker": panel.safety_checker}
    panel_inputs["ip_adapter_image"] = panel.image_prompt
    components = [panel_inputs[p.name] if p.kind == "panel" else c[p.name] for p in spec.params]
    before = [extra[o.name] for o in spec.outputs if o.before_results]
    after = [extra[o.name] for o in spec.outputs if not o.before_results]
    outputs = [*before, results.gallery, *after, results.info]
    handler = endpoint(ctx, spec)
    # The progress bar sits on the notice line, so the gallery stays clear for the live previews.
    run = dict(concurrency_id=GPU_QUEUE, concurrency_limit=1, show_progress_on=[results.notice])
    if ctx.batcher is not None and type(spec).batches is not TaskSpec.batches:
        # Its runs must reach the server together to share a call (core.batching); the worker still runs one
        # call at a time, after the loads and other runs queued before it.
        run.update(concurrency_id=f"{GPU_QUEUE}-{spec.name}", concurrency_limit=ctx.settings.batch_visitors)
    triggers = [generate.click, c["prompt"].submit] if "prompt" in c else [generate.click]
    drawn = [i for i, p in enumerate(spec.params) if p.kind == "boxes"]
    picked = [i for i, p in enumerate(spec.params) if p.kind == "labels"]
    if painted or drawn or picked:
        # The page sends what was drawn (the mask on the image, boxes on a canvas); the endpoint, for scripts,
        # takes files and text instead: the image and the mask, the boxes as numbers.
        names = [p.name for p in spec.params]
        painted_at = (names.index("image"), names.index("mask")) if painted else None
        page = _from_page(handler, painted_at, drawn, picked)
        event = gr.on(triggers, page, components, outputs, api_visibility="private", **run)
        api_inputs = list(components)
        if painted_at is not None:
            at_image, at_mask = painted_at
            api_inputs[at_image] = ImageUpload(what="input image", type="pil", image_mode="RGB", visible=False)
            api_inputs[at_mask] = ImageUpload(what="mask", type="pil", image_mode=params["mask"].mode, visible=False)
        for i in (*drawn, *picked):
            default = spec.params[i].api_default
            api_inputs[i] = gr.Textbox(visible=False, value=default if isinstance(default, str) else None)
        api_button = gr.Button(visible=False)
        api_button.click(handler, api_inputs, outputs, api_name=task, **run)
    else:
        # One chain for Enter and the button: both get the notice, Stop and the outputs.
        event = gr.on(triggers, handler, components, outputs, api_name=task, **run)
    wire_notice(event, results)
    wire_stop(ctx, stop, event, task, results)
    random_seed.click(lambda: -1, None, c["seed"], api_visibility="private", queue=False)
    reuse_seed.click(
        lambda i: ((i or {}).get("seeds") or [-1])[0], results.info, c["seed"], api_visibility="private", queue=False
    )
    if tab.send is not None:
        tab.selected = gr.State(None)

        def remember(evt: gr.SelectData) -> Any:
            return evt.index if isinstance(evt.index, int) and not isinstance(evt.index, bool) else None

        results.gallery.select(remember, None, tab.selected, api_visibility="private", queue=False)
    for unit in units:
        wire_control_unit(ctx, spec, unit, c)
    optional = top
    if optional and not spec.brings_weights:  # a companion that does the task better, e.g. a 9-channel inpaint UNet
        build_companion_box(ctx, optional, spec.companion_note, needed=False)
    return tab


NO_MESH_YET = Path(__file__).resolve().parent.parent / "assets" / "no-mesh-yet.glb"
OWN_KINDS = ("slider", "choice", "text", "lines", "check", "midi", "video")  # the task's own controls, laid out in rows
ABOVE_PROMPT = "above-prompt"  # a Param's row that puts it above the prompt


def _own_controls(params: list[Param], c: dict[str, Any], slider: Any, tab: TaskTab) -> None:
    """Sliders and choices of `params`, side by side where they share a row (in an accordion: all in one row,
    unless rows are named)."""
    own = [p for p in params if p.kind in OWN_KINDS and p.name not in c]  # not built with a unit
    named = any(p.row for p in own)
    rows: dict[str | None, list[Param]] = {}
    for p in own:
        rows.setdefault(p.row or (p.name if named or p.group is None else p.group), []).append(p)
    for members in rows.values():
        with gr.Row():
            for p in members:
                elem_id = p.elem_id or f"{tab.spec.name}-{p.name.replace('_', '-')}"
                if p.kind in ("text", "lines"):  # a line, or several (one sentence per line)
                    lines = 1 if p.kind == "text" else 3
                    c[p.name] = gr.Textbox(value=p.default, label=p.label, info=p.info, lines=lines, elem_id=elem_id)
                elif p.kind == "video":  # a path: its frames are read (and checked) when the run is prepared
                    c[p.name] = gr.Video(label=p.label, sources=["upload"], elem_id=elem_id, height=240)
                elif p.kind == "midi":
                    c[p.name] = gr.File(label=p.label, file_types=[".mid", ".midi"], type="filepath", elem_id=elem_id)
                elif p.kind == "check":
                    c[p.name] = gr.Checkbox(value=p.default, label=p.label, info=p.info, elem_id=elem_id)
                elif p.kind == "choice":
                    c[p.name] = gr.Radio(list(p.choices), value=p.default, label=p.label, info=p.info, elem_id=elem_id)
                else:
                    c[p.name] = slider(p, visible=p.option is None)
                    if p.option:
                        tab.follows_family.append((c[p.name], p.option))


def _unit_params(spec: TaskSpec, control: Param) -> list[Param]:
    """The controls that go with a control image: its preprocessor, weight and range (rows named after its row)."""
    return [p for p in spec.params if p is not control and p.row and control.row and p.row.startswith(control.row)]


def _output(task: str, output: Any) -> Any:
    elem_id = f"{task}-{output.name}"
    if output.kind == "image":
        return gr.Image(label=output.label, format="png", elem_id=elem_id, height=240)
    if output.kind == "gallery":
        return gr.Gallery(
            label=output.label, format="png", columns=2, height=240, object_fit="contain", elem_id=elem_id
        )
    if output.kind == "audio":
        return gr.Audio(label=output.label, type="filepath", elem_id=elem_id, visible=not output.hidden)
    if output.kind == "model3d":
        # Gradio 6.31's viewer never draws when its first value arrives after the page opened (its renderer's
        # lazy import is dropped; the GLB is not even fetched), so it starts with one empty, zero-area triangle.
        return gr.Model3D(
            value=str(NO_MESH_YET), label=output.label, elem_id=elem_id, height=320, visible=not output.hidden
        )
    if output.kind == "text":
        return gr.Textbox(label=output.label, elem_id=elem_id, lines=2, interactive=False, visible=not output.hidden)
    if output.kind == "gif":
        return gr.Image(label=output.label, format="gif", elem_id=elem_id, height=320)
    return gr.Video(label=output.label, elem_id=elem_id, height=320, visible=not output.hidden)


def endpoint(ctx: AppContext, spec: TaskSpec) -> Any:
    """The handler of `spec`'s endpoint: its parameters are the spec's, by name and in order, then Gradio's request
    and progress. With a live-preview input it streams (previews, then the result)."""
    params = spec.params
    streams = any(p.kind == "preview" for p in params)

    def request_of(values: tuple) -> tuple[GenerationRequest, Any, Any]:
        *values, request, progress = values
        fields = {p.name: whole(v) if p.whole else v for p, v in zip(params, values, strict=True)}
        for p in params:  # a hidden text box may send nothing: where the endpoint has a text default, that
            if fields[p.name] is None and isinstance(p.api_default, str):
                fields[p.name] = p.api_default
        return GenerationRequest(task=spec.name, **fields, **spec.fixed), request, progress

    def outputs(result: GenerationResult) -> tuple:
        extra = spec.output_values(result)
        before = [extra[o.name] for o in spec.outputs if o.before_results]
        after = [extra[o.name] for o in spec.outputs if not o.before_results]
        return (*before, shown(result), *after, result.info)

    def streaming(*values: Any) -> Iterator[tuple]:
        req, request, progress = request_of(values)
        for item in stream_request(ctx, req, session_of(request), progress, owner=visitor_of(request)):
            if isinstance(item, GenerationResult):
                yield outputs(item)
            else:  # a live preview: the gallery shows it while the run goes on
                before = [gr.skip() for o in spec.outputs if o.before_results]
                yield (*before, item, *(gr.skip() for o in spec.outputs if not o.before_results), gr.skip())

    def single(*values: Any) -> tuple:
        req, request, progress = request_of(values)
        return outputs(run_request(ctx, req, session_of(request), progress, owner=visitor_of(request)))

    handler = streaming if streams else single
    positional = inspect.Parameter.POSITIONAL_OR_KEYWORD
    signature = [
        inspect.Parameter(p.name, positional, **({} if p.api_default is REQUIRED else {"default": p.api_default}))
        for p in params
    ]
    signature += [
        inspect.Parameter("request", positional, default=None, annotation=gr.Request),
        inspect.Parameter("progress", positional, default=gr.Progress()),
    ]
    handler.__signature__ = inspect.Signature(signature)  # type: ignore[attr-defined]
    handler.__annotations__ = {"request": gr.Request}  # how Gradio finds where to put the request
    handler.__name__ = handler.__qualname__ = spec.name
    handler.__doc__ = spec.description
    return user_errors(handler)


def box_canvas(task: str, p: Param) -> gr.ImageEditor:
    """A blank canvas to draw boxes on, one brush colour per box (core.tasks.params.BOX_COLOURS)."""
    colours = [f"#{r:02x}{g:02x}{b:02x}" for _name, (r, g, b) in BOX_COLOURS]
    names = ", ".join(name for name, _rgb in BOX_COLOURS)
    return gr.ImageEditor(
        label=f"{p.label} ({names})", type="pil", image_mode="RGBA", format="png", sources=(), transforms=(),
        layers=False, canvas_size=(512, 512), fixed_canvas=True, elem_id=f"{task}-{p.name.replace('_', '-')}",
        brush=gr.Brush(colors=colours, default_color=colours[0], color_mode="fixed", default_size=12),
    )  # fmt: skip


def _from_page(
    handler: Any, painted: tuple[int, int] | None, drawn: list[int], picked: tuple[int, ...] | list[int] = ()
) -> Any:
    """The page's handler where something is drawn: a painted mask's editor gives the image (its background) and the
    mask (a mask file wins over paint); a box canvas gives its boxes as the endpoint's text; labels picked from a
    list become the endpoint's text, `;` between them."""
    signature = inspect.signature(handler)

    def from_page(*values: Any) -> Iterator[tuple]:
        values = list(values)
        if painted is not None:  # the positions of the image (the editor here) and the mask
            at_image, at_mask = painted
            editor, mask_upload = values[at_image], values[at_mask]
            values[at_image] = editor.get("background") if editor else None
            values[at_mask] = mask_upload if mask_upload is not None else mask_from_editor(editor)
        for i in drawn:
            canvas = (values[i] or {}).get("composite") if isinstance(values[i], dict) else None
            try:
                values[i] = boxes_from_canvas(canvas) if canvas is not None else ""
            except StudioError as e:
                raise gr.Error(toast_text(str(e)), print_exception=False) from None
        for i in picked:
            chosen = values[i] if isinstance(values[i], list) else [values[i]] if values[i] else []
            values[i] = "; ".join(str(label) for label in chosen)
        if inspect.isgeneratorfunction(handler):
            yield from handler(*values)
        else:
            yield handler(*values)

    from_page.__signature__ = signature  # type: ignore[attr-defined]
    from_page.__annotations__ = {"request": gr.Request}
    return from_page
