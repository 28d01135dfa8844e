"""Every kind of bad input, through the API as a visitor sends it: each gets a message that says what to do (or, for
inputs the studio can adapt, a result with a note), and the app keeps serving the same model afterwards.

Range checks of sliders are Gradio's own, with the parameter named (ui.controls.named_range: Gradio's own message
said "steps must be between 1 and 150, got 0."); the engine repeats them for callers of `core`
(tests/core/test_generation.py), which is also where NaN is tried: JSON cannot carry it.
"""

# ruff: noqa: E501  (the table keeps one case per line)

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from gradio_client import handle_file
from gradio_client.exceptions import AppError
from PIL import Image

T2I = dict(
    prompt="a bridge",
    negative_prompt="",
    steps=2,
    guidance_scale=7.0,
    width=64,
    height=64,
    seed=3,
    scheduler="default",
    num_images=1,
    safety_checker=False,
)
I2I = {k: v for k, v in T2I.items() if k not in ("width", "height")} | {"strength": 0.8}


def files_in(folder: Path) -> dict[str, str]:
    """The uploads the table refers to, written into `folder`."""
    folder.mkdir(exist_ok=True)
    paths = {}
    Image.new("RGB", (64, 64), (90, 140, 200)).save(paths.setdefault("photo", str(folder / "photo.png")))
    Image.new("L", (64, 64), 255).save(paths.setdefault("mask", str(folder / "mask.png")))
    Image.new("L", (32, 64), 255).save(paths.setdefault("small_mask", str(folder / "small-mask.png")))
    Path(paths.setdefault("damaged", str(folder / "damaged.png"))).write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    Path(paths.setdefault("text", str(folder / "notes.txt"))).write_text("not an image")
    frames = [Image.new("RGB", (64, 64), c) for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    frames[0].save(paths.setdefault("animated", str(folder / "anim.gif")), save_all=True, append_images=frames[1:])
    deep = (np.linspace(0, 65535, 64 * 64).reshape(64, 64)).astype(np.uint16)
    Image.fromarray(deep).save(paths.setdefault("16bit", str(folder / "deep.png")))
    return paths


# (what is wrong, endpoint, arguments (file names in braces), the error - or None and a note in the warnings)
TABLE = [
    ("size not a multiple of 8", "/text2img", dict(T2I, width=67), "width must be a multiple of 8, got 67; try 64 or 72", None),
    ("size too large", "/text2img", dict(T2I, height=4096), "height must be between 64 and 2048, got 4096.", None),
    ("zero steps", "/text2img", dict(T2I, steps=0), "steps must be between 1 and 150, got 0.", None),
    ("negative seed", "/text2img", dict(T2I, seed=-5), "seed must be -1 (random) or a whole number from 0, got -5.", None),
    ("huge steps", "/text2img", dict(T2I, steps=100_000), "steps must be between 1 and 150, got 100000.", None),
    ("negative guidance", "/text2img", dict(T2I, guidance_scale=-3.0), "guidance_scale must be between 0 and 30, got -3.0.", None),
    ("strength out of range", "/img2img", dict(I2I, image="{photo}", strength=1.5), "strength must be between 0.01 and 1, got 1.5.", None),
    ("missing image", "/img2img", dict(I2I, image=None), "Image to image needs an input image: upload one", None),
    ("missing mask", "/inpaint", dict(I2I, image="{photo}", mask=None), "Inpainting needs a mask", None),
    ("mask of another size", "/inpaint", dict(I2I, image="{photo}", mask="{small_mask}"), "The mask is 32x64 but the image is 64x64", None),
    ("damaged upload", "/img2img", dict(I2I, image="{damaged}"), "could not be read as an image (damaged, or not an image file)", None),
    ("not an image", "/img2img", dict(I2I, image="{text}"), "could not be read as an image", None),
    ("damaged mask", "/inpaint", dict(I2I, image="{photo}", mask="{damaged}"), "The mask could not be read as an image", None),
    ("animated image", "/img2img", dict(I2I, image="{animated}"), None, "is animated (3 frames); its first frame was used"),
    ("16-bit image", "/img2img", dict(I2I, image="{16bit}"), None, "more than 8 bits per channel; it was scaled to 8 bits"),
    ("over-long prompt", "/text2img", dict(T2I, prompt="lamp " * 100), None, "the text encoder reads only the first 77"),
    ("unknown scheduler", "/text2img", dict(T2I, scheduler="Nope"), "Nope is not in the list of choices", None),
    ("unknown model id", "/load_model", dict(source="nobody-here/no-such-model", variant="auto", dtype="auto"), "not in the local cache", None),
    ("path that does not exist", "/load_model", dict(source="/nowhere/model", variant="auto", dtype="auto"), "neither an existing folder nor a Hub id", None),
    ("folder that is not a checkpoint", "/load_model", dict(source="{folder}", variant="auto", dtype="auto"), "no model_index.json", None),
    ("pickle-only checkpoint", "/load_model", dict(source="{pickle_only}", variant="auto", dtype="auto"), "only pickle", None),
    ("missing variant", "/load_model", dict(source="demo", variant="non_existent", dtype="float32"), "non_existent", None),
]  # fmt: skip


@pytest.fixture(scope="module")
def uploads(tmp_path_factory, demo_dir) -> dict[str, str]:
    root = tmp_path_factory.mktemp("bad-input")
    paths = files_in(root / "files")
    (root / "not-a-checkpoint").mkdir()
    paths["folder"] = str(root / "not-a-checkpoint")
    pickle_only = root / "pickle-only"
    shutil.copytree(demo_dir, pickle_only)
    for f in pickle_only.rglob("*.safetensors"):
        f.with_name(f.name.replace(".safetensors", ".bin")).write_bytes(b"not really a pickle")
        f.unlink()
    paths["pickle_only"] = str(pickle_only)
    return paths


def arguments(fields: dict, uploads: dict[str, str], endpoint: str) -> dict:
    out = {}
    for key, value in fields.items():
        if isinstance(value, str) and value.startswith("{"):
            path = uploads[value.strip("{}")]
            value = path if endpoint == "/load_model" else handle_file(path)
        out[key] = value
    return out


@pytest.mark.parametrize(("what", "endpoint", "fields", "error", "note"), TABLE, ids=[row[0] for row in TABLE])
def test_bad_input_gets_a_clear_answer_and_the_app_keeps_serving(
    client, running_app, uploads, what, endpoint, fields, error, note
):
    pool = running_app.studio.pool
    if error is not None:
        with pytest.raises(AppError, match=re.escape(error)) as caught:
            client.predict(**arguments(fields, uploads, endpoint), api_name=endpoint)
        assert "Traceback" not in str(caught.value)
    else:
        _gallery, info = client.predict(**arguments(fields, uploads, endpoint), api_name=endpoint)
        assert any(note in w for w in info["warnings"]), info["warnings"]
    assert running_app.studio.pool is pool, "the loaded model stays"
    gallery, _info = client.predict(**T2I, api_name="/text2img")
    assert len(gallery) == 1, "and serves the next request"
