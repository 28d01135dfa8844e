"""The queue as visitors feel it: Stop ends a run within a step, memory polling never waits behind a run,
and each visitor's history holds only their own images."""

from __future__ import annotations

import contextlib
import ctypes
import gc
import time

import pytest
from gradio_client import Client

LONG = dict(
    prompt="slow",
    negative_prompt="",
    steps=150,
    guidance_scale=7.0,
    width=512,
    height=512,
    seed=1,
    scheduler="Euler",
    num_images=1,
    safety_checker=False,
)


def settled_memory(app) -> dict:
    """The memory report once freed memory is really free: collected, and (glibc) handed back by the allocator, so
    what remains is what something still holds, not the allocator's cache of freed blocks."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    return app.studio.memory_report()


def wait_until_running(studio, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if studio.ctx.cancel_flags._flags:
            return
        time.sleep(0.05)
    raise AssertionError("the generation never started")


def test_stop_ends_the_run_early_and_the_next_run_is_normal(running_app):
    visitor = Client(running_app.url, verbose=False)
    visitor.predict(**{**LONG, "steps": 2}, api_name="/text2img")  # a 512x512 run's buffers exist once already
    before = settled_memory(running_app)
    job = visitor.submit(**LONG, api_name="/text2img")
    wait_until_running(running_app)
    time.sleep(0.5)
    stopped_at = time.monotonic()
    visitor.predict(api_name="/stop_text2img")
    _gallery, info = job.result(timeout=60)
    assert info["interrupted"] is True
    assert time.monotonic() - stopped_at < 10, "Stop took effect within a step, not after 150"
    after = settled_memory(running_app)
    assert after["pool_bytes"] == before["pool_bytes"]
    grown = after["process_rss_bytes"] - before["process_rss_bytes"]
    assert grown < 64 * 2**20, f"memory is back to its level before the stopped run (+{grown / 2**20:.0f} MB)"
    _gallery, info = visitor.predict(**{**LONG, "steps": 2, "width": 64, "height": 64}, api_name="/text2img")
    assert info["interrupted"] is False


def test_one_visitors_stop_does_not_stop_another(running_app):
    runner, other = Client(running_app.url, verbose=False), Client(running_app.url, verbose=False)
    job = runner.submit(**{**LONG, "steps": 12, "width": 256, "height": 256}, api_name="/text2img")
    wait_until_running(running_app)
    other.predict(api_name="/stop_text2img")
    _gallery, info = job.result(timeout=120)
    assert info["interrupted"] is False


def test_memory_answers_while_a_generation_runs(running_app):
    runner, watcher = Client(running_app.url, verbose=False), Client(running_app.url, verbose=False)
    job = runner.submit(**{**LONG, "steps": 60}, api_name="/text2img")
    wait_until_running(running_app)
    started = time.monotonic()
    report = watcher.predict(api_name="/memory")
    answered_in = time.monotonic() - started
    assert not job.done(), "the generation was still running when memory answered"
    assert report["pool_bytes"] > 0 and answered_in < 5
    runner.predict(api_name="/stop_text2img")
    job.result(timeout=60)


def test_history_is_every_saved_image_locally_and_the_visitors_own_in_public(running_app):
    """History once lived in the browser session: a reload emptied it. Locally it is now the outputs folder,
    newest first, from any session; a public server still shows each visitor only their own."""
    import dataclasses

    from ui.history_tab import history_items

    alice, bob = Client(running_app.url, verbose=False), Client(running_app.url, verbose=False)
    alice.predict(**{**LONG, "steps": 2, "width": 64, "height": 64, "seed": 111}, api_name="/text2img")
    bob.predict(**{**LONG, "steps": 2, "width": 64, "height": 64, "seed": 222}, api_name="/text2img")

    class Request:  # what gradio hands a handler: only the session id matters here
        def __init__(self, session_hash: str) -> None:
            self.session_hash = session_hash

    after_a_reload = history_items(running_app.ctx, Request("a-new-browser-session"))
    captions = [caption for _path, caption in after_a_reload]
    assert captions[:2] == [
        "text2img · Euler · 2 steps · seed 222 · slow",
        "text2img · Euler · 2 steps · seed 111 · slow",
    ]
    public = dataclasses.replace(running_app.ctx, settings=dataclasses.replace(running_app.ctx.settings, public=True))
    alice_items = history_items(public, Request(alice.session_hash))
    assert [caption for _path, caption in alice_items] == ["text2img · Euler · 2 steps · seed 111 · slow"]
    bob_items = history_items(public, Request(bob.session_hash))
    assert [caption for _path, caption in bob_items] == ["text2img · Euler · 2 steps · seed 222 · slow"]
    assert history_items(public, Request("a-new-browser-session")) == []


def test_stop_during_live_previews_still_delivers_the_stopped_image(running_app):
    visitor = Client(running_app.url, verbose=False)
    job = visitor.submit(**LONG, preview_every=5, api_name="/text2img")
    wait_until_running(running_app)
    deadline = time.monotonic() + 60  # a preview first (every 5 steps), however slow the machine is today
    while not job.outputs() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert job.outputs(), "no live preview came while denoising"
    visitor.predict(api_name="/stop_text2img")
    gallery, info = job.result(timeout=60)
    assert info["interrupted"] is True and len(gallery) == 1
    assert len(job.outputs()) >= 2, "previews came first"


def test_a_full_queue_says_busy_and_the_waiting_runs_still_finish(tmp_path):
    from gradio_client.utils import QueueError, Status

    from tests.launch import start_app

    # One at a time: with batched visitors (the default), the next few text-to-image requests wait on the worker
    # for a call to share instead of in Gradio's queue (tests/app/test_batched_visitors.py).
    app = start_app(tmp_path, "--queue-size", "1", "--batch-visitors", "1")
    try:
        first, second, third = (Client(app.url, verbose=False) for _ in range(3))
        running = first.submit(**{**LONG, "steps": 40, "width": 256, "height": 256}, api_name="/text2img")
        wait_until_running(app)
        waiting = second.submit(**{**LONG, "steps": 2, "width": 64, "height": 64}, api_name="/text2img")
        deadline = time.monotonic() + 10
        while waiting.status().code != Status.IN_QUEUE and time.monotonic() < deadline:
            time.sleep(0.05)
        status = waiting.status()
        assert status.code == Status.IN_QUEUE and status.rank == 0, "the waiting visitor sees their place"
        with pytest.raises(QueueError, match="Queue is full! Please try again"):  # what the visitor reads
            third.predict(**{**LONG, "steps": 2, "width": 64, "height": 64}, api_name="/text2img")
        assert running.result(timeout=120)[1]["interrupted"] is False
        assert waiting.result(timeout=120)[1]["steps"] == 2, "the visitor who waited is served"
        third.predict(**{**LONG, "steps": 2, "width": 64, "height": 64}, api_name="/text2img")  # room again
    finally:
        app.app.close()


def test_auth_refuses_visitors_without_the_login(tmp_path):
    import httpx

    from tests.launch import start_app

    app = start_app(tmp_path, "--auth", "ann:s3cret")
    try:
        from gradio_client.exceptions import AuthenticationError

        assert httpx.get(app.url + "config").status_code == 401, "not even the page's config without logging in"
        with pytest.raises(AuthenticationError, match=r"credentials were not provided\. Please login"):
            Client(app.url, verbose=False)
        with pytest.raises(ValueError, match="Could not login to"):
            Client(app.url, auth=("ann", "wrong"), verbose=False)
        visitor = Client(app.url, auth=("ann", "s3cret"), verbose=False)
        gallery, _info = visitor.predict(**{**LONG, "steps": 2, "width": 64, "height": 64}, api_name="/text2img")
        assert len(gallery) == 1
    finally:
        app.app.close()


def test_history_captions_are_read_once_per_file_and_never_decode_pixels(running_app, monkeypatch):
    """History was refilled on every live-preview frame, opening up to 200 PNGs each time."""
    from PIL import PngImagePlugin

    from ui import history_tab

    class Request:
        def __init__(self, session_hash: str) -> None:
            self.session_hash = session_hash

    client = Client(running_app.url, verbose=False)
    client.predict(**{**LONG, "steps": 2, "width": 64, "height": 64, "num_images": 2}, api_name="/text2img")
    first = history_tab.history_items(running_app.ctx, Request(client.session_hash))
    assert len(first) >= 2 and all("text2img · Euler · 2 steps · seed" in caption for _path, caption in first[:2])

    def no_decoding(self, *args, **kwargs):
        raise AssertionError("History decoded a PNG")

    monkeypatch.setattr(PngImagePlugin.PngImageFile, "load", no_decoding)
    monkeypatch.setattr(history_tab, "text_chunks", lambda path: (_ for _ in ()).throw(AssertionError("re-read")))
    assert history_tab.history_items(running_app.ctx, Request(client.session_hash)) == first, "cached per file"


def test_nothing_blanks_the_stopped_notice_after_stop_cancels_a_run(running_app):
    """Gradio's page runs a cancelled event's `.then` listeners with the inputs as they were: a notice filled that
    way raced Stop's "stopped at step N" notice and blanked it whenever it answered last (seen on a loaded CI
    machine). Listeners after a run Stop cancels may write the notice or the code only on success."""
    from tests.app import attack

    conf = attack.config(running_app.url)
    by_id = {c["id"]: c.get("props", {}).get("elem_id") or "" for c in conf["components"]}
    cancelled = {fn for dependency in conf["dependencies"] for fn in dependency.get("cancels") or []}
    assert cancelled, "every Stop button cancels its tab's run"
    followers = [d for d in conf["dependencies"] if d.get("trigger_after") in cancelled]
    writes = [d for d in followers if any(by_id.get(o, "").endswith(("-notice", "-code")) for o in d["outputs"])]
    assert len(writes) >= len(cancelled) - 1, "each tab's notice is filled after its run (compare has its own)"
    assert all(d["trigger_only_on_success"] for d in writes), [
        sorted(by_id.get(o) for o in d["outputs"]) for d in writes if not d["trigger_only_on_success"]
    ]
