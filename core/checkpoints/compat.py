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


# What `_mend_blip` does, for the snippet (diffusers and torch alone).
_BLIP_LINES = """\
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


def _mend_blip(pipe: Any) -> None:
    """Mend the modules of a BLIP Diffusion pipeline (shared by its views) for transformers 5, as _BLIP_LINES does.

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


# transformers 5 dropped `ModuleUtilsMixin.get_extended_attention_mask`, which diffusers 0.42's note and context
# encoders call ("'SpectrogramNotesEncoder' object has no attribute 'get_extended_attention_mask'"): the pipeline
# fails on its first chunk. Each encoder gets transformers 4's additive mask for a 2D padding mask back.
_ENCODERS = ("notes_encoder", "continuous_encoder")
_SPECTROGRAM_LINES = """\
def _additive_mask(encoder):  # transformers 5 dropped get_extended_attention_mask, which both encoders call
    def mask(attention_mask, input_shape, device=None, dtype=None):
        dtype = dtype or encoder.dtype
        return (1.0 - attention_mask[:, None, None, :].to(dtype)) * torch.finfo(dtype).min
    return mask
for encoder in (pipe.notes_encoder, pipe.continuous_encoder):
    encoder.get_extended_attention_mask = _additive_mask(encoder)"""


def _mend_spectrogram(pipe: Any) -> None:
    """The note and context encoders get the attention mask transformers 5 no longer makes (_SPECTROGRAM_LINES)."""
    for name in _ENCODERS:
        encoder = getattr(pipe, name, None)
        if encoder is not None and not hasattr(encoder, "get_extended_attention_mask"):
            encoder.get_extended_attention_mask = _additive_mask(encoder)


def _additive_mask(encoder: torch.nn.Module) -> Any:
    def mask(attention_mask: torch.Tensor, input_shape: Any, device: Any = None, dtype: Any = None) -> torch.Tensor:
        dtype = dtype or encoder.dtype
        return (1.0 - attention_mask[:, None, None, :].to(dtype)) * torch.finfo(dtype).min

    return mask


def mend(pipeline: Any) -> None:
    """Mend `pipeline`'s modules where the pinned libraries broke it (once: the modules are shared by its views)."""
    name = type(pipeline).__name__
    if name == "MusicLDMPipeline":
        encoder = pipeline.text_encoder
        if not getattr(encoder.get_text_features, "mended", False):
            encoder.get_text_features = _tensor_features(encoder.get_text_features)
    if name == "BlipDiffusionPipeline":
        _mend_blip(pipeline)
    if name == "SpectrogramDiffusionPipeline":
        _mend_spectrogram(pipeline)
    mel = getattr(pipeline, "mel", None) if name == "AudioDiffusionPipeline" else None
    if mel is not None and not getattr(mel.image_to_audio, "mended", False):
        pipeline.mel.image_to_audio = _seeded_image_to_audio(pipeline.mel)


def snippet_lines(pipeline_class: str) -> list[str]:
    """The lines that mend a freshly loaded `pipe` of `pipeline_class` in a script, as `mend` does."""
    lines = {
        "MusicLDMPipeline": _CLAP_FEATURES,
        "AudioDiffusionPipeline": _SEEDED_PHASES,
        "BlipDiffusionPipeline": _BLIP_LINES,
        "SpectrogramDiffusionPipeline": _SPECTROGRAM_LINES,
    }.get(pipeline_class, "")
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
