"""Soak test: a few hundred mixed requests from several concurrent clients against `python app.py --model demo`.

    python bench/soak.py [--requests 300] [--clients 4]

Each request is one of a few seeded kinds (text to image with different schedulers, image to image, inpainting,
a memory poll). Every kind is first run alone for its reference pixels; under load every result must equal its
reference: exactly, or within core.generation.ALONE_TOLERANCE where it shared a call with other visitors
(core.batching: text to image requests that arrive together). Prints the errors (must be 0), mismatches (must be
0), how many results shared a call, p50/p95 latency, and the server's resident memory over the run, to show whether
it levels off.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import psutil  # noqa: E402
from gradio_client import Client, handle_file  # noqa: E402
from PIL import Image  # noqa: E402

from bench.sd15_suite import _free_port, _loaded, _wait_for  # noqa: E402
from core.generation import ALONE_TOLERANCE  # noqa: E402

BASE = dict(negative_prompt="", guidance_scale=7.0, num_images=1, safety_checker=False)


def kinds(inputs: Path) -> dict[str, tuple[str, dict]]:
    photo, mask = inputs / "photo.png", inputs / "mask.png"
    Image.new("RGB", (64, 64), (40, 160, 90)).save(photo)
    m = Image.new("L", (64, 64), 0)
    m.paste(255, (16, 16, 48, 48))
    m.save(mask)
    t2i = dict(BASE, width=64, height=64, steps=3)
    i2i = dict(BASE, strength=0.7, steps=3)
    return {
        "text2img/default": ("/text2img", dict(t2i, prompt="a red kite", seed=1, scheduler="default")),
        "text2img/Euler a": ("/text2img", dict(t2i, prompt="a blue boat", seed=2, scheduler="Euler a")),
        "text2img/DPM++ 2M": ("/text2img", dict(t2i, prompt="a green hill", seed=3, scheduler="DPM++ 2M")),
        "img2img": ("/img2img", dict(i2i, image=str(photo), prompt="autumn", seed=4, scheduler="DDIM")),
        "inpaint": ("/inpaint", dict(i2i, image=str(photo), mask=str(mask), prompt="a door", seed=5, scheduler="PNDM")),
        "memory": ("/memory", {}),
    }  # fmt: skip


def call(client: Client, endpoint: str, fields: dict) -> tuple[np.ndarray | None, dict]:
    """Run one request; its first image's pixels (None for the memory poll) and its info."""
    args = {k: handle_file(v) if k in ("image", "mask") else v for k, v in fields.items()}
    result = client.predict(**args, api_name=endpoint)
    if endpoint == "/memory":
        assert result["pool_bytes"] > 0
        return None, {}
    gallery, info = result
    with Image.open(gallery[0]["image"]) as image:
        return np.asarray(image.convert("RGB"), dtype=np.int16), info


def same(pixels: np.ndarray | None, info: dict, reference: np.ndarray | None) -> bool:
    if pixels is None or reference is None:
        return pixels is reference
    if "batch" not in info:
        return np.array_equal(pixels, reference)
    return pixels.shape == reference.shape and np.abs(pixels - reference).max() <= ALONE_TOLERANCE[info["dtype"]]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--clients", type=int, default=4)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="soak-"))
    port = _free_port()
    command = [sys.executable, "app.py", "--model", "demo", "--port", str(port), "--outputs", str(work / "outputs")]
    server = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/"
    try:
        _wait_for(lambda: _loaded(url), timeout=300)
        table = kinds(work)
        reference_client = Client(url, verbose=False)
        reference = {name: call(reference_client, *spec)[0] for name, spec in table.items()}

        rng = random.Random(0)
        plan = [rng.choice(list(table)) for _ in range(args.requests)]
        lock = threading.Lock()
        latencies: list[float] = []
        errors: list[str] = []
        mismatches: list[str] = []
        shared: list[int] = []  # the visitors of each call a text-to-image result came from
        memory: list[tuple[float, int]] = []
        started = time.perf_counter()
        process = psutil.Process(server.pid)

        def client_loop(index: int) -> None:
            client = Client(url, verbose=False)
            for name in plan[index :: args.clients]:
                t0 = time.perf_counter()
                try:
                    pixels, info = call(client, *table[name])
                except Exception as e:  # counted and shown, the run goes on
                    with lock:
                        errors.append(f"{name}: {type(e).__name__}: {e}")
                    continue
                with lock:
                    latencies.append(time.perf_counter() - t0)
                    if not same(pixels, info, reference[name]):
                        mismatches.append(name)
                    if name.startswith("text2img"):
                        shared.append(info.get("batch", {}).get("visitors", 1))

        def sample_memory(stop: threading.Event) -> None:
            while not stop.is_set():
                memory.append((time.perf_counter() - started, process.memory_info().rss))
                stop.wait(1.0)

        stop = threading.Event()
        sampler = threading.Thread(target=sample_memory, args=(stop,))
        sampler.start()
        clients = [threading.Thread(target=client_loop, args=(i,)) for i in range(args.clients)]
        for t in clients:
            t.start()
        for t in clients:
            t.join()
        stop.set()
        sampler.join()
        elapsed = time.perf_counter() - started
    finally:
        server.terminate()
        server.wait(timeout=60)

    quarters = [memory[i * len(memory) // 4 : (i + 1) * len(memory) // 4] for i in range(4)]
    rss = [statistics.median(m for _t, m in q) / 2**20 for q in quarters if q]
    counts = {name: plan.count(name) for name in table}
    print(f"# soak: {args.requests} requests from {args.clients} concurrent clients on the demo, {elapsed:.0f} s")
    print(f"mix: {', '.join(f'{n} x{c}' for n, c in counts.items())}")
    print(f"errors: {len(errors)}; results differing from the same request run alone: {len(mismatches)}")
    together = sum(1 for n in shared if n > 1)
    print(f"text-to-image results that shared a call with other visitors: {together} of {len(shared)}")
    for e in errors[:10]:
        print("  ", e)
    latencies.sort()
    p50, p95 = latencies[len(latencies) // 2], latencies[int(len(latencies) * 0.95) - 1]
    print(f"latency (queue wait included): p50 {p50:.2f} s, p95 {p95:.2f} s, max {latencies[-1]:.2f} s")
    print("server memory (median RSS per quarter of the run): " + " -> ".join(f"{r:.0f} MB" for r in rss))
    growth = (rss[-1] - rss[1]) / rss[1] * 100 if len(rss) == 4 else float("nan")
    print(f"growth from the 2nd to the 4th quarter: {growth:+.1f}%")
    return 0 if not errors and not mismatches else 1


if __name__ == "__main__":
    raise SystemExit(main())
