"""Attend and excite: the loaded SD checkpoint's text to image, with the latents nudged during the first steps until
every chosen word of the prompt gets attention (so "a cat and a frog" shows both). A `from_pipe` view: no memory.

The user names words of the prompt; the pipeline wants the positions of their tokens, which this module finds by
tokenizing the prompt with the view's own tokenizer (a word may be several tokens).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import diffusers
from diffusers import DiffusionPipeline

from core.errors import InvalidRequest
from core.tasks.base import RUN, SIZE, STEPS_GUIDANCE, TEXT, Param, Serving, TaskSpec

if TYPE_CHECKING:
    from core.generation import GenerationRequest, Limits


def words_of(text: str) -> list[str]:
    return [w.strip() for w in text.replace(";", ",").split(",") if w.strip()]


def token_indices(tokenizer: Any, prompt: str, words: list[str]) -> list[int]:
    """The positions (the start token counted) of each word's tokens in the tokenized prompt."""
    ids = tokenizer(prompt, truncation=True).input_ids
    found: list[int] = []
    for word in words:
        piece = tokenizer(word, add_special_tokens=False).input_ids
        starts = [i for i in range(1, len(ids) - len(piece)) if ids[i : i + len(piece)] == piece]
        if not piece or not starts:
            raise InvalidRequest(
                f"The prompt has no word {word!r} (within the {tokenizer.model_max_length} tokens the text encoder "
                "reads); name words that are in it, separated by commas."
            )
        found += range(starts[0], starts[0] + len(piece))
    return sorted(set(found))


def attention_resolution(unet: Any, height: int, width: int, scale: int) -> tuple[int, int]:
    """The cross-attention map size to excite: the UNet level with cross-attention nearest a quarter of the latents
    (SD 1.5 at 512 px: 16x16, the pipeline's default)."""
    levels = [i for i, block in enumerate(unet.config.down_block_types) if "CrossAttn" in block]
    level = min(levels, key=lambda i: abs(i - 2)) if levels else 2
    return height // scale // 2**level, width // scale // 2**level


class AttendExcite(TaskSpec):
    name, label, kind, order = "attend_excite", "Attend and excite", "feature", 42
    tab_label = "Attend & Excite"
    pipeline_class = "StableDiffusionAttendAndExcitePipeline"
    table_shares = "everything (a `from_pipe` view)"
    description = (
        "Text to image that makes sure each of the named words (excite_words: words of the prompt, comma-separated) "
        "appears, by steering the latents while the first max_iter_to_alter steps run."
    )
    note = (
        "Attend-and-Excite (`from_pipe` over the loaded checkpoint: no extra memory) strengthens the attention of "
        'the words you name, for prompts where an object goes missing ("a cat and a frog").'
    )
    params = (
        *TEXT,
        Param(
            "excite_words",
            "text",
            "Words to attend to",
            "",
            info="words of the prompt, comma-separated (e.g. cat, frog)",
        ),
        Param(
            "max_iter_to_alter",
            "slider",
            "Steer during the first N steps",
            25,
            minimum=0,
            maximum="max_steps",
            step=1,
            whole=True,
        ),
        *STEPS_GUIDANCE,
        *SIZE,
        *RUN,
    )

    def views_over(self, base_class: str, family: str | None) -> dict[str, type]:
        if base_class != "StableDiffusionPipeline":
            return {}
        return {self.name: diffusers.StableDiffusionAttendAndExcitePipeline}

    def check(self, request: GenerationRequest, limits: Limits) -> None:
        if not isinstance(request.excite_words, str) or len(request.excite_words) > limits.max_prompt_chars:
            raise InvalidRequest("excite_words must be a line of text: words of the prompt, comma-separated.")
        if not words_of(request.excite_words):
            raise InvalidRequest("Name the words of the prompt to attend to (excite_words), e.g. `cat, frog`.")

    def arguments(self, request: GenerationRequest, pipe: DiffusionPipeline, args: dict[str, Any]) -> dict[str, Any]:
        indices = token_indices(pipe.tokenizer, request.prompt, words_of(request.excite_words))
        scale = pipe.vae_scale_factor
        return {
            "token_indices": indices,
            "max_iter_to_alter": request.max_iter_to_alter,
            "attn_res": attention_resolution(pipe.unet, request.height, request.width, scale),
        }

    def info_fields(self, request: GenerationRequest, serving: Serving) -> dict[str, Any]:
        return {"excite_words": words_of(request.excite_words), "max_iter_to_alter": request.max_iter_to_alter}


SPEC = AttendExcite()
