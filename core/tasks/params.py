"""What a task takes: its inputs (`Param`, in its API's order), the accordions they fold into (`Group`), its outputs
besides the gallery (`Output`), and the runs of parameters most tasks share. The endpoint's signature, the page's
controls and validation are all read from these (ui.task_tab, core.generation).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from core.errors import InvalidRequest

if TYPE_CHECKING:
    from PIL import Image

    from core.generation import Limits


REQUIRED = object()  # an API parameter without a default
# What the tiny-VAE decode says; measured by bench/sd15_suite.py --only tiny (docs/benchmarks.md).
TINY_DECODE_INFO = "the final image from TAESD instead of the checkpoint's VAE: faster (1.11x at 256 px), softer"
# What the step-caching control says a person gets; measured by bench/step_cache.py (docs/benchmarks.md).
STEP_CACHE_INFO = (
    "1 = off. 3: 2.2x faster on an SD 1.5-sized UNet (8 steps, 2-core CPU); the image changes in its details"
)
MAX_SEED = 2**32 - 1  # seeds are 32-bit: seed + i for image i of a batch stays below this


@dataclass(frozen=True)
class Param:
    """One input of a task, in its API's order: the API parameter (also the GenerationRequest field), how the page
    shows it, and its defaults. The page's tab and the endpoint are built from these (ui.task_tab).

    `kind` says which control: `prompt` and `negative` (text boxes), `text` (a line of text), `lines` (text of
    several lines), `midi` (a MIDI file upload), `video` (a video upload), `check` (a
    checkbox), `image`, `mask` (painted over the image in the page, a file in the API), `control` (an image with
    its preprocessor's map beside it), `boxes` (drawn on a canvas in the page, one colour each; text in the API),
    `slider`, `choice` (radio buttons), `seed`, `count` (images per run),
    `preview` (live preview interval), `steps`, `guidance`, `size`; `panel` inputs (scheduler, safety checker, the
    image prompt) come from the panels above the tabs. Numbers may name a field of `Limits` ("max_side")."""

    name: str
    kind: str
    label: str = ""
    default: Any = None  # what the page shows first
    api_default: Any = REQUIRED
    minimum: float | str | None = None  # the range the API accepts and the page's control shows
    maximum: float | str | None = None
    step: float | None = None
    choices: tuple = ()
    info: str | None = None
    mode: str = "RGB"  # images: the mode the engine gets them in
    whole: bool = False  # sliders and numbers arrive as floats: whole ones become ints
    row: str | None = None  # controls with the same row sit side by side
    group: str | None = None  # a key of the spec's `groups`: controls in an accordion
    option: str | None = None  # shown only where the loaded model has this option (model info's `options`)
    elem_id: str | None = None  # the page's id for it, where tests or styles need one
    above: bool = False  # the minimum itself is refused (the page's control starts a step above it)
    below: bool = False  # the maximum itself is refused (the page's control ends a step below it)

    @property
    def checked(self) -> bool:
        """Whether validation checks its value here: numbers with a range, choices, and checkboxes."""
        return self.kind in ("choice", "check") or self.minimum is not None

    def bounds(self, limits: Limits) -> tuple[float, float]:
        """The range the API accepts, with names of `Limits` fields read from `limits`."""
        low, high = (getattr(limits, b) if isinstance(b, str) else b for b in (self.minimum, self.maximum))
        return low, high

    def page_range(self, limits: Limits) -> tuple[float, float]:
        """The page control's range: the API's, a step inside where an end itself is refused."""
        low, high = self.bounds(limits)
        step = self.step or 0
        return (low + step if self.above else low), (high - step if self.below else high)

    def check(self, value: Any, limits: Limits) -> None:
        """Raise InvalidRequest, saying what is allowed, when `value` is out of this parameter's range or choices."""
        if self.kind == "choice":
            if value not in self.choices:
                raise InvalidRequest(f"{self.name} must be one of {', '.join(self.choices)}, got {value!r}.")
            return
        if self.kind == "check":
            if not isinstance(value, bool):
                raise InvalidRequest(f"{self.name} must be true or false, got {value!r}.")
            return
        low, high = self.bounds(limits)
        if self.whole:
            check_int(self.name, value)
        within = is_number(value) and (low < value if self.above else low <= value)
        within = within and (value < high if self.below else value <= high)
        if within:
            return
        low, high = f"{low:g}", f"{high:g}"
        if self.above or self.below:
            allowed = f"{'above' if self.above else 'at least'} {low} and {'below' if self.below else 'at most'} {high}"
        else:
            allowed = f"between {low} and {high}"
        what = "" if self.whole else "a number "
        raise InvalidRequest(f"{self.name} must be {what}{allowed}, got {value}.")


@dataclass(frozen=True)
class Group:
    """Controls folded into an accordion, shown only where the loaded model has `option` (if set), with the
    companion checkpoints it needs."""

    label: str
    option: str | None = None
    companions: tuple[str, ...] = ()
    note: str = ""


@dataclass(frozen=True)
class Output:
    """An output besides the gallery and the info: `kind` image | gallery | gif | video | audio | model3d (3D) |
    text (UniDiffuser's captions)."""

    name: str
    kind: str
    label: str
    before_results: bool = False
    hidden: bool = False  # shown only where the loaded model makes it (the Pipeline tab's audio and video)


def prompt(name: str = "prompt") -> Param:
    return Param(name, "prompt", "Prompt")


def negative() -> Param:
    return Param("negative_prompt", "negative", "Negative prompt")


def steps(default: int = 25) -> Param:
    return Param("steps", "steps", "Steps", default, minimum=1, maximum="max_steps", step=1, whole=True)


def guidance(default: float = 7.5) -> Param:
    return Param("guidance_scale", "guidance", "Guidance scale", default, minimum=0, maximum="max_guidance", step=0.5)


def size(name: str) -> Param:
    label = name.capitalize()
    return Param(name, "size", label, 512, minimum="min_side", maximum="max_side", step=8, whole=True)


def strength(default: float) -> Param:
    return Param(
        "strength", "slider", "Strength", default, minimum=0.0, maximum=1.0, step=0.01, above=True, row="strength"
    )


def image(label: str, name: str = "image", *, mode: str = "RGB", optional: bool = False) -> Param:
    return Param(name, "image", label, mode=mode, api_default=None if optional else REQUIRED)


SEED = Param("seed", "seed", "Seed (-1 = random)", -1, whole=True)
SCHEDULER = Param("scheduler", "panel")
NUM_IMAGES = Param("num_images", "count", "Images", 1, minimum=1, maximum="max_images", step=1, whole=True)
SAFETY_CHECKER = Param("safety_checker", "panel")
# The runs of parameters most endpoints share, in their usual order.
TEXT = (prompt(), negative())
STEPS_GUIDANCE = (steps(), guidance())
SIZE = (size("width"), size("height"))
RUN = (SEED, SCHEDULER, NUM_IMAGES, SAFETY_CHECKER)
IMAGE_PROMPT = Param("ip_adapter_image", "panel", api_default=None)
PREVIEW = Param(
    "preview_every",
    "preview",
    "Live preview every N steps",
    5,
    api_default=0,
    minimum=0,
    maximum="max_steps",
    step=1,
    whole=True,
    info="0 = off; the latents' colours, or the tiny VAE's pictures once one is loaded (Text to image, Faster)",
)
# Step caching (core.step_cache): in an accordion that shows where the loaded model's UNet can do it.
SPEED = Group("Faster: step caching (DeepCache)", option="step_cache")
# Text to image's: with the tiny VAE's loader too (it also draws every tab's live previews once loaded).
SPEED_AND_TINY_VAE = Group(
    "Faster: step caching (DeepCache), tiny VAE",
    option="step_cache",
    companions=("tiny_vae",),
    note="a tiny VAE (AutoencoderTiny: TAESD for SD 1/2, TAESDXL for SDXL). Once loaded, every tab's live previews are "
    "its pictures instead of the latents' colours, and Text to image can decode with it.",
)
STEP_CACHE = Param(
    "step_cache",
    "slider",
    "Run the whole UNet every N steps",
    1,
    api_default=1,
    minimum=1,
    maximum=5,
    step=1,
    whole=True,
    group="speed",
    info=STEP_CACHE_INFO,
)
TINY_DECODE = Param(
    "tiny_decode",
    "check",
    "Decode with the tiny VAE (load it above)",
    False,
    api_default=False,
    group="speed",
    info=TINY_DECODE_INFO,
)
# Request fields every run reads, checked even where a task's endpoint does not take them (a Python caller may set
# them); a task's own param of the same name replaces these.
ALWAYS_CHECKED = (steps(), guidance(), NUM_IMAGES, PREVIEW, STEP_CACHE)


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def check_int(label: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidRequest(f"{label} must be a whole number, got {value!r}.")


# The canvas' brush colours, phrase by phrase (distinct for most colour vision), and their names for the page.
BOX_COLOURS = (("red", (230, 25, 75)), ("green", (60, 180, 75)), ("blue", (67, 99, 216)), ("orange", (245, 130, 49)))


def boxes_from_canvas(canvas: Image.Image) -> str:
    """The bounding box of each colour painted on `canvas` (an RGBA composite), in colour order, as the API's text;
    colours not painted are skipped only at the end (a box for phrase 1 and 3 but not 2 can't be matched)."""
    pixels = np.asarray(canvas.convert("RGBA")).astype(np.int16)
    height, width = pixels.shape[:2]
    boxes = []
    for _name, colour in BOX_COLOURS:
        near = (np.abs(pixels[..., :3] - np.array(colour)).sum(-1) < 60) & (pixels[..., 3] > 0)
        if near.sum() < 9:  # a stray antialiased pixel is not a box
            boxes.append(None)
            continue
        ys, xs = np.nonzero(near)
        boxes.append(
            f"{xs.min() / width:.3f},{ys.min() / height:.3f},{(xs.max() + 1) / width:.3f},{(ys.max() + 1) / height:.3f}"
        )
    while boxes and boxes[-1] is None:
        boxes.pop()
    if any(box is None for box in boxes):
        missing = next(BOX_COLOURS[i][0] for i, box in enumerate(boxes) if box is None)
        raise InvalidRequest(f"Draw a box in {missing} too: each phrase needs its box, in the phrases' order.")
    return "; ".join(boxes)
