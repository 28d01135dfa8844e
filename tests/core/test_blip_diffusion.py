"""Subject-driven generation (core/tasks/blip_diffusion.py) on the BLIP Diffusion twin (core/demo/blip_diffusion.py):
its own tab, not the signature-built one; the run is the plain diffusers call at the same seeds, and the info's
snippet makes it again; what its pipeline would fail on or not repeat is refused with what to do instead.

No `from __future__ import annotations` here: diffusers' `from_pipe` matches components by their real type hints.
"""

import runpy

import diffusers
import diffusers.pipelines.deprecated.blip_diffusion
import pytest
import torch
from PIL import Image

from core.checkpoints.compat import mend
from core.demo.companions import companion_path
from core.errors import InvalidRequest
from core.generation import GenerationRequest
from core.studio import Studio, StudioOptions

PICTURE = Image.new("RGB", (64, 64), (120, 40, 200))
PICTURE.paste((250, 220, 30), (16, 16, 48, 48))
SUBJECT = dict(task="blip_diffusion", image=PICTURE, source_subject="dog", target_subject="dog", steps=2)


@pytest.fixture(scope="module")
def studio(tmp_path_factory) -> Studio:
    studio = Studio(StudioOptions(device="cpu", offline=True, outputs_dir=tmp_path_factory.mktemp("outputs")))
    studio.load("demo-blip-diffusion", variant="default", dtype="float32")
    return studio


def plain_pipeline() -> diffusers.BlipDiffusionPipeline:
    """The twin loaded by diffusers alone, as a user's script does: its model_index.json names the library where it
    was before diffusers moved it, and transformers 5 needs the same mend the studio makes."""
    diffusers.pipelines.blip_diffusion = diffusers.pipelines.deprecated.blip_diffusion
    pipe = diffusers.BlipDiffusionPipeline.from_pretrained(companion_path("blip_diffusion"), dtype=torch.float32)
    mend(pipe)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_the_model_offers_the_subject_tab_not_the_signature_one(studio):
    info = studio.model_info()
    assert info["pipeline"] == "BlipDiffusionPipeline"
    assert info["tasks"] == ["blip_diffusion"] and info["signature"] is None


def test_a_subject_run_is_the_plain_call_and_its_snippet_makes_it_again(studio, tmp_path, monkeypatch):
    progress = []
    request = GenerationRequest(
        **SUBJECT, prompt="swimming underwater", negative_prompt="blurry", seed=7, width=64, height=96, num_images=2
    )
    result = studio.generate(request, on_step=lambda done, total: progress.append((done, total)))
    assert [image.size for image in result.images] == [(64, 96), (64, 96)]
    assert result.images[0].tobytes() != result.images[1].tobytes(), "each image has its own seed"
    assert progress[-1] == (2, 2)
    info = result.info
    assert (info["pipeline"], info["seeds"], info["source_subject"], info["target_subject"]) == (
        "BlipDiffusionPipeline", [7, 8], "dog", "dog",
    )  # fmt: skip
    theirs = plain_pipeline()(
        prompt=["swimming underwater"] * 2, reference_image=PICTURE, source_subject_category=["dog"] * 2,
        target_subject_category=["dog"] * 2, neg_prompt="blurry", guidance_scale=7.5, num_inference_steps=2,
        width=64, height=96, generator=[torch.Generator("cpu").manual_seed(s) for s in (7, 8)],
    ).images  # fmt: skip
    assert [a.tobytes() for a in result.images] == [b.tobytes() for b in theirs]
    assert len(set(result.images[0].getdata())) > 16, "an image, not a flat colour"
    # A fresh script needs the alias of the moved library; this process has it since the load.
    assert "diffusers.pipelines.blip_diffusion = diffusers.pipelines.deprecated.blip_diffusion" in info["code"]
    monkeypatch.chdir(tmp_path)
    PICTURE.save(tmp_path / "input.png")
    (tmp_path / "reproduce.py").write_text(info["code"])
    runpy.run_path(str(tmp_path / "reproduce.py"), run_name="__main__")
    for i, ours in enumerate(result.images, 1):
        assert Image.open(tmp_path / f"image-{i}.png").tobytes() == ours.tobytes()


def test_the_mended_text_encoder_reads_the_prompt_one_way_as_trained(studio):
    """Under transformers 5 diffusers' context CLIP encoder lost its causal mask silently: a word then changed how
    the words before it were read."""
    studio.generate(GenerationRequest(**SUBJECT, prompt="on a beach", width=64, height=64))  # the view mends it
    encoder = studio.pool.components["text_encoder"]
    with torch.no_grad():
        first, second = (encoder(input_ids=torch.tensor([[5, 6, 7, ending]]))[0] for ending in (8, 9))
    assert torch.equal(first[:, :3], second[:, :3]) and not torch.equal(first[:, 3], second[:, 3])


def test_what_the_pipeline_would_fail_on_or_not_repeat_is_refused(studio):
    with pytest.raises(InvalidRequest, match=r"needs both subjects.*\(source_subject, e\.g\. dog\)"):
        studio.generate(GenerationRequest(**{**SUBJECT, "source_subject": " "}, prompt="on a beach"))
    with pytest.raises(InvalidRequest, match="needs both subjects"):
        studio.generate(GenerationRequest(**{**SUBJECT, "target_subject": ""}, prompt="on a beach"))
    with pytest.raises(InvalidRequest, match=r"'DDPM' draws noise .* no generator.*Choose one of: default, DDIM,"):
        studio.generate(GenerationRequest(**SUBJECT, prompt="on a beach", scheduler="DDPM", width=64, height=64))
    with pytest.raises(InvalidRequest, match=r"The negative prompt is 102 tokens; .* at most 77 .* Shorten it"):
        studio.generate(GenerationRequest(**SUBJECT, prompt="a", negative_prompt="x" * 100, width=64, height=64))
