"""The GPU suite: the studio against plain diffusers on SD 1.5- and SDXL-sized random checkpoints, each figure two
things measured side by side in one run and printed as a ratio.

    python bench/gpu_suite.py [--only speed,cache,compile,memory,switch,batch] [--models sd15,sdxl]
    python bench/gpu_suite.py --smoke      # CPU, the tiny demo twins, 2 steps: checks that every section runs

On a GPU (float16): SD 1.5 at 512x512 and SDXL at 1024x1024, 20 steps; the random checkpoints are written once
(bench/sd15_checkpoint.py, bench/sdxl_checkpoint.py). Under 8 minutes on one H200-class GPU, the checkpoints
written; the first run writes them (about 11 GB, a minute or two more).

- speed:   the studio's /text2img path vs. the same plain diffusers call: it/s of each
- cache:   step caching every 3 steps vs. every step whole (the studio)
- compile: the studio's compiled-UNet mode (regional torch.compile, inductor) vs. without: the first call (the
           compile) and the warm it/s; the images' largest difference (exact or near-exact?)
- memory:  peak accelerator memory of text2img, img2img and inpaint through the studio, and of text2img with model
           CPU offload (CUDA only; the CPU has no such reading)
- switch:  a task switch through the pool (from_pipe) vs. loading that task's pipeline with from_pretrained
- batch:   4 visitors' requests in one shared call (core.batching), and 4 images in one request, vs. 4 requests of
           one image (images per second)

--smoke replaces inductor with torch.compile's `eager` backend (the same wrapping, no code generation), so it runs
in seconds; its figures mean nothing, its purpose is that the suite can't rot (tests/core/test_gpu_suite.py).
"""

from __future__ import annotations

import argparse
import datetime
import gc
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from PIL import Image  # noqa: E402

from core.generation import GenerationRequest  # noqa: E402
from core.studio import Studio, StudioOptions  # noqa: E402

PROMPT = "a lighthouse on a cliff at dawn, oil painting"


@dataclass
class Setup:
    device: str
    dtype: str
    steps: int
    rounds: int
    smoke: bool
    sizes: dict[str, int]  # model -> image side
    sources: dict[str, str]  # model -> what Studio.load takes


def setup(args: argparse.Namespace) -> Setup:
    if args.smoke:
        os.environ.setdefault("DIFFUSION_STUDIO_COMPILE_BACKEND", "eager")  # the wrapping, without code generation
        return Setup("cpu", "float32", 2, 1, True, {"sd15": 64, "sdxl": 64}, {"sd15": "demo", "sdxl": "demo-sdxl"})
    if not torch.cuda.is_available():
        raise SystemExit("No CUDA GPU here: run with --smoke on a CPU (it checks the suite, its figures mean nothing).")
    from bench.sd15_checkpoint import sd15_sized_path
    from bench.sdxl_checkpoint import sdxl_sized_path

    sources = {"sd15": str(sd15_sized_path()), "sdxl": str(sdxl_sized_path())}
    return Setup("cuda", "float16", args.steps, args.rounds, False, {"sd15": 512, "sdxl": 1024}, sources)


def sync(s: Setup) -> None:
    if s.device == "cuda":
        torch.cuda.synchronize()


def alternate(s: Setup, a: Callable[[], object], b: Callable[[], object]) -> tuple[float, float]:
    """Median seconds of `a` and of `b`, run alternately after one warm-up each (none in a smoke run)."""
    if not s.smoke:
        a(), b()
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(s.rounds):
        for fn, spent in zip((a, b), times, strict=True):
            sync(s)
            started = time.perf_counter()
            fn()
            sync(s)
            spent.append(time.perf_counter() - started)
    return statistics.median(times[0]), statistics.median(times[1])


def request(s: Setup, model: str, **fields) -> GenerationRequest:
    side = s.sizes[model]
    base = dict(prompt=PROMPT, steps=s.steps, width=side, height=side, seed=1, safety_checker=False)
    return GenerationRequest(**{**base, **fields})


def plain_pipeline(studio: Studio):
    """The checkpoint loaded by diffusers alone, as a user's script would: the text-to-image AutoPipeline."""
    from diffusers import AutoPipelineForText2Image

    pipe = AutoPipelineForText2Image.from_pretrained(
        str(studio.pool.files.path), dtype=studio.pool.dtype, use_safetensors=True
    ).to(studio.device)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def plain_call(s: Setup, model: str, pipe) -> Image.Image:
    side = s.sizes[model]
    return pipe(
        PROMPT, num_inference_steps=s.steps, width=side, height=side, generator=torch.Generator("cpu").manual_seed(1)
    ).images[0]


def bench_speed(s: Setup, model: str, studio: Studio) -> None:
    plain = plain_pipeline(studio)
    t_studio, t_plain = alternate(s, lambda: studio.generate(request(s, model)), lambda: plain_call(s, model, plain))
    print(f"speed: studio {s.steps / t_studio:.2f} it/s, plain diffusers {s.steps / t_plain:.2f} it/s: "
          f"studio/plain {t_plain / t_studio:.3f}x")  # fmt: skip


def bench_cache(s: Setup, model: str, studio: Studio) -> None:
    t_cached, t_full = alternate(
        s, lambda: studio.generate(request(s, model, step_cache=3)), lambda: studio.generate(request(s, model))
    )
    print(f"cache: whole UNet every 3 steps {t_cached:.3f} s, every step {t_full:.3f} s: {t_full / t_cached:.2f}x")


def bench_compile(s: Setup, model: str, studio: Studio) -> None:
    """The studio's compiled-UNet mode (regional torch.compile) against a second studio without it."""
    import numpy as np

    compiled = Studio(StudioOptions(device=s.device, offline=True))
    compiled.load(s.sources[model], variant="default", dtype=s.dtype)
    reference = np.asarray(studio.generate(request(s, model)).images[0], dtype=np.int16)
    compiled.set_compile(True)
    sync(s)
    started = time.perf_counter()
    first = np.asarray(compiled.generate(request(s, model)).images[0], dtype=np.int16)
    sync(s)
    compile_s = time.perf_counter() - started
    t_compiled, t_plain = alternate(
        s, lambda: compiled.generate(request(s, model)), lambda: studio.generate(request(s, model))
    )
    difference = int(np.abs(first - reference).max())
    print(f"compile: first call {compile_s:.1f} s; warm {s.steps / t_compiled:.2f} it/s vs {s.steps / t_plain:.2f} "
          f"it/s: {t_plain / t_compiled:.2f}x; largest pixel difference {difference} of 255")  # fmt: skip


def peak_during(s: Setup, run: Callable[[], object]) -> int | None:
    """The accelerator's peak allocated bytes while `run` runs, or None where there is no such reading (CPU)."""
    if s.device != "cuda":
        run()
        return None
    gc.collect()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    run()
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated()


def bench_memory(s: Setup, model: str, studio: Studio) -> None:
    side = s.sizes[model]
    image = Image.new("RGB", (side, side), (180, 120, 60))
    mask = Image.new("L", (side, side), 0)
    mask.paste(255, (side // 4, side // 4, 3 * side // 4, 3 * side // 4))
    runs = {
        "text2img": request(s, model),
        "img2img": request(s, model, task="img2img", image=image, strength=0.75),
        "inpaint": request(s, model, task="inpaint", image=image, mask=mask, strength=1.0),
    }
    shown = []
    for task, req in runs.items():
        peak = peak_during(s, lambda req=req: studio.generate(req))
        shown.append(f"{task} {peak / 2**30:.2f} GiB" if peak is not None else f"{task} ran (no reading on CPU)")
    if s.device == "cuda":
        studio.set_memory_modes(offload="model")
        try:
            peak = peak_during(s, lambda: studio.generate(runs["text2img"]))
            shown.append(f"text2img with model CPU offload {peak / 2**30:.2f} GiB")
        finally:
            studio.set_memory_modes(offload="none")
    else:
        shown.append("model CPU offload: GPU only")
    print("memory: peak " + ", ".join(shown))


def bench_switch(s: Setup, model: str, studio: Studio) -> None:
    from diffusers import AutoPipelineForImage2Image

    from core import schedulers
    from core.tasks import TASKS

    pool = studio.pool
    task = TASKS["img2img"]
    held: list = []

    def switch() -> None:
        pool.view(task, scheduler=schedulers.build("default", pool.base.scheduler), safety_checker=False)

    def reload() -> None:
        held.clear()
        gc.collect()
        pipe = AutoPipelineForImage2Image.from_pretrained(str(pool.files.path), dtype=pool.dtype, use_safetensors=True)
        held.append(pipe.to(studio.device))

    t_switch, t_reload = alternate(s, switch, reload)
    held.clear()
    print(f"switch: from_pipe {t_switch * 1000:.2f} ms, from_pretrained {t_reload:.2f} s: {t_reload / t_switch:,.0f}x")


def bench_batch(s: Setup, model: str, studio: Studio) -> None:
    from core.batching import Member

    def visitors() -> list[GenerationRequest]:
        return [request(s, model, prompt=f"{PROMPT}, view {i}", seed=1 + i, scheduler="Euler") for i in range(4)]

    def shared_call() -> None:  # what core.batching.Batcher runs for 4 visitors who asked together
        members = [Member(r) for r in visitors()]
        studio.generate_batch(members)
        assert all(m.future.result().info["batch"]["visitors"] == 4 for m in members)

    t_shared, t_single = alternate(s, shared_call, lambda: [studio.generate(r) for r in visitors()])
    print(f"batch: 4 visitors in one shared call {4 / t_shared:.2f} images/s, one at a time {4 / t_single:.2f} "
          f"images/s: {t_single / t_shared:.2f}x")  # fmt: skip
    t_batch, t_single = alternate(
        s,
        lambda: studio.generate(request(s, model, num_images=4)),
        lambda: [studio.generate(request(s, model, seed=1 + i)) for i in range(4)],
    )
    print(f"batch: 4 images in one request {4 / t_batch:.2f} images/s, one at a time {4 / t_single:.2f} images/s: "
          f"{t_single / t_batch:.2f}x")  # fmt: skip


BENCHES = {
    "speed": bench_speed,
    "cache": bench_cache,
    "compile": bench_compile,
    "memory": bench_memory,
    "switch": bench_switch,
    "batch": bench_batch,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="CPU, tiny twins, 2 steps: that it runs, in seconds")
    parser.add_argument("--only", default=",".join(BENCHES), help="comma-separated: " + ", ".join(BENCHES))
    parser.add_argument("--models", default="sd15,sdxl")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3, help="alternating runs of each side")
    args = parser.parse_args(argv)
    import diffusers

    s = setup(args)
    where = torch.cuda.get_device_name() if s.device == "cuda" else "CPU (smoke: the figures mean nothing)"
    print(f"# {where}; torch {torch.__version__}, diffusers {diffusers.__version__}; {datetime.date.today()}")
    for model in args.models.split(","):
        studio = Studio(StudioOptions(device=s.device, offline=True))
        studio.load(s.sources[model], variant="default", dtype=s.dtype)
        side = s.sizes[model]
        print(f"\n## {model}: {type(studio.pool.base).__name__}, {s.dtype}, {side}x{side}, {s.steps} steps")
        for name in args.only.split(","):
            BENCHES[name.strip()](s, model, studio)
            sys.stdout.flush()
        del studio
        gc.collect()
        if s.device == "cuda":
            torch.cuda.empty_cache()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
