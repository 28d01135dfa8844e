"""Pix2Pix Zero over the loaded SD checkpoint (core/tasks/pix2pix_zero.py): an edit along the direction between two
concepts, of the prompt's own image or of an uploaded one (inverted first); its snippet (diffusers alone) makes the
same image; progress climbs once over its passes; the shared UNet's gradients are off again after every run."""

from __future__ import annotations

import dataclasses
import runpy
import threading

import numpy as np
import pytest
import torch
from PIL import Image

from core.errors import InvalidRequest
from core.generation import GenerationRequest, Limits
from core.studio import Studio, StudioOptions
from core.tasks.pix2pix_zero import Pix2PixZero

BASE = dict(prompt="a cat", steps=4, width=64, height=64, seed=3)
CAT_TO_DOG = dict(source_concept="a cat\na photo of a cat", target_concept="a dog\na photo of a dog")


@pytest.fixture(scope="module")
def studio(tmp_path_factory) -> Studio:
    studio = Studio(StudioOptions(device="cpu", offline=True, outputs_dir=tmp_path_factory.mktemp("outputs")))
    studio.load("demo", variant="default", dtype="float32")
    return studio


def gradients(studio: Studio) -> tuple[dict[str, bool], bool]:
    unet = studio.pool.base.unet
    return {n: p.requires_grad for n, p in unet.named_parameters()}, any(p.grad is not None for p in unet.parameters())


def reproduce(result, tmp_path, monkeypatch, inputs=None) -> Image.Image:
    monkeypatch.chdir(tmp_path)
    for name, picture in (inputs or {}).items():
        picture.save(tmp_path / name)
    (tmp_path / "reproduce.py").write_text(result.info["code"])
    runpy.run_path(str(tmp_path / "reproduce.py"), run_name="__main__")
    return Image.open(tmp_path / "image.png")


def close(a: Image.Image, b: Image.Image) -> bool:
    return np.abs(np.asarray(a).astype(int) - np.asarray(b).astype(int)).max() <= 2


def test_an_edit_of_the_prompts_image_moves_it_toward_the_target(studio, tmp_path, monkeypatch):
    flags = gradients(studio)
    plain = studio.generate(GenerationRequest(task="text2img", scheduler="DDIM", **BASE)).images[0]
    progress = []
    edited = studio.generate(
        GenerationRequest(task="pix2pix_zero", **CAT_TO_DOG, **BASE),
        on_step=lambda done, total: progress.append((done, total)),
    )
    assert edited.info["pipeline"] == "StableDiffusionPix2PixZeroPipeline" and edited.info["scheduler"] == "DDIM"
    assert edited.info["inverted"] is False and edited.info["target_concept"] == CAT_TO_DOG["target_concept"]
    assert not close(edited.images[0], plain), "the edit changed nothing"
    # The same concept on both sides is no direction: the guided pass keeps the first pass's image, DDIM's own.
    same = studio.generate(
        GenerationRequest(task="pix2pix_zero", source_concept="a cat", target_concept="a cat", **BASE)
    )
    assert close(same.images[0], plain)
    assert [d for d, _ in progress] == sorted(d for d, _ in progress) and progress[-1] == (4, 4), "one climb"
    assert gradients(studio) == flags, "the shared UNet's gradients were left on"
    assert reproduce(edited, tmp_path, monkeypatch).tobytes() == edited.images[0].tobytes()


def test_an_uploaded_image_is_inverted_then_edited_and_its_snippet_does_the_same(studio, tmp_path, monkeypatch):
    flags = gradients(studio)
    picture = studio.generate(GenerationRequest(task="text2img", scheduler="DDIM", **BASE)).images[0]
    result = studio.generate(GenerationRequest(task="pix2pix_zero", image=picture, **CAT_TO_DOG, **BASE))
    assert result.info["inverted"] is True and result.images[0].size == (64, 64)
    assert gradients(studio) == flags
    assert "pipe.invert(" in result.info["code"]
    again = reproduce(result, tmp_path, monkeypatch, {"input.png": picture})
    assert again.tobytes() == result.images[0].tobytes()


def test_a_stop_in_the_inversion_keeps_the_studio_as_it_was(studio):
    flags, cancel = gradients(studio), threading.Event()
    picture = Image.new("RGB", (64, 64), (200, 120, 40))
    stopped = studio.generate(
        GenerationRequest(task="pix2pix_zero", image=picture, **CAT_TO_DOG, **{**BASE, "steps": 8}),
        on_step=lambda done, total: cancel.set(),
        cancel=cancel,
    )
    assert stopped.info["interrupted"] is True and stopped.info["stopped_at_step"] == 1 and stopped.images == []
    assert gradients(studio) == flags
    assert studio.pool.base.unet.attn_processors.keys() and all(
        type(p).__name__ != "Pix2PixZeroAttnProcessor" for p in studio.pool.base.unet.attn_processors.values()
    )


def test_both_concepts_are_needed(studio):
    with pytest.raises(InvalidRequest, match="Pix2Pix Zero needs both concepts"):
        studio.generate(GenerationRequest(task="pix2pix_zero", source_concept="a cat", **BASE))
    with pytest.raises(InvalidRequest, match="at most 64 sentences"):
        many = "\n".join(["a cat"] * 65)
        studio.generate(GenerationRequest(task="pix2pix_zero", source_concept=many, target_concept="a dog", **BASE))
    with pytest.raises(InvalidRequest, match="could not be read as an image"):  # an optional image, checked alike
        studio.generate(GenerationRequest(task="pix2pix_zero", image="/etc/passwd", **CAT_TO_DOG, **BASE))
    with pytest.raises(InvalidRequest, match="it must be at least 64 px on each side"):
        studio.generate(GenerationRequest(task="pix2pix_zero", image=Image.new("RGB", (8, 8)), **CAT_TO_DOG, **BASE))
    public = dict(max_steps=50, max_side=1024, max_images=4)  # spaces_config.yaml's public limits
    with pytest.raises(InvalidRequest, match=r"about 6 UNet passes per step: 50 steps at 1024x1024 is 1\.5x"):
        picture = Image.new("RGB", (1024, 1024))  # its size is the run's
        big = GenerationRequest(task="pix2pix_zero", image=picture, **CAT_TO_DOG, prompt="a cat", steps=50)
        Pix2PixZero().check(big, Limits(**public))
    text_only = GenerationRequest(task="pix2pix_zero", **CAT_TO_DOG, prompt="a cat", steps=50, width=1024, height=1024)
    with pytest.raises(InvalidRequest, match=r"about 5 UNet passes per step: 50 steps at 1024x1024 is 1\.2x"):
        Pix2PixZero().check(text_only, Limits(**public))
    Pix2PixZero().check(dataclasses.replace(text_only, width=768, height=768), Limits(**public))
    assert torch.is_grad_enabled()
