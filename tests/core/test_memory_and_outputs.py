"""The memory report, and images saved with their parameters."""

from __future__ import annotations

import json
import os
import time

import psutil
import pytest
from PIL import Image

from core.generation import GenerationRequest
from core.outputs import parameters_text
from core.studio import Studio, StudioOptions


@pytest.fixture(scope="module")
def studio(tmp_path_factory) -> Studio:
    outputs = tmp_path_factory.mktemp("outputs")
    studio = Studio(StudioOptions(device="cpu", offline=True, outputs_dir=outputs))
    studio.load("demo", variant="default", dtype="float32")
    return studio


def test_memory_report_on_cpu(studio):
    report = studio.memory_report()
    for key in (
        "device",
        "device_name",
        "total_bytes",
        "free_bytes",
        "allocated_bytes",
        "reserved_bytes",
        "peak_bytes",
        "process_rss_bytes",
        "pool_bytes",
        "naive_bytes",
        "components",
    ):
        assert key in report, key
    assert report["device"] == "cpu"
    assert report["total_bytes"] == psutil.virtual_memory().total
    assert 0 < report["process_rss_bytes"] <= report["peak_bytes"]
    names = {row["name"] for row in report["components"]}
    assert {"unet", "vae", "text_encoder", "safety_checker"} <= names
    unet = next(row for row in report["components"] if row["name"] == "unet")
    assert unet["class"] == "UNet2DConditionModel" and unet["dtype"] == "float32" and unet["device"] == "cpu"
    assert unet["bytes"] == sum(p.numel() * 4 for p in studio.pool.components["unet"].parameters()) + sum(
        b.numel() * b.element_size() for b in studio.pool.components["unet"].buffers()
    )
    assert {"text2img", "img2img", "inpaint", "sag", "pag"} <= set(unet["used_by"])
    assert report["pool_bytes"] == sum(row["bytes"] for row in report["components"])
    assert report["naive_bytes"] == studio.pool.naive_bytes() > 6 * report["pool_bytes"]


def test_memory_report_before_anything_is_loaded():
    report = Studio(StudioOptions(device="cpu")).memory_report()
    assert report["pool_bytes"] == 0 and report["components"] == [] and report["total_bytes"] > 0


def test_images_are_saved_with_their_parameters(studio):
    result = studio.generate(
        GenerationRequest(
            prompt="a boat",
            negative_prompt="rain",
            steps=2,
            width=64,
            height=64,
            seed=11,
            num_images=2,
            scheduler="Euler a",
        ),
        session="visitor-1",
    )
    assert len(result.paths) == 2
    saved = Image.open(result.paths[1])
    assert saved.tobytes() == result.images[1].tobytes()
    text = saved.text["parameters"]
    assert text.splitlines()[0] == "a boat"
    assert text.splitlines()[1] == "Negative prompt: rain"
    assert text.splitlines()[2] == (
        "Steps: 2, Sampler: Euler a, Schedule type: Uniform, CFG scale: 7.5, Seed: 12, Size: 64x64, Model: demo, "
        "RNG: CPU, Version: diffusion-studio"
    )
    meta = json.loads(saved.text["diffusion_studio"])
    assert meta["seeds"] == [11, 12] and meta["image_index"] == 1
    folder = studio.outputs.root
    assert not list(folder.rglob(".tmp-*")), "no temporary files are left behind"
    assert studio.outputs.list("visitor-1")[0].name.endswith(".png")
    assert studio.outputs.list("visitor-2") == []


def test_parameters_text_for_img2img_names_the_strength():
    info = {
        "task": "img2img",
        "prompt": "p",
        "negative_prompt": "",
        "steps": 5,
        "scheduler": "DDIM",
        "guidance_scale": 7.0,
        "seeds": [1],
        "width": 64,
        "height": 64,
        "strength": 0.6,
    }
    assert "Denoising strength: 0.6" in parameters_text(info)


def test_a_capped_outputs_folder_deletes_the_oldest_files_first_never_the_new_ones(tmp_path):
    import os

    from core.outputs import OutputStore

    store = OutputStore(tmp_path, max_bytes=None)
    info = {"task": "text2img", "seeds": [1, 2, 3], "prompt": "x"}
    noise = Image.effect_noise((64, 64), 80).convert("RGB")  # noise: PNGs of a few KB that don't compress away
    old = store.save([noise], info, "alice") + store.save([noise], info, "bob")
    for age, path in enumerate(old):  # make their age explicit, oldest first
        os.utime(path, (1_000_000 + age, 1_000_000 + age))
    size = os.path.getsize(old[0])
    store.max_bytes = 2 * size + size // 2
    new = store.save([noise], info, "carol")
    assert not os.path.exists(old[0]), "the oldest file went first"
    assert os.path.exists(old[1]) and os.path.exists(new[0])
    assert sum(p.stat().st_size for p in tmp_path.rglob("*.png")) <= store.max_bytes
    store.max_bytes = 1  # a cap smaller than one image still keeps the image just made
    assert os.path.exists(store.save([noise], info, "dave")[0])


def test_public_mode_caps_the_outputs_folder_from_the_deployment_file():
    from core.settings import from_args

    config = {"public": {"max_outputs_mb": 3}}
    assert from_args(["--public"], env={}, config=config).studio_options().outputs_max_bytes == 3 * 1024 * 1024
    assert from_args([], env={}, config=config).studio_options().outputs_max_bytes is None


def test_each_visitor_gets_a_share_of_the_outputs_and_a_burst_deletes_only_their_own(tmp_path):
    from core.outputs import OutputStore

    store = OutputStore(tmp_path, max_bytes=10_000_000, max_session_bytes=3_000)
    noise = Image.frombytes("L", (40, 40), os.urandom(1600))  # ~1.7 KB as PNG: incompressible
    info = {"task": "text2img", "seeds": [1], "prompt": "x"}
    alice = store.save([noise], info, "alice")
    for _ in range(4):
        time.sleep(0.01)
        store.save([noise], info, "mallory")
    assert len(store.list("mallory")) < 4, "mallory's burst deleted mallory's oldest"
    assert [str(p) for p in store.list("alice")] == alice, "and none of alice's"


def test_a_save_killed_midway_leaves_nothing_that_history_lists_and_is_swept_at_start(tmp_path):
    from core.outputs import OutputStore, session_folder_name

    folder = tmp_path / session_folder_name("alice")
    folder.mkdir()
    leftover = folder / ".tmp-abc123.png"
    leftover.write_bytes(b"half a png")
    assert OutputStore(tmp_path).list("alice") == [], "History never lists a save under way"
    old = time.time() - 3600
    os.utime(leftover, (old, old))
    OutputStore(tmp_path)  # the next start
    assert not leftover.exists()


def test_two_runs_in_the_same_second_with_the_same_seed_both_keep_their_files(tmp_path, monkeypatch):
    """Names are `<time>-<task>-<seed>`: a second run within the same second (a fixed seed, another prompt) used to
    overwrite the first's PNG, GIF and MP4."""
    from core.outputs import OutputStore

    monkeypatch.setattr(time, "strftime", lambda fmt, *a: "20261202-120000")  # every save in one second
    store = OutputStore(tmp_path)
    info = {"task": "animate", "seeds": [7], "prompt": "x", "fps": 4}
    red, blue = Image.new("RGB", (16, 16), "red"), Image.new("RGB", (16, 16), "blue")
    runs = []
    for picture in (red, blue):
        stamp = store.stamp("alice")  # one stamp for all of a run's files
        png = store.save([picture], info, "alice", stamp)[0]
        runs.append((png, store.save_animation([picture, picture], info, "alice", stamp)))
    (first_png, first_clip), (second_png, second_clip) = runs
    assert first_png != second_png and first_clip["gif"] != second_clip["gif"]
    assert Image.open(first_png).getpixel((0, 0)) == (255, 0, 0), "the first run's image is still its own"
    assert Image.open(first_clip["gif"]).convert("RGB").getpixel((0, 0)) == (255, 0, 0)
    assert os.path.basename(second_png).startswith("20261202-120000-2-animate-7")
    assert os.path.basename(second_clip["gif"]).startswith("20261202-120000-2-")
    assert len(list(tmp_path.rglob("*.*"))) == 6
