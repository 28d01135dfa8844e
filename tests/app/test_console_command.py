"""The `diffusion-studio` console command: starts the app and opens a browser tab on it; `--no-browser` doesn't."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from core import settings as settings_module
from tests.launch import free_port

COMMAND = Path(sys.executable).parent / "diffusion-studio"  # installed by `pip install -e .`


def _run(tmp_path: Path, *flags: str, while_up=None) -> tuple[str, Path, str]:
    """Start the command with a stand-in browser (python's webbrowser honours $BROWSER) until the page answers."""
    opened = tmp_path / "opened.txt"
    browser = tmp_path / "browser.sh"
    browser.write_text(f'#!/bin/sh\necho "$1" >> {opened}\n')
    browser.chmod(0o755)
    port = free_port()
    env = {**os.environ, "BROWSER": str(browser)}
    env.pop("SPACE_ID", None)
    args = [str(COMMAND), "--model", "demo", "--dtype", "float32", "--port", str(port), "--outputs", str(tmp_path)]
    console = tmp_path / "console.txt"
    with console.open("w") as out:
        process = subprocess.Popen([*args, *flags], env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.time() + 90
        while True:
            try:
                urllib.request.urlopen(url, timeout=2).read(100)
                break
            except OSError:
                if process.poll() is not None or time.time() > deadline:
                    pytest.fail("diffusion-studio did not start")
                time.sleep(0.3)
        # The browser is opened right after the server starts: wait for it, and with --no-browser as long, so the
        # absence of a browser is not an artefact of waiting less.
        waited = time.time() + 10
        while time.time() < waited and not opened.exists():
            time.sleep(0.2)
        if while_up is not None:
            while_up(url)
    finally:
        process.terminate()
        process.wait(timeout=30)
    return url, opened, console.read_text(encoding="utf-8", errors="replace")


def test_the_command_opens_the_page_in_a_browser(tmp_path):
    assert COMMAND.exists(), "pip install -e . installs the console command"
    url, opened, _console = _run(tmp_path)
    assert opened.read_text().split() == [url]


def test_no_browser_keeps_it_closed(tmp_path):
    def a_users_mistake(url: str) -> None:
        from gradio_client import Client
        from gradio_client.exceptions import AppError

        with pytest.raises(AppError, match="seed must be -1"):
            Client(url, verbose=False).predict(prompt="x", negative_prompt="", seed=-5, api_name="/text2img")

    url, opened, console = _run(tmp_path, "--no-browser", while_up=a_users_mistake)
    assert not opened.exists()
    # Quiet by default: one line that says where, none of the libraries' notes or Gradio's "set `share=True`"
    # (our flag is --share), and no traceback for a user's mistake (a seed of -5 printed one).
    assert f"Diffusion Studio is ready: open {url}" in console
    for noise in ("share=True", "torchvision", "should be kept in float32", "Running on local URL", "Traceback"):
        assert noise not in console, noise


def test_verbose_shows_the_libraries_lines(tmp_path):
    _url, _opened, console = _run(tmp_path, "--no-browser", "--verbose")
    assert "Running on local URL" in console and "Diffusion Studio is ready" in console


def test_only_the_command_opens_a_browser_and_never_on_spaces():
    assert settings_module.from_args([], env={}, open_browser_default=True).open_browser
    assert not settings_module.from_args([], env={}).open_browser  # `python app.py`
    assert not settings_module.from_args(["--no-browser"], env={}, open_browser_default=True).open_browser
    assert not settings_module.from_args([], env={"SPACE_ID": "a/b"}, open_browser_default=True).open_browser
