"""MIDI to audio (Spectrogram Diffusion, google/music-spectrogram-diffusion): the notes of a MIDI file, 5.12 s at a
time, become mel spectrograms, each denoised from noise while the previous one is its context; a MelGAN (an ONNX
model) turns the whole spectrogram into 16 kHz sound. The loaded checkpoint's own pipeline, as a `from_pipe` view.

The MIDI is read by diffusers' `MidiProcessor`, which needs note_seq; the MelGAN runs on onnxruntime.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from diffusers import DiffusionPipeline

from core.errors import InvalidRequest
from core.snippet import Code
from core.tasks.base import REQUIRED, SEED, Output, Param, Serving, TaskSpec, steps

if TYPE_CHECKING:
    from core.generation import GenerationRequest, GenerationResult, Limits
    from core.pool import Pool
    from core.snippet import Snippet

SAMPLE_RATE = 16000  # the MelGAN's (diffusers' midi_utils.SAMPLE_RATE)
CHUNK_SECONDS = 256 * 320 / SAMPLE_RATE  # one denoising run: 256 mel frames of 320 samples (5.12 s)
MAX_MIDI_BYTES = 1_000_000  # a MIDI file is a few KB a minute: a megabyte is hours of notes
MIDI_FILE = "input.mid"  # what the snippet reads: the file the user gave the app

# The MIDI file: the path of an upload (the page's, or a script's through the API), or its bytes.
MIDI = Param(
    "midi", "midi", "MIDI file", api_default=REQUIRED,
    info="a .mid file; each 5.12 s of it is one run of the steps below",
)  # fmt: skip


class MidiAudio(TaskSpec):
    name, label, kind, order = "midi_audio", "MIDI to audio", "feature", 95
    pipeline_class = "SpectrogramDiffusionPipeline"
    table_shares = "everything: the loaded checkpoint's own pipeline (a MelGAN in ONNX makes the sound)"
    run_label = "Synthesize"
    description = (
        "Synthesize midi (a MIDI file) as audio with Spectrogram Diffusion: each 5.12 s of notes is a mel spectrogram "
        "denoised in `steps` steps, the one before it as context; a MelGAN makes 16 kHz sound of them."
    )
    note = (
        "Spectrogram Diffusion plays a MIDI file: each 5.12 s of notes is denoised into a mel spectrogram (the "
        "steps run once per 5.12 s), and a MelGAN turns them into sound."
    )
    count_argument = ""  # one waveform per file
    output = "audio"
    lora_applies = False
    # The pipeline calls its scheduler's step alone (no scale_model_input): the checkpoint's DDPM, whatever is picked.
    fixed: ClassVar[Mapping[str, Any]] = {"scheduler": "default", "num_images": 1, "prompt": "", "negative_prompt": ""}
    # The page lays out steps with guidance (ui.task_tab); this pipeline has none, so its steps are a plain slider.
    params = (MIDI, dataclasses.replace(steps(100), kind="slider", info="run once per 5.12 s of the file"), SEED)
    outputs = (Output("audio", "audio", "Audio", before_results=True),)

    def views_over(self, base_class: str, family: str | None) -> dict[str, type]:
        import diffusers

        return {self.name: diffusers.SpectrogramDiffusionPipeline} if base_class == self.pipeline_class else {}

    # -- checking a request -----------------------------------------------------------------------------

    def check(self, request: GenerationRequest, limits: Limits) -> None:
        midi = midi_bytes(request.midi)
        # Its length first, from the notes alone: diffusers' MidiProcessor allocates 16,000 frames per second of the
        # file before anything is cut, and a 42-byte file can hold one note hours long (gigabytes).
        played = midi_seconds(midi)
        if played > limits.max_audio_seconds:
            raise InvalidRequest(
                f"The MIDI file plays {played:g} s; this app synthesizes at most {limits.max_audio_seconds:g} s per "
                "run. Cut it shorter."
            )
        chunks = len(midi_tokens(midi))
        seconds = chunks * CHUNK_SECONDS
        if seconds > limits.max_audio_seconds:
            raise InvalidRequest(
                f"The MIDI file plays {seconds:g} s ({chunks} parts of {CHUNK_SECONDS:g} s); this app synthesizes at "
                f"most {limits.max_audio_seconds:g} s per run. Cut it shorter."
            )

    def prepare(self, request: GenerationRequest, serving: Serving, pool: Pool) -> GenerationRequest:
        """The checkpoint's own scheduler whatever was asked (see `fixed`); the file read once, as its tokens, for
        the run, its progress and its info."""
        return dataclasses.replace(request, scheduler="default", midi=midi_tokens(midi_bytes(request.midi)))

    # -- the run ----------------------------------------------------------------------------------------

    def view(
        self, pool: Pool, request: GenerationRequest, scheduler: Any, run_checker: bool, serving: Serving
    ) -> DiffusionPipeline:
        return pool.view_as(self.name, scheduler=scheduler)

    def progress_bars(self, request: GenerationRequest) -> int:
        """One bar over the steps per 5.12 s: its `callback(i, mel)` is called per part, not per step (and with
        two arguments, where the run's legacy callback takes three)."""
        return len(request.midi)

    def call_arguments(
        self, request: GenerationRequest, pipe: DiffusionPipeline, seeds: list[int], multiple: int = 8
    ) -> dict[str, Any]:
        return {
            "input_tokens": [list(chunk) for chunk in request.midi],
            "num_inference_steps": request.steps,
            "generator": torch.Generator("cpu").manual_seed(seeds[0]),
        }

    def collect_from(self, output: Any, arguments: dict[str, Any], pipe: DiffusionPipeline) -> tuple[list, dict]:
        """The MelGAN's waveform, (1, samples): one clip."""
        import numpy as np

        return [], {"audio": {"rate": SAMPLE_RATE, "clips": [np.asarray(a) for a in output.audios]}}

    def output_values(self, result: GenerationResult) -> dict[str, Any]:
        audio, wav = result.extras["audio"], result.files.get("wav")
        return {"audio": wav if wav is not None else (audio["rate"], audio["clips"][0].T)}

    # -- describing a run -------------------------------------------------------------------------------

    def info_fields(self, request: GenerationRequest, serving: Serving) -> dict[str, Any]:
        chunks = len(request.midi)
        # No picture, no size; the pipeline takes no guidance.
        return {"output": "audio", "width": None, "height": None, "guidance_scale": None,
                "audio_seconds": chunks * CHUNK_SECONDS}  # fmt: skip

    def add_to_snippet(
        self, snippet: Snippet, request: GenerationRequest, seeds: list[int], serving: Serving, load: dict[str, Any]
    ) -> None:
        """The script reads the MIDI file itself (its tokens are thousands of numbers)."""
        snippet.after_load += [
            "from diffusers.pipelines.deprecated.spectrogram_diffusion import MidiProcessor  # needs note_seq",
            "",
            f"input_tokens = MidiProcessor()({MIDI_FILE!r})  # the MIDI file you gave the app",
        ]
        snippet.call_arguments["input_tokens"] = Code("input_tokens")


def midi_bytes(value: Any) -> bytes:
    """The MIDI file's bytes, from a path (an upload) or bytes, its size checked before it is read."""
    if value is None:
        raise InvalidRequest("MIDI to audio needs a MIDI file: upload one (.mid).")
    if isinstance(value, (str, os.PathLike)):
        try:
            size = os.path.getsize(value)
        except OSError:
            raise InvalidRequest("The MIDI file could not be read; upload it again.") from None
        if size > MAX_MIDI_BYTES:
            raise InvalidRequest(f"The MIDI file is {size:,} bytes; this app reads at most {MAX_MIDI_BYTES:,}.")
        with open(value, "rb") as f:
            return f.read()
    if isinstance(value, (bytes, bytearray)):
        if len(value) > MAX_MIDI_BYTES:
            raise InvalidRequest(f"The MIDI file is {len(value):,} bytes; this app reads at most {MAX_MIDI_BYTES:,}.")
        return bytes(value)
    raise InvalidRequest(f"midi must be a MIDI file (a path or its bytes), got {type(value).__name__}.")


@functools.lru_cache(maxsize=16)
def midi_seconds(midi: bytes) -> float:
    """How long the MIDI file plays (its last note's end), read without rendering it."""
    try:
        import note_seq
    except ImportError as e:
        raise InvalidRequest(f"Reading MIDI needs note_seq ({e}): pip install note_seq.") from None
    try:
        return float(note_seq.midi_to_note_sequence(midi).total_time)
    except Exception as e:  # note_seq's and mido's parse errors: any of them means "not a MIDI file we can read"
        raise InvalidRequest(f"The file could not be read as MIDI ({type(e).__name__}); upload a .mid file.") from e


@functools.lru_cache(maxsize=4)
def midi_tokens(midi: bytes) -> tuple[tuple[int, ...], ...]:
    """The MIDI file as the pipeline's input: one row of 2048 note tokens per 5.12 s (read once per file: checking,
    progress, the call and the info all ask)."""
    try:
        from diffusers.pipelines.deprecated.spectrogram_diffusion.midi_utils import MidiProcessor
    except ImportError as e:
        raise InvalidRequest(f"Reading MIDI needs note_seq ({e}): pip install note_seq.") from None
    try:
        chunks = MidiProcessor()(midi)
    except Exception as e:  # note_seq's and mido's parse errors: any of them means "not a MIDI file we can read"
        raise InvalidRequest(f"The file could not be read as MIDI ({type(e).__name__}); upload a .mid file.") from e
    if not chunks:
        raise InvalidRequest("The MIDI file has no notes to play.")
    return tuple(tuple(int(t) for t in chunk) for chunk in chunks)


SPEC = MidiAudio()
