"""GLIGEN in the page: phrases, one box drawn per phrase in its colour on the canvas, a run that places them."""

from __future__ import annotations

import json
import re

from playwright.sync_api import Page, expect

from tests.browser.test_page import generate_and_wait, open_tab, set_slider, shot


def draw_box(page: Page, editor, colour: int, box: tuple[float, float, float, float]) -> None:
    """Draw the outline of `box` (fractions of the canvas) with brush colour number `colour`."""
    editor.get_by_role("button", name="Color").click()
    editor.locator("button.color").nth(colour).click()
    page.locator("#gligen-prompt textarea").click()  # a click elsewhere closes the swatches (else a stroke does)
    expect(editor.locator("button.color").first).not_to_be_visible()
    area = editor.locator("canvas").first.bounding_box()
    zoom = float(re.search(r"(\d+)%", editor.inner_text()).group(1)) / 100
    side = 512 * zoom  # the 512 px canvas, shown at the editor's zoom, centred in its area
    left, top = area["x"] + (area["width"] - side) / 2, area["y"] + (area["height"] - side) / 2
    x0, y0, x1, y1 = (left + box[0] * side, top + box[1] * side, left + box[2] * side, top + box[3] * side)
    page.mouse.move(x0, y0)
    page.mouse.down()
    for x, y in ((x1, y0), (x1, y1), (x0, y1), (x0, y0)):
        page.mouse.move(x, y, steps=2)  # the brush joins the points with straight lines
    page.mouse.up()


def test_phrases_in_boxes_drawn_on_the_canvas(page: Page, browser_app):
    expect(page.locator("#model-status")).to_contain_text("StableDiffusionPipeline", timeout=30_000)
    open_tab(page, "GLIGEN", shows="#gligen-generate")
    page.locator("#companion-load-gligen").click()
    expect(page.locator("#companion-status-gligen")).to_contain_text("demo-gligen", timeout=60_000)
    page.locator("#gligen-gligen-phrases textarea, #gligen-gligen-phrases input").first.fill("a cat; a lamp")
    page.locator("#gligen-prompt textarea").fill("a cat and a lamp")
    set_slider(page, "gligen", "Steps", 2)
    set_slider(page, "gligen", "Width", 64)
    set_slider(page, "gligen", "Height", 64)
    # Drawn last: each stroke costs Chromium's software canvas seconds, and the page stays slow after (measured).
    editor = page.locator("#gligen-gligen-boxes")
    editor.get_by_role("button", name="Brush").click()
    draw_box(page, editor, 0, (0.1, 0.5, 0.45, 0.9))
    draw_box(page, editor, 1, (0.55, 0.1, 0.9, 0.45))
    generate_and_wait(page, "gligen")
    expect(page.locator("#gligen-notice")).to_contain_text("StableDiffusionGLIGENPipeline")
    page.locator("#tab-gligen").get_by_text("Info", exact=True).click()
    info = json.loads(page.locator("#gligen-info").get_attribute("data-json") or "{}") or _shown_json(page)
    boxes = info["gligen_boxes"]
    assert info["gligen_phrases"] == ["a cat", "a lamp"] and len(boxes) == 2
    for drawn, wanted in zip(boxes, [(0.1, 0.5, 0.45, 0.9), (0.55, 0.1, 0.9, 0.45)], strict=True):
        assert all(abs(a - b) < 0.06 for a, b in zip(drawn, wanted, strict=True)), (drawn, wanted)
    shot(page, "gligen")


def _shown_json(page: Page) -> dict:
    """The info as the JSON component shows it (its text), for reading numbers back."""
    text = page.locator("#gligen-info").inner_text()
    start = text.index("gligen_boxes")
    numbers = [float(n) for n in re.findall(r"\d+\.\d+|\d+", text[start : text.index("gligen_beta")])]
    boxes = [numbers[i : i + 4] for i in range(0, len(numbers), 4)]
    phrases = re.findall(r'"(a [a-z]+)"', text[text.index("gligen_phrases") :])[:2]
    return {"gligen_boxes": boxes, "gligen_phrases": phrases}
