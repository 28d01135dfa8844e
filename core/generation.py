"""A generation request, checked before any work, and its result with everything needed to reproduce it."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from core.errors import InvalidRequest
from core.tasks import TaskSpec, get_task
from core.tasks.base import ALWAYS_CHECKED, check_int
from core.tasks.params import MAX_SEED

# Image i of a batch made again alone, from its own seed, is near-identical, not byte-identical: matrix products
# accumulate in an order that depends on the batch shape and the processor. The largest difference (of 255 levels)
# that the tests allow on the demo twin; measured there at 3 steps on an AMD EPYC (AVX512-BF16, no AMX): float32 1,
# bfloat16 4. float16 runs on GPUs only and is not measured. The same request, batch and all, is byte-identical.
ALONE_TOLERANCE = {"float32": 2, "bfloat16": 8}


@dataclass(frozen=True)
class Limits:
    """Bounds a request must stay within; public deployments tighten them."""

    min_side: int = 64
    max_side: int = 2048
    max_steps: int = 150
    max_guidance: float = 30.0
    max_images: int = 8
    max_image_pixels: int = 4096 * 4096  # an uploaded image larger than this is refused, not resized
    max_frames: int = 32
    max_audio_seconds: float = 60.0
    max_prompt_chars: int = 4000  # CLIP reads 77 tokens, T5 a few hundred; 2M characters cost 380 MB

    @property
    def max_work(self) -> int:
        """The most denoising work (steps x pixels, summed over images) one request may ask for: the largest
        single generation. A compare grid counts its cells against the same budget."""
        return self.max_images * self.max_steps * self.max_side * self.max_side


@dataclass
class GenerationRequest:
    """Everything one run needs. Images are PIL images; `mask` is white where the image is repainted."""

    task: str = "text2img"
    prompt: str = ""
    negative_prompt: str = ""
    image: Image.Image | None = None
    mask: Image.Image | None = None
    strength: float = 0.75
    steps: int = 25
    guidance_scale: float = 7.5
    width: int = 512
    height: int = 512
    seed: int = -1
    scheduler: str = "default"
    num_images: int = 1
    safety_checker: bool = True
    # Options of particular tasks (ignored by the others):
    sag_scale: float = 0.0  # text2img: self-attention guidance (SAG) when > 0
    pag_scale: float = 0.0  # text2img: perturbed-attention guidance (PAG) when > 0
    refiner_switch: float = 0.0  # text2img (SDXL): hand over to the refiner at this fraction of the steps when > 0
    safety_preset: str = "medium"  # safe_text2img: how strongly safe latent diffusion steers away
    depth_map: Image.Image | None = None  # depth2img: use this depth instead of estimating one
    upscaler: str = "x4"  # upscale: x4 (image upscaler) or x2 (latent upscaler)
    noise_level: int = 20  # upscale x4: noise added to the low-resolution image
    num_frames: int = 16  # animate
    fps: int = 8  # animate
    motion_x: float = 12.0  # video_zero: the camera pan, pixels per frame
    motion_y: float = 12.0
    preview_every: int = 0  # a live preview every this many steps (0 = none), for callers that take previews
    step_cache: int = 1  # the whole UNet every this many steps, its deep features reused in between (1 = off)
    tiny_decode: bool = False  # text2img: the final decode by the loaded tiny VAE (fast, softer) instead of the VAE
    ip_adapter_image: Image.Image | None = None  # the image prompt, for tasks over a UNet with an IP-Adapter
    image_guidance_scale: float = 1.5  # instruct: how closely the edit keeps to the input image
    excite_words: str = ""  # attend_excite: words of the prompt whose attention is strengthened
    max_iter_to_alter: int = 25  # attend_excite: the first steps that steer the latents
    edit_prompt_1: str = ""  # semantic: concepts added or removed (SEGA)
    edit_direction_1: str = "add"
    edit_scale_1: float = 5.0
    edit_prompt_2: str = ""
    edit_direction_2: str = "add"
    edit_scale_2: float = 5.0
    edit_warmup_steps: int = 10
    edit_threshold: float = 0.9
    circular_padding: bool = False  # panorama: join the two ends
    source_prompt: str = ""  # diffedit: what the image shows (the mask is where it differs from the prompt)
    mask_strength: float = 0.5  # diffedit: the noise of the mask comparison
    parallel: int = 10  # paradigms: steps denoised at once
    tolerance: float = 0.1  # paradigms: how far a window may be from sequential sampling
    source_guidance_scale: float = 1.0  # cycle: how strongly the source prompt holds what the two prompts share
    destination_prompt: str = ""  # model_editing: what source_prompt should mean from now on (e.g. blue roses)
    source_concept: str = ""  # pix2pix_zero: sentences (one per line) about what to change ...
    target_concept: str = ""  # pix2pix_zero: ... and about what it becomes
    cross_attention_guidance: float = 0.1  # pix2pix_zero: how strongly the edit keeps the image's layout
    source_subject: str = ""  # blip_diffusion: what the reference image shows (e.g. dog)
    target_subject: str = ""  # blip_diffusion: what to draw in its likeness (e.g. dog)
    dual_strength: float = 0.5  # versatile: between the image (0) and the prompt (1) in a dual-guided run
    versatile_mode: str = "text to image"  # versatile: text to image | image variation | dual guided
    midi: Any = None  # midi_audio: the MIDI file (the path of an upload, or its bytes; its tokens once prepared)
    video: Any = None  # video2video: the path of an uploaded clip (its frames, once the run is prepared)
    example_image: Image.Image | None = None  # paint_by_example: what to paint into the mask
    unclip_noise_level: int = 0  # unclip, unclip_text2img: noise added to the image embedding
    prior_steps: int = 25  # unclip_text2img: the prior's steps (prompt to image embedding)
    gligen_phrases: str = ""  # gligen: phrases separated by ;
    gligen_boxes: str = ""  # gligen: x0,y0,x1,y1 (fractions) per phrase, ; between boxes
    gligen_beta: float = 0.3  # gligen: the share of the steps the boxes steer
    # controlnet: the control images (through their preprocessors), weights and step ranges of its two slots
    control_image: Image.Image | None = None
    preprocessor: str = "none"
    control_scale: float = 1.0
    control_start: float = 0.0
    control_end: float = 1.0
    canny_low: int = 100
    canny_high: int = 200
    control_image_2: Image.Image | None = None
    preprocessor_2: str = "none"
    control_scale_2: float = 1.0
    control_start_2: float = 0.0
    control_end_2: float = 1.0
    # pipeline: a pipeline without a spec, called with what its signature takes (core.signature)
    class_labels: str = ""  # names or ids, ; between them
    audio_seconds: float = 0.0  # 0: the pipeline's own length
    other_parameters: str = "{}"  # a JSON object of its other scalar parameters
    mesh: bool = False  # a 3D mesh (PLY) instead of renders, where a component decodes meshes (Shap-E)

    def validate(self, limits: Limits, *, size_multiple: int = 8) -> None:
        """Raise `InvalidRequest` with what to change if any field is out of range or missing."""
        task = get_task(self.task)
        if not isinstance(self.prompt, str) or not isinstance(self.negative_prompt, str):
            raise InvalidRequest("The prompt and negative prompt must be text.")
        for label, text in (("prompt", self.prompt), ("negative prompt", self.negative_prompt)):
            if len(text) > limits.max_prompt_chars:
                raise InvalidRequest(
                    f"The {label} is {len(text):,} characters; this app takes at most {limits.max_prompt_chars:,} "
                    "(the text encoder reads only its first few hundred tokens). Shorten it."
                )
        if not isinstance(self.scheduler, str):
            raise InvalidRequest("scheduler must be a scheduler's name, e.g. 'default' or 'Euler a'.")
        for param in task.params:  # a spec's other text fields: the same bounds as the prompt's
            if param.kind in ("text", "lines"):
                text = getattr(self, param.name)
                if not isinstance(text, str) or len(text) > limits.max_prompt_chars:
                    bound = f"{limits.max_prompt_chars:,}"
                    raise InvalidRequest(f"{param.name} must be text of at most {bound} characters.")
        checked = {p.name: p for p in (*ALWAYS_CHECKED, *task.params) if p.checked}
        for name, param in checked.items():  # ranges and choices: the spec's params are the one source
            param.check(getattr(self, name), limits)
        if task.sizes_from_request:
            for label in ("width", "height"):
                value = getattr(self, label)
                if value % size_multiple:
                    lower = value - value % size_multiple
                    nearest = f"{lower} or {lower + size_multiple}" if lower else str(size_multiple)
                    raise InvalidRequest(f"{label} must be a multiple of {size_multiple}, got {value}; try {nearest}.")
        task.check(self, limits)
        check_int("seed", self.seed)
        if not (self.seed == -1 or 0 <= self.seed <= MAX_SEED - self.num_images):
            raise InvalidRequest(f"seed must be -1 (random) or between 0 and {MAX_SEED - self.num_images}.")
        if task.needs_image or (self.image is not None and task.takes_image):  # an optional one too
            self._check_images(task, limits)
        if self.ip_adapter_image is not None:
            if not isinstance(self.ip_adapter_image, Image.Image):
                raise InvalidRequest("The image prompt could not be read as an image; upload a PNG, JPEG or WebP.")
            width, height = self.ip_adapter_image.size
            if width * height > limits.max_image_pixels:
                raise InvalidRequest(f"The image prompt is {width}x{height}, larger than this app accepts; shrink it.")

    def _check_images(self, task: TaskSpec, limits: Limits) -> None:
        if self.image is None:
            raise InvalidRequest(f"{task.label} needs an input image: upload one.")
        if not isinstance(self.image, Image.Image):
            raise InvalidRequest("The input image could not be read as an image; upload a PNG, JPEG or WebP.")
        width, height = self.image.size
        if width * height > limits.max_image_pixels:
            raise InvalidRequest(
                f"The input image is {width}x{height}, larger than this app accepts; resize it below "
                f"{limits.max_image_pixels // 1_000_000} megapixels."
            )
        task.check_input_size(self, limits)

    def resolved_seeds(self) -> list[int]:  # pool rule 4; see ALONE_TOLERANCE for what "alone" gives
        """One seed per image: `seed + i`, after picking `seed` at random when it is -1."""
        first = random.randint(0, MAX_SEED - self.num_images) if self.seed == -1 else self.seed
        return [first + i for i in range(self.num_images)]


@dataclass
class GenerationResult:
    """The images of one run and its `info` (see DESIGN.md, "Public surfaces")."""

    images: list[Image.Image]
    info: dict[str, Any]
    paths: list[str] = field(default_factory=list)  # where the images were saved, if they were
    extras: dict[str, Any] = field(default_factory=dict)  # other outputs by name: "depth" maps, "frames"
    files: dict[str, str] = field(default_factory=dict)  # saved files other than images: "gif", "mp4"
