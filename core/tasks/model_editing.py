"""Model editing (TIME): change what a phrase means to the model, then draw with it. "A pack of roses" →
"A pack of blue roses" rewrites the UNet's cross-attention key and value projections in closed form so that the
first phrase's words lead where the second's do; every prompt naming roses then gets blue ones. A `from_pipe` view
over the loaded SD checkpoint; the edit lives only for its run: the shared UNet gets its own projections back
afterwards (after a Stop or an error too), so no other tab ever sees it."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

import diffusers
import diffusers.pipelines.deprecated.stable_diffusion_variants.pipeline_stable_diffusion_model_editing as editing
from diffusers import DiffusionPipeline

from core.checkpoints import compat
from core.errors import InvalidRequest
from core.tasks.base import (
    RUN,
    STEPS_GUIDANCE,
    TEXT,
    Param,
    Serving,
    TaskSpec,
    checker_overrides,
    size,
)

if TYPE_CHECKING:
    from core.generation import GenerationRequest, Limits
    from core.pool import Pool
    from core.snippet import Snippet

_KEPT = "_studio_projections"  # on the view: (layer, its to_v, its to_k) as the pool had them
# What diffusers' edit_model puts before both phrases, besides them alone (its `with_augs` default).
AUGMENTATIONS = tuple(editing.AUGS_CONST)


def _lowered(text: str) -> str:
    """The phrase as edit_model puts it after an augmentation: a leading "A" lowered."""
    return "a" + text[1:] if text[:1] == "A" else text


class ModelEditing(TaskSpec):
    name, label, kind, order = "model_editing", "Model editing", "feature", 53
    pipeline_class = "StableDiffusionModelEditingPipeline"
    table_pipeline = "`StableDiffusionModelEditingPipeline` (TIME)"
    table_shares = "everything (a `from_pipe` view; the edited projections are the run's own, the pool's come back)"
    run_label = "Edit and generate"
    description = (
        "Text to image after editing what source_prompt means into destination_prompt (TIME: the UNet's "
        "cross-attention projections, for this run only); the destination repeats the source's words and adds some."
    )
    note = (
        "Model editing (`from_pipe` over the loaded checkpoint) rewrites how the UNet reads the source phrase, for "
        "this run: e.g. *A pack of roses* → *A pack of blue roses*, then draw *a field of roses*. The loaded model "
        "is unchanged afterwards."
    )
    params = (
        Param("source_prompt", "text", "Phrase to edit", "", info="e.g. A pack of roses", row="edit"),
        Param("destination_prompt", "text", "What it should mean", "", info="e.g. A pack of blue roses", row="edit"),
        *TEXT,
        *STEPS_GUIDANCE,
        size("width"),
        size("height"),
        *RUN,
    )

    def views_over(self, base_class: str, family: str | None) -> dict[str, type]:
        if base_class != "StableDiffusionPipeline":
            return {}
        return {self.name: diffusers.StableDiffusionModelEditingPipeline}

    def check(self, request: GenerationRequest, limits: Limits) -> None:
        if not request.source_prompt.strip() or not request.destination_prompt.strip():
            raise InvalidRequest(
                "Model editing needs the phrase to edit (source_prompt, e.g. 'A pack of roses') and what it should "
                "mean (destination_prompt, e.g. 'A pack of blue roses')."
            )

    def check_options(self, pool: Pool, request: GenerationRequest) -> None:
        """The phrases as the edit reads them (after validation: they are text of a bounded length). The edit also
        pairs the phrases with "A photo of ", "An image of " and "A picture of " before them; each pair must fit the
        text encoder and the destination must repeat the source's words in order (else diffusers' loop indexes past
        the end: an IndexError, on a GPU a device-side assert)."""
        tokenizer = pool.components["tokenizer"]
        for prefix in ("", *AUGMENTATIONS):
            source, destination = (prefix + _lowered(text) if prefix else text for text in self._phrases(request))
            a, b = self._tokens(tokenizer, source), self._tokens(tokenizer, destination)
            if max(len(a), len(b)) > tokenizer.model_max_length:
                before = f" with the edit's {prefix.strip()!r} before them" if prefix else ""
                raise InvalidRequest(
                    f"The phrases are {max(len(a), len(b))} tokens{before}; the text encoder reads "
                    f"{tokenizer.model_max_length}. Shorten them: a few words each (the edit is about one concept)."
                )
            rest = iter(b)
            specials = set(tokenizer.all_special_ids)
            missing = [tokenizer.decode([t]) for t in a if not any(t == u for u in rest) and t not in specials][:6]
            if missing:
                raise InvalidRequest(
                    f"The destination must keep the source's words in their order and add to them (e.g. 'A pack of "
                    f"roses' → 'A pack of blue roses'); {', '.join(repr(w.strip()) for w in missing)} is not where "
                    "the source has it."
                )

    @staticmethod
    def _phrases(request: GenerationRequest) -> tuple[str, str]:
        return request.source_prompt, request.destination_prompt

    @staticmethod
    def _tokens(tokenizer: Any, text: str) -> list[int]:
        """The ids edit_model pairs up: the text's own tokens, "an" read as "a"."""
        ids = tokenizer(text).input_ids
        a = tokenizer.encode("a ")[1]
        return [a if tokenizer.decode([t]) == "an" else t for t in ids]

    def prepare(self, request: GenerationRequest, serving: Serving, pool: Pool) -> GenerationRequest:
        """DDIM where the run would be PNDM (the checkpoint's default for SD 1.x): diffusers says this pipeline
        doesn't support PNDM."""
        default = type(pool.components.get("scheduler")).__name__
        if request.scheduler == "PNDM" or (request.scheduler == "default" and default == "PNDMScheduler"):
            return dataclasses.replace(request, scheduler="DDIM")
        return request

    def view(
        self, pool: Pool, request: GenerationRequest, scheduler: Any, run_checker: bool, serving: Serving
    ) -> DiffusionPipeline:
        pipe = pool.view_as(self.name, scheduler=scheduler, **checker_overrides(pool, run_checker))
        layers = compat.find_edited_layers(pipe)
        setattr(pipe, _KEPT, [(layer, layer.to_v, layer.to_k) for layer in layers])
        return pipe

    def arguments(self, request: GenerationRequest, pipe: DiffusionPipeline, args: dict[str, Any]) -> dict[str, Any]:
        pipe.edit_model(request.source_prompt, request.destination_prompt)
        return {}

    def release(self, pipe: DiffusionPipeline) -> None:
        """Put the pool's own projections back in its UNet's layers (the edit put edited copies there)."""
        for layer, to_v, to_k in getattr(pipe, _KEPT, ()):
            layer.to_v, layer.to_k = to_v, to_k

    def info_fields(self, request: GenerationRequest, serving: Serving) -> dict[str, Any]:
        return {"source_prompt": request.source_prompt, "destination_prompt": request.destination_prompt}

    def add_to_snippet(
        self, snippet: Snippet, request: GenerationRequest, seeds: list[int], serving: Serving, load: dict[str, Any]
    ) -> None:
        snippet.after_load += [
            *compat.model_editing_lines(snippet.dtype),
            f"pipe.edit_model({request.source_prompt!r}, {request.destination_prompt!r})",
        ]


SPEC = ModelEditing()
