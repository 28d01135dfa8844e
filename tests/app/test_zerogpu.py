"""ZeroGPU: `python app.py` on a pretend ZeroGPU Space (SPACE_ID, SPACES_ZERO_GPU and a fake `spaces` package),
and the same app off Spaces, where `spaces` is never imported."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from core.generation import GenerationRequest
from tests.launch import free_port
from ui import zerogpu

ROOT = Path(__file__).resolve().parents[2]
FAKE_SPACES = ROOT / "tests" / "fake_spaces"


def _events(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


@pytest.fixture
def zero_gpu_app(tmp_path):
    port, log = free_port(), tmp_path / "spaces.jsonl"
    env = {
        **os.environ,
        "SPACE_ID": "someone/diffusion-studio",
        "SPACES_ZERO_GPU": "true",
        "PYTHONPATH": os.pathsep.join([str(FAKE_SPACES), str(ROOT)]),
        "FAKE_SPACES_LOG": str(log),
    }
    args = ["--model", "demo", "--dtype", "float32", "--host", "127.0.0.1", "--port", str(port)]
    process = subprocess.Popen(
        [sys.executable, "app.py", *args, "--outputs", str(tmp_path / "out")],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + 120
    from gradio_client import Client

    while True:
        try:
            client = Client(url, verbose=False)
            break
        except Exception:
            if process.poll() is not None or time.time() > deadline:
                process.kill()
                pytest.fail(f"the app did not start: {process.stderr.read().decode()[-2000:]}")
            time.sleep(0.5)
    yield client, log, process, tmp_path / "out"
    process.terminate()
    process.wait(timeout=30)


def test_on_zero_gpu_spaces_comes_first_models_load_before_launch_and_generations_take_a_gpu(zero_gpu_app):
    client, log, server, _outputs = zero_gpu_app
    events = _events(log)
    assert events[0] == {"event": "import", "torch_already_imported": False}
    assert {e["function"] for e in events if e["event"] == "decorate"} == {"_generate", "_compare"}

    # Loaded before the server answered: the very first memory report already holds the pool.
    assert client.predict(api_name="/memory")["pool_bytes"] > 0

    images, info = client.predict(
        prompt="a lighthouse",
        negative_prompt="",
        steps=3,
        guidance_scale=7.0,
        width=64,
        height=64,
        seed=5,
        scheduler="default",
        num_images=2,
        safety_checker=True,
        api_name="/text2img",
    )
    assert len(images) == 2 and info["seeds"] == [5, 6]
    calls = [e for e in _events(log) if e["event"] == "call"]
    request = GenerationRequest(task="text2img", steps=3, width=64, height=64, num_images=2)
    assert [(e["function"], e["duration"]) for e in calls] == [("_generate", zerogpu.estimate_seconds(request))]
    assert calls[0]["pid"] != server.pid, "the run happened in a forked GPU worker"


def test_what_a_run_in_the_gpu_worker_leaves_behind_reaches_the_server(zero_gpu_app):
    """The worker is a child that exits after each call: what a run changes in its memory is lost. The same
    request twice in a row must still save both runs' images under their own names (the run's file stamps were
    claimed in memory), and each run's images come back to the server for the page."""
    client, log, server, outputs = zero_gpu_app
    arguments = dict(prompt="a lighthouse", negative_prompt="", steps=2, guidance_scale=7.0, width=64, height=64)
    arguments |= dict(seed=5, scheduler="default", num_images=1, safety_checker=True, api_name="/text2img")
    first_images, _ = client.predict(**arguments)
    second_images, second_info = client.predict(**arguments)
    assert len(first_images) == len(second_images) == 1 and second_info["seeds"] == [5]
    saved = sorted(p.name for p in outputs.rglob("*.png"))
    assert len(saved) == 2, f"both runs' images are on disk under their own names: {saved}"
    pids = {e["pid"] for e in _events(log) if e["event"] == "call"}
    assert len(pids) == 2 and server.pid not in pids, "each call had a worker of its own"


def test_off_spaces_nothing_of_spaces_is_needed_or_used(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("SPACE_ID", "SPACES_ZERO_GPU")}
    code = "import sys, app; app.build_app(app.settings_module.from_args(['--model', 'demo'], env={})); "
    code += "print('spaces' in sys.modules, app.ui.zerogpu.ON_ZERO_GPU)"
    env["PYTHONPATH"] = str(ROOT)  # no `spaces` package at all: the app builds without it
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "False False"

    # With a `spaces` package installed but not on a Space: gradio imports it, the studio decorates nothing.
    env["PYTHONPATH"] = os.pathsep.join([str(FAKE_SPACES), str(ROOT)])
    env["FAKE_SPACES_LOG"] = str(tmp_path / "spaces.jsonl")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "True False"
    assert [e["event"] for e in _events(tmp_path / "spaces.jsonl")] == ["import"]


def test_the_gpu_lease_grows_with_the_work_and_stays_within_zero_gpu_limits():
    small = GenerationRequest(task="text2img", steps=20, width=512, height=512, num_images=1)
    bigger = GenerationRequest(task="text2img", steps=100, width=1024, height=1024, num_images=4)
    refined = GenerationRequest(task="text2img", steps=30, width=1024, height=1024, num_images=1, refiner_switch=0.8)
    plain = GenerationRequest(task="text2img", steps=30, width=1024, height=1024, num_images=1)
    assert zerogpu.MIN_SECONDS <= zerogpu.estimate_seconds(small) < zerogpu.estimate_seconds(plain)
    assert zerogpu.estimate_seconds(plain) < zerogpu.estimate_seconds(refined)
    assert zerogpu.estimate_seconds(bigger) == zerogpu.MAX_SECONDS
    assert zerogpu.enabled({"SPACE_ID": "a/b", "SPACES_ZERO_GPU": "true"})
    assert not zerogpu.enabled({"SPACES_ZERO_GPU": "true"}) and not zerogpu.enabled({"SPACE_ID": "a/b"})
