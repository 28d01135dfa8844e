"""Model editing (TIME) over the loaded SD checkpoint (core/tasks/model_editing.py): the edit changes what the
prompt draws, like the plain diffusers call with the studio's mends (diffusers 0.42 finds no layers to edit, and
fails in bfloat16), its snippet makes it again, and the shared UNet is exactly as it was afterwards."""

from __future__ import annotations

import runpy

import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler, StableDiffusionModelEditingPipeline
from PIL import Image

from core.checkpoints import compat
from core.errors import InvalidRequest
from core.generation import GenerationRequest
from core.studio import Studio, StudioOptions

BASE = dict(prompt="a field of roses", steps=4, width=64, height=64, seed=3)
EDIT = dict(source_prompt="A pack of roses", destination_prompt="A pack of blue roses")


def load(tmp_path_factory, dtype: str) -> Studio:
    studio = Studio(StudioOptions(device="cpu", offline=True, outputs_dir=tmp_path_factory.mktemp("outputs")))
    studio.load("demo", variant="default", dtype=dtype)
    return studio


@pytest.fixture(scope="module")
def studio(tmp_path_factory) -> Studio:
    return load(tmp_path_factory, "float32")


def unet_state(studio: Studio) -> tuple[dict[str, int], dict[str, torch.Tensor]]:
    unet = studio.pool.base.unet
    return {n: id(m) for n, m in unet.named_modules()}, {n: p.detach().clone() for n, p in unet.named_parameters()}


def same_unet(studio: Studio, state) -> bool:
    modules, params = unet_state(studio)
    return modules == state[0] and all(torch.equal(params[n], state[1][n]) for n in params)


def reproduce(result, tmp_path, monkeypatch) -> Image.Image:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "reproduce.py").write_text(result.info["code"])
    runpy.run_path(str(tmp_path / "reproduce.py"), run_name="__main__")
    return Image.open(tmp_path / "image.png")


def test_an_edit_changes_the_drawing_like_the_plain_call_and_leaves_the_model_as_it_was(
    studio, demo_dir, tmp_path, monkeypatch
):
    state = unet_state(studio)
    unedited = studio.generate(GenerationRequest(task="text2img", scheduler="DDIM", **BASE))
    result = studio.generate(GenerationRequest(task="model_editing", **EDIT, **BASE))
    assert result.info["pipeline"] == "StableDiffusionModelEditingPipeline"
    assert result.info["scheduler"] == "DDIM", "diffusers says this pipeline doesn't support PNDM, SD 1.5's default"
    assert result.info["destination_prompt"] == "A pack of blue roses"
    assert result.images[0].tobytes() != unedited.images[0].tobytes(), "the edit changed nothing"
    assert same_unet(studio, state), "the edit stayed in the shared UNet"
    again = studio.generate(GenerationRequest(task="text2img", scheduler="DDIM", **BASE))
    assert again.images[0].tobytes() == unedited.images[0].tobytes()

    plain = StableDiffusionModelEditingPipeline.from_pretrained(demo_dir, torch_dtype=torch.float32)
    plain.scheduler = DDIMScheduler.from_config(plain.scheduler.config)
    plain.set_progress_bar_config(disable=True)
    assert plain.ca_clip_layers == [], "diffusers 0.42 finds its layers again: the mend may go"
    compat.find_edited_layers(plain)
    plain.edit_model(EDIT["source_prompt"], EDIT["destination_prompt"])
    theirs = plain(
        prompt=BASE["prompt"], num_inference_steps=4, width=64, height=64,
        generator=torch.Generator("cpu").manual_seed(3),
    ).images[0]  # fmt: skip
    assert np.abs(np.asarray(theirs).astype(int) - np.asarray(result.images[0]).astype(int)).max() <= 1
    assert reproduce(result, tmp_path, monkeypatch).tobytes() == result.images[0].tobytes()


def test_a_destination_that_drops_the_source_words_is_refused(studio):
    with pytest.raises(InvalidRequest, match="must keep the source's words in their order"):
        studio.generate(GenerationRequest(task="model_editing", source_prompt="roses", destination_prompt="tulips"))
    with pytest.raises(InvalidRequest, match="Model editing needs the phrase to edit"):
        studio.generate(GenerationRequest(task="model_editing", source_prompt="roses", **BASE))
    with pytest.raises(InvalidRequest, match="Shorten them"):
        long = "roses " * 80
        studio.generate(GenerationRequest(task="model_editing", source_prompt=long, destination_prompt=long, **BASE))
    # A destination that fits the encoder alone but not after the edit's "A picture of " (diffusers' loop indexed
    # past the end: an IndexError; a device-side assert on a GPU).
    tokenizer = studio.pool.components["tokenizer"]
    fits = next(d for n in range(200, 0, -1) if len(tokenizer(d := "x" * n + " rose").input_ids) <= 77)
    assert len(tokenizer("A picture of " + fits).input_ids) > 77
    state = unet_state(studio)
    with pytest.raises(InvalidRequest, match="with the edit's 'A photo of' before them"):
        studio.generate(GenerationRequest(task="model_editing", source_prompt="rose", destination_prompt=fits, **BASE))
    assert same_unet(studio, state)
    with pytest.raises(InvalidRequest, match="destination_prompt must be text"):
        studio.generate(GenerationRequest(task="model_editing", source_prompt="rose", destination_prompt=None, **BASE))


def test_bfloat16_edits_in_float32_and_its_snippet_makes_it_again(tmp_path_factory, tmp_path, monkeypatch):
    studio = load(tmp_path_factory, "bfloat16")
    state = unet_state(studio)
    result = studio.generate(GenerationRequest(task="model_editing", **EDIT, **BASE))
    unedited = studio.generate(GenerationRequest(task="text2img", scheduler="DDIM", **BASE))
    assert result.images[0].tobytes() != unedited.images[0].tobytes()
    assert same_unet(studio, state) and studio.pool.base.unet.dtype == torch.bfloat16
    assert "Float32Linear" in result.info["code"]
    assert reproduce(result, tmp_path, monkeypatch).tobytes() == result.images[0].tobytes()
