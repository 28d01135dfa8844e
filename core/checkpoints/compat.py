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


# Audio Diffusion's Mel turns its spectrogram into sound with librosa's Griffin-Lim, which since librosa 0.10 starts
# from phases of a fresh, unseeded generator: the same seed made the same spectrogram and a different waveform on
# every call (so the snippet never matched the app). Griffin-Lim from seeded phases, the Mel's computation otherwise.
_SEEDED_PHASES = """\
import librosa
import numpy as np
def _image_to_audio(image, mel=pipe.mel):  # Griffin-Lim from seeded phases: librosa >= 0.10 draws fresh ones
    log_s = np.asarray(image, dtype=float) * mel.top_db / 255  # the grey levels, as the Mel reads them
    stft = librosa.feature.inverse.mel_to_stft(librosa.db_to_power(log_s - mel.top_db), sr=mel.sr, n_fft=mel.n_fft)
    return librosa.griffinlim(
        stft, n_iter=mel.n_iter, hop_length=mel.hop_length, n_fft=mel.n_fft, dtype=np.float32, random_state=0
    )
pipe.mel.image_to_audio = _image_to_audio"""


def _seeded_image_to_audio(mel: Any) -> Any:
    def image_to_audio(image: Any) -> Any:
        import librosa
        import numpy as np

        log_s = np.asarray(image, dtype=float) * mel.top_db / 255  # the grey levels, as the Mel reads them
        stft = librosa.feature.inverse.mel_to_stft(librosa.db_to_power(log_s - mel.top_db), sr=mel.sr, n_fft=mel.n_fft)
        return librosa.griffinlim(
            stft, n_iter=mel.n_iter, hop_length=mel.hop_length, n_fft=mel.n_fft, dtype=np.float32, random_state=0
        )

    image_to_audio.mended = True  # type: ignore[attr-defined]
    return image_to_audio


def mend(pipeline: Any) -> None:
    """Mend `pipeline`'s modules where the pinned libraries broke it (once: the modules are shared by its views)."""
    name = type(pipeline).__name__
    if name == "MusicLDMPipeline":
        encoder = pipeline.text_encoder
        if not getattr(encoder.get_text_features, "mended", False):
            encoder.get_text_features = _tensor_features(encoder.get_text_features)
    mel = getattr(pipeline, "mel", None) if name == "AudioDiffusionPipeline" else None
    if mel is not None and not getattr(mel.image_to_audio, "mended", False):
        pipeline.mel.image_to_audio = _seeded_image_to_audio(pipeline.mel)


def snippet_lines(pipeline_class: str) -> list[str]:
    """The lines that mend a freshly loaded `pipe` of `pipeline_class` in a script, as `mend` does."""
    lines = {"MusicLDMPipeline": _CLAP_FEATURES, "AudioDiffusionPipeline": _SEEDED_PHASES}.get(pipeline_class, "")
    return lines.splitlines()


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


# diffusers 0.42's model editing (TIME) finds the cross-attention layers it edits by the class name `CrossAttention`,
# which diffusers has since renamed `Attention`, and only where the text is 768 wide (SD 1.x): it finds none, and
# `edit_model` silently changes nothing. Point it at the UNet's cross-attention layers, of any width.
_MODEL_EDITING_LAYERS = """\
from diffusers.models.attention_processor import Attention  # diffusers 0.42 looks for a class named CrossAttention
pipe.ca_clip_layers = [m for m in pipe.unet.modules() if isinstance(m, Attention) and m.is_cross_attention]
pipe.projection_matrices = [m.to_v for m in pipe.ca_clip_layers] + [m.to_k for m in pipe.ca_clip_layers]
pipe.og_matrices = list(pipe.projection_matrices)  # edit_model copies these before it edits"""
# ... and it solves its closed form in the weights' dtype next to a float32 identity: in float16 or bfloat16 the
# product fails ("expected m1 and m2 to have the same dtype"). Edit float32 copies that read and give the run's dtype.
_MODEL_EDITING_FLOAT32 = """\
class Float32Linear(torch.nn.Linear):  # the edit needs float32; the run keeps its dtype
    def forward(self, x):
        return super().forward(x.to(self.weight.dtype)).to(x.dtype)
def float32_copy(m):
    c = Float32Linear(m.in_features, m.out_features, bias=m.bias is not None, device=m.weight.device)
    c.load_state_dict({k: v.float() for k, v in m.state_dict().items()})
    return c
pipe.og_matrices = [float32_copy(m) for m in pipe.projection_matrices]"""


class Float32Linear(torch.nn.Linear):
    """A float32 projection in a lower-precision UNet: it reads and returns the activations' dtype."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.to(self.weight.dtype)).to(x.dtype)


def _float32_copy(m: torch.nn.Linear) -> Float32Linear:
    c = Float32Linear(m.in_features, m.out_features, bias=m.bias is not None, device=m.weight.device)
    c.load_state_dict({k: v.float() for k, v in m.state_dict().items()})
    return c


def _low_precision(pipe: Any) -> bool:
    return pipe.unet.dtype not in (torch.float32, torch.float64)


def find_edited_layers(pipe: Any) -> list[Any]:
    """Point a model-editing pipeline at its UNet's cross-attention layers (see `_MODEL_EDITING_LAYERS`); returns
    them. `og_matrices` are the modules themselves: `edit_model(restart_params=True)` puts deep copies of them in
    the layers and edits those, so the originals are never changed and can be put back after a run."""
    from diffusers.models.attention_processor import Attention

    layers = [m for m in pipe.unet.modules() if isinstance(m, Attention) and m.is_cross_attention]
    pipe.with_to_k = True
    pipe.ca_clip_layers = layers
    pipe.projection_matrices = [m.to_v for m in layers] + [m.to_k for m in layers]
    pipe.og_matrices = list(pipe.projection_matrices)
    if _low_precision(pipe):
        pipe.og_matrices = [_float32_copy(m) for m in pipe.projection_matrices]
    return layers


def model_editing_lines(dtype: str) -> list[str]:
    """The snippet's lines doing what `find_edited_layers` does for a pipeline of `dtype`."""
    lines = _MODEL_EDITING_LAYERS.splitlines()
    return lines + (_MODEL_EDITING_FLOAT32.splitlines() if dtype not in ("float32", "float64") else [])
