"""The image families with a Gemma text encoder (Sana, Lumina-Next, Lumina Image 2.0), served through diffusers'
AutoPipeline maps from one pool: each family's twin (core.demo.gemma_families) is loaded through the studio, offers
text to image only (as the maps do), starts its tab at its pipeline's own steps and guidance, equals the plain
diffusers call at the same seed, is made again by the info's snippet, and keeps its modules shared.

No `from __future__ import annotations` here: diffusers' `from_pipe` matches components by their real type hints.
"""

import inspect
import re
import runpy

import diffusers
import pytest
import torch
from diffusers import AutoPipelineForText2Image
from PIL import Image

from core.demo.companions import companion_path, write_companion
from core.errors import InvalidRequest
from core.generation import GenerationRequest
from core.studio import Studio, StudioOptions

# twin: (pipeline, size rule (VAE factor x patch), default size, the family's name, steps and guidance its
# pipeline's call defaults to in diffusers 0.42)
FAMILIES = {
    "sana": ("SanaPipeline", 32, 1024, "Sana", 20, 4.5),  # DC-AE 32x, patch 1
    "lumina": ("LuminaPipeline", 16, 1024, "Lumina-Next", 30, 4.0),  # VAE 8x, patch 2
    "lumina2": ("Lumina2Pipeline", 16, 1024, "Lumina Image 2.0", 30, 4.0),  # VAE 8x, patch 2
}
WIDTH, HEIGHT = 160, 128  # not square: a swapped width and height shows; a multiple of every family's rule
PROMPT = "a lighthouse at dusk"


@pytest.fixture(scope="module")
def studio(tmp_path_factory) -> Studio:
    return Studio(StudioOptions(device="cpu", offline=True, outputs_dir=tmp_path_factory.mktemp("outputs")))


def request(**fields) -> GenerationRequest:
    base = dict(
        task="text2img", prompt=PROMPT, steps=2, seed=12, guidance_scale=4.0, scheduler="default", width=WIDTH,
        height=HEIGHT,
    )  # fmt: skip
    return GenerationRequest(**{**base, **fields})


@pytest.mark.parametrize("kind", list(FAMILIES))
def test_each_gemma_family_draws_from_one_pool_like_the_plain_call(studio, kind, tmp_path, monkeypatch):
    pipeline, multiple, default_size, name, steps, guidance = FAMILIES[kind]
    info = studio.load(f"demo-{kind}", variant="default", dtype="float32")
    assert info["pipeline"] == pipeline and info["task_pipelines"] == {"text2img": pipeline}
    assert (info["size_multiple"], info["default_size"]) == (multiple, default_size)
    # The tab starts at the family's own steps and guidance: those its pipeline's call defaults to.
    few = info["few_step"]
    assert (few["name"], few["steps"], few["guidance_scale"], few["family"]) == (name, steps, guidance, True)
    defaults = inspect.signature(getattr(diffusers, pipeline).__call__).parameters
    assert (defaults["num_inference_steps"].default, defaults["guidance_scale"].default) == (steps, guidance)
    before = studio.pool.unique_bytes()
    modules = {k: v for k, v in studio.pool.components.items() if isinstance(v, torch.nn.Module)}

    previews = []
    result = studio.generate(request(preview_every=1), on_preview=previews.append)
    assert len(previews) == 2 and all(p[0].width > 1 for p in previews)
    assert result.info["pipeline"] == pipeline
    image = result.images[0]
    assert image.size == (WIDTH, HEIGHT)
    assert len(set(image.getdata())) > 16, "a flat image"
    # The prompt reaches the picture (through the Gemma tokenizer and encoder): another one changes it.
    other = studio.generate(request(prompt="a red bicycle in the snow")).images[0]
    assert other.tobytes() != image.tobytes()
    # Every run used the pool's own modules: nothing was copied or reloaded.
    assert studio.pool.unique_bytes() == before
    assert all(studio.pool.components[k] is module for k, module in modules.items())

    # The plain diffusers call, written here (not the app's snippet), gives the same pixels.
    pipe = AutoPipelineForText2Image.from_pretrained(companion_path(kind), dtype=torch.float32, use_safetensors=True)
    pipe.set_progress_bar_config(disable=True)
    assert type(pipe).__name__ == pipeline
    plain = pipe(
        prompt=PROMPT,
        num_inference_steps=2,
        guidance_scale=4.0,
        width=WIDTH,
        height=HEIGHT,
        generator=torch.Generator("cpu").manual_seed(12),
    ).images[0]
    assert plain.tobytes() == image.tobytes()

    # The snippet makes the image again.
    monkeypatch.chdir(tmp_path)
    (tmp_path / "reproduce.py").write_text(result.info["code"])
    runpy.run_path(str(tmp_path / "reproduce.py"), run_name="__main__")
    assert Image.open(tmp_path / "image.png").tobytes() == image.tobytes()


# twin: the classes its model_index.json names, as the Hub checkpoint's does, and its tokenizer's padding side
LAYOUTS = {
    "sana": (["Gemma2Model", "AutoencoderDC", "SanaTransformer2DModel", "DPMSolverMultistepScheduler"], "right"),
    "lumina": (["GemmaModel", "AutoencoderKL", "LuminaNextDiT2DModel", "FlowMatchEulerDiscreteScheduler"], "left"),
    "lumina2": (
        ["Gemma2Model", "AutoencoderKL", "Lumina2Transformer2DModel", "FlowMatchEulerDiscreteScheduler"],
        "right",
    ),
}


@pytest.mark.parametrize("kind", list(LAYOUTS))
def test_each_twin_is_laid_out_as_its_hub_checkpoint_with_a_gemma_tokenizer(kind, tmp_path):
    import json

    from transformers import AutoTokenizer

    classes, padding_side = LAYOUTS[kind]
    path = companion_path(kind)
    # Built again, the twin has the same bytes (LuminaNextDiT2DModel's pad_token used to be uninitialised memory).
    again = write_companion(kind, tmp_path / kind)
    weights = sorted(p.relative_to(path) for p in path.rglob("*.safetensors"))
    assert len(weights) == 3 and weights == sorted(p.relative_to(again) for p in again.rglob("*.safetensors"))
    assert all((path / w).read_bytes() == (again / w).read_bytes() for w in weights)
    index = json.loads((path / "model_index.json").read_text())
    assert [index[c][1] for c in ("text_encoder", "vae", "transformer", "scheduler")] == classes
    assert index["tokenizer"][1] == "GemmaTokenizer"
    # Gemma's ids and conventions: <pad> 0, <eos> 1, <bos> 2, <unk> 3; `<bos>` starts every prompt; text that is
    # not in the vocabulary falls back to bytes and decodes back whole.
    tokenizer = AutoTokenizer.from_pretrained(path / "tokenizer")
    specials = [tokenizer.pad_token_id, tokenizer.eos_token_id, tokenizer.bos_token_id, tokenizer.unk_token_id]
    assert specials == [0, 1, 2, 3] and tokenizer.padding_side == padding_side
    ids = tokenizer(["Café at dusk", "a"], padding=True).input_ids
    assert tokenizer.unk_token_id not in ids[0] and tokenizer.decode(ids[0], skip_special_tokens=True) == "Café at dusk"
    assert ids[0][0] == 2 and (ids[1][:2] == [2, tokenizer("a").input_ids[1]]) == (padding_side == "right")


@pytest.mark.parametrize(("kind", "width", "message"), [
    ("sana", 144, "width must be a multiple of 32, got 144; try 128 or 160"),
    ("lumina", 136, "width must be a multiple of 16, got 136; try 128 or 144"),
    ("lumina2", 136, "width must be a multiple of 16, got 136; try 128 or 144"),
])  # fmt: skip
def test_a_size_off_the_family_rule_is_refused_with_the_nearest_sizes(studio, kind, width, message):
    studio.load(f"demo-{kind}", variant="default", dtype="float32")
    with pytest.raises(InvalidRequest, match=message):
        studio.generate(request(width=width))


def test_every_scheduler_offered_for_sana_draws_an_image(studio):
    studio.load("demo-sana", variant="default", dtype="float32")
    names = studio.scheduler_names()
    # A flow-prediction DPM-Solver: DDIM, DDPM, PNDM and LCM failed inside the run, Karras sigmas gave black images.
    assert names == ["default", "DPM++ 2M", "DPM++ 2M SDE", "DPM++ 3M SDE", "UniPC", "DEIS"]
    for refused in ("DDIM", "DPM++ 2M Karras"):
        with pytest.raises(InvalidRequest, match=f"Scheduler '{re.escape(refused)}' does not work with"):
            studio.generate(request(scheduler=refused))
    broken = {}
    for name in names:
        try:
            result = studio.generate(request(scheduler=name))
        except Exception as error:  # what the user sees is the point
            broken[name] = f"{type(error).__name__}: {error}"
            continue
        if len(set(result.images[0].getdata())) <= 16:
            broken[name] = "a flat image"
    assert broken == {}
