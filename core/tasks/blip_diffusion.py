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
        snippet.input_files["reference_image"] = "input.png"
        snippet.input_notes["reference_image"] = "the subject's picture you gave the app"


SPEC = BlipDiffusion()
