"""UI translation helpers that need no server: the painted mask, the notice a user reads."""

from __future__ import annotations

import time

import numpy as np
from PIL import Image

from ui.results import notice_markdown
from ui.task_tab import mask_from_editor


def test_painted_layers_become_a_white_on_black_mask():
    background = Image.new("RGB", (80, 60), (10, 20, 30))
    layer = Image.new("RGBA", (80, 60), (0, 0, 0, 0))
    layer.paste((255, 255, 255, 255), (10, 10, 30, 20))
    mask = mask_from_editor({"background": background, "layers": [layer], "composite": background})
    assert mask.mode == "L" and mask.size == (80, 60)
    pixels = np.asarray(mask)
    assert pixels[15, 20] == 255 and pixels[40, 60] == 0
    assert (pixels == 255).sum() == 20 * 10


def test_nothing_painted_means_no_mask():
    background = Image.new("RGB", (8, 8))
    empty = Image.new("RGBA", (8, 8), (0, 0, 0, 0))
    assert mask_from_editor({"background": background, "layers": [empty]}) is None
    assert mask_from_editor(None) is None


def test_notice_says_which_images_were_flagged_and_that_a_run_stopped():
    info = {
        "nsfw": [False, True],
        "interrupted": True,
        "warnings": ["The prompt is 90 tokens"],
        "seeds": [1, 2],
        "scheduler": "Euler a",
        "scheduler_class": "EulerAncestralDiscreteScheduler",
        "steps": 20,
        "width": 512,
        "height": 512,
        "timings": {"generate_ms": 1500.0, "switch_ms": 1.2},
    }
    text = notice_markdown(info)
    assert "flagged image 2;" in text and "Stopped early" in text and "90 tokens" in text
    assert "Seeds [1, 2]" in text and "1.50 s" in text


def test_the_memory_line_of_a_device_that_cant_be_read_says_so():
    from ui.memory_panel import summary_markdown

    report = {
        "device": "cuda",
        "device_name": "cuda (its memory can't be read in this process)",
        "readable": False,
        **dict.fromkeys(("total_bytes", "free_bytes", "allocated_bytes", "reserved_bytes", "peak_bytes"), 0),
        "process_rss_bytes": 600 * 1024**2,
        "pool_bytes": 100,
        "naive_bytes": 300,
        "components": [],
    }
    line = summary_markdown(report)
    assert "can't be read" in line and "attached only while a generation runs" in line and "600" in line
    assert "VRAM used" not in line


def test_a_toast_shows_code_as_quotes_and_never_the_visitors_html():
    """Gradio renders a toast's message as HTML: backticks once showed literally, and a typed id is text."""
    from core.errors import LoadError
    from ui.common import user_errors

    @user_errors
    def load(source: str) -> None:
        raise LoadError(f"Could not load {source!r}; load `demo` or a local folder.")

    try:
        load("<img src=x onerror=alert(1)>")
    except Exception as e:  # gr.Error
        message = e.message
    assert "“demo”" in message and "`" not in message
    assert "<img" not in message and "&lt;img" in message


def test_the_progress_comes_back_right_after_each_live_preview(monkeypatch):
    """Gradio's page cleared the bar at each preview until the next step reported (about 2 s on a CPU)."""
    import types

    monkeypatch.setattr("ui.results.PREVIEW_EVERY_S", 0.1)

    from core.generation import GenerationRequest, GenerationResult
    from core.jobs import CancelFlags, ShownResults, Worker
    from ui.results import stream_request

    class Studio:
        def generate(self, request, *, session, on_step, cancel, on_preview):
            for step in (1, 2):
                on_step(step, 2)
                on_preview([f"preview {step}"])
                time.sleep(0.3)  # the stream picks the preview up meanwhile
            return GenerationResult(images=[], info={"task": "text2img"})

    reports: list = []
    ctx = types.SimpleNamespace(cancel_flags=CancelFlags(), shown=ShownResults(), worker=Worker(), studio=Studio())
    request = GenerationRequest(prompt="x", preview_every=1)
    items = list(stream_request(ctx, request, "visitor", lambda *a, **k: reports.append(a)))
    assert [i for i in items if not isinstance(i, GenerationResult)] == [["preview 1"], ["preview 2"]]
    steps = [r[0] for r in reports if r and isinstance(r[0], tuple)]
    assert steps == [(1, 2), (1, 2), (2, 2), (2, 2)], "each step's report is repeated after its preview"


def test_fast_previews_reach_the_page_spaced_out_and_the_newest_one_each_time(monkeypatch):
    """A fast model's preview every 2 steps re-rendered the page's gallery ten times a second: Chromium was still
    busy 20 s after the run ended and the page answered nothing meanwhile."""
    import types

    from core.generation import GenerationRequest, GenerationResult
    from core.jobs import CancelFlags, ShownResults, Worker
    from ui.results import stream_request

    monkeypatch.setattr("ui.results.PREVIEW_EVERY_S", 0.2)

    class Studio:
        def generate(self, request, *, session, on_step, cancel, on_preview):
            for step in range(1, 41):  # 40 previews in about 0.8 s
                on_preview([step])
                time.sleep(0.02)
            return GenerationResult(images=[], info={"task": "text2img"})

    ctx = types.SimpleNamespace(cancel_flags=CancelFlags(), shown=ShownResults(), worker=Worker(), studio=Studio())
    request = GenerationRequest(prompt="x", preview_every=1)
    started = time.monotonic()
    items = [i for i in stream_request(ctx, request, "visitor", lambda *a, **k: None)]
    previews = [i[0] for i in items if not isinstance(i, GenerationResult)]
    assert isinstance(items[-1], GenerationResult) and time.monotonic() - started < 2.0, "the run is not held back"
    assert 2 <= len(previews) <= 6, previews
    assert previews == sorted(previews) and previews[0] < 10 and previews[-1] > 25, "each one the newest at the time"
