"""The image families beyond Stable Diffusion, served through diffusers' AutoPipeline maps from one pool: each
family's twin (core.demo.image_families) is loaded through the studio, runs every task its family maps, equals the
plain diffusers call at the same seed, is made again by the info's snippet, and keeps its modules shared.

No `from __future__ import annotations` here: diffusers' `from_pipe` matches components by their real type hints.
"""

import runpy

import pytest
import torch
from diffusers import AutoPipelineForInpainting, AutoPipelineForText2Image
from PIL import Image

from core.checkpoints import loading
from core.demo.companions import companion_path
from core.errors import InvalidRequest, NotLoaded
from core.generation import GenerationRequest
from core.studio import Studio, StudioOptions

# twin: (pipeline, tasks, size rule, default size, the family's name, steps and guidance from its pipeline)
FAMILIES = {
    "kandinsky21": ("KandinskyCombinedPipeline", ["text2img", "img2img"], 64, 512, "Kandinsky 2.1", 25, 4.0),
    "kandinsky22": ("KandinskyV22CombinedPipeline", ["text2img", "img2img"], 64, 512, "Kandinsky 2.2", 25, 4.0),
    "kandinsky3": ("Kandinsky3Pipeline", ["text2img", "img2img"], 64, 1024, "Kandinsky 3", 25, 3.0),
    "wuerstchen": ("WuerstchenCombinedPipeline", ["text2img"], 128, 512, "Wuerstchen", 60, 4.0),
    "cascade": ("StableCascadeCombinedPipeline", ["text2img"], 128, 512, "Stable Cascade", 60, 4.0),
    "pixart_alpha": ("PixArtAlphaPipeline", ["text2img"], 16, 512, "PixArt-α", 20, 4.5),
    "pixart_sigma": ("PixArtSigmaPipeline", ["text2img"], 16, 512, "PixArt-Σ", 20, 4.5),
    "if": ("IFPipeline", ["text2img", "img2img", "inpaint"], 8, 64, "DeepFloyd IF", 100, 7.0),
    "flux": ("FluxPipeline", ["text2img", "img2img", "inpaint"], 16, 1024, "Flux", 28, 3.5),
    "auraflow": ("AuraFlowPipeline", ["text2img"], 16, 1024, "AuraFlow", 50, 3.5),
}
PICTURE = Image.new("RGB", (128, 128), (30, 160, 200))
MASK = Image.new("L", (128, 128), 0)
MASK.paste(255, (32, 32, 96, 96))


@pytest.fixture(scope="module")
def studio() -> Studio:
    return Studio(StudioOptions(device="cpu", offline=True))


def request(task: str, **fields) -> GenerationRequest:
    base = dict(prompt="a lighthouse at dusk", steps=2, seed=12, guidance_scale=4.0, scheduler="default")
    if task == "text2img":
        base.update(width=128, height=128)
    else:
        base.update(image=PICTURE, strength=0.7)
        if task == "inpaint":
            base.update(mask=MASK, strength=1.0)
    return GenerationRequest(task=task, **{**base, **fields})


@pytest.mark.parametrize("kind", list(FAMILIES))
def test_each_family_serves_its_tasks_from_one_pool_like_the_plain_call(studio, kind, tmp_path, monkeypatch):
    pipeline, tasks, multiple, default_size, name, steps, guidance = FAMILIES[kind]
    info = studio.load(f"demo-{kind.replace('_', '-')}", variant="default", dtype="float32")
    assert info["pipeline"] == pipeline and list(info["task_pipelines"]) == tasks
    assert (info["size_multiple"], info["default_size"]) == (multiple, default_size)
    few = info["few_step"]
    assert (few["name"], few["steps"], few["guidance_scale"], few["family"]) == (name, steps, guidance, True)
    before = studio.pool.unique_bytes()
    modules = {k: v for k, v in studio.pool.components.items() if isinstance(v, torch.nn.Module)}

    # Live previews come at every step, also from Flux's packed latents (a preview crash used to end its runs).
    previews = []
    results = {"text2img": studio.generate(request("text2img", preview_every=1), on_preview=previews.append)}
    assert len(previews) == 2 and all(p[0].width > 1 for p in previews)
    results |= {task: studio.generate(request(task)) for task in tasks[1:]}
    for task, result in results.items():
        assert result.info["pipeline"] == info["task_pipelines"][task]
        image = result.images[0]
        assert image.size == ((64, 64) if kind == "if" and task != "text2img" else (128, 128)), task
        assert len(set(image.getdata())) > 16, f"{task} gave a flat image"
    # Every view ran on the pool's own modules: nothing was copied or reloaded.
    assert studio.pool.unique_bytes() == before
    assert all(studio.pool.components[k] is module for k, module in modules.items())

    # The plain diffusers call, written here (not the app's snippet), gives the same pixels.
    path = companion_path(kind)
    loading._alias_moved_libraries(studio.pool.files)  # Wuerstchen's `wuerstchen` library (core.checkpoints)
    pipe = AutoPipelineForText2Image.from_pretrained(path, torch_dtype=torch.float32, use_safetensors=True)
    pipe.set_progress_bar_config(disable=True)
    two_stage = "prior_num_inference_steps" in results["text2img"].info["code"]
    stages = dict(prior_num_inference_steps=2, prior_guidance_scale=4.0) if two_stage else {}
    if kind not in ("wuerstchen", "cascade"):
        stages["guidance_scale"] = 4.0
    plain = pipe(
        prompt="a lighthouse at dusk",
        negative_prompt="" if kind.startswith("pixart") else None,
        num_inference_steps=2,
        width=128,
        height=128,
        generator=[torch.Generator("cpu").manual_seed(12)],
        **stages,
    ).images[0]
    assert plain.tobytes() == results["text2img"].images[0].tobytes()

    # The snippet makes each task's image again, from the saved inputs.
    monkeypatch.chdir(tmp_path)
    PICTURE.save(tmp_path / "input.png")
    MASK.save(tmp_path / "mask.png")
    for task, result in results.items():
        (tmp_path / "image.png").unlink(missing_ok=True)
        (tmp_path / "reproduce.py").write_text(result.info["code"])
        runpy.run_path(str(tmp_path / "reproduce.py"), run_name="__main__")
        assert Image.open(tmp_path / "image.png").tobytes() == result.images[0].tobytes(), task


def test_size_rules_schedulers_and_tasks_a_family_cannot_run_are_refused_with_the_reason(studio):
    studio.load("demo-kandinsky22", variant="default", dtype="float32")
    with pytest.raises(InvalidRequest, match="width must be a multiple of 64, got 96; try 64 or 128"):
        studio.generate(request("text2img", width=96))
    # Kandinsky's loop never scales the model's input, which Euler-style schedulers need: they are not offered.
    assert "Euler" not in studio.scheduler_names() and "DPM++ 2M" in studio.scheduler_names()
    with pytest.raises(InvalidRequest, match=r"Scheduler 'Euler' does not work with .*KandinskyV22CombinedPipeline"):
        studio.generate(request("text2img", scheduler="Euler"))
    ddim = studio.generate(request("text2img", scheduler="DDIM"))
    assert ddim.info["scheduler"] == "DDIM" and len(set(ddim.images[0].getdata())) > 16
    # Its inpaint pipeline needs the inpainting decoder (9 input channels): the task says so instead of failing
    # inside the UNet.
    with pytest.raises(NotLoaded, match=r"inpaints only with its inpainting decoder .* 9 input channels"):
        studio.generate(request("inpaint"))
    # The inpainting decoder inpaints, like the plain call, and refuses the tasks its 9 input channels can't run.
    info = studio.load("demo-kandinsky22-inpaint", variant="default", dtype="float32")
    assert list(info["task_pipelines"]) == ["inpaint"]
    inpainted = studio.generate(request("inpaint"))
    pipe = AutoPipelineForInpainting.from_pretrained(companion_path("kandinsky22_inpaint"), torch_dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    plain = pipe(
        prompt="a lighthouse at dusk", image=PICTURE, mask_image=MASK, strength=1.0, num_inference_steps=2,
        prior_num_inference_steps=2, guidance_scale=4.0, prior_guidance_scale=4.0, width=128, height=128,
        generator=[torch.Generator("cpu").manual_seed(12)],
    ).images[0]  # fmt: skip
    assert inpainted.images[0].tobytes() == plain.tobytes() and len(set(plain.getdata())) > 16
    for task in ("text2img", "img2img"):
        with pytest.raises(NotLoaded, match="an inpainting checkpoint, whose UNet takes 9 input channels, not the 4"):
            studio.generate(request(task))
    studio.load("demo-wuerstchen", variant="default", dtype="float32")
    with pytest.raises(InvalidRequest, match="width must be a multiple of 128, got 64; try 128"):
        studio.generate(request("text2img", width=64))
    # PixArt's loop scales the input: every scheduler of the catalog its DPM-Solver config takes is offered.
    studio.load("demo-pixart-alpha", variant="default", dtype="float32")
    assert {"Euler", "Euler a", "DPM++ 2M Karras"} <= set(studio.scheduler_names())


@pytest.mark.parametrize("source", ["demo-pixart-sigma", "demo-sd3", "demo-sana"])
def test_pag_perturbs_a_transformer_block_where_the_model_has_no_mid_block(studio, source, tmp_path, monkeypatch):
    """PAG used to name the UNet's "mid" block on every family, which a transformer does not have (SD3 failed)."""
    studio.load(source, variant="default", dtype="float32")
    plain = studio.generate(request("text2img"))
    pag = studio.generate(request("text2img", pag_scale=3.0))
    assert pag.info["pipeline"].endswith("PAGPipeline") and pag.images[0].tobytes() != plain.images[0].tobytes()
    monkeypatch.chdir(tmp_path)
    (tmp_path / "reproduce.py").write_text(pag.info["code"])
    runpy.run_path(str(tmp_path / "reproduce.py"), run_name="__main__")
    assert Image.open(tmp_path / "image.png").tobytes() == pag.images[0].tobytes()


def test_an_inpainting_checkpoint_loaded_as_the_main_one_inpaints_and_says_why_it_cannot_do_text_to_image(studio):
    """SD's 9-channel inpainting checkpoint as the main model used to offer Text to image and Image to image, which
    failed inside the UNet ("size of tensor a (9) must match")."""
    info = studio.load("demo-inpaint", variant="default", dtype="float32")
    assert list(info["task_pipelines"]) == ["inpaint"]
    assert len(set(studio.generate(request("inpaint")).images[0].getdata())) > 16
    for task in ("text2img", "img2img"):
        with pytest.raises(NotLoaded, match=r"can't do .*: it is an inpainting checkpoint, whose UNet takes 9 input"):
            studio.generate(request(task))
