"""ControlNet in the page: a control image through its preprocessor, the map shown and used as is, a run."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw
from playwright.sync_api import Page, expect

from tests.browser.test_page import generate_and_wait, open_tab, set_slider, shot


def test_a_control_image_with_its_preprocessor_steers_a_run(page: Page, tmp_path):
    drawing = tmp_path / "drawing.png"
    picture = Image.new("RGB", (128, 128), "white")
    ImageDraw.Draw(picture).ellipse((24, 24, 104, 104), outline="black", width=6)
    picture.save(drawing)
    expect(page.locator("#model-status")).to_contain_text("StableDiffusionPipeline", timeout=30_000)
    open_tab(page, "ControlNet", shows="#controlnet-control-image")
    page.locator("#companion-load-controlnet").click()
    expect(page.locator("#companion-status-controlnet")).to_contain_text("demo-controlnet", timeout=60_000)
    page.locator("#controlnet-control-image input[type=file]").set_input_files(str(drawing))
    expect(page.locator("#controlnet-control-image img")).to_be_visible()
    page.locator("#controlnet-preprocessor").get_by_text("scribble", exact=True).click()
    page.locator("#controlnet-control-image-preview").click()
    shown = page.locator("#controlnet-control-image-map img")
    expect(shown).to_be_visible(timeout=30_000)
    # The map is the drawing turned round: white lines on black, as scribble ControlNets take it.
    pixels = np.asarray(Image.open(_download(page, shown, tmp_path / "map.png")).convert("L"))
    assert pixels[64, 64] == 0 and pixels[64, 24:30].max() == 255
    page.locator("#controlnet-control-image-use").click()
    expect(page.locator("#controlnet-preprocessor input[value=none]")).to_be_checked()
    page.locator("#controlnet-prompt textarea").fill("a ring of stones")
    set_slider(page, "controlnet", "Steps", 2)
    set_slider(page, "controlnet", "Width", 64)
    set_slider(page, "controlnet", "Height", 64)
    generate_and_wait(page, "controlnet")
    expect(page.locator("#controlnet-control_maps img").first).to_be_visible()
    expect(page.locator("#controlnet-notice")).to_contain_text("StableDiffusionControlNetPipeline")
    shot(page, "controlnet")


def _download(page: Page, image, target):
    """The bytes the page shows in `image` (its src), saved to `target`."""
    body = page.request.get(image.get_attribute("src")).body()
    target.write_bytes(body)
    return target
