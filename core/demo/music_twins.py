"""Tiny offline twins of the two deprecated music pipelines diffusers 0.42 still ships: Audio Diffusion (a UNet over
mel spectrogram images, turned into sound by `Mel`'s Griffin-Lim) and Spectrogram Diffusion (MIDI notes to a mel
spectrogram, turned into sound by a MelGAN in ONNX).

Each loads as a main checkpoint (`demo-audio-diffusion`, `demo-spectrogram-diffusion`), laid out as the Hub checkpoint
it stands for. Shapes follow diffusers' own tests of the two (removed with the pipelines' deprecation, in
tests/pipelines/audio_diffusion and tests/pipelines/spectrogram_diffusion before diffusers commit f13665e8f4), kept
tiny where the pipeline allows: Spectrogram Diffusion fixes the spectrogram's shape (256 frames of 128 mel bins, 5.12 s
at 16 kHz) and the token length (2048), so only the widths shrink. Audio Diffusion needs librosa; Spectrogram
Diffusion needs onnxruntime to run and onnx to write its MelGAN, and its MIDI reader (`MidiProcessor`) note_seq.
"""

from __future__ import annotations

import shutil
import tempfile
import weakref
from pathlib import Path

import torch

MUSIC = {
    "audio_diffusion": "mel spectrogram diffusion (an unconditional UNet over spectrogram images, Griffin-Lim to "
    "audio), like teticio/audio-diffusion-ddim-256",
    "spectrogram_diffusion": "MIDI to audio (T5 note and context encoders, a FiLM decoder of mel frames, a MelGAN in "
    "ONNX), like google/music-spectrogram-diffusion",
}
# The MelGAN's frame: 320 samples per mel frame at 16 kHz (diffusers' midi_utils: SAMPLE_RATE, HOP_SIZE); the
# pipeline hands it (batch, frames, 128) features named `input_features` and reads its first output, (batch, samples).
MELGAN_HOP = 320
MELGAN_INPUT = "input_features"
MEL_BINS = 128  # SpectrogramDiffusionPipeline.n_dims


def _audio_diffusion():
    """Audio Diffusion as teticio/audio-diffusion-ddim-256 has it: an unconditional one-channel UNet over the
    spectrogram image (no VQ-VAE: it denoises pixels), DDIM, and the `Mel` converter at the real one's sample rate,
    FFT and hop; the image is 32 mel bins by 64 frames (the real one: 256 by 256), so a run is 1.46 s of sound."""
    from diffusers import AudioDiffusionPipeline, DDIMScheduler, Mel, UNet2DModel

    torch.manual_seed(191)
    unet = UNet2DModel(
        sample_size=(32, 64), in_channels=1, out_channels=1, layers_per_block=1, block_out_channels=(8, 16),
        norm_num_groups=8, attention_head_dim=8, down_block_types=("DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D"),
    )  # fmt: skip
    mel = Mel(x_res=64, y_res=32, sample_rate=22050, n_fft=2048, hop_length=512, top_db=80, n_iter=32)
    return AudioDiffusionPipeline(vqvae=None, unet=unet, mel=mel, scheduler=DDIMScheduler())


def _spectrogram_diffusion():
    """Spectrogram Diffusion as google/music-spectrogram-diffusion has it (diffusers' converter: DDPM with the cosine
    schedule and fixed_large variance; a MelGAN saved as `melgan/model.onnx`), each transformer one layer 8 wide."""
    from diffusers import DDPMScheduler, SpectrogramDiffusionPipeline
    from diffusers.pipelines.deprecated.spectrogram_diffusion import (
        SpectrogramContEncoder,
        SpectrogramNotesEncoder,
        T5FilmDecoder,
    )

    widths = dict(d_model=8, num_layers=1, num_heads=1, d_kv=4, d_ff=16, dropout_rate=0.1)
    torch.manual_seed(192)
    # 2048 tokens per 5.12 s chunk over MidiProcessor's 1536 ids (its codec's events, 0 padding, 1 end)
    notes_encoder = SpectrogramNotesEncoder(max_length=2048, vocab_size=1536, feed_forward_proj="gated-gelu", **widths)
    torch.manual_seed(193)
    continuous_encoder = SpectrogramContEncoder(
        input_dims=MEL_BINS, targets_context_length=256, feed_forward_proj="gated-gelu", **widths
    )
    torch.manual_seed(194)
    decoder = T5FilmDecoder(input_dims=MEL_BINS, targets_length=256, max_decoder_noise_time=20000.0, **widths)
    return SpectrogramDiffusionPipeline(
        notes_encoder=notes_encoder.eval(),
        continuous_encoder=continuous_encoder.eval(),
        decoder=decoder.eval(),
        scheduler=DDPMScheduler(beta_schedule="squaredcos_cap_v2", variance_type="fixed_large"),
        melgan=melgan(195),
    )


def melgan_graph(seed: int):
    """A MelGAN stand-in as an ONNX graph: each mel frame through a seeded linear map to 320 samples, tanh, the frames
    laid end to end; the real one's input name and shapes, (batch, frames, 128) -> (batch, frames * 320)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    torch.manual_seed(seed)
    # Features run from log(1e-5) to 4: a small gain keeps tanh off its rails for most of them.
    weight = (torch.randn(MEL_BINS, MELGAN_HOP) * 0.005).numpy()
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", [MELGAN_INPUT, "weight"], ["frames"]),
            helper.make_node("Tanh", ["frames"], ["samples"]),
            helper.make_node("Reshape", ["samples", "waveform_shape"], ["waveform"]),
        ],
        "melgan",
        [helper.make_tensor_value_info(MELGAN_INPUT, TensorProto.FLOAT, ["batch", "frames", MEL_BINS])],
        [helper.make_tensor_value_info("waveform", TensorProto.FLOAT, ["batch", "samples"])],
        initializer=[
            numpy_helper.from_array(weight, "weight"),
            numpy_helper.from_array(torch.tensor([0, -1]).numpy(), "waveform_shape"),  # 0: keep the batch
        ],
    )
    # IR 8 / opset 17: what onnxruntime releases of the last few years read
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model)
    return model


def melgan(seed: int):
    """The MelGAN stand-in as the pipeline holds it: an `OnnxRuntimeModel`. It saves by copying its file, so the
    graph is written to a folder of its own, removed when the model is freed."""
    import onnxruntime
    from diffusers import OnnxRuntimeModel
    from diffusers.utils import ONNX_WEIGHTS_NAME

    folder = Path(tempfile.mkdtemp(prefix="demo-melgan-"))
    (folder / ONNX_WEIGHTS_NAME).write_bytes(melgan_graph(seed).SerializeToString())
    # Not OnnxRuntimeModel.load_model: it passes onnxruntime an empty provider_options list beside one provider,
    # which onnxruntime 1.32 refuses (it logs an error and retries).
    session = onnxruntime.InferenceSession(folder / ONNX_WEIGHTS_NAME, providers=["CPUExecutionProvider"])
    model = OnnxRuntimeModel(model=session, model_save_dir=folder)
    weakref.finalize(model, shutil.rmtree, folder, ignore_errors=True)
    return model


def demo_midi(notes: tuple[int, ...] = (60, 64, 67, 72), seconds_each: float = 0.25) -> bytes:
    """A short standard MIDI file (format 0, piano at 120 bpm): `notes` one after another, for trying the twin."""
    ticks = 480  # per quarter note: 0.5 s at 120 bpm
    length = round(seconds_each * 2 * ticks)
    events = bytearray(b"\x00\xc0\x00")  # program change: acoustic grand piano
    for note in notes:
        events += b"\x00" + bytes([0x90, note, 100]) + _vlq(length) + bytes([0x80, note, 0])
    events += b"\x00\xff\x2f\x00"  # end of track
    header = b"MThd" + (6).to_bytes(4, "big") + (0).to_bytes(2, "big") + (1).to_bytes(2, "big")
    return header + ticks.to_bytes(2, "big") + b"MTrk" + len(events).to_bytes(4, "big") + bytes(events)


def _vlq(value: int) -> bytes:
    """MIDI's variable-length quantity: 7 bits a byte, the high bit set on all but the last."""
    out = [value & 0x7F]
    while value := value >> 7:
        out.append(0x80 | (value & 0x7F))
    return bytes(reversed(out))


MUSIC_BUILDERS = {"audio_diffusion": _audio_diffusion, "spectrogram_diffusion": _spectrogram_diffusion}
# Both checkpoints predate the pipelines' move under `deprecated/` and name their pipeline's module as the library of
# the components that live there (the converter's save, diffusers 0.10 to 0.24): diffusers 0.42 can't find it there
# (diffusers issue #6463: "mel/audio_diffusion.py as defined in `model_index.json` does not exist").
MUSIC_AS_PUBLISHED = {
    "audio_diffusion": {"mel": ["audio_diffusion", "Mel"]},
    "spectrogram_diffusion": {
        "notes_encoder": ["spectrogram_diffusion", "SpectrogramNotesEncoder"],
        "continuous_encoder": ["spectrogram_diffusion", "SpectrogramContEncoder"],
    },
}
