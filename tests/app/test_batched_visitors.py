"""Visitors who ask for text to image at the same time share one pipeline call, and each gets what they'd get alone:
their own images, progress and Stop (core.batching)."""

from __future__ import annotations

import time

import numpy as np
from gradio_client import Client
from PIL import Image

from core.generation import ALONE_TOLERANCE
from tests.app.test_queue_and_stop import LONG, wait_until_running
from ui.results import notice_markdown

SMALL = {**LONG, "steps": 3, "width": 64, "height": 64}


def until(condition, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def occupied(app) -> tuple[Client, object]:
    """A long run of another visitor (another size: it shares no call), so the next requests gather behind it."""
    blocker = Client(app.url, verbose=False)
    job = blocker.submit(**LONG, api_name="/text2img")
    wait_until_running(app)
    until(lambda: job.status().progress_data, "the long run reports its steps")
    return blocker, job


def pixels(gallery: list) -> list[np.ndarray]:
    return [np.asarray(Image.open(item["image"]).convert("RGB"), dtype=np.int16) for item in gallery]


def test_visitors_asking_together_share_one_call_and_each_get_their_own_images(running_app):
    blocker, blocking = occupied(running_app)
    visitors = [Client(running_app.url, verbose=False) for _ in range(3)]
    asks = [dict(SMALL, prompt=f"a boat number {i}", seed=10 + i) for i in range(3)]
    jobs = [visitor.submit(**ask, api_name="/text2img") for visitor, ask in zip(visitors, asks, strict=True)]
    until(lambda: running_app.ctx.batcher.waiting() == 3, "all three wait behind the long run")
    blocker.predict(api_name="/stop_text2img")
    blocking.result(timeout=60)
    results = [job.result(timeout=120) for job in jobs]
    for (gallery, info), ask, visitor in zip(results, asks, visitors, strict=True):
        assert info["batch"] == {"visitors": 3, "images": 3}, "one call for the three"
        assert "one call with 2 other visitors (3 images)" in notice_markdown(info), (
            "the notice says why it took longer"
        )
        assert info["prompt"] == ask["prompt"] and info["seeds"] == [ask["seed"]]
        alone_gallery, alone_info = visitor.predict(**ask, api_name="/text2img")
        assert "batch" not in alone_info
        difference = np.abs(pixels(gallery)[0] - pixels(alone_gallery)[0]).max()
        assert difference <= ALONE_TOLERANCE["float32"], "the same image as the visitor's request alone"
    assert len({gallery[0]["image"] for gallery, _info in results}) == 3, "each visitor has their own file"


def test_one_visitors_stop_in_a_shared_call_ends_only_theirs(running_app):
    blocker, blocking = occupied(running_app)
    longer = dict(SMALL, steps=60, width=256, height=256)
    stopper, stayer = Client(running_app.url, verbose=False), Client(running_app.url, verbose=False)
    stopping = stopper.submit(**dict(longer, prompt="stop me", seed=1), api_name="/text2img")
    staying = stayer.submit(**dict(longer, prompt="keep me", seed=2), api_name="/text2img")
    until(lambda: running_app.ctx.batcher.waiting() == 2, "both wait behind the long run")
    blocker.predict(api_name="/stop_text2img")
    blocking.result(timeout=60)

    def stepping() -> bool:
        progress = stopping.status().progress_data
        return bool(progress) and (progress[-1].desc or "").startswith("Step")

    until(stepping, "the shared call reports its steps to the visitor")
    stopper.predict(api_name="/stop_text2img")
    _gallery, stopped = stopping.result(timeout=120)
    gallery, kept = staying.result(timeout=120)
    assert stopped["interrupted"] and 0 < stopped["stopped_at_step"] < 60
    assert not kept["interrupted"] and kept["batch"] == {"visitors": 2, "images": 2} and len(gallery) == 1
