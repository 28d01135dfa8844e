"""Hub and tool-world features in a real browser: the size check, PNG info sent to a tab, the cache browser."""

from __future__ import annotations

import re

from PIL import Image, PngImagePlugin
from playwright.sync_api import Page, expect

from tests.browser.test_page import open_tab, shot

WEBUI = (
    "a lighthouse at dusk\nNegative prompt: blurry\n"
    "Steps: 7, Sampler: Euler a, CFG scale: 4.5, Seed: 31337, Size: 128x192, Model: v1-5"
)


def test_check_size_before_loading(page: Page):
    expect(page.locator("#model-status")).to_contain_text("StableDiffusionPipeline", timeout=30_000)
    page.locator("#check-button").click()
    card = page.locator("#preflight")
    expect(card).to_contain_text("StableDiffusionPipeline", timeout=30_000)
    expect(card).to_contain_text("fits")
    expect(card).to_contain_text("unet")
    shot(page, "preflight")


def test_png_info_reads_a_web_ui_png_and_sends_it_to_text_to_image(page: Page, tmp_path):
    meta = PngImagePlugin.PngInfo()
    meta.add_text("parameters", WEBUI)
    png = tmp_path / "webui.png"
    Image.new("RGB", (128, 192), (90, 60, 30)).save(png, pnginfo=meta)
    expect(page.locator("#model-status")).to_contain_text("StableDiffusionPipeline", timeout=30_000)
    open_tab(page, "PNG info")
    page.locator("#png-info-upload input[type=file]").set_input_files(str(png))
    expect(page.locator("#png-info-summary")).to_contain_text("web UI", timeout=30_000)
    expect(page.locator("#png-info-summary")).to_contain_text("seed 31337")
    expect(page.locator("#png-info-to-text2img")).to_have_class(re.compile(r"\bprimary\b"))  # where it was made
    expect(page.locator("#png-info-to-img2img")).not_to_have_class(re.compile(r"\bprimary\b"))
    shot(page, "png-info")

    page.locator("#png-info-to-text2img").click()
    expect(page.locator("#text2img-prompt textarea")).to_have_value("a lighthouse at dusk", timeout=10_000)
    expect(page.locator("#tab-text2img").locator("input[type=number]").first).to_have_value("7")
    expect(page.locator("#scheduler input")).to_have_value("Euler a")
    shot(page, "png-info-sent")


def test_png_info_of_a_batch_image_offers_the_whole_batch_for_exact_pixels(page: Page, tmp_path):
    from core.outputs import png_metadata

    info = {"task": "text2img", "prompt": "two boats", "seeds": [500, 501], "steps": 3, "width": 64, "height": 64}
    png = tmp_path / "second.png"
    Image.new("RGB", (64, 64), (20, 40, 60)).save(png, pnginfo=png_metadata(info, 1))
    expect(page.locator("#model-status")).to_contain_text("StableDiffusionPipeline", timeout=30_000)
    open_tab(page, "PNG info")
    page.locator("#png-info-upload input[type=file]").set_input_files(str(png))
    summary = page.locator("#png-info-summary")
    expect(summary).to_contain_text("Image 2 of a batch of 2", timeout=30_000)
    expect(summary).to_contain_text("near-identical")
    whole = page.locator("#png-info-whole-batch input[type=checkbox]")
    expect(whole).to_be_visible()
    shot(page, "png-info-batch")

    page.locator("#png-info-to-text2img").click()  # alone: its own seed, one image
    tab = page.locator("#tab-text2img")
    expect(page.locator("#text2img-prompt textarea")).to_have_value("two boats", timeout=10_000)
    expect(tab.get_by_label("Seed (-1 = random)")).to_have_value("501")
    expect(page.locator("#text2img-num-images input[type=number]")).to_have_value("1")

    open_tab(page, "PNG info")
    whole.check()
    page.locator("#png-info-to-text2img").click()  # the whole batch: its first seed and its size
    expect(tab.get_by_label("Seed (-1 = random)")).to_have_value("500", timeout=10_000)
    expect(page.locator("#text2img-num-images input[type=number]")).to_have_value("2")


def test_png_info_names_an_images_loras_and_loads_them(page: Page, tmp_path, browser_app):
    from core.outputs import png_metadata

    info = {
        "task": "text2img", "prompt": "a kite", "seeds": [8], "steps": 3, "width": 64, "height": 64,
        "sampler": "Euler", "schedule_type": "Uniform", "model": "demo",
        "loras": [{"name": "demo-lora", "adapter": "demo_lora", "source": "demo-lora", "weight": 0.6, "hash": None}],
    }  # fmt: skip
    png = tmp_path / "lora.png"
    Image.new("RGB", (64, 64), (20, 40, 60)).save(png, pnginfo=png_metadata(info, 0))
    expect(page.locator("#model-status")).to_contain_text("StableDiffusionPipeline", timeout=30_000)
    open_tab(page, "PNG info")
    page.locator("#png-info-upload input[type=file]").set_input_files(str(png))
    expect(page.locator("#png-info-summary")).to_contain_text("LoRAs: demo-lora at 0.6", timeout=30_000)
    try:
        page.locator("#png-info-load-loras").click()
        expect(page.locator("#png-info-lora-note")).to_contain_text("Loaded demo-lora at 0.6", timeout=60_000)
        assert {n: lora.weight for n, lora in browser_app.studio.loras.loras.items()} == {"demo_lora": 0.6}
        shot(page, "png-info-loras")
    finally:
        if browser_app.studio.loras.loras:  # the page is shared: the next test gets the bare checkpoint
            browser_app.studio.unload_lora("demo_lora")


def test_checkpoints_tab_lists_loads_and_asks_before_deleting(page: Page, hub_cache, demo_dir, browser_app):
    hub_cache(demo_dir, "browsertest/cached")
    expect(page.locator("#model-status")).to_contain_text("StableDiffusionPipeline", timeout=30_000)
    open_tab(page, "Checkpoints")
    expect(page.locator("#cache-table")).to_contain_text("browsertest/cached", timeout=30_000)
    expect(page.locator("#cache-table")).to_contain_text("default, fp16, non_ema")
    page.locator("#cache-delete").click()  # with nothing picked: once no answer at all
    expect(page.locator('[data-testid="toast-body"]')).to_contain_text("Pick a cached checkpoint first")
    page.locator("#cache-choice input").fill("browsertest/cached")
    page.locator("#cache-choice input").press("Enter")
    page.locator("#cache-load").click()  # one click loads it, with the variant and dtype of the model panel
    try:
        expect(page.locator("#model-status")).to_contain_text("browsertest/cached", timeout=60_000)
        page.locator("#cache-delete").click()
        page.locator("#cache-confirm-delete").click()
        expect(page.get_by_text("load another checkpoint first")).to_be_visible()  # not while it is loaded
    finally:
        browser_app.studio.load("demo", variant="default", dtype="float32")
    page.locator("#cache-delete").click()
    expect(page.locator("#cache-confirm")).to_contain_text("browsertest/cached")
    shot(page, "cache-confirm")
    page.locator("#cache-confirm-delete").click()
    expect(page.locator("#cache-table")).not_to_contain_text("browsertest/cached", timeout=30_000)


def test_loading_a_hub_checkpoint_shows_its_download_progress(page: Page, demo_dir, monkeypatch, browser_app):
    from tests.fake_hub import serving

    expect(page.locator("#model-status")).to_contain_text("StableDiffusionPipeline", timeout=30_000)
    with serving({"browserhub/sd": demo_dir}, monkeypatch, bytes_per_second=600_000):
        source = page.locator("#model-source input")
        source.fill("browserhub/sd")
        source.press("Enter")
        try:
            page.locator("#load-button").click()
            expect(page.get_by_text("Downloading browserhub/sd:").first).to_be_visible(timeout=30_000)
            shot(page, "download-progress")
            expect(page.locator("#model-status")).to_contain_text("browserhub/sd", timeout=90_000)
        finally:
            browser_app.studio.load("demo", variant="default", dtype="float32")


def test_a_failed_load_puts_back_the_model_that_still_serves(page: Page):
    """The bad id stayed in the box while the demo served, and the red pill covered the status line."""
    expect(page.locator("#model-status")).to_contain_text("StableDiffusionPipeline", timeout=30_000)
    box = page.locator("#model-source input")
    box.fill("nobody/not-a-model")
    box.press("Enter")
    expect(box).to_have_value("nobody/not-a-model")  # kept while the page-open refresh lands (it was replaced)
    page.wait_for_timeout(1500)
    expect(box).to_have_value("nobody/not-a-model")
    page.locator("#load-button").click()
    expect(page.locator('[data-testid="toast-body"]')).to_contain_text("nobody/not-a-model", timeout=30_000)
    expect(box).not_to_have_value("nobody/not-a-model", timeout=15_000)
    expect(page.locator("#model-status")).to_contain_text("StableDiffusionPipeline")  # readable, not covered
    shot(page, "failed-load")
