"""More pipelines the Pipeline tab runs from their signature (core.demo.stages): latent diffusion's text to image,
super-resolution and unconditional models, DeepFloyd IF's super-resolution stage and Shap-E's image to 3D. Each
twin is loaded through the studio, run with what its signature takes, and compared with the plain diffusers call
at the same seed, which is also what the info's snippet writes.

No `from __future__ import annotations` here: diffusers' `from_pipe` matches components by their real type hints.
"""

import json
import runpy
import subprocess
import sys
from pathlib import Path

import diffusers
import pytest
import torch
from PIL import Image

from core.demo.companions import companion_path
from core.errors import InvalidRequest
from core.generation import GenerationRequest
from core.studio import Studio, StudioOptions

PICTURE = Image.new("RGB", (64, 64), (120, 40, 200))
PICTURE.paste((250, 220, 30), (16, 16, 48, 48))

# twin: (class, what the tab offers, the request's fields, the plain call's arguments besides steps and generator)
STAGES = {
    "ldm_text2img": (
        "LDMTextToImagePipeline",
        {"prompt", "steps", "guidance_scale", "width", "height"},
        dict(prompt="a red barn", width=64, height=64, guidance_scale=4.0),
        dict(prompt="a red barn", width=64, height=64, guidance_scale=4.0),
    ),
    "ldm_superres": ("LDMSuperResolutionPipeline", {"image", "steps"}, dict(image=PICTURE), dict(image=PICTURE)),
    "ldm_uncond": ("LDMPipeline", {"steps", "num_images"}, dict(num_images=2), dict(batch_size=2)),
    "karras_ve": ("KarrasVePipeline", {"steps", "num_images"}, {}, {}),
    "if_superres": (
        "IFSuperResolutionPipeline",
        {"prompt", "negative_prompt", "image", "steps", "guidance_scale", "width", "height", "num_images"},
        dict(prompt="a red barn", image=PICTURE, width=128, height=128, guidance_scale=4.0),
        dict(prompt="a red barn", image=PICTURE, width=128, height=128, guidance_scale=4.0),
    ),
    "alt_diffusion": (
        "AltDiffusionPipeline",
        {"prompt", "negative_prompt", "steps", "guidance_scale", "width", "height", "num_images"},
        dict(prompt="一座红色的谷仓 a red barn", width=64, height=64, guidance_scale=4.0),
        dict(prompt="一座红色的谷仓 a red barn", width=64, height=64, guidance_scale=4.0),
    ),
    "vq_diffusion": (
        "VQDiffusionPipeline",
        {"prompt", "steps", "guidance_scale", "num_images"},
        dict(prompt="a red barn", guidance_scale=4.0),
        dict(prompt="a red barn", guidance_scale=4.0),
    ),
}


@pytest.fixture(scope="module")
def studio(tmp_path_factory) -> Studio:
    return Studio(StudioOptions(device="cpu", offline=True, outputs_dir=tmp_path_factory.mktemp("outputs")))


def plain(kind: str, class_name: str):
    pipe = getattr(diffusers, class_name).from_pretrained(companion_path(kind), torch_dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.mark.parametrize("kind", list(STAGES))
def test_each_stage_runs_from_its_signature_like_the_plain_call(studio, kind, tmp_path, monkeypatch):
    class_name, offered, fields, call = STAGES[kind]
    info = studio.load(f"demo-{kind.replace('_', '-')}")
    assert info["pipeline"] == class_name and info["tasks"] == ["pipeline"]
    assert set(info["signature"]["offered"]) == offered and info["signature"]["unmet"] == []
    result = studio.generate(GenerationRequest(task="pipeline", steps=2, seed=11, **fields))
    count = fields.get("num_images", 1)
    generator = (
        torch.Generator("cpu").manual_seed(11)
        if count == 1
        else [torch.Generator("cpu").manual_seed(11 + i) for i in range(count)]
    )
    theirs = plain(kind, class_name)(**call, num_inference_steps=2, generator=generator).images
    assert [a.tobytes() for a in result.images] == [b.tobytes() for b in theirs]
    assert len({a.tobytes() for a in result.images}) == count and len(set(result.images[0].getdata())) > 16
    if kind == "ldm_superres":
        assert result.images[0].size == (128, 128), "twice the input's size (the twin's VQ autoencoder has 2 levels)"
    monkeypatch.chdir(tmp_path)
    PICTURE.save(tmp_path / "input.png")
    (tmp_path / "reproduce.py").write_text(result.info["code"])
    if kind == "alt_diffusion":
        # Its checkpoint names a library diffusers has moved (`alt_diffusion`): in this process the studio's load
        # made the alias already, so the snippet runs in a fresh one, as a user's would.
        subprocess.run([sys.executable, "reproduce.py"], cwd=tmp_path, check=True, capture_output=True)
    else:
        runpy.run_path(str(tmp_path / "reproduce.py"), run_name="__main__")
    saved = "image.png" if count == 1 else "image-1.png"
    assert Image.open(tmp_path / saved).tobytes() == result.images[0].tobytes()


def test_image_to_3d_takes_a_picture_and_makes_renders_or_a_mesh(studio):
    info = studio.load("demo-shap-e-img2img")
    assert {"image", "steps", "guidance_scale", "mesh"} <= set(info["signature"]["offered"])
    renders = studio.generate(
        GenerationRequest(task="pipeline", image=PICTURE, steps=2, seed=4, other_parameters='{"frame_size": 32}')
    )
    pipe = plain("shap_e_img2img", "ShapEImg2ImgPipeline")
    theirs = pipe(
        image=PICTURE, num_inference_steps=2, guidance_scale=renders.info["guidance_scale"], frame_size=32,
        generator=torch.Generator("cpu").manual_seed(4),
    ).images[0]  # fmt: skip
    assert [f.tobytes() for f in renders.extras["frames"][0]] == [f.tobytes() for f in theirs]
    mesh = studio.generate(GenerationRequest(task="pipeline", image=PICTURE, steps=2, seed=4, mesh=True))
    assert mesh.info["output"] == "mesh" and len(mesh.extras["meshes"][0].faces) > 1000
    assert set(mesh.files) == {"ply", "glb"}


def test_unclip_runs_its_stages_with_their_own_schedulers_and_steps(studio, tmp_path, monkeypatch):
    """Karlo has no `num_inference_steps` and no one scheduler: a scheduler and steps per stage. The tab offers the
    prompt, takes the stages' steps as other parameters, and refuses a scheduler swap with the reason."""
    info = studio.load("demo-karlo")
    assert info["signature"]["offered"] == {"prompt": "prompt", "num_images": "num_images_per_prompt"}
    assert info["schedulers"] == ["default"] and "decoder_num_inference_steps" in info["signature"]["others"]
    stages = {"prior_num_inference_steps": 2, "decoder_num_inference_steps": 2, "super_res_num_inference_steps": 2}
    result = studio.generate(
        GenerationRequest(task="pipeline", prompt="a red barn", seed=5, other_parameters=json.dumps(stages))
    )
    theirs = plain("karlo", "UnCLIPPipeline")(
        prompt="a red barn", **stages, generator=torch.Generator("cpu").manual_seed(5)
    ).images[0]
    assert result.images[0].tobytes() == theirs.tobytes() and result.images[0].size == (64, 64)
    assert result.info["scheduler_class"] is None
    monkeypatch.chdir(tmp_path)
    (tmp_path / "reproduce.py").write_text(result.info["code"])
    runpy.run_path(str(tmp_path / "reproduce.py"), run_name="__main__")
    assert Image.open(tmp_path / "image.png").tobytes() == result.images[0].tobytes()
    with pytest.raises(InvalidRequest, match="a scheduler per stage, not one to swap; set the scheduler to default"):
        studio.generate(GenerationRequest(task="pipeline", prompt="x", scheduler="DDIM", seed=1))


def test_unclip_image_variation_takes_a_picture_instead_of_the_prior(studio, tmp_path, monkeypatch):
    info = studio.load("demo-karlo-variation")
    assert info["pipeline"] == "UnCLIPImageVariationPipeline" and info["schedulers"] == ["default"]
    assert info["signature"]["offered"] == {"image": "image", "num_images": "num_images_per_prompt"}
    stages = {"decoder_num_inference_steps": 2, "super_res_num_inference_steps": 2}
    result = studio.generate(
        GenerationRequest(task="pipeline", image=PICTURE, seed=6, other_parameters=json.dumps(stages))
    )
    theirs = plain("karlo_variation", "UnCLIPImageVariationPipeline")(
        image=PICTURE, **stages, generator=torch.Generator("cpu").manual_seed(6)
    ).images[0]
    assert result.images[0].tobytes() == theirs.tobytes() and len(set(theirs.getdata())) > 16
    other = studio.generate(
        GenerationRequest(
            task="pipeline",
            image=Image.new("RGB", (64, 64), (20, 200, 40)),
            seed=6,
            other_parameters=json.dumps(stages),
        )
    )
    assert other.images[0].tobytes() != result.images[0].tobytes(), "the picture conditions the variation"
    monkeypatch.chdir(tmp_path)
    PICTURE.save(tmp_path / "input.png")
    (tmp_path / "reproduce.py").write_text(result.info["code"])
    runpy.run_path(str(tmp_path / "reproduce.py"), run_name="__main__")
    assert Image.open(tmp_path / "image.png").tobytes() == result.images[0].tobytes()


def test_unidiffuser_makes_an_image_from_text_a_caption_from_an_image_or_both(studio, tmp_path, monkeypatch):
    """UniDiffuser picks its mode from what it is given: a prompt (an image), an image (a caption: text, no
    picture) or neither (both at once). The tab shows the text, saves it, and the snippet writes it again."""
    info = studio.load("demo-unidiffuser")
    assert info["signature"]["makes_text"] and {"prompt", "image", "steps", "guidance_scale"} <= set(
        info["signature"]["offered"]
    )
    pipe = plain("unidiffuser", "UniDiffuserPipeline")
    monkeypatch.chdir(tmp_path)
    PICTURE.save(tmp_path / "input.png")
    size = info["default_size"]  # what the page sets: its U-ViT makes only that size
    with pytest.raises(InvalidRequest, match=f"only at the size it was trained at: set width and height to {size}"):
        studio.generate(GenerationRequest(task="pipeline", prompt="x", width=size * 2, height=size * 2))
    for fields in (dict(prompt="a red barn"), dict(image=PICTURE), {}):
        result = studio.generate(
            GenerationRequest(task="pipeline", steps=2, seed=8, guidance_scale=4.0, width=size, height=size, **fields)
        )
        theirs = pipe(**fields, num_inference_steps=2, guidance_scale=4.0, generator=torch.Generator().manual_seed(8))
        mode = "text2img" if "prompt" in fields else "img2text" if "image" in fields else "joint"
        assert [i.tobytes() for i in result.images] == [i.tobytes() for i in theirs.images or []], mode
        assert result.info.get("text") == theirs.text, mode
        assert (mode == "text2img") == ("text" not in result.info)
        if mode == "img2text":
            assert result.info["output"] == "text" and result.info["width"] is None and result.images == []
            assert Path(result.files["txt"]).read_text(encoding="utf-8") == theirs.text[0] + "\n"
            assert json.loads(Path(result.files["json"]).read_text())["text"] == theirs.text
        (tmp_path / "reproduce.py").write_text(result.info["code"])
        runpy.run_path(str(tmp_path / "reproduce.py"), run_name="__main__")
        if theirs.text is not None:
            assert (tmp_path / "text.txt").read_text(encoding="utf-8") == "\n".join(theirs.text), mode
        if theirs.images:
            assert Image.open(tmp_path / "image.png").tobytes() == result.images[0].tobytes(), mode
        (tmp_path / "text.txt").unlink(missing_ok=True)
