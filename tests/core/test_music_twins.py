"""The two deprecated music pipelines diffusers 0.42 still ships, through their tiny twins (core.demo.music_twins):
Audio Diffusion in the Pipeline tab (its spectrogram shown, its sound saved as a WAV) and Spectrogram Diffusion in
MIDI to audio (core.tasks.midi_audio). Each run is compared sample for sample with the plain diffusers call at the
same seed, and made again by the info's snippet.

No `from __future__ import annotations` here: diffusers' `from_pipe` matches components by their real type hints.
"""

import importlib
import io
import runpy
import time
import wave

import diffusers
import mido
import numpy as np
import pytest
import torch
from PIL import Image

from core.checkpoints import compat, loading
from core.demo.companions import companion_path
from core.demo.music_twins import demo_midi, melgan_graph
from core.errors import InvalidRequest
from core.generation import GenerationRequest, Limits
from core.studio import Studio, StudioOptions
from core.tasks import midi_audio

# The library names both Hub checkpoints give the components that lived in their pipeline's module.
MOVED = {
    "audio_diffusion": "diffusers.pipelines.deprecated.audio_diffusion",
    "spectrogram_diffusion": "diffusers.pipelines.deprecated.spectrogram_diffusion",
}


@pytest.fixture(scope="module")
def studio(tmp_path_factory):
    assert MOVED.items() <= loading.MOVED_LIBRARIES.items()
    return Studio(StudioOptions(device="cpu", offline=True, outputs_dir=tmp_path_factory.mktemp("outputs")))


def plain(kind: str, cls: type, monkeypatch):
    """The twin loaded by diffusers alone, as its snippet does (the moved library made reachable again)."""
    for library, module in MOVED.items():
        monkeypatch.setattr(diffusers.pipelines, library, importlib.import_module(module), raising=False)
    pipe = cls.from_pretrained(companion_path(kind), torch_dtype=torch.float32, use_safetensors=True)
    pipe.set_progress_bar_config(disable=True)
    compat.mend(pipe)  # as the studio and the snippet do (transformers 5; Griffin-Lim's phases)
    return pipe


def wav_samples(path) -> tuple[tuple[int, int, int], np.ndarray]:
    with wave.open(str(path)) as f:
        shape = (f.getnchannels(), f.getframerate(), f.getnframes())
        return shape, np.frombuffer(f.readframes(f.getnframes()), dtype="<i2")


def sixteen_bit(audio: np.ndarray) -> np.ndarray:
    return (np.clip(audio, -1, 1) * 32767).round().astype("<i2").ravel()


def run_snippet(result, tmp_path, monkeypatch) -> np.ndarray:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "reproduce.py").write_text(result.info["code"])
    runpy.run_path(str(tmp_path / "reproduce.py"), run_name="__main__")
    shape, samples = wav_samples(tmp_path / "audio.wav")
    assert shape == wav_samples(result.files["wav"])[0]
    return samples


def test_audio_diffusion_is_offered_its_steps_and_batch_but_no_path_on_the_server(studio):
    info = studio.load("demo-audio-diffusion", variant="default", dtype="float32")
    assert info["pipeline"] == "AudioDiffusionPipeline" and info["tasks"] == ["pipeline"]
    signature = info["signature"]
    assert signature["output"] == "audio" and signature["unmet"] == []
    assert signature["offered"] == {"steps": "steps", "num_images": "batch_size"}
    assert {"start_step", "slice", "mask_start_secs", "mask_end_secs", "eta"} <= set(signature["others"])
    assert "path" in signature["not_offered"]["audio_file"], "a typed path would read any file on the server"
    # Laid out as teticio/audio-diffusion-ddim-256: a pixel UNet2DModel (annotated UNet2DConditionModel), no VQ-VAE.
    assert type(studio.pool.components["unet"]).__name__ == "UNet2DModel"
    assert studio.pool.components["vqvae"] is None


def test_audio_diffusion_sounds_like_the_plain_call_and_shows_its_spectrogram(studio, tmp_path, monkeypatch):
    studio.load("demo-audio-diffusion", variant="default", dtype="float32")
    result = studio.generate(GenerationRequest(task="pipeline", steps=3, seed=21))
    again = studio.generate(GenerationRequest(task="pipeline", steps=3, seed=21))
    assert np.array_equal(again.extras["audio"]["clips"][0], result.extras["audio"]["clips"][0]), "the seed holds"
    reference = plain("audio_diffusion", diffusers.AudioDiffusionPipeline, monkeypatch)(
        steps=3, generator=torch.Generator("cpu").manual_seed(21)
    )
    # The picture is the spectrogram the sound was made from: 32 mel bins by 64 frames, saved as a PNG.
    assert len(result.images) == 1 and result.images[0].size == (64, 32) and len(result.paths) == 1
    assert np.array_equal(np.asarray(result.images[0]), np.asarray(reference.images[0]))
    assert np.array_equal(np.asarray(Image.open(result.paths[0])), np.asarray(reference.images[0]))
    shape, samples = wav_samples(result.files["wav"])
    assert shape == (1, 22050, 63 * 512), "mono, at the mel's rate, a hop per frame after the first"
    assert np.array_equal(result.extras["audio"]["clips"][0], reference.audios[0])
    assert np.array_equal(samples, sixteen_bit(reference.audios[0])) and samples.std() > 100
    assert np.array_equal(run_snippet(result, tmp_path, monkeypatch), samples)


def test_audio_diffusion_makes_new_phases_of_the_same_spectrogram_on_every_call():
    """Why the studio mends the Mel (core.checkpoints.compat): the same seed makes the same spectrogram (above), and
    diffusers 0.42's Mel with librosa >= 0.10 turns it into a waveform that differs from call to call."""
    spectrogram = Image.fromarray(np.random.default_rng(5).integers(0, 256, (32, 64), dtype=np.uint8))
    mel = diffusers.Mel(x_res=64, y_res=32)
    first, second = mel.image_to_audio(spectrogram), mel.image_to_audio(spectrogram)
    assert first.shape == second.shape == (63 * 512,) and not np.allclose(first, second, atol=1e-3)


def test_spectrogram_diffusion_plays_a_midi_file_like_the_plain_call(studio, tmp_path, monkeypatch):
    info = studio.load("demo-spectrogram-diffusion", variant="default", dtype="float32")
    assert info["pipeline"] == "SpectrogramDiffusionPipeline" and info["tasks"] == ["midi_audio"]
    assert (companion_path("spectrogram_diffusion") / "melgan" / "model.onnx").read_bytes() == melgan_graph(
        195
    ).SerializeToString(), "the MelGAN is saved where the Hub checkpoint has it, as written"
    progress = []
    result = studio.generate(
        GenerationRequest(task="midi_audio", steps=3, seed=7, midi=demo_midi()),
        on_step=lambda *step: progress.append(step),
    )
    assert progress == [(1, 3), (2, 3), (3, 3)], "one 5.12 s part: the steps once"
    assert result.images == [] and result.info["audio_seconds"] == 5.12 and result.info["width"] is None
    shape, samples = wav_samples(result.files["wav"])
    assert shape == (1, 16000, 81920), "mono at the MelGAN's 16 kHz: 256 frames of 320 samples"
    tokens = diffusers.MidiProcessor()(demo_midi())
    reference = plain("spectrogram_diffusion", diffusers.SpectrogramDiffusionPipeline, monkeypatch)(
        tokens, num_inference_steps=3, generator=torch.Generator("cpu").manual_seed(7)
    ).audios[0]
    assert np.array_equal(result.extras["audio"]["clips"][0], reference)
    assert np.array_equal(samples, sixteen_bit(reference)) and samples.std() > 100
    other = studio.generate(GenerationRequest(task="midi_audio", steps=3, seed=7, midi=demo_midi((48, 55))))
    assert not np.array_equal(wav_samples(other.files["wav"])[1], samples), "the notes changed nothing"
    (tmp_path / "input.mid").write_bytes(demo_midi())  # the file the snippet reads
    assert np.array_equal(run_snippet(result, tmp_path, monkeypatch), samples)


def test_midi_to_audio_says_what_is_wrong_with_the_file_before_any_work(tmp_path):
    spec, limits = midi_audio.SPEC, Limits(max_audio_seconds=10)
    with pytest.raises(InvalidRequest, match="needs a MIDI file"):
        spec.check(GenerationRequest(task="midi_audio"), limits)
    with pytest.raises(InvalidRequest, match="could not be read as MIDI"):
        spec.check(GenerationRequest(task="midi_audio", midi=b"MThd not really"), limits)
    long = tmp_path / "long.mid"
    long.write_bytes(demo_midi((60,) * 44))  # 11 s
    with pytest.raises(InvalidRequest, match=r"plays 11 s; .* at most 10 s"):
        spec.check(GenerationRequest(task="midi_audio", midi=str(long)), limits)
    long.write_bytes(demo_midi((60,) * 36))  # 9 s: two parts of 5.12 s
    with pytest.raises(InvalidRequest, match=r"plays 10.24 s \(2 parts of 5.12 s\); .* at most 10 s"):
        spec.check(GenerationRequest(task="midi_audio", midi=str(long)), limits)
    # A few dozen bytes, one note a hundred hours long: refused from its notes, before anything is rendered (diffusers'
    # MidiProcessor would allocate 16,000 frames per second of it: tens of gigabytes).
    hours = mido.MidiFile(ticks_per_beat=1)
    track = mido.MidiTrack(
        [mido.MetaMessage("set_tempo", tempo=1_000_000), mido.Message("note_on", note=60, velocity=100),
         mido.Message("note_off", note=60, velocity=0, time=360_000)]
    )  # fmt: skip
    hours.tracks.append(track)
    tiny = io.BytesIO()
    hours.save(file=tiny)
    started = time.perf_counter()
    with pytest.raises(InvalidRequest, match=r"plays 360000 s; .* at most 10 s"):
        spec.check(GenerationRequest(task="midi_audio", midi=tiny.getvalue()), limits)
    assert len(tiny.getvalue()) < 100 and time.perf_counter() - started < 5
    with pytest.raises(InvalidRequest, match="at most 1,000,000"):
        spec.check(GenerationRequest(task="midi_audio", midi=b"\0" * 1_000_001), limits)
