"""Start-up: a model that can't be had falls back to the demo, and the page says why."""

from __future__ import annotations

import app as app_module
from core import settings as settings_module
from ui.model_panel import banner_markdown, status_markdown


def test_unreachable_model_falls_back_to_the_demo_and_says_why(tmp_path):
    settings = settings_module.from_args(["--model", "nobody/not-cached", "--outputs", str(tmp_path)], env={})
    studio, ctx, blocks = app_module.build_app(settings)
    seen: list[str] = []
    load = studio.load

    def load_and_look(*args, **kwargs):
        seen.append(status_markdown(ctx))  # what the page shows as each load starts
        return load(*args, **kwargs)

    studio.load = load_and_look
    try:
        app_module.load_initial_model(ctx, settings, background=False)
        assert studio.model_info()["model"] == "demo"
        # Between the failed load and the demo's, the page once said "No model loaded yet. Pick one...".
        assert len(seen) == 2 and all("⏳ Loading the start-up model" in line for line in seen), seen
        banner = banner_markdown(ctx)
        assert "Could not load `nobody/not-cached`" in banner and "not in the local cache" in banner
        assert "offline demo checkpoint" in banner and "every image is noise" in banner
        assert "StableDiffusionPipeline" in status_markdown(ctx)
    finally:
        blocks.close()


def test_status_line_says_loading_until_the_model_is_there(tmp_path, monkeypatch):
    """The start-up load, in its thread as the app runs it, held at diffusers' from_pretrained until the status
    line has been read."""
    import threading

    from diffusers import DiffusionPipeline

    settings = settings_module.from_args(["--model", "demo", "--outputs", str(tmp_path)], env={})
    studio, ctx, blocks = app_module.build_app(settings)
    reached, release = threading.Event(), threading.Event()
    real = DiffusionPipeline.from_pretrained.__func__

    def slow(cls, *args, **kwargs):
        reached.set()
        assert release.wait(timeout=60)
        return real(cls, *args, **kwargs)

    monkeypatch.setattr(DiffusionPipeline, "from_pretrained", classmethod(slow))
    try:
        thread = app_module.load_initial_model(ctx, settings, background=True)
        assert reached.wait(timeout=60), "the load reached diffusers"
        assert status_markdown(ctx) == "⏳ Loading **demo**…"
        assert not studio.is_loaded
        release.set()
        thread.join(timeout=60)
        assert status_markdown(ctx).startswith("✅ **StableDiffusionPipeline**")
    finally:
        release.set()
        blocks.close()


def test_after_the_offline_fallback_companions_default_to_their_twins(tmp_path):
    """The README's default path without a network: every companion picker once offered its Hub id first, and
    Load failed offline. On the demo the tiny twin comes first; on a real model the real checkpoint does."""
    from ui.companion_box import companion_choices, default_companion

    settings = settings_module.from_args(["--model", "nobody/not-cached", "--outputs", str(tmp_path)], env={})
    _studio, ctx, blocks = app_module.build_app(settings)
    try:
        app_module.load_initial_model(ctx, settings, background=False)
        for kind in ("depth", "upscale_x4", "motion_adapter"):
            assert len(companion_choices(ctx, kind)) == 2, kind  # a curated Hub id and the twin
            assert default_companion(ctx, kind) == f"demo-{kind.replace('_', '-')}", kind
        # A control slot offers every control twin (ControlNet for SD and SDXL, T2I-Adapter) after its Hub id.
        for slot in ("controlnet", "controlnet_2"):
            choices = companion_choices(ctx, slot)
            assert choices[1:] == ["demo-controlnet", "demo-controlnet-sdxl", "demo-t2i-adapter", "demo-controlnet-xs"]
            assert default_companion(ctx, slot) == "demo-controlnet"
        # The page sets these again each time it opens (the fallback ends after the page was built).
        assert any("demo-depth" in str(refresh()) for refresh, _outputs in ctx.on_page_open)
    finally:
        blocks.close()
