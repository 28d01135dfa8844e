"""Uploads read once: what the page's upload adapted is noted once, whatever the image's mode."""

from __future__ import annotations

from PIL import Image

from core.uploads import read_image


def test_an_animation_read_by_the_page_is_noted_once(tmp_path):
    path = tmp_path / "anim.webp"
    frames = [Image.new("RGB", (32, 32), c) for c in ((255, 0, 0), (0, 0, 255))]
    frames[0].save(path, save_all=True, append_images=frames[1:], lossless=True)
    first, notes = read_image(str(path), "input image", "RGB")  # the page's upload (ui.controls)
    assert notes == ["The input image is animated (2 frames); its first frame was used."]
    first.info["studio_notes"] = notes
    again, notes_again = read_image(first, "input image", "RGB")  # the engine, reading the request
    assert notes_again == notes and again.getpixel((0, 0)) == (255, 0, 0)
