"""An image family beyond SD as a user meets it: load its twin from the checkpoint box, see its own settings on
the tabs (the family's steps, guidance and size), make an image, and go back to the demo."""

from __future__ import annotations

from playwright.sync_api import Page, expect

from tests.browser.test_page import set_slider, shot, tab_offered
from tests.browser.test_pipeline_tab import back_to_the_demo, load


def test_flux_starts_the_tabs_at_its_own_settings_and_makes_an_image(page: Page):
    expect(page.locator("#model-status")).to_contain_text("StableDiffusionPipeline", timeout=30_000)
    try:
        load(page, "demo-flux", "FluxPipeline")
        note = page.locator("#few-step-note")
        expect(note).to_contain_text("Flux", timeout=30_000)
        expect(note).to_contain_text("28 steps and guidance 3.5")
        expect(page.locator("#text2img-steps input[type=number]")).to_have_value("28")
        expect(page.locator("#text2img-guidance-scale input[type=number]")).to_have_value("3.5")
        expect(page.locator("#text2img-width input[type=number]")).to_have_value("1024")
        assert tab_offered(page, "Inpaint") and not tab_offered(page, "Pipeline")
        # Flux has neither SAG nor PAG: their accordion is not left on the tab, empty.
        expect(page.locator("#tab-text2img").get_by_text("Guidance features")).not_to_be_visible()
        set_slider(page, "text2img", "Steps", 2)
        set_slider(page, "text2img", "Width", 128)
        set_slider(page, "text2img", "Height", 128)
        page.locator("#text2img-prompt textarea").fill("a lighthouse at dusk")
        page.locator("#text2img-generate").click()
        expect(page.locator("#text2img-notice")).to_contain_text("FluxPipeline", timeout=60_000)
        expect(page.locator("#text2img-gallery img")).to_have_count(1)
        shot(page, "family-flux")
    finally:
        back_to_the_demo(page)
    expect(page.locator("#few-step-note")).not_to_be_visible(timeout=30_000)
    expect(page.locator("#text2img-steps input[type=number]")).to_have_value("25")
    expect(page.locator("#tab-text2img").get_by_text("Guidance features")).to_be_visible()
