"""The "Reproduce in Python" script: diffusers alone, making a run again as it ran.

A batch is made again as a batch (the same `num_images_per_prompt` and list of per-image generators): batched
matrix products round differently from single ones on most CPUs and GPUs, so only the same call gives the same
bytes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from PIL import Image


@dataclass(frozen=True)
class Code:
    """A value written into the script as code, not as a literal."""

    text: str

    def __repr__(self) -> str:
        return self.text


@dataclass
class Snippet:
    """What the script loads and how it calls the pipeline; `render()` writes it."""

    pipeline_class: str
    model_path: str
    dtype: str
    device: str
    scheduler_class: str | None = None
    scheduler_overrides: dict[str, Any] = field(default_factory=dict)
    load_arguments: dict[str, Any] = field(default_factory=dict)
    before_load: list[str] = field(default_factory=list)
    after_load: list[str] = field(default_factory=list)
    imports: list[str] = field(default_factory=list)
    call_arguments: dict[str, Any] = field(default_factory=dict)
    after_call: list[str] = field(default_factory=list)  # a second stage working on `result`
    # "images", "frames" (a video per item), "rgbd" (LDM3D's numpy output), "audio" (`audios`, saved as 16-bit WAV at
    # `sample_rate`), "prediction" (Marigold's array, saved as a grey image), "renders" or "mesh" (Shap-E: GIFs, PLYs)
    output: str = "images"
    sample_rate: int = 16000
    saves_text: bool = False  # the output's `text` too (UniDiffuser's captions), into text.txt
    count: int = 1  # how many outputs the run made; each is saved
    single_file: str | None = None  # load `base_class` from this file, with `model_path` as its config
    # The file each image argument is loaded from ("{i}" numbers a list's items) and what it is, where a task
    # names them (else input.png, mask.png, ... "the image you gave the app").
    input_files: dict[str, str] = field(default_factory=dict)
    input_notes: dict[str, str] = field(default_factory=dict)
    base_class: str | None = None

    def render(self) -> str:
        names = [self.pipeline_class, *self.imports]
        if self.scheduler_class:
            names.append(self.scheduler_class)
        lines = ["import torch", f"from diffusers import {', '.join(dict.fromkeys(names))}"]
        inputs, call = self._inputs()
        if inputs:
            lines.append("from diffusers.utils import load_image")
        lines.append("")
        lines += self.before_load
        load = {"dtype": Code(f"torch.{self.dtype}"), "use_safetensors": True, **self.load_arguments}
        if self.scheduler_class:
            overrides = "".join(f", {k}={v!r}" for k, v in self.scheduler_overrides.items())
            lines.append(
                f"scheduler = {self.scheduler_class}.from_pretrained({self.model_path!r}, subfolder='scheduler'"
                f"{overrides})"
            )
            load["scheduler"] = Code("scheduler")
        if self.single_file:
            lines += self._single_file_load(load)
        else:
            lines.append(f"pipe = {self.pipeline_class}.from_pretrained({self.model_path!r}, {_kwargs(load)})")
        lines.append(f"pipe = pipe.to({self.device!r})")
        lines += self.after_load
        lines += inputs
        lines.append(f"result = pipe({_kwargs(call)})")
        lines += self.after_call
        return "\n".join(lines) + "\n" + self._save() + "\n"

    def _single_file_load(self, load: dict[str, Any]) -> list[str]:
        """`from_single_file` takes the components; the task's class and its options come with `from_pipe`."""
        components = {"torch_dtype": load["dtype"]}
        components.update({k: v for k, v in load.items() if k in ("scheduler", "vae", "safety_checker")})
        options = {k: v for k, v in load.items() if k not in (*components, "dtype", "use_safetensors", "variant")}
        lines = [
            f"pipe = {self.base_class}.from_single_file({self.single_file!r}, config={self.model_path!r}, "
            f"{_kwargs(components)})"
        ]
        if self.pipeline_class != self.base_class or options:
            lines.append(
                f"pipe = {self.pipeline_class}.from_pipe(pipe{''.join(f', {k}={v!r}' for k, v in options.items())})"
            )
        return lines

    def _save_audio(self) -> str:
        """16-bit PCM WAV files, as the app writes them (core.outputs.wav_bytes)."""
        lines = [
            "import wave",
            "",
            "import numpy as np",
            "",
            "",
            "def save_wav(clip, name):",
            "    clip = np.asarray(clip, dtype=np.float32).reshape(-1, np.shape(clip)[-1])  # (channels, samples)",
            "    with wave.open(name, 'wb') as f:",
            "        f.setnchannels(clip.shape[0])",
            "        f.setsampwidth(2)",
            f"        f.setframerate({self.sample_rate})",
            "        f.writeframes((np.clip(clip.T, -1, 1) * 32767).round().astype('<i2').tobytes())",
            "",
            "",
        ]
        if self.count == 1:
            return "\n".join([*lines, "save_wav(result.audios[0], 'audio.wav')"])
        return "\n".join(
            [*lines, "for i, clip in enumerate(result.audios, 1):", "    save_wav(clip, f'audio-{i}.wav')"]
        )

    def _inputs(self) -> tuple[list[str], dict[str, Any]]:
        lines, call = [], {}
        for name, value in self.call_arguments.items():
            note = self.input_notes.get(name, "the image you gave the app")
            file = self.input_files.get(name) or {
                "image": "input.png",
                "mask_image": "mask.png",
                "depth_map": "depth.png",
            }.get(name, f"{name}.png")
            if isinstance(value, Image.Image):
                lines.append(f"{name} = load_image({file!r})  # {note}")
                call[name] = Code(name)
            elif isinstance(value, list) and value and all(isinstance(v, Image.Image) for v in value):
                files = [file.format(i=i) for i in range(1, len(value) + 1)]
                lines.append(f"{name} = [{', '.join(f'load_image({f!r})' for f in files)}]  # {note}")
                call[name] = Code(name)
            else:
                call[name] = value
        return lines, call

    def _save(self) -> str:
        """Lines saving every output: `image.png` for one image, `image-1.png`, `image-2.png`... for a batch."""
        text = "with open('text.txt', 'w', encoding='utf-8') as f:\n    f.write('\\n'.join(result.text))"
        if self.output == "text":
            return text
        if self.saves_text:
            return self._save_outputs() + "\n" + text
        if self.output == "audio":
            return self._save_audio()
        return self._save_outputs()

    def _save_outputs(self) -> str:
        head, item, items, save = {
            "prediction": (
                "from diffusers.utils import numpy_to_pil\n",
                "image",
                "numpy_to_pil(result.prediction.clip(0, 1))",
                "image.save({name})",
            ),
            "rgbd": (
                "from PIL import Image  # numpy output: diffusers 0.42's LDM3D PIL conversion fails on Pillow 12\n",
                "rgb",
                "result.rgb",
                "Image.fromarray((rgb * 255).round().astype('uint8')).save({name})",
            ),
            "frames": (
                "from diffusers.utils import export_to_gif\n",
                "frames",
                "result.frames",
                "export_to_gif(frames, {name})",
            ),
            "images": ("", "image", "result.images", "image.save({name})"),
            "frame_array": (  # Text2Video-Zero: `images` is one clip's frames, an array in [0, 1]
                "from diffusers.utils import export_to_gif\nfrom PIL import Image\n",
                "frames",
                "[[Image.fromarray((f.clip(0, 1) * 255).round().astype('uint8')) for f in result.images]]",
                "export_to_gif(frames, {name})",
            ),
            "mesh": (  # Shap-E with output_type="mesh": each item of `images` is a mesh
                "from diffusers.utils import export_to_ply\n",
                "mesh",
                "result.images",
                "export_to_ply(mesh, {name})",
            ),
            "renders": (  # Shap-E: each item of `images` is a list of frames
                "from diffusers.utils import export_to_gif\n",
                "frames",
                "result.images",
                "export_to_gif(frames, {name})",
            ),
        }[self.output]
        stem, suffix = {
            "frames": ("animation", "gif"),
            "frame_array": ("animation", "gif"),
            "renders": ("animation", "gif"),
            "mesh": ("mesh", "ply"),
        }.get(self.output, ("image", "png"))
        if self.count == 1:
            return f"{head}{item} = {items}[0]\n" + save.format(name=repr(f"{stem}.{suffix}"))
        return f"{head}for i, {item} in enumerate({items}, 1):\n    " + save.format(name=f"f'{stem}-{{i}}.{suffix}'")


def _kwargs(values: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in values.items())


def generators(seeds: list[int]) -> Code:
    """The generator argument for `seeds`: one per image, as the app passes them (pool rule 4)."""
    if len(seeds) == 1:
        return Code(f"torch.Generator('cpu').manual_seed({seeds[0]})")
    return Code(f"[torch.Generator('cpu').manual_seed(s) for s in {tuple(seeds)!r}]")
