"""The worker that runs generations: one job at a time, on the thread that serves it, errors handed back."""

from __future__ import annotations

import contextvars
import threading
import time

import pytest

from core.jobs import Worker


def test_jobs_run_one_at_a_time_on_one_thread_and_errors_come_back():
    worker = Worker()
    seen: list[str] = []
    running = []

    def job(i: int) -> int:
        running.append(i)
        assert len(running) == 1, "never two at once"
        seen.append(threading.current_thread().name)
        time.sleep(0.02)
        running.pop()
        return i * 2

    futures = [worker.submit(job, i) for i in range(5)]
    threads = [threading.Thread(target=lambda: futures.append(worker.submit(job, 9))) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [f.result(timeout=5) for f in futures] == [0, 2, 4, 6, 8, 18, 18, 18]
    assert set(seen) == {"studio-worker"}
    with pytest.raises(ZeroDivisionError):
        worker.call(lambda: 1 / 0)
    assert worker.call(lambda: "still serving") == "still serving"


def test_a_claimed_thread_serves_and_jobs_see_the_callers_context():
    worker, stop = Worker(), threading.Event()
    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")
    results: dict[str, str] = {}

    def serve() -> None:
        worker.claim()
        results["server"] = threading.current_thread().name
        worker.serve(stop)

    server = threading.Thread(target=serve, name="main-like")
    server.start()
    time.sleep(0.05)
    var.set("caller's")
    assert worker.call(lambda: (threading.current_thread().name, var.get())) == ("main-like", "caller's")
    assert worker.call(lambda: worker.call(lambda: "nested")) == "nested", "a job may hand on work without a deadlock"
    stop.set()
    server.join(timeout=5)
    assert not server.is_alive()
