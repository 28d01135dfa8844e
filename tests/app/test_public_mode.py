"""Public mode between visitors who don't know each other: each gets their own images, and no one can fetch
another's saved file by its path."""

from __future__ import annotations

import httpx
import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError
from PIL import Image

T2I = dict(
    prompt="a quiet harbour",
    negative_prompt="",
    steps=2,
    guidance_scale=7.0,
    width=64,
    height=64,
    seed=11,
    scheduler="default",
    num_images=1,
    safety_checker=True,
)


def test_no_visitor_can_fetch_another_visitors_saved_image_by_its_path(public_app):
    alice, bob = Client(public_app.url, verbose=False), Client(public_app.url, verbose=False)
    gallery, _info = alice.predict(**T2I, api_name="/text2img")
    with Image.open(gallery[0]["image"]) as image:
        assert "diffusion_studio" in image.text, "alice's copy keeps its metadata"
    saved = list(public_app.outputs.rglob("*.png"))
    assert saved, "the image was saved"
    for path in saved:
        response = httpx.get(f"{public_app.url}gradio_api/file={path}")
        assert response.status_code == 403, f"{path} must not be served by its path"
    assert bob.predict(**{**T2I, "seed": 12}, api_name="/text2img")[1]["seeds"] == [12]


def test_public_mode_keeps_the_checker_and_the_curated_models(public_app):
    client = Client(public_app.url, verbose=False)
    with pytest.raises(AppError, match="safety checker can't be turned off on a public server"):
        client.predict(**{**T2I, "safety_checker": False}, api_name="/text2img")
    with pytest.raises(AppError, match=r"/etc is not in the list of choices: \['stable-diffusion-v1-5"):
        client.predict(source="/etc", variant="auto", dtype="auto", api_name="/load_model")
    with pytest.raises(AppError, match="Loading a LoRA changes what every visitor of this public server gets"):
        client.predict(source="demo-lora", weight=1.0, api_name="/load_lora")


def test_uploads_over_the_public_size_limit_are_refused(public_app, tmp_path):
    from gradio_client import handle_file

    big = tmp_path / "huge.png"
    big.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(11 * 1024 * 1024))  # 11 MB; spaces_config.yaml allows 10
    client = Client(public_app.url, verbose=False)
    fields = {k: v for k, v in T2I.items() if k not in ("width", "height")} | {"strength": 0.5}
    with pytest.raises(ValueError, match="exceeds the maximum file size of 10485760 bytes"):
        client.predict(image=handle_file(str(big)), **fields, api_name="/img2img")
    assert client.predict(**T2I, api_name="/text2img")[1]["seeds"] == [11], "and the app serves the next one"


def test_an_unexpected_failure_shows_no_traceback_in_public_mode(public_app, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("secret internal detail at /srv/app/core/studio.py line 42")

    monkeypatch.setattr(public_app.studio, "_denoise", broken)  # under every run, alone or in a shared call
    client = Client(public_app.url, verbose=False)
    with pytest.raises(AppError) as caught:
        client.predict(**T2I, api_name="/text2img")
    message = str(caught.value)
    assert "Something went wrong (RuntimeError)" in message and "model is still loaded" in message
    assert "Traceback" not in message and "secret internal detail" not in message and "studio.py" not in message


def test_a_public_outputs_folder_gradio_cannot_serve_is_warned_about(tmp_path, monkeypatch):
    import app as app_module
    from core import settings as settings_module

    monkeypatch.chdir(tmp_path)
    inside = settings_module.from_args(["--public", "--outputs", str(tmp_path / "out")], env={})
    assert app_module.outputs_warning(inside) == ""
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "gradio-tmp"))
    monkeypatch.setattr("tempfile.gettempdir", lambda: str(tmp_path / "tmp"))
    elsewhere = settings_module.from_args(["--public", "--outputs", "/srv/studio-images"], env={})
    assert "will not hand images out from there" in app_module.outputs_warning(elsewhere)
    local = settings_module.from_args(["--outputs", "/srv/studio-images"], env={})
    assert app_module.outputs_warning(local) == ""  # locally the folder itself is allowed


def test_a_visitors_history_survives_a_reload_by_their_cookie_and_no_one_elses_shows(public_app):
    """Gradio's session ends with the page, and History with it; the page now gives each visitor an HttpOnly id."""
    import re

    from ui.history_tab import history_items

    page = httpx.get(public_app.url)
    cookie = page.cookies.get("studio_visitor")
    assert cookie and re.fullmatch(r"[0-9a-f]{32}", cookie)
    assert "HttpOnly" in page.headers["set-cookie"] and "SameSite=Lax" in page.headers["set-cookie"]
    assert "set-cookie" not in httpx.get(public_app.url, cookies={"studio_visitor": cookie}).headers, "kept"

    def visit(value: str) -> Client:
        return Client(public_app.url, headers={"Cookie": f"studio_visitor={value}"}, verbose=False)

    visit(cookie).predict(**{**T2I, "seed": 4321}, api_name="/text2img")

    class Request:  # what gradio hands History after a reload: a new session, the same cookie
        def __init__(self, session_hash: str, value: str) -> None:
            self.session_hash, self.cookies = session_hash, {"studio_visitor": value}

    reloaded = visit(cookie)
    mine = [caption for _path, caption in history_items(public_app.ctx, Request(reloaded.session_hash, cookie))]
    assert any("seed 4321" in caption for caption in mine), mine
    stranger = Request(visit("f" * 32).session_hash, "f" * 32)
    assert not any("seed 4321" in caption for _path, caption in history_items(public_app.ctx, stranger))
    forged = Request("some-session", "../../etc")  # not an id this server makes: the session's own, i.e. none
    assert history_items(public_app.ctx, forged) == []
