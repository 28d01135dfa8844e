"""Text-to-audio pipelines beyond AudioLDM that the Pipeline tab runs from their signature (core.demo.audio_stages):
MusicLDM and AudioLDM 2. Each twin is loaded through the studio, run with a prompt and a length, compared sample
for sample with the plain diffusers call at the same seed, and made again by the info's snippet.

No `from __future__ import annotations` here: diffusers' `from_pipe` matches components by their real type hints.
"""

import json
import runpy
import wave

import diffusers
import numpy as np
import pytest
import torch
from transformers import GPT2LMHeadModel

from core.demo.companions import companion_path
from core.generation import GenerationRequest
from core.studio import Studio, StudioOptions

PROMPT = "rain on a tin roof"
# What the tab offers for both (AudioLDM 2's max_new_tokens, for its GPT-2, is left to other parameters).
OFFERED = {
    "prompt": "prompt",
    "negative_prompt": "negative_prompt",
    "steps": "num_inference_steps",
    "guidance_scale": "guidance_scale",
    "audio_seconds": "audio_length_in_s",
    "num_images": "num_waveforms_per_prompt",
}


@pytest.fixture(scope="module")
def studio(tmp_path_factory) -> Studio:
    return Studio(StudioOptions(device="cpu", offline=True, outputs_dir=tmp_path_factory.mktemp("outputs")))


def plain(kind: str, cls: type):
    """The twin loaded by diffusers alone, as its snippet does."""
    path, replaced = companion_path(kind), {}
    if kind == "audioldm2":
        # Declared `GPT2Model`, as cvssp/audioldm2 is, which can't generate under transformers 5: the LM-head class.
        replaced["language_model"] = GPT2LMHeadModel.from_pretrained(path, subfolder="language_model")
    pipe = cls.from_pretrained(path, torch_dtype=torch.float32, use_safetensors=True, **replaced)
    pipe.set_progress_bar_config(disable=True)
    if kind == "musicldm":
        # diffusers 0.42's MusicLDM calls .to() on ClapModel.get_text_features' output, an output object under
        # transformers 5 (the plain call fails as published); the studio and its snippet mend it the same way.
        features = pipe.text_encoder.get_text_features
        pipe.text_encoder.get_text_features = lambda *a, **k: features(*a, **k).pooler_output
    return pipe


def wav_samples(path) -> tuple[tuple[int, int, int], np.ndarray]:
    with wave.open(str(path)) as f:
        shape = (f.getnchannels(), f.getframerate(), f.getnframes())
        return shape, np.frombuffer(f.readframes(f.getnframes()), dtype="<i2")


def sixteen_bit(audio: np.ndarray) -> np.ndarray:
    return (np.clip(audio, -1, 1) * 32767).round().astype("<i2")


@pytest.mark.parametrize(
    "kind, cls", [("musicldm", diffusers.MusicLDMPipeline), ("audioldm2", diffusers.AudioLDM2Pipeline)]
)
def test_each_loads_as_a_text_to_audio_pipeline_offering_its_prompt_and_length(studio, kind, cls):
    info = studio.load(f"demo-{kind}")
    assert info["pipeline"] == cls.__name__ and info["tasks"] == ["pipeline"]
    assert info["signature"]["output"] == "audio"
    assert info["signature"]["offered"] == OFFERED and info["signature"]["unmet"] == []
    if kind == "audioldm2":  # its checkpoint declares the base GPT2Model, which diffusers' loop can't drive
        assert json.loads((companion_path(kind) / "model_index.json").read_text())["language_model"][1] == "GPT2Model"
        assert type(studio.pool.components["language_model"]).__name__ == "GPT2LMHeadModel"


def run_like_the_plain_call(studio, kind, cls, tmp_path, monkeypatch):
    studio.load(f"demo-{kind}")
    fields = dict(steps=2, audio_seconds=0.5, guidance_scale=2.5, seed=21)
    result = studio.generate(GenerationRequest(task="pipeline", prompt=PROMPT, **fields))
    assert result.images == [] and result.info["audio_seconds"] == 0.5
    shape, samples = wav_samples(result.files["wav"])
    assert shape == (1, 16000, 8000), "mono, at the vocoder's rate, half a second"
    reference = plain(kind, cls)(
        PROMPT, num_inference_steps=2, audio_length_in_s=0.5, guidance_scale=2.5,
        generator=torch.Generator("cpu").manual_seed(21),
    ).audios[0]  # fmt: skip
    clip = result.extras["audio"]["clips"][0]
    assert clip.shape == reference.shape and np.array_equal(clip, reference)
    assert np.array_equal(samples, sixteen_bit(reference)) and samples.std() > 100
    other = studio.generate(GenerationRequest(task="pipeline", prompt="a dog barking", **fields))
    assert not np.array_equal(wav_samples(other.files["wav"])[1], samples), "the prompt changed nothing"
    monkeypatch.chdir(tmp_path)
    (tmp_path / "reproduce.py").write_text(result.info["code"])
    runpy.run_path(str(tmp_path / "reproduce.py"), run_name="__main__")
    written_shape, written = wav_samples(tmp_path / "audio.wav")
    assert written_shape == shape and np.array_equal(written, samples)


def test_musicldm_runs_from_its_signature_like_the_plain_call(studio, tmp_path, monkeypatch):
    run_like_the_plain_call(studio, "musicldm", diffusers.MusicLDMPipeline, tmp_path, monkeypatch)


def test_audioldm2_runs_from_its_signature_like_the_plain_call(studio, tmp_path, monkeypatch):
    run_like_the_plain_call(studio, "audioldm2", diffusers.AudioLDM2Pipeline, tmp_path, monkeypatch)
