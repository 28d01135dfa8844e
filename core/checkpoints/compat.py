"""Mends for published pipelines that the pinned libraries broke, applied once to the loaded modules and written into
the snippet too, so the script makes the same result with diffusers alone.

Each is for a deprecated pipeline diffusers no longer fixes (under `pipelines/deprecated` since 0.33.1)."""

from __future__ import annotations

from typing import Any

import torch

# transformers 5's `ClapModel.get_text_features` returns an output object (the tensor in `pooler_output`) where
# diffusers 0.42's MusicLDM calls `.to()` on the tensor it used to return (AudioLDM 2's copy reads `.pooler_output`).
_CLAP_FEATURES = """\
_text_features = pipe.text_encoder.get_text_features
def _tensor_features(*args, **kwargs):  # transformers 5 returns an output object; MusicLDM expects its tensor
    output = _text_features(*args, **kwargs)
    return output if isinstance(output, torch.Tensor) else output.pooler_output
pipe.text_encoder.get_text_features = _tensor_features"""


def _tensor_features(method: Any) -> Any:
    def features(*args: Any, **kwargs: Any) -> torch.Tensor:
        output = method(*args, **kwargs)
        return output if isinstance(output, torch.Tensor) else output.pooler_output

    features.mended = True  # type: ignore[attr-defined]
    return features


def mend(pipeline: Any) -> None:
    """Mend `pipeline`'s modules where the pinned libraries broke it (once: the modules are shared by its views)."""
    if type(pipeline).__name__ == "MusicLDMPipeline":
        encoder = pipeline.text_encoder
        if not getattr(encoder.get_text_features, "mended", False):
            encoder.get_text_features = _tensor_features(encoder.get_text_features)


def snippet_lines(pipeline_class: str) -> list[str]:
    """The lines that mend a freshly loaded `pipe` of `pipeline_class` in a script, as `mend` does."""
    return _CLAP_FEATURES.splitlines() if pipeline_class == "MusicLDMPipeline" else []


def _generating_language_model(model_index: dict[str, Any], pipeline_class: str) -> bool:
    """AudioLDM 2 checkpoints that declare their language model as `GPT2Model` (cvssp/audioldm2's layout): under
    transformers 5 only the LM-head class can generate, and diffusers' loop fails on the base model
    ("'GPT2Model' object has no attribute '_get_initial_cache_position'", diffusers issue #12630). The same weights
    load into `GPT2LMHeadModel` (its head is tied to the token embedding)."""
    return pipeline_class == "AudioLDM2Pipeline" and model_index.get("language_model") == ["transformers", "GPT2Model"]


def replaced_components(model_index: dict[str, Any], pipeline_class: str, location: str, **load: Any) -> dict:
    """Components to load in another class than the checkpoint declares, and pass to `from_pretrained`."""
    if _generating_language_model(model_index, pipeline_class):
        from transformers import GPT2LMHeadModel

        return {"language_model": GPT2LMHeadModel.from_pretrained(location, subfolder="language_model", **load)}
    return {}


def snippet_replacements(model_index: dict[str, Any], pipeline_class: str, model_path: str, dtype: str) -> list[str]:
    """The snippet's lines loading what `replaced_components` replaces (each named as its component)."""
    if _generating_language_model(model_index, pipeline_class):
        return [
            "from transformers import GPT2LMHeadModel  # its GPT2Model can't generate under transformers 5",
            f"language_model = GPT2LMHeadModel.from_pretrained({model_path!r}, subfolder='language_model', "
            f"dtype=torch.{dtype})",
        ]
    return []
