"""Fixtures shared by every test: the offline demo checkpoint, written once per run, and an offline Hub cache.

No test may reach the network: the Hub is unreachable on CI, so HF_HUB_OFFLINE is set before anything imports
huggingface_hub, and Hub ids resolve against a private cache that tests fill themselves.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

_SESSION_DIR = Path(tempfile.mkdtemp(prefix="diffusion-studio-tests-"))
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_HUB_CACHE"] = str(_SESSION_DIR / "hf-cache")
os.environ["DIFFUSION_STUDIO_CACHE"] = str(_SESSION_DIR / "studio-cache")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
# One torch (OpenMP) thread per test process: the suite runs in as many processes as there are cores, and each
# one's torch taking every core made them fight over the CPUs (four threads on two cores; the browser tests' Chromium
# starved and clicks timed out). Measured on a 2-core AMD EPYC: four of the heaviest engine files in 219 s with the
# default threads, 131 s with one. Set in the environment so the apps tests start as subprocesses inherit it.
os.environ.setdefault("OMP_NUM_THREADS", "1")
# The compiled-UNet mode compiles with torch.compile's `eager` backend in tests: the same wrapping of the blocks,
# seconds instead of a minute of inductor code generation per test (bench/sd15_suite.py measures inductor).
os.environ.setdefault("DIFFUSION_STUDIO_COMPILE_BACKEND", "eager")

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def demo_dir() -> Path:
    """The demo checkpoint, exactly as `demo` resolves to it."""
    from core.demo.checkpoint import demo_checkpoint_path

    return demo_checkpoint_path()


@pytest.fixture(scope="session")
def flagging_demo_dir() -> Path:
    """A demo checkpoint whose safety checker flags every image."""
    from core.demo.checkpoint import write_demo_checkpoint

    return write_demo_checkpoint(_SESSION_DIR / "demo-flag-all", flag_all=True)


def put_in_hub_cache(folder: Path, repo_id: str) -> Path:
    """Place `folder` in the offline Hub cache as the `main` revision of `repo_id`, as a download would."""
    commit = "0" * 40
    storage = Path(os.environ["HF_HUB_CACHE"]) / f"models--{repo_id.replace('/', '--')}"
    (storage / "refs").mkdir(parents=True, exist_ok=True)
    (storage / "refs" / "main").write_text(commit)
    snapshot = storage / "snapshots" / commit
    if not snapshot.exists():
        shutil.copytree(folder, snapshot)
    return snapshot


@pytest.fixture(scope="session")
def hub_cache():
    """A function that makes a folder loadable by Hub id from the offline cache."""
    return put_in_hub_cache
