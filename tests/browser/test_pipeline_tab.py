"""The Pipeline tab as a user meets it: load a checkpoint no other tab serves, see only what its pipeline takes,
run it and play (or look at) what it made. One test per output kind: images (class labels picked from a list) and
audio (a player with the WAV)."""

from __future__ import annotations

import io
import re

from PIL import Image
from playwright.sync_api import Page, expect

from tests.browser.test_page import set_slider, shot, tab_offered


def load(page: Page, source: str, pipeline: str) -> None:
    page.locator("#model-source input").fill(source)
    page.locator("#load-button").click()
    expect(page.locator("#model-status")).to_contain_text(pipeline, timeout=60_000)


def back_to_the_demo(page: Page) -> None:
    load(page, "demo", "StableDiffusionPipeline")


def test_an_audio_pipeline_gets_its_length_and_a_player(page: Page):
    expect(page.locator("#model-status")).to_contain_text("StableDiffusionPipeline", timeout=30_000)
    assert not tab_offered(page, "Pipeline"), "the SD checkpoint has tabs of its own"
    try:
        load(page, "demo-dance-diffusion", "DanceDiffusionPipeline")
        card = page.locator("#pipeline-signature")
        expect(card).to_contain_text("audio_length_in_s", timeout=30_000)  # the tab opened by itself
        expect(page.locator("#pipeline-prompt")).not_to_be_visible()  # no text in this pipeline
        assert not tab_offered(page, "Text to image")
        set_slider(page, "pipeline", "Audio length", 0.5)
        set_slider(page, "pipeline", "Steps", 3)
        page.locator("#pipeline-generate").click()
        expect(page.locator("#pipeline-notice")).to_contain_text("Seeds", timeout=60_000)
        player = page.locator("#pipeline-audio")
        expect(player).to_be_visible()
        # Gradio's player draws the waveform from the file it fetched (a blob), which its <audio> plays.
        waveform = player.get_by_test_id("waveform-Audio").locator("audio")
        expect(waveform).to_have_attribute("src", re.compile("blob:"))
        duration = waveform.evaluate(
            """async (a) => { if (a.readyState < 1)
            await new Promise(r => a.addEventListener('loadedmetadata', r, {once: true})); return a.duration; }"""
        )
        assert abs(duration - 0.5) < 0.01, "the page plays the half second the pipeline made"
        shot(page, "pipeline-audio")
    finally:
        back_to_the_demo(page)


def test_a_class_conditional_pipeline_offers_its_labels_and_shows_one_image_each(page: Page):
    expect(page.locator("#model-status")).to_contain_text("StableDiffusionPipeline", timeout=30_000)
    try:
        load(page, "demo-dit", "DiTPipeline")
        labels = page.locator("#pipeline-class-labels")
        expect(labels).to_be_visible(timeout=30_000)
        for name in ("goldfish", "ostrich"):
            labels.locator("input").fill(name)
            page.get_by_role("option", name=name).first.click()
        set_slider(page, "pipeline", "Steps", 3)
        page.locator("#pipeline-generate").click()
        expect(page.locator("#pipeline-notice")).to_contain_text("Seeds", timeout=60_000)
        expect(page.locator("#pipeline-gallery img")).to_have_count(2)
        page.locator("#tab-pipeline").get_by_text("Reproduce in Python").click()
        expect(page.locator("#pipeline-code")).to_contain_text("class_labels=[1, 9]")
        expect(page.locator("#pipeline-audio")).not_to_be_visible()
        shot(page, "pipeline-dit")
    finally:
        back_to_the_demo(page)


def test_a_video_pipeline_plays_its_clip(page: Page):
    expect(page.locator("#model-status")).to_contain_text("StableDiffusionPipeline", timeout=30_000)
    try:
        load(page, "demo-text-to-video", "TextToVideoSDPipeline")
        expect(page.locator("#pipeline-prompt")).to_be_visible(timeout=30_000)
        page.locator("#pipeline-prompt textarea").fill("a paper boat drifting")
        set_slider(page, "pipeline", "Frames", 6)
        set_slider(page, "pipeline", "Steps", 2)
        set_slider(page, "pipeline", "Width", 64)
        set_slider(page, "pipeline", "Height", 64)
        page.locator("#pipeline-generate").click()
        expect(page.locator("#pipeline-notice")).to_contain_text("Seeds", timeout=60_000)
        video = page.locator("#pipeline-mp4 video")
        expect(video).to_have_attribute("src", re.compile(r"\.mp4"))
        frames = video.evaluate(
            """async (v) => { if (v.readyState < 1)
            await new Promise(r => v.addEventListener('loadedmetadata', r, {once: true}));
            return [v.duration, v.videoWidth]; }"""
        )
        assert frames[1] == 64 and 0.5 < frames[0] < 1.0, "six frames at 8 per second, 64 px wide"
        shot(page, "pipeline-video")
    finally:
        back_to_the_demo(page)


def test_a_3d_pipeline_shows_its_mesh_in_a_viewer(page: Page):
    expect(page.locator("#model-status")).to_contain_text("StableDiffusionPipeline", timeout=30_000)
    try:
        load(page, "demo-shap-e", "ShapEPipeline")
        expect(page.locator("#pipeline-prompt")).to_be_visible(timeout=30_000)
        page.locator("#pipeline-prompt textarea").fill("a small lamp")
        page.locator("#pipeline-mesh input").check()
        set_slider(page, "pipeline", "Steps", 2)
        page.locator("#pipeline-generate").click()
        expect(page.locator("#pipeline-notice")).to_contain_text("3D mesh", timeout=90_000)
        viewer = page.locator("#pipeline-model3d canvas")
        expect(viewer).to_be_visible(timeout=30_000)
        # The mesh is drawn: the viewer shows more than its background (a WebGL canvas reads back blank from
        # script, so its pixels come from a screenshot).
        colours = 0
        for _ in range(20):  # the viewer fetches the GLB and draws it
            picture = Image.open(io.BytesIO(viewer.screenshot())).convert("RGB").resize((64, 64))
            colours = len(set(picture.getdata()))
            if colours > 20:
                break
            page.wait_for_timeout(500)
        assert colours > 20, f"the viewer shows {colours} colours: no mesh drawn"
        shot(page, "pipeline-mesh")
    finally:
        back_to_the_demo(page)


def test_a_checkpoint_with_a_tab_of_its_own_opens_on_it_and_plays_an_uploaded_midi(page: Page, tmp_path):
    """Spectrogram Diffusion serves none of the AutoPipeline tasks: the page opens its MIDI to audio tab, the others
    are off, and a .mid file uploaded in the page plays as audio."""
    from core.demo.music_twins import demo_midi

    song = tmp_path / "song.mid"
    song.write_bytes(demo_midi())
    expect(page.locator("#model-status")).to_contain_text("StableDiffusionPipeline", timeout=30_000)
    try:
        load(page, "demo-spectrogram-diffusion", "SpectrogramDiffusionPipeline")
        expect(page.locator("#midi_audio-generate")).to_be_visible(timeout=30_000)  # the tab opened by itself
        assert not tab_offered(page, "Text to image") and not tab_offered(page, "Pipeline")
        page.locator("#midi_audio-midi input[type=file]").set_input_files(str(song))
        # The file's row, by its accessible name: Gradio prints the stem and extension in separate elements, so the
        # block's text reads "song .mid".
        expect(page.locator("#midi_audio-midi").get_by_role("cell", name="song.mid")).to_be_visible()
        set_slider(page, "midi_audio", "Steps", 2)
        page.locator("#midi_audio-generate").click()
        expect(page.locator("#midi_audio-notice")).to_contain_text("Seeds", timeout=90_000)
        waveform = page.locator("#tab-midi_audio").get_by_test_id("waveform-Audio").locator("audio")
        expect(waveform).to_have_attribute("src", re.compile("blob:"))
        duration = waveform.evaluate(
            """async (a) => { if (a.readyState < 1)
            await new Promise(r => a.addEventListener('loadedmetadata', r, {once: true})); return a.duration; }"""
        )
        assert abs(duration - 5.12) < 0.01, "one 5.12 s part of the file"
        shot(page, "midi-audio")
    finally:
        back_to_the_demo(page)
