"""Subject-driven generation (BLIP Diffusion): draw the subject of a reference image in a new scene, zero-shot. A
BLIP-2 Q-Former reads the picture and what it shows (its category, e.g. dog) into query embeddings that join the
prompt's in the text encoder; the pipeline writes the prompt as "a <target subject> <prompt>", repeated. The tab of a
loaded Salesforce/blipdiffusion-style checkpoint (its own pipeline, deprecated in diffusers).

diffusers 0.42's BLIP Diffusion modules were written against transformers 4 and break under transformers 5 (see
`mend`); its loop gives the scheduler no generator and doesn't truncate the negative prompt, so the spec refuses
what would fail or not repeat (`check_options`).
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

import diffusers
import torch
from diffusers import DiffusionPipeline

from core import schedulers
from core.errors import InvalidRequest
from core.tasks.base import (
    NUM_IMAGES,
    SCHEDULER,
    SEED,
    SIZE,
    Param,
    Serving,
    TaskSpec,
    guidance,
    image,
    negative,
    steps,
)

if TYPE_CHECKING:
    from core.generation import GenerationRequest, Limits
    from core.pool import Pool
    from core.snippet import Snippet

# What `mend` does, for the snippet (diffusers and torch alone).
MEND_LINES = """\
# diffusers 0.42's BLIP Diffusion modules call transformers 4's APIs; under transformers 5 they are mended so:
def _invert_attention_mask(mask):  # a helper transformers 5 removed
    mask = mask[:, None, None, :] if mask.dim() == 2 else mask[:, None, :, :]
    return (1.0 - mask.to(pipe.qformer.dtype)) * torch.finfo(pipe.qformer.dtype).min
pipe.qformer.invert_attention_mask = _invert_attention_mask
pipe.qformer.get_head_mask = lambda head_mask, layers: [None] * layers  # removed too; the pipeline passes none
def _attention_as_before(attention):  # transformers 4's arguments and return value
    forward = type(attention).forward.__get__(attention)
    def call(hidden_states, attention_mask=None, head_mask=None, encoder_hidden_states=None,
             encoder_attention_mask=None, past_key_value=None, output_attentions=False):
        return forward(hidden_states, attention_mask, encoder_hidden_states, encoder_attention_mask), None
    return call
for layer in pipe.qformer.encoder.layer:
    layer.attention.forward = _attention_as_before(layer.attention)
    if layer.has_cross_attention:
        layer.crossattention.forward = _attention_as_before(layer.crossattention)
_encoder = pipe.text_encoder.text_model.encoder
_encode = type(_encoder).forward.__get__(_encoder)
def _causal_encode(inputs_embeds, attention_mask=None, causal_attention_mask=None, **kwargs):
    # transformers 5's CLIP encoder takes no causal mask and silently drops it: fold it into the attention mask
    mask = causal_attention_mask if attention_mask is None else causal_attention_mask + attention_mask
    return _encode(inputs_embeds, attention_mask=mask)
_encoder.forward = _causal_encode"""


def _invert_attention_mask(module: torch.nn.Module) -> Any:
    def invert(mask: torch.Tensor) -> torch.Tensor:
        mask = mask[:, None, None, :] if mask.dim() == 2 else mask[:, None, :, :]
        return (1.0 - mask.to(module.dtype)) * torch.finfo(module.dtype).min

    return invert


def _attention_as_before(attention: torch.nn.Module) -> Any:
    # The class's own forward, not the attribute: mending twice must not wrap the wrapper.
    forward = type(attention).forward.__get__(attention)

    def call(
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        head_mask: Any = None,
        encoder_hidden_states: torch.Tensor | None = None,
        encoder_attention_mask: torch.Tensor | None = None,
        past_key_value: Any = None,
        output_attentions: bool = False,
    ) -> tuple[torch.Tensor, None]:
        return forward(hidden_states, attention_mask, encoder_hidden_states, encoder_attention_mask), None

    return call


def _causal_encode(encoder: torch.nn.Module) -> Any:
    encode = type(encoder).forward.__get__(encoder)

    def call(inputs_embeds: torch.Tensor, attention_mask: Any = None, causal_attention_mask: Any = None, **_: Any):
        mask = causal_attention_mask if attention_mask is None else causal_attention_mask + attention_mask
        return encode(inputs_embeds, attention_mask=mask)

    return call


def mend(pipe: DiffusionPipeline) -> None:
    """Mend the modules of a BLIP Diffusion pipeline (shared by its views) for transformers 5, as MEND_LINES does.

    Measured against the same twin under transformers 4.49: the mended run is bit-identical. Unmended:
    - the Q-Former calls `invert_attention_mask` and `get_head_mask`, which transformers 5 removed (AttributeError);
    - it calls transformers' `Blip2QFormerAttention` with transformers 4's positional arguments (its head mask lands
      where the encoder's states now go) and reads a tuple where a tensor now comes back (IndexError);
    - the text encoder hands `CLIPEncoder` a causal mask it no longer takes: dropped silently, the prompt is read
      with attention both ways, unlike the trained model.
    """
    qformer = pipe.qformer
    qformer.invert_attention_mask = _invert_attention_mask(qformer)
    qformer.get_head_mask = lambda head_mask, layers: [None] * layers
    for layer in qformer.encoder.layer:
        layer.attention.forward = _attention_as_before(layer.attention)
        if layer.has_cross_attention:
            layer.crossattention.forward = _attention_as_before(layer.crossattention)
    encoder = pipe.text_encoder.text_model.encoder
    encoder.forward = _causal_encode(encoder)


@functools.lru_cache
def draws_unseeded_noise(class_name: str, overrides: tuple[tuple[str, Any], ...] = ()) -> bool:
    """Whether the scheduler's `step` draws noise when given no generator (DDPM, the SDE solvers, LCM), measured
    on a fresh one: BLIP Diffusion's loop passes none, so that noise would come from torch's global generator."""
    cls = getattr(diffusers, class_name)
    outputs = []
    for seed in (0, 1):
        scheduler = cls(**dict(overrides))
        scheduler.set_timesteps(4)
        sample = torch.ones(1, 1, 2, 2)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            outputs.append(scheduler.step(torch.zeros_like(sample), scheduler.timesteps[0], sample).prev_sample)
    return not torch.equal(*outputs)


def _unseeded(name: str, base: Any, pipeline: type) -> bool:
    cls, overrides = schedulers.resolve(name, base, pipeline)
    return draws_unseeded_noise(cls.__name__, tuple(sorted(overrides.items())))


class BlipDiffusion(TaskSpec):
    name, label, kind, order = "blip_diffusion", "Subject-driven (BLIP Diffusion)", "feature", 94
    tab_label = "Subject"
    pipeline_class = "BlipDiffusionPipeline"
    table_shares = "everything: the loaded checkpoint's own pipeline (like `Salesforce/blipdiffusion`)"
    count_argument = ""  # one image per prompt in its lists (see `arguments`)
    description = (
        "Draw the subject of image (what it shows: source_subject, e.g. dog) as target_subject (the same, or a "
        "related category) doing what prompt says (BLIP Diffusion: no fine-tuning)."
    )
    note = (
        "BLIP Diffusion reads the subject from the reference image and its category, and draws it as the target "
        "category in the scene the prompt describes: its text encoder reads “a <target> <prompt>”, repeated, "
        "within 61 tokens."
    )
    params = (
        image("Reference image: the subject"),
        Param(
            "source_subject", "text", "What it shows", "", info="the subject's category, e.g. dog",
            row="above-prompt",
        ),
        Param(
            "target_subject", "text", "Draw it as", "", info="the same category, or a related one, e.g. dog",
            row="above-prompt",
        ),
        Param("prompt", "prompt", "Prompt (what it does, where)"),
        negative(),
        steps(25),
        guidance(7.5),
        *SIZE,
        SEED,
        SCHEDULER,
        NUM_IMAGES,
    )  # fmt: skip

    def views_over(self, base_class: str, family: str | None) -> dict[str, type]:
        return {self.name: diffusers.BlipDiffusionPipeline} if base_class == "BlipDiffusionPipeline" else {}

    def check(self, request: GenerationRequest, limits: Limits) -> None:
        if not request.source_subject.strip() or not request.target_subject.strip():
            raise InvalidRequest(
                "BLIP Diffusion needs both subjects: what the reference image shows (source_subject, e.g. dog) and "
                "what to draw in its likeness (target_subject, e.g. dog again)."
            )

    def check_options(self, pool: Pool, request: GenerationRequest) -> None:
        base, pipeline = pool.components.get("scheduler"), type(pool.base)
        if _unseeded(request.scheduler, base, pipeline):
            usable = [n for n in schedulers.compatible_names(base, pipeline) if not _unseeded(n, base, pipeline)]
            raise InvalidRequest(
                f"Scheduler {request.scheduler!r} draws noise at every step, and BLIP Diffusion's loop gives it no "
                f"generator: the seed would not make the same image again. Choose one of: {', '.join(usable)}."
            )
        # Unlike the prompt, the negative prompt is tokenized without truncation: longer fails inside the encoder.
        longest = pool.components["text_encoder"].config.max_position_embeddings
        if request.guidance_scale > 1 and request.negative_prompt:
            count = len(pool.thread_tokenizers()["tokenizer"](request.negative_prompt).input_ids)
            if count > longest:
                raise InvalidRequest(
                    f"The negative prompt is {count} tokens; BLIP Diffusion reads at most {longest} there and does "
                    "not cut it short (its pipeline fails). Shorten it."
                )
        # The Q-Former's BERT tokenizer makes at most one token of each character, and doesn't truncate either.
        positions = pool.components["qformer"].config.qformer_config.max_position_embeddings
        if len(request.source_subject) > positions - 2:  # [CLS] and [SEP]
            raise InvalidRequest(
                f"source_subject is {len(request.source_subject)} characters; the Q-Former reads at most "
                f"{positions - 2}. Name the subject's category in a word or two (e.g. dog)."
            )

    def view(
        self, pool: Pool, request: GenerationRequest, scheduler: Any, run_checker: bool, serving: Serving
    ) -> DiffusionPipeline:
        mend(pool.base)  # its modules are the views' modules
        return super().view(pool, request, scheduler, run_checker, serving)

    def arguments(self, request: GenerationRequest, pipe: DiffusionPipeline, args: dict[str, Any]) -> dict[str, Any]:
        # Its batch is its prompts' list (no count argument): one prompt and subject pair per image, each image
        # with its own generator; the reference image is read once for all.
        count = len(args["generator"])
        del args["negative_prompt"]
        return {
            "prompt": [request.prompt] * count,
            "reference_image": args.pop("image"),
            "source_subject_category": [request.source_subject] * count,
            "target_subject_category": [request.target_subject] * count,
            "neg_prompt": request.negative_prompt,
        }

    def info_fields(self, request: GenerationRequest, serving: Serving) -> dict[str, Any]:
        return {"source_subject": request.source_subject, "target_subject": request.target_subject}

    def add_to_snippet(
        self, snippet: Snippet, request: GenerationRequest, seeds: list[int], serving: Serving, load: dict[str, Any]
    ) -> None:
        snippet.after_load += MEND_LINES.splitlines()
        snippet.input_files["reference_image"] = "input.png"
        snippet.input_notes["reference_image"] = "the subject's picture you gave the app"


SPEC = BlipDiffusion()
