"""The Pipeline tab: pipelines no spec serves, run from their `__call__` signature (core.signature,
core.tasks.pipeline). Each twin is loaded through the studio, run, compared with the plain diffusers call at the same
seed, and made again by the info's snippet; plus a pipeline class defined here, which no other code knows.

No `from __future__ import annotations` here: diffusers' `from_pipe` matches components by their real type hints.
"""

import json
import runpy
import threading
import wave

import diffusers
import numpy as np
import pytest
import torch
import trimesh
from diffusers import DiffusionPipeline, UNet2DModel
from diffusers.pipelines.pipeline_utils import ImagePipelineOutput
from PIL import Image

from core import signature
from core.demo.companions import companion_path
from core.errors import InvalidRequest
from core.generation import GenerationRequest
from core.outputs import wav_comment
from core.studio import Studio, StudioOptions
from core.tasks.pipeline import pool_signature

PICTURE = Image.new("RGB", (96, 64), (200, 100, 30))


@pytest.fixture(scope="module")
def studio(tmp_path_factory) -> Studio:
    return Studio(StudioOptions(device="cpu", offline=True, outputs_dir=tmp_path_factory.mktemp("outputs")))


def run(studio: Studio, **fields) -> object:
    return studio.generate(GenerationRequest(task="pipeline", seed=fields.pop("seed", 5), **fields))


def snippet_run(result, folder, monkeypatch, inputs: dict[str, Image.Image] | None = None) -> None:
    monkeypatch.chdir(folder)
    for name, picture in (inputs or {}).items():
        picture.save(folder / name)
    (folder / "reproduce.py").write_text(result.info["code"])
    runpy.run_path(str(folder / "reproduce.py"), run_name="__main__")


def plain(kind: str, cls: type) -> DiffusionPipeline:
    """The twin loaded by diffusers alone, as its snippet does."""
    pipe = cls.from_pretrained(companion_path(kind), torch_dtype=torch.float32, use_safetensors=True)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_unconditional_ddpm_gets_steps_and_a_batch_and_equals_the_plain_call(studio, tmp_path, monkeypatch):
    info = studio.load("demo-ddpm")
    assert info["tasks"] == ["pipeline"], "only the signature-built tab serves DDPM"
    assert info["dtype"] == "float32", "auto is float32 for a pipeline no spec vouches for (numpy has no bfloat16)"
    assert info["signature"]["offered"] == {"steps": "num_inference_steps", "num_images": "batch_size"}
    assert info["signature"]["defaults"]["steps"] == 1000
    result = run(studio, steps=6, num_images=2, seed=11)
    assert result.info["pipeline"] == "DDPMPipeline" and result.info["seeds"] == [11, 12]
    assert [image.size for image in result.images] == [(32, 32), (32, 32)]
    reference = plain("ddpm", diffusers.DDPMPipeline)(
        batch_size=2, num_inference_steps=6, generator=[torch.Generator("cpu").manual_seed(s) for s in (11, 12)]
    )
    for mine, theirs in zip(result.images, reference.images, strict=True):
        assert mine.tobytes() == theirs.tobytes()
    snippet_run(result, tmp_path, monkeypatch)
    assert Image.open(tmp_path / "image-2.png").tobytes() == result.images[1].tobytes()
    rows = {row["name"]: row for row in studio.memory_report()["components"]}
    assert rows["unet"]["class"] == "UNet2DModel" and rows["unet"]["used_by"] == ["pipeline"]


def test_class_labels_by_name_or_number_one_image_each(studio, tmp_path, monkeypatch):
    info = studio.load("demo-dit")
    names = info["signature"]["class_names"]
    assert names[1] == "goldfish, Carassius auratus", "the labels come from model_index.json's id2label"
    result = run(studio, class_labels="goldfish; 3", num_images=2, steps=3, guidance_scale=4.0, seed=20)
    assert result.info["class_labels"] == [1, 1, 3, 3] and result.info["seeds"] == [20, 21, 22, 23]
    assert len(result.images) == 4 and result.images[0].size == (128, 128)
    reference = plain("dit", diffusers.DiTPipeline)(
        class_labels=[1, 1, 3, 3],
        num_inference_steps=3,
        guidance_scale=4.0,
        generator=[torch.Generator("cpu").manual_seed(s) for s in (20, 21, 22, 23)],
    )
    assert [i.tobytes() for i in result.images] == [i.tobytes() for i in reference.images]
    assert result.images[0].tobytes() != result.images[2].tobytes(), "the label changed nothing"
    snippet_run(result, tmp_path, monkeypatch)
    assert Image.open(tmp_path / "image-3.png").tobytes() == result.images[2].tobytes()
    with pytest.raises(InvalidRequest, match="not one of the model's class labels"):
        run(studio, class_labels="platypus", steps=2)
    with pytest.raises(InvalidRequest, match="out of range"):
        run(studio, class_labels="1000", steps=2)
    with pytest.raises(InvalidRequest, match="at least one class label"):
        run(studio, steps=2)
    with pytest.raises(InvalidRequest, match="at most 8 per run"):
        run(studio, class_labels="0; 1; 2", num_images=3, steps=2)


def test_audio_is_saved_as_a_wav_with_its_info_and_the_snippet_writes_the_same_samples(studio, tmp_path, monkeypatch):
    info = studio.load("demo-dance-diffusion")
    assert info["signature"]["output"] == "audio" and "audio_seconds" in info["signature"]["offered"]
    result = run(studio, steps=3, audio_seconds=0.5, seed=4)
    assert result.images == [] and result.info["audio_seconds"] == 0.5
    with wave.open(result.files["wav"]) as f:
        assert (f.getnchannels(), f.getframerate(), f.getnframes()) == (2, 16000, 8000)
        samples = np.frombuffer(f.readframes(f.getnframes()), dtype="<i2")
    assert json.loads(wav_comment(result.files["wav"]))["seeds"] == [4], "the WAV carries the run's info"
    assert samples.std() > 0
    reference = plain("dance_diffusion", diffusers.DanceDiffusionPipeline)(
        num_inference_steps=3, audio_length_in_s=0.5, generator=torch.Generator("cpu").manual_seed(4)
    )
    expected = (np.clip(reference.audios[0].T, -1, 1) * 32767).round().astype("<i2").reshape(-1)
    assert np.array_equal(samples, expected)
    snippet_run(result, tmp_path, monkeypatch)
    with wave.open(str(tmp_path / "audio.wav")) as f:
        assert np.array_equal(np.frombuffer(f.readframes(f.getnframes()), dtype="<i2"), samples)


def test_text_to_audio_passes_the_prompt_and_length_and_writes_mono_at_the_vocoders_rate(studio, tmp_path, monkeypatch):
    info = studio.load("demo-audioldm")
    assert info["signature"]["offered"]["num_images"] == "num_waveforms_per_prompt"
    result = run(studio, prompt="rain on a tin roof", steps=3, audio_seconds=1.0, guidance_scale=2.5, seed=12)
    with wave.open(result.files["wav"]) as f:
        assert (f.getnchannels(), f.getframerate(), f.getnframes()) == (1, 16000, 16000)
        samples = np.frombuffer(f.readframes(f.getnframes()), dtype="<i2")
    reference = plain("audioldm", diffusers.AudioLDMPipeline)(
        "rain on a tin roof", num_inference_steps=3, audio_length_in_s=1.0, guidance_scale=2.5,
        generator=torch.Generator("cpu").manual_seed(12),
    )  # fmt: skip
    assert np.array_equal(samples, (np.clip(reference.audios[0], -1, 1) * 32767).round().astype("<i2"))
    other = run(studio, prompt="a dog barking", steps=3, audio_seconds=1.0, guidance_scale=2.5, seed=12)
    with wave.open(other.files["wav"]) as f:
        assert not np.array_equal(np.frombuffer(f.readframes(f.getnframes()), dtype="<i2"), samples), "prompt ignored"
    snippet_run(result, tmp_path, monkeypatch)
    with wave.open(str(tmp_path / "audio.wav")) as f:
        assert np.array_equal(np.frombuffer(f.readframes(f.getnframes()), dtype="<i2"), samples)


def test_a_video_pipeline_saves_gif_and_mp4_and_its_frames_equal_the_plain_call(studio, tmp_path, monkeypatch):
    info = studio.load("demo-text-to-video")
    assert info["signature"]["output"] == "frames" and info["signature"]["defaults"]["num_frames"] == 16
    result = run(studio, prompt="a boat at dusk", steps=3, num_frames=5, width=64, height=64, seed=8)
    assert result.info["num_frames"] == 5 and set(result.files) == {"gif", "mp4"}
    frames = result.extras["frames"][0]
    assert len(frames) == 5 and frames[0].size == (64, 64) and result.images == [frames[0]]
    with Image.open(result.files["gif"]) as gif:
        assert gif.n_frames == 5
    reference = plain("text_to_video", diffusers.TextToVideoSDPipeline)(
        prompt="a boat at dusk", num_inference_steps=3, num_frames=5, width=64, height=64, guidance_scale=7.5,
        output_type="pil",
        generator=torch.Generator("cpu").manual_seed(8),
    )  # fmt: skip
    assert [f.tobytes() for f in frames] == [f.tobytes() for f in reference.frames[0]]
    snippet_run(result, tmp_path, monkeypatch)
    with Image.open(tmp_path / "animation.gif") as theirs, Image.open(result.files["gif"]) as mine:
        assert theirs.n_frames == mine.n_frames and theirs.convert("RGB").tobytes() == mine.convert("RGB").tobytes()


def test_text_to_3d_renders_the_object_turning(studio, tmp_path, monkeypatch):
    """Shap-E's renders (a list of frames per prompt) come as an animation."""
    info = studio.load("demo-shap-e")
    assert info["signature"]["output"] == "frames" and info["signature"]["required"] == ["prompt"]
    assert info["signature"]["offered"]["mesh"] == "output_type", "its renderer decodes meshes too"
    result = run(studio, prompt="a small chair", steps=2, other_parameters='{"frame_size": 32}', seed=6)
    frames = result.extras["frames"][0]
    assert len(frames) == 20 and frames[0].size == (32, 32) and set(result.files) == {"gif", "mp4"}
    # The snippet is the plain diffusers call (Shap-E renders 20 frames a run: one comparison, not two).
    snippet_run(result, tmp_path, monkeypatch)
    with Image.open(tmp_path / "animation.gif") as theirs, Image.open(result.files["gif"]) as mine:
        assert theirs.n_frames == mine.n_frames == 20
        for i in range(20):
            theirs.seek(i)
            mine.seek(i)
            assert theirs.convert("RGB").tobytes() == mine.convert("RGB").tobytes(), f"frame {i}"
    with pytest.raises(InvalidRequest, match="needs a prompt"):
        run(studio, steps=2)


def read_ply(data: bytes) -> tuple[dict[str, str], np.ndarray, np.ndarray]:
    """A binary PLY as diffusers' export_to_ply writes it: (header comments/counts, vertices, faces)."""
    header, _sep, body = data.partition(b"end_header\n")
    lines = header.decode("ascii").splitlines()
    assert lines[:2] == ["ply", "format binary_little_endian 1.0"]
    counts = {line.split()[1]: int(line.split()[2]) for line in lines if line.startswith("element")}
    vertex = np.dtype([("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("r", "u1"), ("g", "u1"), ("b", "u1")])
    vertices = np.frombuffer(body, vertex, counts["vertex"])
    face = np.dtype([("n", "u1"), ("i", "<i4", 3)])
    faces = np.frombuffer(body, face, counts["face"], offset=vertices.nbytes)
    assert (faces["n"] == 3).all() and len(body) == vertices.nbytes + faces.nbytes, "nothing after the faces"
    comments = [line.removeprefix("comment ") for line in lines if line.startswith("comment ")]
    return {"comment": comments[0] if comments else ""}, vertices, faces["i"]


def test_text_to_3d_makes_a_mesh_saved_as_ply_like_the_plain_call(studio, tmp_path, monkeypatch):
    studio.load("demo-shap-e")
    result = run(studio, prompt="a small chair", steps=2, mesh=True, seed=6)
    assert result.images == [] and result.info["output"] == "mesh" and set(result.files) == {"ply", "glb"}
    with open(result.files["ply"], "rb") as f:
        data = f.read()
    header, vertices, faces = read_ply(data)
    assert json.loads(header["comment"])["seeds"] == [6], "the run's info rides in the PLY's header"
    mesh = result.extras["meshes"][0]
    assert len(vertices) == len(mesh.verts) > 1000 and len(faces) == len(mesh.faces)
    assert faces.min() == 0 and faces.max() == len(vertices) - 1, "every vertex is used, no index beyond them"
    # The viewer's GLB holds the same mesh, coloured.
    shape = trimesh.load(result.files["glb"], force="mesh", process=False)
    assert np.allclose(shape.vertices, mesh.verts.numpy()) and (shape.faces == mesh.faces.numpy()).all()
    assert shape.visual.vertex_colors.shape == (len(vertices), 4)
    # The plain diffusers call gives the same mesh; its snippet writes the same file but for the comment line.
    pipe = plain("shap_e", diffusers.ShapEPipeline)
    guidance = result.info["guidance_scale"]
    theirs = pipe(
        "a small chair",
        num_inference_steps=2,
        guidance_scale=guidance,
        output_type="mesh",
        generator=torch.manual_seed(6),
    )
    assert torch.equal(theirs.images[0].verts, mesh.verts) and torch.equal(theirs.images[0].faces, mesh.faces)
    snippet_run(result, tmp_path, monkeypatch)
    ours = data.split(b"\n")
    assert (tmp_path / "mesh.ply").read_bytes().split(b"\n") == ours[:2] + ours[3:]
    with pytest.raises(InvalidRequest, match="makes no 3D meshes; untick 3D mesh"):
        studio.load("demo-ddpm")
        run(studio, steps=2, mesh=True)


def test_the_twins_marching_cubes_tables_close_a_sphere_with_outward_faces():
    """The Shap-E twin's tables (built, not copied) make a closed surface: every edge on exactly two triangles,
    each directed edge once (one winding), and a positive enclosed volume (faces turned outwards)."""
    from diffusers.pipelines.shap_e.renderer import MeshDecoder

    from core.demo.pipelines import marching_cubes_tables

    decoder = MeshDecoder()
    decoder.cases.copy_(marching_cubes_tables()[0])
    decoder.masks.copy_(marching_cubes_tables()[1])
    axis = torch.linspace(-1, 1, 24)
    x, y, z = torch.meshgrid(axis, axis, axis, indexing="ij")
    for field in (
        0.6 - (x**2 + y**2 + z**2).sqrt(),
        (0.3 - ((x - 0.4) ** 2 + y**2 + z**2).sqrt()).maximum(0.3 - ((x + 0.4) ** 2 + y**2 + z**2).sqrt()),
    ):
        padded = torch.full((26, 26, 26), -1.0)
        padded[1:-1, 1:-1, 1:-1] = field
        mesh = decoder(padded, torch.tensor([-1.0] * 3), torch.tensor([2.0] * 3))
        f = mesh.faces
        directed = torch.cat([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]])
        _edges, uses = torch.unique(directed.sort(dim=1).values, dim=0, return_counts=True)
        _directed, once = torch.unique(directed, dim=0, return_counts=True)
        corners = mesh.verts[f]
        volume = (torch.linalg.cross(corners[:, 1], corners[:, 2]) * corners[:, 0]).sum() / 6
        assert len(f) > 100 and (uses == 2).all() and (once == 1).all() and volume > 0


def test_an_image_to_depth_pipeline_takes_the_image_and_shows_its_prediction(studio, tmp_path, monkeypatch):
    info = studio.load("demo-marigold-depth")
    sig = info["signature"]
    assert sig["required"] == ["image"] and "num_images" not in sig["offered"], "Marigold's batch_size is no count"
    assert sig["others"]["ensemble_size"] == {"default": 1, "type": "int", "optional": False}
    assert "latents" in sig["not_offered"] and "tensor" in sig["not_offered"]["latents"]
    with pytest.raises(InvalidRequest, match="needs an input image"):
        run(studio, steps=2)
    result = run(studio, image=PICTURE, steps=2, other_parameters='{"ensemble_size": 2, "processing_resolution": 32}')
    (depth,) = result.images
    assert depth.size == PICTURE.size and depth.mode == "L"
    assert result.info["other_parameters"] == '{"ensemble_size": 2, "processing_resolution": 32}'
    reference = plain("marigold_depth", diffusers.MarigoldDepthPipeline)(
        PICTURE, num_inference_steps=2, ensemble_size=2, processing_resolution=32,
        generator=torch.Generator("cpu").manual_seed(5),
    )  # fmt: skip
    expected = (np.clip(reference.prediction[0, ..., 0], 0, 1) * 255).round().astype(np.uint8)
    assert np.array_equal(np.asarray(depth), expected)
    snippet_run(result, tmp_path, monkeypatch, {"input.png": PICTURE})
    assert Image.open(tmp_path / "image.png").tobytes() == depth.tobytes()


class TinyBrightnessPipeline(DiffusionPipeline):
    """A pipeline no code of the app knows: a UNet, a scheduler, and parameters of every kind."""

    def __init__(self, unet: UNet2DModel, scheduler: diffusers.DDIMScheduler):
        super().__init__()
        self.register_modules(unet=unet, scheduler=scheduler)

    @torch.no_grad()
    def __call__(
        self,
        batch_size: int = 1,
        num_inference_steps: int = 7,
        brightness: float = 0.0,
        invert: bool = False,
        label: str | None = None,
        noise: torch.Tensor | None = None,
        generator=None,
        output_type: str = "pil",
    ):
        size = self.unet.config.sample_size
        generator = generator[0] if isinstance(generator, list) else generator
        image = torch.randn((batch_size, 3, size, size), generator=generator)
        self.scheduler.set_timesteps(num_inference_steps)
        for t in self.progress_bar(self.scheduler.timesteps):
            image = self.scheduler.step(self.unet(image, t).sample, t, image).prev_sample
        image = (image / 2 + 0.5 + brightness).clamp(0, 1)
        image = 1 - image if invert else image
        return ImagePipelineOutput(images=self.numpy_to_pil(image.permute(0, 2, 3, 1).numpy()))


@pytest.fixture
def tiny_pipeline(tmp_path, monkeypatch):
    """The class above saved as a checkpoint; diffusers finds a model_index.json's class in its own namespace."""
    monkeypatch.setattr(diffusers, "TinyBrightnessPipeline", TinyBrightnessPipeline, raising=False)
    torch.manual_seed(0)
    unet = UNet2DModel(
        sample_size=16, in_channels=3, out_channels=3, block_out_channels=(8, 16), layers_per_block=1,
        norm_num_groups=4, down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"),
    )  # fmt: skip
    TinyBrightnessPipeline(unet, diffusers.DDIMScheduler()).save_pretrained(tmp_path / "tiny")
    return tmp_path / "tiny"


def test_a_pipeline_class_no_code_knows_gets_its_scalars_as_other_parameters(studio, tiny_pipeline):
    info = studio.load(str(tiny_pipeline))
    sig = info["signature"]
    assert sig["offered"] == {"steps": "num_inference_steps", "num_images": "batch_size"}
    assert sig["defaults"]["steps"] == 7
    assert sig["others"] == {
        "brightness": {"default": 0.0, "type": "float", "optional": False},
        "invert": {"default": False, "type": "bool", "optional": False},
        "label": {"default": None, "type": "str", "optional": True},
    }
    assert sig["not_offered"] == {"noise": "takes a tensor (torch.Tensor | None)"}
    plain_run = run(studio, steps=3)
    bright = run(studio, steps=3, other_parameters='{"brightness": 0.3, "invert": true}')
    call = bright.info["code"].split("result = pipe(")[1].split("\n")[0]
    assert call.startswith("num_inference_steps=3, batch_size=1, brightness=0.3, invert=True, generator=")
    assert bright.info["arguments"] == ["batch_size", "brightness", "invert", "num_inference_steps"]
    assert plain_run.images[0].tobytes() != bright.images[0].tobytes()
    for text, message in (
        ('{"brightness": "high"}', "brightness takes a float"),
        ('{"noise": 1}', "no other parameter 'noise'"),
        ("[1, 2]", "must be a JSON object"),
        ("{brightness: 1}", "not valid JSON"),
        ('{"invert": 1}', "invert takes a bool"),
        ('{"brightness": NaN}', "NaN is not a number JSON has"),
    ):
        with pytest.raises(InvalidRequest, match=message):
            run(studio, steps=2, other_parameters=text)
    with pytest.raises(InvalidRequest, match="takes no input image"):
        run(studio, steps=2, image=PICTURE)
    with pytest.raises(InvalidRequest, match="could not be read as an image"):
        run(studio, steps=2, image="/etc/passwd")
    with pytest.raises(InvalidRequest, match="at least 64 px on each side"):
        run(studio, steps=2, image=Image.new("RGB", (16, 16)))


def test_other_parameters_are_off_on_a_public_server():
    info = signature.read(diffusers.MarigoldDepthPipeline)
    assert signature.other_values(info, "{}", public=True) == {}
    with pytest.raises(InvalidRequest, match="off on this public server"):
        signature.other_values(info, '{"ensemble_size": 50}', public=True)


def test_a_pipeline_needing_what_no_control_gives_is_named_not_half_run():
    """BLIP Diffusion requires a reference image and subject categories under names of its own; Versatile Diffusion's
    combined class has only methods. The tab says so instead of calling them without."""
    blip = signature.read(diffusers.BlipDiffusionPipeline)
    assert blip.unmet == ("reference_image", "source_subject_category", "target_subject_category")
    assert "required" in blip.not_offered["reference_image"]
    versatile = signature.read(diffusers.VersatileDiffusionPipeline)
    assert versatile.unmet == ("a call of its own (it has only methods)",) and versatile.offered == {}
    assert signature.read(diffusers.DDPMPipeline).unmet == ()


def test_stop_ends_a_pipeline_that_has_no_step_callback(studio):
    studio.load("demo-ddpm")
    assert pool_signature(studio.pool).takes_callback == "none"
    cancel = threading.Event()
    seen = []

    def on_step(done, total):
        seen.append(done)
        if done == 4:
            cancel.set()

    result = studio.generate(GenerationRequest(task="pipeline", steps=40, seed=1), on_step=on_step, cancel=cancel)
    assert result.info["interrupted"] and result.info["stopped_at_step"] == 4
    assert max(seen) == 4, "no step ran after Stop"
    assert studio.is_loaded and run(studio, steps=2).images, "the model still serves"


def test_the_sd_checkpoint_has_no_pipeline_tab_and_vice_versa(studio):
    info = studio.load("demo", variant="default", dtype="float32")
    assert "pipeline" not in info["tasks"] and info["signature"] is None
    with pytest.raises(Exception, match="can't do Any pipeline"):
        run(studio, steps=2)
    studio.load("demo-ddpm")
    with pytest.raises(Exception, match="can't do Text to image"):
        studio.generate(GenerationRequest(task="text2img", prompt="x", steps=2))


def _unet_2d(seed: int) -> UNet2DModel:
    torch.manual_seed(seed)
    return UNet2DModel(
        sample_size=16, in_channels=3, out_channels=3, block_out_channels=(8, 16), layers_per_block=1,
        norm_num_groups=4, down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"),
    )  # fmt: skip


# The seeds' other unconditional pipelines (and RePaint, which inpaints with one): a pixel UNet and their scheduler,
# written here as their checkpoints are laid out. (pipeline, scheduler, what the request adds, the plain call's extras)
# Not KarrasVePipeline: diffusers 0.42 can't load one it saved (it looks for KarrasVeScheduler in the wrong module).
SQUARE = Image.new("RGB", (64, 64), (30, 160, 90))  # RePaint rounds its mask down to a multiple of 32
HOLE = Image.new("L", (64, 64), 0)
HOLE.paste(255, (16, 16, 48, 48))
UNCONDITIONAL = [
    ("DDIMPipeline", "DDIMScheduler", {}, {}),
    ("PNDMPipeline", "PNDMScheduler", {"steps": 10}, {"num_inference_steps": 10}),  # its warm-up needs 10
    ("ScoreSdeVePipeline", "ScoreSdeVeScheduler", {}, {}),
    ("ConsistencyModelPipeline", "CMStochasticIterativeScheduler", {}, {}),
    ("RePaintPipeline", "RePaintScheduler", {"image": SQUARE, "mask": HOLE}, {"image": SQUARE, "mask_image": HOLE}),
]


@pytest.mark.parametrize(
    ("pipeline", "scheduler", "inputs", "plain_inputs"), UNCONDITIONAL, ids=[u[0] for u in UNCONDITIONAL]
)
def test_every_unconditional_pipeline_of_the_seeds_runs_from_its_signature(
    studio, tmp_path, pipeline, scheduler, inputs, plain_inputs
):
    cls = getattr(diffusers, pipeline)
    cls(unet=_unet_2d(3), scheduler=getattr(diffusers, scheduler)()).save_pretrained(tmp_path / "twin")
    info = studio.load(str(tmp_path / "twin"))
    assert info["tasks"] == ["pipeline"] and info["signature"]["pipeline"] == pipeline
    result = run(studio, **{"steps": 3, "seed": 13, **inputs})
    reference = cls.from_pretrained(tmp_path / "twin", torch_dtype=torch.float32)
    reference.set_progress_bar_config(disable=True)
    call = {"num_inference_steps": 3, **plain_inputs}
    expected = reference(generator=torch.Generator("cpu").manual_seed(13), **call)
    assert result.images[0].tobytes() == expected.images[0].tobytes()
    counted = ["batch_size"] if "num_images" in info["signature"]["offered"] else []
    assert result.info["arguments"] == sorted({*call, *counted})
