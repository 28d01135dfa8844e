"""What a task spec is: the data every task declares and the hooks the engine calls, with the defaults most tasks
keep. A task module subclasses `TaskSpec`, overrides what differs and names its instance `SPEC`.

The engine (core.studio), the info and snippet (core.describe), validation (core.generation) and the pool's views
(core.pool) read only these attributes and hooks; none of them branches on a task's name.

Kinds of task:
- `auto`: served from the loaded checkpoint through diffusers' AutoPipeline maps (any family they know);
- `feature`: another pipeline class over the loaded checkpoint's components (`from_pipe`), e.g. safe latent
  diffusion;
- `companion`: needs its own checkpoint (depth, variation, upscalers, RGB+depth), loaded into the pool beside the
  main one on demand; `animate` needs a motion adapter on top of the loaded checkpoint, and `module` tasks other
  companion modules that join the main pool (ControlNet's control modules);
- `signature`: the loaded pipeline itself, where no other spec serves it, called with what its `__call__` takes
  (core.signature).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from diffusers import DiffusionPipeline
from diffusers.pipelines.auto_pipeline import (
    AUTO_IMAGE2IMAGE_PIPELINES_MAPPING,
    AUTO_INPAINT_PIPELINES_MAPPING,
    AUTO_TEXT2IMAGE_PIPELINES_MAPPING,
)

from core.errors import InvalidRequest, NotLoaded

# The input vocabulary lives in core.tasks.params; task modules and callers import it from here too.
from core.tasks.params import (  # noqa: F401
    ALWAYS_CHECKED,
    IMAGE_PROMPT,
    NUM_IMAGES,
    PREVIEW,
    REQUIRED,
    RUN,
    SAFETY_CHECKER,
    SCHEDULER,
    SEED,
    SIZE,
    SPEED,
    SPEED_AND_TINY_VAE,
    STEP_CACHE,
    STEPS_GUIDANCE,
    TEXT,
    TINY_DECODE,
    Group,
    Output,
    Param,
    check_int,
    guidance,
    image,
    is_number,
    negative,
    prompt,
    size,
    steps,
    strength,
)

if TYPE_CHECKING:
    from PIL import Image

    from core.adapters import MotionAdapterState
    from core.control import ControlModel
    from core.generation import GenerationRequest, GenerationResult, Limits
    from core.pool import Pool
    from core.previews import TinyVae
    from core.snippet import Snippet


@dataclass(frozen=True)
class Serving:
    """What a task's hooks may use besides the pool it runs on, handed over explicitly by the studio."""

    companions: Mapping[str, Pool]  # the companion checkpoints loaded beside the main one, by kind
    motion: MotionAdapterState | None = None
    tiny_vae: TinyVae | None = None  # the loaded tiny VAE: live previews' decoder, and the fast final decode
    controls: Mapping[str, ControlModel] = field(default_factory=dict)  # control modules by slot
    control_map: Callable[..., Image.Image] | None = None  # Studio.control_map: a preprocessor's map of an image
    loras: Sequence[str] = ()  # the names of the LoRAs loaded into the main pool
    cache_dir: Path | None = None  # where the offline twins live (the snippet names their folders)
    public: bool = False  # a public server: what a visitor may pass is narrower
    max_images: int = 8  # the limit on images per run (Limits.max_images)
    limits: Limits | None = None  # the studio's, for inputs read only when the run is prepared (a video's frames)


class TaskSpec:
    """One thing a user can do: its API name, its label in the UI, what it needs and how it runs."""

    name: ClassVar[str]
    label: ClassVar[str]
    kind: ClassVar[str]  # auto | feature | companion | animate | module | signature
    order: ClassVar[int]  # where its tab and endpoint come among the others
    auto_class: ClassVar[type | None] = None
    mapping: ClassVar[dict | None] = None
    pipeline_class: ClassVar[str | None] = None  # feature and companion tasks: the diffusers class that runs them
    companions: ClassVar[tuple[str, ...]] = ()  # companion kinds that can serve it (see core.demo.companions)
    companion_pipelines: ClassVar[Mapping[str, str]] = {}  # the class each of its companion kinds loads as
    count_argument: ClassVar[str] = "num_images_per_prompt"
    output: ClassVar[str] = "images"  # how the snippet saves the result: images | frames | rgbd
    lora_applies: ClassVar[bool] = True  # a LoRA in the shared modules changes what this task makes
    tab_label: ClassVar[str | None] = None  # the tab's title, when shorter than the label
    run_label: ClassVar[str] = "Generate"
    description: ClassVar[str] = ""  # what the endpoint does, for the API page
    note: ClassVar[str] = ""  # a line above the tab's controls (Markdown)
    companion_note: ClassVar[str] = ""  # what its companion checkpoint is, beside the box that loads it
    # A task over a checkpoint whose own call the Pipeline tab serves (video to video over text to video): the
    # Pipeline tab stays beside it.
    beside_signature_tab: ClassVar[bool] = False
    params: ClassVar[tuple[Param, ...]] = ()  # the endpoint's inputs, in order
    groups: ClassVar[Mapping[str, Group]] = {}
    outputs: ClassVar[tuple[Output, ...]] = ()
    results_label: ClassVar[str] = "Results"
    fixed: ClassVar[Mapping[str, Any]] = {}  # request fields the endpoint does not take, set to these
    size_follows_family: ClassVar[bool] = False  # width and height jump to the loaded family's size on each load
    fits_inputs: ClassVar[bool] = True  # inputs larger than the size limit are scaled down (upscale checks its own)
    sizes_follow_image: ClassVar[bool] = False  # pass the input image's size where the pipeline takes one
    # The README's task table (`python -m core.tasks` prints it): the pipeline cell (default: the class that runs
    # it), what it shares with the loaded checkpoint, and a row under it per option that runs another pipeline.
    table_pipeline: ClassVar[str] = ""
    table_shares: ClassVar[str] = "everything"
    table_options: ClassVar[tuple[tuple[str, str, str], ...]] = ()  # (option, pipeline, shares)
    option_views: ClassVar[Mapping[str, str]] = {}  # views it adds for an option, in a user's words ("sag": ...)

    # What the inputs say, read from `params` rather than declared twice.

    def _takes(self, name: str) -> bool:
        return any(p.name == name for p in self.params)

    @property
    def takes_image(self) -> bool:
        """An input image, required or optional (checked alike when given)."""
        return self._takes("image")

    @property
    def needs_image(self) -> bool:
        return self.takes_image

    @property
    def needs_mask(self) -> bool:
        return any(p.kind == "mask" for p in self.params)

    @property
    def uses_prompt(self) -> bool:
        return self._takes("prompt")

    @property
    def has_strength(self) -> bool:
        """How far from the input image the run may go."""
        return self._takes("strength")

    @property
    def sizes_from_request(self) -> bool:
        """Width and height come from the request (else from the input image)."""
        return self._takes("width")

    @property
    def png_info_sends_image(self) -> bool:
        """PNG info's Send hands this tab the image too: the AutoPipeline tasks that start from one."""
        return self.kind == "auto" and self.needs_image

    @property
    def sends_to_upscale(self) -> bool:
        """Its gallery has "Upscale the selected image": the AutoPipeline tasks."""
        return self.kind == "auto"

    @property
    def brings_weights(self) -> bool:
        """Whether it runs on weights of its own (a companion checkpoint, a motion adapter) besides the main ones."""
        return self.kind in ("companion", "animate", "module")

    @property
    def needs_its_family(self) -> bool:
        """Whether only some families serve it (a view beyond AutoPipeline's, e.g. safe SD, AnimateDiff): its tab is
        disabled where the loaded family has no such pipeline."""
        return self.kind in ("feature", "animate", "module", "signature")

    # -- the views this task adds over the main checkpoint ----------------------------------------------

    def views_over(self, base_class: str, family: str | None) -> dict[str, type]:
        """The views (name -> pipeline class) this task serves from a main checkpoint of `base_class`."""
        if self.mapping is None or family is None:
            return {}
        cls = self.mapping.get(family)
        return {self.name: cls} if cls is not None else {}

    def unfit(self, pool: Pool) -> str | None:
        """Why the loaded modules can't run this task's view although the family maps one (it may need a UNet of
        its own), or None."""
        return None

    # -- checking a request -----------------------------------------------------------------------------

    def check(self, request: GenerationRequest, limits: Limits) -> None:
        """Raise InvalidRequest for this task's own options out of range (the shared fields are checked already)."""

    def check_input_size(self, request: GenerationRequest, limits: Limits) -> None:
        """Raise InvalidRequest when the input image's size can't be used."""
        width, height = request.image.size
        if min(width, height) < limits.min_side:
            raise InvalidRequest(
                f"The input image is {width}x{height}; it must be at least {limits.min_side} px on each side."
            )

    # -- where and how it runs --------------------------------------------------------------------------

    def companion_kind(self, request: GenerationRequest, companions: Mapping[str, Pool]) -> str | None:
        """The companion checkpoint the request runs on, or None for the main one."""
        return self.companions[0] if self.kind == "companion" else None

    def check_pool(self, pool: Pool, request: GenerationRequest, serving: Serving) -> None:
        """Raise NotLoaded/InvalidRequest when `pool` can't serve the request."""
        if pool.companion_kind is None and not pool.supports(self.name):
            reason = pool.unfit.get(self.name)
            raise NotLoaded(
                f"The loaded {pool.files.pipeline_class} can't do {self.label}" + (f": {reason}" if reason else ".")
            )

    def check_options(self, pool: Pool, request: GenerationRequest) -> None:
        """Raise InvalidRequest for an option of the (validated) request that `pool` can't serve."""

    def batches(self, request: GenerationRequest) -> bool:
        """Whether visitors' requests like this one may run as one call (core.batching), before validation."""
        return False

    def prepare(self, request: GenerationRequest, serving: Serving, pool: Pool) -> GenerationRequest:
        """The (validated) request as the run uses it, e.g. with its control images turned into maps."""
        return request

    def view(
        self, pool: Pool, request: GenerationRequest, scheduler: Any, run_checker: bool, serving: Serving
    ) -> DiffusionPipeline:
        """The pipeline that runs the request: a view over the pool's modules with its own scheduler."""
        if self.kind == "auto" and pool.companion_kind is None:
            return pool.view(self, scheduler=scheduler, safety_checker=run_checker)
        return pool.view_as(self.name, scheduler=scheduler, **checker_overrides(pool, run_checker))

    def second_stage(self, pool: Pool, request: GenerationRequest, serving: Serving) -> DiffusionPipeline | None:
        """A second pipeline that finishes the first one's latents (SDXL's refiner), or None."""
        return None

    def call_arguments(
        self, request: GenerationRequest, pipe: DiffusionPipeline, seeds: list[int], multiple: int = 8
    ) -> dict[str, Any]:
        """The keyword arguments of the pipeline call; sizes taken from an input image are rounded down to
        `multiple` (the model family's size rule)."""
        args: dict[str, Any] = {}
        accepted = inspect.signature(pipe.__call__).parameters
        if self.uses_prompt:
            args["prompt"] = request.prompt
            # No negative prompt is the pipeline's own default: None, or "" where it needs a string (PixArt).
            unset = accepted["negative_prompt"].default if "negative_prompt" in accepted else None
            args["negative_prompt"] = request.negative_prompt or (unset if isinstance(unset, str) else None)
        args["num_inference_steps"] = request.steps
        args["guidance_scale"] = request.guidance_scale
        if "prior_num_inference_steps" in accepted:
            # A combined pipeline (a prior, then a decoder: Kandinsky 2.x, Wuerstchen, Stable Cascade): the steps
            # run in both stages, and the guidance steers the prior, which reads the prompt (and the decoder too,
            # where it takes one: Kandinsky's; Wuerstchen's decoder runs unguided, as its pipeline defaults).
            args["prior_num_inference_steps"] = request.steps
            args["prior_guidance_scale"] = request.guidance_scale
            if "guidance_scale" not in accepted:
                del args["guidance_scale"]
        args["generator"] = [torch.Generator("cpu").manual_seed(s) for s in seeds]
        if self.count_argument in accepted:
            args[self.count_argument] = request.num_images
        if self.sizes_from_request:
            args.update(width=request.width, height=request.height)
        if request.ip_adapter_image is not None:
            args["ip_adapter_image"] = request.ip_adapter_image.convert("RGB")
        if self.needs_image and request.image is not None:
            image = request.image.convert("RGB")
            args["image"] = image
            if self.has_strength:
                args["strength"] = request.strength
            if "width" in accepted and self.sizes_follow_image:
                # Pipelines that take a size default to the model's native one (SD3: 1024), not the image's.
                args.update(width=image.width - image.width % multiple, height=image.height - image.height % multiple)
        args.update(self.arguments(request, pipe, args))
        return args

    def arguments(self, request: GenerationRequest, pipe: DiffusionPipeline, args: dict[str, Any]) -> dict[str, Any]:
        """This task's own call arguments, added to the shared ones in `args`."""
        return {}

    def collect(self, output: Any, arguments: dict[str, Any]) -> tuple[list[Image.Image], dict[str, Any]]:
        """The images a run produced, and its other outputs by name (depth maps, animation frames, "audio")."""
        return list(output.images), {}

    def collect_from(
        self, output: Any, arguments: dict[str, Any], pipe: DiffusionPipeline
    ) -> tuple[list[Image.Image], dict[str, Any]]:
        """`collect`, for tasks that read the pipeline too (an audio model's sample rate)."""
        return self.collect(output, arguments)

    def run_fields(self, pipe: DiffusionPipeline, arguments: dict[str, Any]) -> dict[str, Any]:
        """Info fields only the run itself knows (the parameters a signature-built call passed)."""
        return {}

    # -- describing a run -------------------------------------------------------------------------------

    def release(self, pipe: DiffusionPipeline) -> None:
        """Undo what `view` or `arguments` changed on the shared modules for this run (model editing's projections):
        called after every run, one ended by a Stop or an error too."""

    def info_fields(self, request: GenerationRequest, serving: Serving) -> dict[str, Any]:
        """The info keys this task adds (DESIGN.md, "Public surfaces")."""
        return {"strength": request.strength} if self.has_strength else {}

    def snippet_class(self, pool: Pool, request: GenerationRequest, pipe: DiffusionPipeline) -> str:
        """The class the snippet loads: the AutoPipeline for a plain run of an auto task, else the view's own."""
        if self.kind == "auto" and pool.companion_kind is None:
            return self.auto_class.__name__
        return type(pipe).__name__

    def add_to_snippet(
        self, snippet: Snippet, request: GenerationRequest, seeds: list[int], serving: Serving, load: dict[str, Any]
    ) -> None:
        """Lines or load arguments the script needs for this task (`load` is the snippet's load arguments)."""

    def output_values(self, result: GenerationResult) -> dict[str, Any]:
        """The value of each of `outputs` for a finished run."""
        return {}

    def frames(self, request: GenerationRequest) -> int:
        """Frames per image: what a GPU lease has to make per step."""
        return 1

    def progress_bars(self, request: GenerationRequest) -> int:
        """How many progress bars (each over the steps) the run goes through, where progress and Stop go through
        them rather than the pipeline's step callback (ParaDiGMS' callback fails; Pix2Pix Zero's second pass and its
        inversion have none); 0: through the callback, where the pipeline has one."""
        return 0

    def extra_step_calls(self, request: GenerationRequest) -> int:
        """How many more times than once per step the pipeline's step callback is called in a run (a loop of
        several passes that each count from 0, some steps run twice: Text2Video-Zero's)."""
        return 0

    def table_rows(self) -> list[str]:
        """This task's rows of the README's task table."""
        cls = self.auto_class.__name__ if self.auto_class is not None else self.pipeline_class
        rows = [
            (f"{self.tab_label or self.label} `/{self.name}`", self.table_pipeline or f"`{cls}`", self.table_shares)
        ]
        rows += [(f"… {option}", pipeline, shares) for option, pipeline, shares in self.table_options]
        return [f"| {' | '.join(cells)} |" for cells in rows]


_ALL_MAPPINGS = (AUTO_TEXT2IMAGE_PIPELINES_MAPPING, AUTO_IMAGE2IMAGE_PIPELINES_MAPPING, AUTO_INPAINT_PIPELINES_MAPPING)


def extra_input_channels(pool: Pool) -> str | None:
    """Why a text-to-image or image-to-image view can't run on this pool's UNet, or None: an inpainting (9 input
    channels: latents, the masked image's latents, the mask) or InstructPix2Pix (8) checkpoint loaded as the main
    one takes more than the latents those loops hand it, and failed inside the UNet."""
    unet, autoencoder = pool.components.get("unet"), pool.components.get("vae") or pool.components.get("movq")
    takes = getattr(getattr(unet, "config", None), "in_channels", None)
    latents = getattr(getattr(autoencoder, "config", None), "latent_channels", None)
    if takes is None or latents is None or takes == latents:
        return None
    kind = {latents * 2 + 1: "an inpainting checkpoint", latents * 2: "an InstructPix2Pix-style checkpoint"}
    what = kind.get(takes, "a checkpoint whose UNet takes extra inputs")
    return (
        f"it is {what}, whose UNet takes {takes} input channels, not the {latents} of the latents alone. Use the "
        "tab its pipeline was made for, or load a text-to-image checkpoint for this one."
    )


def family_of(pipeline_class_name: str) -> str | None:
    """The AutoPipeline family key ('stable-diffusion', 'stable-diffusion-xl', ...) a pipeline class belongs to."""
    for mapping in _ALL_MAPPINGS:
        for family, cls in mapping.items():
            if cls.__name__ == pipeline_class_name:
                return family
    return None


def checker_overrides(pool: Pool, run_checker: bool) -> dict[str, Any]:
    """The safety-checker arguments of a view over `pool`: its checker, or none, where the pool has one."""
    if "safety_checker" not in pool.components:
        return {}
    return {
        "safety_checker": pool.components["safety_checker"] if run_checker else None,
        "requires_safety_checker": run_checker,
    }
