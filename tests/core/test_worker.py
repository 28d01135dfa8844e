"""The worker that runs generations: one job at a time, on the thread that serves it, errors handed back; and the
record of what each visitor's galleries show."""

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
    claimed = threading.Event()

    def serve() -> None:
        worker.claim()
        claimed.set()  # from here a job waits for this thread, even before it serves
        worker.serve(stop)

    server = threading.Thread(target=serve, name="main-like")
    server.start()
    assert claimed.wait(timeout=5)
    var.set("caller's")
    assert worker.call(lambda: (threading.current_thread().name, var.get())) == ("main-like", "caller's")
    assert worker.call(lambda: worker.call(lambda: "nested")) == "nested", "a job may hand on work without a deadlock"
    stop.set()
    server.join(timeout=5)
    assert not server.is_alive()


def test_shown_results_are_looked_up_per_visitor_and_a_lone_image_needs_no_click():
    from core.jobs import ShownResults

    shown = ShownResults(max_sessions=2)
    shown.put("alice", "text2img", ["a.png"])
    shown.put("bob", "text2img", ["b1.png", "b2.png"])
    assert shown.get("alice", "text2img", 0) == "a.png"
    assert shown.only("alice", "text2img") == "a.png", "one image: Send needs no selection"
    assert shown.only("bob", "text2img") is None, "two images: which one is the visitor's to say"
    assert shown.get("bob", "text2img", 1) == "b2.png"
    assert [shown.get("bob", "text2img", i) for i in (2, -1, True, "0", None)] == [None] * 5
    assert shown.only("mallory", "text2img") is None and shown.get("mallory", "text2img", 0) is None
    shown.put("carol", "text2img", ["c.png"])
    assert shown.get("alice", "text2img", 0) is None, "the oldest visitor's record goes first"
