"""Task switching through the pool vs. loading each task's pipeline with from_pretrained, measured side by side.

    python bench/pool_switch.py [--model demo] [--dtype float32] [--repeats 20]

Prints the checkpoint's load time, the median time to switch task through the pool (a `from_pipe` view with
its own scheduler), the median time to load the same task pipeline from disk instead, their ratio, and the pool's
unique bytes before and after switching through every task.
"""

from __future__ import annotations

import argparse
import gc
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core import schedulers
from core.studio import Studio, StudioOptions
from core.tasks import BASE_TASKS, TASKS


def median_seconds(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="demo")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()

    studio = Studio(StudioOptions(device="cpu", offline=True))
    started = time.perf_counter()
    studio.load(args.model, variant="default", dtype=args.dtype)
    load_seconds = time.perf_counter() - started
    pool = studio.pool
    before = pool.unique_bytes()
    print(f"# {platform.processor() or platform.machine()}, torch threads: {__import__('torch').get_num_threads()}")
    print(f"checkpoint {args.model!r} ({args.dtype}) loaded in {load_seconds * 1000:.0f} ms; pool {before:,} bytes")
    print(f"{'task':10} {'switch (pool)':>14} {'reload (disk)':>14} {'ratio':>8}")
    for name in BASE_TASKS:
        task = TASKS[name]

        def switch(task=task) -> None:
            pool.view(task, scheduler=schedulers.build("default", pool.base.scheduler), safety_checker=True)

        def reload(task=task) -> None:
            pipe = task.auto_class.from_pretrained(str(pool.files.path), dtype=pool.dtype, use_safetensors=True)
            del pipe
            gc.collect()

        t_switch = median_seconds(switch, args.repeats)
        t_reload = median_seconds(reload, max(3, args.repeats // 4))
        print(f"{name:10} {t_switch * 1000:11.2f} ms {t_reload * 1000:11.1f} ms {t_reload / t_switch:7.0f}x")
    after = pool.unique_bytes()
    print(f"pool bytes before switching {before:,}, after {after:,}: {after - before:+,} bytes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
