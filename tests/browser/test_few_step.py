"""A few-step LoRA loaded from the page sets what it needs on the tabs, and removing it gives the defaults back."""

from __future__ import annotations

from playwright.sync_api import Page, expect

from tests.browser.test_page import open_tab


def steps_box(page: Page, tab: str):
    return page.locator(f"#{tab}-steps input[type=number]")


def test_an_lcm_lora_sets_its_steps_guidance_and_scheduler_and_removing_it_restores_them(page: Page):
    expect(page.locator("#model-status")).to_contain_text("StableDiffusionPipeline", timeout=30_000)
    expect(steps_box(page, "text2img")).to_have_value("25")
    page.get_by_text("LoRA adapters").click()
    page.locator("#lora-source input").fill("demo-lcm-lora")
    page.locator("#lora-load").click()
    note = page.locator("#few-step-note")
    expect(note).to_contain_text("LCM-LoRA", timeout=60_000)
    expect(note).to_contain_text("4 steps, guidance 1, the LCM scheduler")
    expect(steps_box(page, "text2img")).to_have_value("4")
    expect(page.locator("#text2img-guidance-scale input[type=number]")).to_have_value("1")
    expect(page.locator("#scheduler input")).to_have_value("LCM")
    for label, tab in (("Image to image", "img2img"), ("ControlNet", "controlnet")):
        open_tab(page, label, shows=f"#{tab}-steps")
        expect(steps_box(page, tab)).to_have_value("4")
    open_tab(page, "Text to image", shows="#text2img-steps")
    page.locator(".lora-row").filter(has_text="demo_lcm_lora").get_by_role("button", name="Remove").click()
    expect(note).not_to_be_visible(timeout=30_000)
    expect(steps_box(page, "text2img")).to_have_value("25")
    expect(page.locator("#scheduler input")).to_have_value("default")
