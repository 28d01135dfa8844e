"""The performance suite on an SD 1.5-sized random checkpoint: every figure is two things measured side by side in
one run, printed as a ratio, since absolute times on a shared machine mean little.

    python bench/sd15_suite.py [--only switch,views,dtype,previews,batch,app,cold] [--size 256] [--steps 4]

- switch:   a task switch through the pool vs. loading that task's pipeline with from_pretrained (time, bytes)
- views:    text2img + img2img + inpaint + SAG views held together vs. one pipeline (bytes, process memory)
- dtype:    the studio at dtype=auto vs. a plain float32 diffusers call at the same settings
- previews: generation with a live preview every step vs. without
- layout:   the UNet in channels_last memory format vs. the default one
- tiny:     the final decode by a TAESD-sized tiny VAE vs. the checkpoint's VAE; previews as its pictures vs. colours
- compile:  the compiled-UNet mode (regional torch.compile) vs. uncompiled: the compile, a restart, warm, pixels
- cache:    step caching (DeepCache) every 2, 3, 4 steps vs. every step whole: time, and PSNR against the full image
- batch:    4 visitors asking at once (their requests gathered into shared calls, core.batching) vs. the same
            requests one at a time: images a second
- app:      a generation through the app end to end (called as the page calls it, and through gradio_client) vs.
            the same plain diffusers call (the app's overhead)
- cold:     `python app.py --model demo` started to a page that answers, and to the model being ready

Runs alternate (A, B, A, B, ...) after a warm-up of each, and medians are compared.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import gc
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import psutil  # noqa: E402
import torch  # noqa: E402

from bench.sd15_checkpoint import sd15_sized_path  # noqa: E402
from core import compile_mode, schedulers  # noqa: E402
from core.generation import GenerationRequest  # noqa: E402
from core.studio import Studio, StudioOptions  # noqa: E402
from core.tasks import TASKS  # noqa: E402

PROMPT = "a lighthouse on a cliff at dawn, oil painting"


def alternate(a: Callable[[], object], b: Callable[[], object], rounds: int) -> tuple[float, float]:
    """Median seconds of `a` and of `b`, run alternately after one warm-up each."""
    a(), b()
    times_a, times_b = [], []
    for _ in range(rounds):
        for fn, times in ((a, times_a), (b, times_b)):
            started = time.perf_counter()
            fn()
            times.append(time.perf_counter() - started)
    return statistics.median(times_a), statistics.median(times_b)


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def studio_for(path: Path, dtype: str = "auto") -> Studio:
    studio = Studio(StudioOptions(device="cpu", offline=True))
    studio.load(str(path), variant="default", dtype=dtype)
    return studio


def request(args: argparse.Namespace, **fields) -> GenerationRequest:
    return GenerationRequest(
        prompt=PROMPT, steps=args.steps, width=args.size, height=args.size, seed=1, safety_checker=False, **fields
    )


def plain_call(pipe, args: argparse.Namespace) -> None:
    pipe(
        PROMPT,
        num_inference_steps=args.steps,
        width=args.size,
        height=args.size,
        generator=torch.Generator("cpu").manual_seed(1),
    )


def bench_switch(path: Path, args: argparse.Namespace) -> None:
    from diffusers import AutoPipelineForImage2Image

    studio = studio_for(path)
    pool = studio.pool
    before = pool.unique_bytes()
    task = TASKS["img2img"]

    def switch() -> None:
        pool.view(task, scheduler=schedulers.build("default", pool.base.scheduler), safety_checker=False)

    reloaded: list = []

    def reload() -> None:
        reloaded.clear()
        gc.collect()
        reloaded.append(AutoPipelineForImage2Image.from_pretrained(str(path), dtype=pool.dtype, use_safetensors=True))

    t_switch, t_reload = alternate(switch, reload, args.rounds)
    reload_bytes = sum(
        sum(t.numel() * t.element_size() for t in m.parameters())
        for m in reloaded[0].components.values()
        if isinstance(m, torch.nn.Module)
    )
    print(f"\n## switch: img2img through the pool vs. from_pretrained ({pool.dtype}, median of {args.rounds})")
    print(f"switch {t_switch * 1000:.2f} ms, reload {t_reload:.2f} s: the switch is {t_reload / t_switch:,.0f}x faster")
    print(f"bytes added: switch {pool.unique_bytes() - before:+,}, reload {reload_bytes:+,}")


def bench_views(path: Path, args: argparse.Namespace) -> None:
    studio = studio_for(path)
    pool = studio.pool
    scheduler = schedulers.build("default", pool.base.scheduler)
    process = psutil.Process()
    gc.collect()
    rss_before = process.memory_info().rss
    views = [pool.view(TASKS[t], scheduler=scheduler, safety_checker=False) for t in ("text2img", "img2img", "inpaint")]
    views.append(pool.view_as("sag", scheduler=scheduler))
    gc.collect()
    rss_after = process.memory_info().rss

    def tensors(pipes: list) -> dict[int, torch.Tensor]:
        found = {}
        for pipe in pipes:
            for module in pipe.components.values():
                if isinstance(module, torch.nn.Module):
                    found.update({id(t): t for t in (*module.parameters(), *module.buffers())})
        return found

    together = sum(t.numel() * t.element_size() for t in tensors(views).values())
    one = sum(t.numel() * t.element_size() for t in tensors([views[0]]).values())
    print("\n## views: text2img + img2img + inpaint + SAG held together vs. one pipeline")
    print(f"weights together {together:,} bytes, one pipeline {one:,} bytes: ratio {together / one:.4f}")
    print(f"process memory for building and holding the 4 views: {rss_after - rss_before:+,} bytes")


def bench_dtype(path: Path, args: argparse.Namespace) -> None:
    from diffusers import StableDiffusionPipeline

    studio = studio_for(path, "auto")
    plain = StableDiffusionPipeline.from_pretrained(str(path), use_safetensors=True)  # diffusers' default: float32
    plain.set_progress_bar_config(disable=True)
    t_auto, t_fp32 = alternate(lambda: studio.generate(request(args)), lambda: plain_call(plain, args), args.rounds)
    print(f"\n## dtype: the studio at dtype=auto ({studio.pool.dtype}) vs. a plain float32 diffusers call")
    ratio = t_fp32 / t_auto
    print(f"{args.size}x{args.size}, {args.steps} steps: auto {t_auto:.2f} s, float32 {t_fp32:.2f} s: {ratio:.2f}x")


def bench_previews(path: Path, args: argparse.Namespace) -> None:
    studio = studio_for(path, "auto")
    shown: list = []
    t_with, t_without = alternate(
        lambda: studio.generate(request(args, preview_every=1), on_preview=shown.append),
        lambda: studio.generate(request(args)),
        args.rounds,
    )
    print("\n## previews: a live preview every step vs. none")
    overhead = (t_with / t_without - 1) * 100
    print(f"with {t_with:.3f} s, without {t_without:.3f} s: {overhead:+.2f}% ({len(shown)} previews in all)")


def psnr(a, b) -> float:
    """Peak signal-to-noise ratio of two 8-bit images, in dB (infinite when equal). Written here: one line of numpy,
    where scikit-image would be a dependency for this alone."""
    import numpy as np

    mse = float(np.mean((np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255**2 / mse)


def bench_cache(path: Path, args: argparse.Namespace) -> None:
    studio = studio_for(path, "auto")
    intervals = (1, 2, 3, 4)  # 1: every step whole (off)
    times: dict[int, list[float]] = {n: [] for n in intervals}
    images: dict[int, object] = {}
    for n in intervals:  # a warm-up of each
        images[n] = studio.generate(request(args, step_cache=n)).images[0]
    for _ in range(args.rounds):
        for n in intervals:
            started = time.perf_counter()
            studio.generate(request(args, step_cache=n))
            times[n].append(time.perf_counter() - started)
    full = statistics.median(times[1])
    print(f"\n## cache: step caching (DeepCache) vs. every step whole ({studio.pool.dtype}, {args.size}x{args.size}, ")
    print(f"{args.steps} steps, median of {args.rounds}; PSNR of the image against the full run's, same seed)")
    print(f"every step whole: {full:.2f} s")
    for n in intervals[1:]:
        t = statistics.median(times[n])
        print(f"whole every {n} steps: {t:.2f} s, {full / t:.2f}x faster; PSNR {psnr(images[n], images[1]):.1f} dB")


def bench_tiny(path: Path, args: argparse.Namespace) -> None:
    from diffusers import AutoencoderTiny

    studio = studio_for(path, "auto")
    folder = Path(tempfile.mkdtemp()) / "taesd-sized"
    torch.manual_seed(0)
    AutoencoderTiny().save_pretrained(folder)  # TAESD's architecture (its defaults), random weights: its compute
    studio.load_companion("tiny_vae", str(folder))
    t_tiny, t_vae = alternate(
        lambda: studio.generate(request(args, tiny_decode=True)), lambda: studio.generate(request(args)), args.rounds
    )
    print(
        f"\n## tiny: the final decode by a TAESD-sized AutoencoderTiny vs. the checkpoint's VAE ({studio.pool.dtype})"
    )
    print(f"{args.size}x{args.size}, {args.steps} steps: tiny {t_tiny:.2f} s, VAE {t_vae:.2f} s: {t_vae / t_tiny:.2f}x")
    colours = studio_for(path, "auto")  # no tiny VAE: its previews are the latents' colours
    shown: list = []
    t_pictures, t_colours = alternate(
        lambda: studio.generate(request(args, preview_every=1), on_preview=shown.append),
        lambda: colours.generate(request(args, preview_every=1), on_preview=shown.append),
        args.rounds,
    )
    print("\n## previews every step: TAESD-sized pictures vs. the latents' colours")
    print(f"pictures {t_pictures:.2f} s, colours {t_colours:.2f} s: {(t_pictures / t_colours - 1) * 100:+.1f}%")


def bench_compile(path: Path, args: argparse.Namespace) -> None:
    import numpy as np

    # A fresh inductor cache, so the first compile is a cold one; the restart (another process) then finds it on disk.
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="inductor-")
    compiled, plain = studio_for(path, "auto"), studio_for(path, "auto")
    reference = np.asarray(plain.generate(request(args)).images[0], dtype=np.int16)
    compiled.set_compile(True)
    started = time.perf_counter()
    first = compiled.generate(request(args))
    first_s = time.perf_counter() - started
    restart = f"""import sys, time; sys.path.insert(0, {str(ROOT)!r})
from core.generation import GenerationRequest
from core.studio import Studio, StudioOptions
studio = Studio(StudioOptions(device="cpu", offline=True))
studio.load({str(path)!r}, variant="default", dtype="auto")
studio.set_compile(True)
started = time.perf_counter()
studio.generate(GenerationRequest(prompt={PROMPT!r}, steps={args.steps}, width={args.size}, height={args.size},
                                  seed=1, safety_checker=False))
print(time.perf_counter() - started)"""
    done = subprocess.run([sys.executable, "-c", restart], capture_output=True, text=True, check=True)
    again_s = float(done.stdout.strip().splitlines()[-1])
    t_compiled, t_plain = alternate(lambda: compiled.generate(request(args)), lambda: plain.generate(request(args)),
                                    args.rounds)  # fmt: skip
    difference = int(np.abs(np.asarray(first.images[0], dtype=np.int16) - reference).max())
    print(f"\n## compile: the UNet's blocks compiled (regional, {compile_mode.backend()}) vs. uncompiled "
          f"({compiled.pool.dtype}, {args.size}x{args.size}, {args.steps} steps)")  # fmt: skip
    print(f"first run {first_s:.1f} s (the compile); after a restart, cache on disk: {again_s:.1f} s")
    print(f"warm: compiled {t_compiled:.2f} s, uncompiled {t_plain:.2f} s: {t_plain / t_compiled:.2f}x; "
          f"largest pixel difference {difference} of 255")  # fmt: skip


def bench_layout(path: Path, args: argparse.Namespace) -> None:
    studio = studio_for(path, "auto")
    unet = studio.pool.base.unet

    def generate() -> None:
        studio.generate(request(args))

    def channels_last() -> None:
        unet.to(memory_format=torch.channels_last)
        try:
            studio.generate(request(args))
        finally:
            unet.to(memory_format=torch.contiguous_format)

    t_last, t_default = alternate(channels_last, generate, args.rounds)
    print(f"\n## layout: the UNet in channels_last vs. the default layout ({studio.pool.dtype}, CPU)")
    print(f"channels_last {t_last:.3f} s, default {t_default:.3f} s: {(t_last / t_default - 1) * 100:+.2f}%")


def bench_batch(path: Path, args: argparse.Namespace) -> None:
    import threading

    from core.batching import Batcher, Member
    from core.jobs import Worker

    studio, visitors, each = studio_for(path), 4, 2
    worker = Worker()
    batcher = Batcher(worker, studio.generate_batch, max_images=8, max_members=visitors)
    sizes: list[int] = []

    def ask(visitor: int, i: int) -> GenerationRequest:
        own = dict(prompt=f"{PROMPT}, view {visitor}.{i}", seed=100 * visitor + i, scheduler="Euler")
        return dataclasses.replace(request(args), **own)

    def together() -> None:  # each visitor asks again as soon as their last image arrives, as on a busy page
        futures: list = []

        def visitor(v: int) -> None:
            for i in range(each):
                futures.append(batcher.submit(Member(ask(v, i))))
                result = futures[-1].result()
                sizes.append(result.info.get("batch", {}).get("visitors", 1))

        threads = [threading.Thread(target=visitor, args=(v,)) for v in range(visitors)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for future in futures:
            future.result()  # a visitor's error is the bench's

    def one_at_a_time() -> None:
        for i in range(each):
            for v in range(visitors):
                worker.call(studio.generate, ask(v, i))

    t_together, t_alone = alternate(together, one_at_a_time, max(2, args.rounds // 2))
    images = visitors * each
    print(f"\n## batch: {visitors} visitors x {each} images each, asking at once vs. one at a time ({_settings(args)})")
    print(
        f"together {images / t_together:.3f} images/s (a call served {statistics.mean(sizes):.2f} visitors on "
        f"average), one at a time {images / t_alone:.3f} images/s: {t_alone / t_together:.2f}x the throughput"
    )


def _settings(args: argparse.Namespace) -> str:
    return f"bfloat16, {args.size}x{args.size}, {args.steps} steps, Euler"


def bench_app(path: Path, args: argparse.Namespace) -> None:
    from gradio_client import Client

    # Both sides run in fresh processes of their own, each generating on its main thread: the app as
    # `python app.py` (the client talks to it over HTTP, as a browser would), plain diffusers in
    # bench/plain_runner.py. Comparing against a call in this long-lived process instead measured the state of
    # the two processes (their allocators, pages) as much as the app.
    port, outputs = _free_port(), tempfile.mkdtemp(prefix="bench-outputs-")
    command = [sys.executable, "app.py", "--model", str(path), "--port", str(port), "--outputs", outputs]
    server = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    plain = None
    try:
        url = f"http://127.0.0.1:{port}/"
        _wait_for(lambda: _loaded(url), timeout=600)
        client = Client(url, verbose=False)
        dtype = client.predict(api_name="/memory")["components"][0]["dtype"]
        runner = [sys.executable, "bench/plain_runner.py", str(path), dtype, str(args.size), str(args.steps), PROMPT]
        plain = subprocess.Popen(
            runner, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
        )
        assert plain.stdout.readline().strip() == "ready"

        def plain_call() -> None:
            plain.stdin.write("go\n")
            plain.stdin.flush()
            assert plain.stdout.readline().strip() == "done"

        fields = dict(
            prompt=PROMPT,
            negative_prompt="",
            steps=args.steps,
            guidance_scale=7.5,
            width=args.size,
            height=args.size,
            seed=1,
            scheduler="default",
            num_images=1,
            safety_checker=False,
        )
        browser = BrowserLike(url, "text2img", fields)
        t_browser, t_plain = alternate(browser.call, plain_call, args.rounds)
        t_app, t_plain_2 = alternate(lambda: client.predict(**fields, api_name="/text2img"), plain_call, args.rounds)
    finally:
        for process in (server, plain):
            if process is not None:
                process.terminate()
                process.wait(timeout=60)
    print("\n## app: /text2img to `python app.py` end to end (validation, view, PNG with metadata, info,")
    settings = f"{dtype}, {args.size}x{args.size}, {args.steps} steps"
    print(f"snippet, HTTP, download) vs. the same plain diffusers call ({settings})")
    print(
        f"as a browser calls it (one session: join, the event stream, then the image fetched) {t_browser:.3f} s, "
        f"plain {t_plain:.3f} s: overhead {(t_browser / t_plain - 1) * 100:+.2f}%"
    )
    print(
        f"through gradio_client {t_app:.3f} s, plain {t_plain_2:.3f} s: overhead {(t_app / t_plain_2 - 1) * 100:+.2f}% "
        "(the client reads the event stream by polling every 50 ms: its own cost)"
    )


class BrowserLike:
    """An endpoint called the way the page calls it: one session kept (a new one costs Gradio ~80 ms to build its
    state of every component), `queue/join`, the session's event stream read as it comes, the first image fetched."""

    def __init__(self, url: str, api_name: str, fields: dict) -> None:
        import httpx

        config = httpx.get(f"{url}config", timeout=60).json()
        self.fn = next(d.get("id", i) for i, d in enumerate(config["dependencies"]) if d.get("api_name") == api_name)
        self.data = [fields.get(p.name, p.api_default) for p in TASKS[api_name].params]
        self.url, self.http, self.session = url, httpx.Client(timeout=600), "bench-browser"

    def call(self) -> None:
        import json

        from tests.app.attack import run_event

        said = run_event(self.url, self.fn, self.data, self.session, timeout=600, http=self.http)
        message = json.loads(said.splitlines()[-1][5:])  # the last one: process_completed
        assert message.get("msg") == "process_completed" and message.get("success"), message
        assert self.http.get(message["output"]["data"][0][0]["image"]["url"]).status_code == 200


def _free_port() -> int:
    from tests.launch import free_port

    return free_port()


def bench_cold(_path: Path, args: argparse.Namespace) -> None:
    """Two starts: the usual one (the demo twin already written, in the default cache) and the very first one (an
    empty DIFFUSION_STUDIO_CACHE: the twin is written during the start)."""
    print(f"\n## cold: `python app.py --model demo` (median of {args.cold_runs}; load on this machine: {_load()})")
    for label, fresh_cache in (("twin already written", False), ("first start, empty cache", True)):
        page, ready = [], []
        for _ in range(args.cold_runs):
            port = _free_port()
            url = f"http://127.0.0.1:{port}/"
            outputs = tempfile.mkdtemp(prefix="bench-cold-")
            env = dict(os.environ)
            if fresh_cache:
                env["DIFFUSION_STUDIO_CACHE"] = tempfile.mkdtemp(prefix="bench-cache-")
            command = [sys.executable, "app.py", "--model", "demo", "--port", str(port), "--outputs", outputs]
            started = time.perf_counter()
            process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                page.append(_wait_for(lambda url=url: urllib.request.urlopen(url, timeout=1).status == 200) - started)
                from gradio_client import Client

                client = Client(url, verbose=False)  # once: each new client fetches the page's 1.4 MB config
                ready.append(_wait_for(lambda c=client: c.predict(api_name="/memory")["pool_bytes"] > 0) - started)
            finally:
                process.terminate()
                process.wait(timeout=30)
        print(
            f"{label}: page answers after {statistics.median(page):.1f} s; the model is ready after "
            f"{statistics.median(ready):.1f} s"
        )


def _load() -> str:
    one, five, _fifteen = os.getloadavg()
    return f"load average {one:.1f} (1 min), {five:.1f} (5 min) on {psutil.cpu_count()} cores"


def _wait_for(check: Callable[[], bool], timeout: float = 120) -> float:
    """When `check()` first holds (errors count as not yet)."""
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        try:
            if check():
                return time.perf_counter()
        except Exception:  # connection refused, a page not up yet, a client that can't read the config yet
            pass
        time.sleep(0.05)
    raise TimeoutError("the app did not answer")


def _loaded(url: str) -> bool:
    from gradio_client import Client

    return Client(url, verbose=False).predict(api_name="/memory")["pool_bytes"] > 0


BENCHES = {
    "switch": bench_switch,
    "views": bench_views,
    "dtype": bench_dtype,
    "previews": bench_previews,
    "layout": bench_layout,
    "cache": bench_cache,
    "tiny": bench_tiny,
    "compile": bench_compile,
    "batch": bench_batch,
    "app": bench_app,
    "cold": bench_cold,
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default=",".join(BENCHES), help="comma-separated: " + ", ".join(BENCHES))
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=5, help="alternating runs of each side")
    parser.add_argument("--cold-runs", type=int, default=3)
    parser.add_argument(
        "--checkpoint", help="an SD 1.5 folder (Hub layout) with real weights, instead of the random one"
    )
    args = parser.parse_args()
    import diffusers

    print(f"# {cpu_name()}, {psutil.cpu_count()} cores, {psutil.virtual_memory().total / 2**30:.0f} GiB, no GPU")
    print(f"# torch {torch.__version__} ({torch.get_num_threads()} threads), diffusers {diffusers.__version__}")
    path = Path()
    if set(args.only.split(",")) - {"cold"}:  # the cold start runs on the demo twin: no 4 GB checkpoint for it
        path = Path(args.checkpoint) if args.checkpoint else sd15_sized_path()
        unet_params = sum(p.numel() for p in __import__("safetensors.torch").torch.load_file(
            str(path / "unet" / "diffusion_pytorch_model.safetensors")).values())  # fmt: skip
        print(
            f"# {datetime.date.today()}; checkpoint {path.name}: SD 1.5 architecture, UNet "
            f"{unet_params / 1e6:.0f}M params"
        )
    for name in args.only.split(","):
        BENCHES[name.strip()](path, args)
        gc.collect()
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
