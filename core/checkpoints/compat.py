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
