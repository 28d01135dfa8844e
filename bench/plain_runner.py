"""The plain diffusers side of the app-overhead benchmark, in a process of its own like the app's.

    python bench/plain_runner.py CHECKPOINT DTYPE SIZE STEPS PROMPT

Loads the checkpoint with AutoPipelineForText2Image, prints `ready`, then makes one image per line read on stdin
and prints `done` after each, so the caller can time the calls without this process's start-up.
"""

from __future__ import annotations

import sys

import torch
from diffusers import AutoPipelineForText2Image


def main() -> int:
    path, dtype, size, steps, prompt = sys.argv[1:6]
    pipe = AutoPipelineForText2Image.from_pretrained(path, dtype=getattr(torch, dtype), use_safetensors=True)
    pipe.set_progress_bar_config(disable=True)
    print("ready", flush=True)
    for _line in sys.stdin:
        pipe(
            prompt,
            num_inference_steps=int(steps),
            guidance_scale=7.5,
            width=int(size),
            height=int(size),
            generator=torch.Generator("cpu").manual_seed(1),
        )
        print("done", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
