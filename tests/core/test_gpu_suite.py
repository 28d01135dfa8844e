"""The GPU suite's smoke run: every section of bench/gpu_suite.py runs on the CPU twins, so the suite a GPU session
runs in its few minutes can't have rotted (its figures here mean nothing and are not checked)."""

from __future__ import annotations

import re

from bench import gpu_suite


def test_every_section_of_the_gpu_suite_runs_on_the_twins(capsys):
    assert gpu_suite.main(["--smoke"]) == 0
    out = capsys.readouterr().out
    for model in ("sd15", "sdxl"):
        part = out.split(f"## {model}:")[1].split("## ")[0]
        for line in (
            r"speed: studio [\d.]+ it/s, plain diffusers [\d.]+ it/s",
            r"cache: whole UNet every 3 steps [\d.]+ s, every step [\d.]+ s",
            r"compile: first call [\d.]+ s; .* largest pixel difference 0 of 255",
            r"memory: peak text2img ran .* inpaint ran .* model CPU offload: GPU only",
            r"switch: from_pipe [\d.]+ ms, from_pretrained [\d.]+ s",
            r"batch: 4 visitors in one shared call [\d.]+ images/s, one at a time [\d.]+ images/s",
            r"batch: 4 images in one request [\d.]+ images/s, one at a time [\d.]+ images/s",
        ):
            assert re.search(line, part), f"{model}: no line like {line!r} in\n{part}"
