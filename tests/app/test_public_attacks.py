"""A public link tried as an attacker would, through HTTP only: each test names the hole it closes (issue 13)."""

from __future__ import annotations

import struct
import time
import zlib
from pathlib import Path

import httpx
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image

from tests.app import attack
from tests.app.test_public_mode import T2I as PUBLIC_T2I
from tests.launch import start_app

ROOT = Path(__file__).resolve().parents[2]
T2I = {**PUBLIC_T2I, "seed": 21}


def _file_bytes(url: str, value: dict) -> bytes:
    response = httpx.get(value["url"] if value.get("url") else f"{url}gradio_api/file={value['path']}")
    response.raise_for_status()
    return response.content


def test_a_gallery_selection_is_an_index_into_the_visitors_own_results_never_a_path(public_app):
    alice = Client(public_app.url, verbose=False)
    gallery, _info = alice.predict(**T2I, api_name="/text2img")
    mine = Path(gallery[0]["image"]).read_bytes()
    conf = attack.config(public_app.url)
    select = attack.fn_index(conf, "text2img-gallery", "select")
    send = attack.fn_index(conf, "text2img-send-upscale", "click")
    session = alice.session_hash
    planted = {"index": 0, "value": str(ROOT / "app.py")}  # a plain string: Gradio checks only FileData dicts
    assert attack.call(public_app.url, select, [], session, planted).status_code == 200
    reply = attack.call(public_app.url, send, [None], session)
    assert reply.status_code == 200, reply.text
    sent = reply.json()["data"][0]
    assert "app.py" not in str(sent), "the planted path never comes back"
    assert _file_bytes(public_app.url, sent) == mine, "the send hands on the image alice selected"

    # Another session has no results: the same planted selection finds nothing to send.
    attack.call(public_app.url, select, [], "mallory-session", planted)
    reply = attack.call(public_app.url, send, [None], "mallory-session")
    assert "Click an image in the gallery first" in reply.text and "app.py" not in reply.text
    out_of_range = {"index": 7, "value": str(ROOT / "app.py")}
    attack.call(public_app.url, select, [], session, out_of_range)
    assert "Click an image in the gallery first" in attack.call(public_app.url, send, [None], session).text


def test_public_mode_blocks_the_working_folder_but_not_the_outputs(public_app):
    import app as app_module

    blocked = app_module.public_blocked_paths(public_app.ctx.settings)
    for name in (".git", "app.py", "core", "pyproject.toml"):
        assert str(ROOT / name) in blocked
    assert not any(Path(path) in (ROOT / "assets", public_app.outputs) for path in blocked)
    for name in ("app.py", ".git/config", "pyproject.toml"):
        assert httpx.get(f"{public_app.url}gradio_api/file={ROOT / name}").status_code == 403


def _png(path: Path, width: int, height: int, depth: int, colour: int, text: dict[bytes, bytes]) -> Path:
    """A real PNG written chunk by chunk: all-zero pixels (so a huge one is tiny) and the given zTXt chunks."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    channels = {0: 1, 2: 3}[colour]
    row = b"\0" + bytes((width * channels * depth + 7) // 8)
    packer = zlib.compressobj(9)
    pixels = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    head = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
    texts = b"".join(chunk(b"zTXt", key + b"\0\0" + zlib.compress(value, 9)) for key, value in text.items())
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", head) + chunk(b"IDAT", pixels) + texts + chunk(b"IEND", b""))
    return path


def _still_serving(url: str) -> None:
    started = time.perf_counter()
    assert httpx.get(f"{url}gradio_api/info", timeout=10).status_code == 200
    assert time.perf_counter() - started < 2


def test_png_info_reads_a_hostile_text_chunk_in_linear_time_and_never_the_pixels(public_app, tmp_path):
    client = Client(public_app.url, verbose=False)
    slow = _png(tmp_path / "slow.png", 8, 8, 8, 2, {b"parameters": b"a" * 48_000})  # 18 s before the fix
    started = time.perf_counter()
    found = client.predict(handle_file(str(slow)), api_name="/png_info")
    assert time.perf_counter() - started < 3 and found["found"] == "web-ui"
    huge = _png(tmp_path / "huge.png", 8, 8, 8, 2, {b"parameters": b"Steps: 1, " * 20_000})
    with pytest.raises(AppError, match="parameters text is over 64 KB"):
        client.predict(handle_file(str(huge)), api_name="/png_info")
    # Text after 169 megapixels of 16-bit pixels: read without decoding them (that took gigabytes).
    big = _png(tmp_path / "big.png", 13_000, 13_000, 16, 0, {b"parameters": b"a boat\nSteps: 5, Seed: 9"})
    assert big.stat().st_size < 1_000_000
    started = time.perf_counter()
    found = client.predict(handle_file(str(big)), api_name="/png_info")
    assert found["fields"]["seed"] == 9 and time.perf_counter() - started < 3
    _still_serving(public_app.url)


I2I = dict(
    prompt="autumn",
    negative_prompt="",
    strength=0.5,
    steps=2,
    guidance_scale=7.0,
    seed=3,
    scheduler="default",
    num_images=1,
    safety_checker=True,
)


def test_an_input_image_over_the_pixel_limit_is_refused_from_its_header(public_app, tmp_path):
    client = Client(public_app.url, verbose=False)
    bomb = _png(tmp_path / "bomb.png", 13_000, 13_000, 16, 0, {})  # 169 MP in a few hundred KB
    started = time.perf_counter()
    with pytest.raises(AppError, match=r"too large to open safely; resize it to at most 4\.2 MP"):
        client.predict(image=handle_file(str(bomb)), **I2I, api_name="/img2img")
    assert time.perf_counter() - started < 5, "refused before decoding (decoding took many seconds and GBs)"
    over = _png(tmp_path / "over.png", 2500, 2500, 8, 2, {})  # over the limit, under Pillow's own bomb check
    with pytest.raises(AppError, match=r"2500x2500, larger than this app accepts; resize it to at most 4\.2 MP"):
        client.predict(image=handle_file(str(over)), **I2I, api_name="/img2img")
    _still_serving(public_app.url)


def test_an_input_image_counts_against_the_public_size_limit(public_app, tmp_path):
    image = tmp_path / "wide.png"
    Image.new("RGB", (1100, 550), (120, 80, 40)).save(image)  # public max_side is 1024
    client = Client(public_app.url, verbose=False)
    gallery, info = client.predict(image=handle_file(str(image)), **I2I, api_name="/img2img")
    with Image.open(gallery[0]["image"]) as made:
        assert made.size == (1024, 512)
    assert any("was 1100x550" in w and "scaled to 1024x512" in w for w in info["warnings"]), info["warnings"]


@pytest.fixture(scope="module")
def owned_app(tmp_path_factory):
    """A public server with an owner login."""
    app = start_app(tmp_path_factory.mktemp("owned-outputs"), "--public", "--admin", "owner:s3cret-pass")
    yield app
    app.app.close()


def _pixels(client: Client) -> bytes:
    gallery, _info = client.predict(**T2I, api_name="/text2img")
    with Image.open(gallery[0]["image"]) as image:
        return image.tobytes()


def test_an_anonymous_visitor_cannot_change_what_every_visitor_shares(owned_app):
    alice, bob = Client(owned_app.url, verbose=False), Client(owned_app.url, verbose=False)
    before = _pixels(alice)
    attempts = [
        (dict(source="demo", variant="default", dtype="bfloat16"), "/load_model", "Loading a checkpoint"),
        (dict(offload="none", attention_slicing=True, vae_slicing=True, vae_tiling=True), "/set_memory_modes", "mem"),
        (dict(source="default"), "/set_vae", "Changing the VAE"),
        (dict(kind="inpaint"), "/unload_companion", "Unloading a companion"),
        (dict(source="demo-lora", weight=1.0), "/load_lora", "Loading a LoRA"),
        (dict(), "/unload_ip_adapter", "IP-Adapter"),
    ]
    for kwargs, api, what in attempts:
        with pytest.raises(AppError, match=f"{what}.*changes what every visitor.*log in as the owner"):
            bob.predict(**kwargs, api_name=api)
    assert owned_app.studio.model_info()["dtype"] == "float32"
    assert _pixels(alice) == before, "alice's same-seed image is unchanged"


def test_the_owner_logs_in_and_wrong_passwords_are_locked_out(owned_app):
    mallory = Client(owned_app.url, verbose=False)
    for _ in range(5):
        with pytest.raises(AppError, match="Wrong owner name or password"):
            mallory.predict(user="owner", password="guess", api_name="/admin_login")
    with pytest.raises(AppError, match=r"Too many failed logins; try again in \d+ s"):
        mallory.predict(user="owner", password="s3cret-pass", api_name="/admin_login")  # even the right one waits
    owned_app.ctx.owners._check.throttle.succeeded("owner")  # the minute passes (the name's lock; not the session's)

    owner = Client(owned_app.url, verbose=False)
    assert "Logged in as the owner" in owner.predict(user="owner", password="s3cret-pass", api_name="/admin_login")
    try:
        info = owner.predict(source="demo", variant="default", dtype="bfloat16", api_name="/load_model")
        assert info["dtype"] == "bfloat16"
        with pytest.raises(AppError, match="changes what every visitor"):  # still not for anyone else
            mallory.predict(source="demo", variant="default", dtype="float32", api_name="/load_model")
    finally:
        owner.predict(source="demo", variant="default", dtype="float32", api_name="/load_model")


def test_gradio_login_is_throttled(tmp_path):
    app = start_app(tmp_path / "outputs", "--public", "--auth", "alice:right-one")
    try:
        codes = [
            httpx.post(f"{app.url}login", data={"username": "alice", "password": f"wrong{i}"}).status_code
            for i in range(6)
        ]
        assert set(codes) == {400}
        locked = httpx.post(f"{app.url}login", data={"username": "alice", "password": "right-one"})
        assert locked.status_code == 400, "five failures lock the name out for a while, right password or not"
        assert httpx.post(f"{app.url}login", data={"username": "bob", "password": "x"}).status_code == 400
    finally:
        app.app.close()


def test_a_huge_prompt_is_refused_before_any_work(public_app):
    client = Client(public_app.url, verbose=False)
    with pytest.raises(AppError, match=r"The prompt is 200,000 characters; this app takes at most 4,000"):
        client.predict(**{**T2I, "prompt": "a" * 200_000}, api_name="/text2img")


def _compare(client: Client, **fields) -> tuple:
    base = dict(prompt="x", negative_prompt="", schedulers=["DDIM"], axis="steps", values="1, 2", steps=2)
    base.update(guidance_scale=7.0, width=64, height=64, seed=1, safety_checker=True)
    return client.predict(**{**base, **fields}, api_name="/compare")


def test_a_compare_grid_counts_against_the_budget_of_one_generation(public_app):
    client = Client(public_app.url, verbose=False)
    schedulers = ["Euler a", "DDIM", "Euler", "DPM++ 2M", "Heun", "LMS"]
    started = time.perf_counter()
    with pytest.raises(AppError, match=r"This grid is 9\.0x the largest single generation"):
        grid = dict(schedulers=schedulers, axis="guidance_scale", values="1, 2, 3, 4, 5, 6", steps=50)
        _compare(client, **grid, width=1024, height=1024)
    assert time.perf_counter() - started < 5, "refused before the first cell"


def test_public_replies_carry_no_server_paths(public_app):
    client = Client(public_app.url, verbose=False)
    _gallery, info = client.predict(**T2I, api_name="/text2img")
    assert info["model_path"] is None
    grid, _cells, compare = _compare(client)
    assert "grid_path" not in compare and Path(grid).is_file()
    assert str(public_app.outputs) not in str(info) + str(compare)


def test_one_upload_request_carries_a_few_files_at_most(public_app, tmp_path):
    files = [("files", (f"f{i}.png", b"\x89PNG tiny", "image/png")) for i in range(10)]
    reply = httpx.post(f"{public_app.url}gradio_api/upload", files=files)
    assert reply.status_code == 413 and "at most 4 files" in reply.text
    ok = httpx.post(f"{public_app.url}gradio_api/upload", files=files[:2])
    assert ok.status_code == 200 and len(ok.json()) == 2


def test_one_visitor_cannot_fill_the_queue(public_app):
    import threading

    held, release = threading.Event(), threading.Event()

    def a_long_run():
        held.set()
        release.wait(60)

    blocker = public_app.ctx.worker.submit(a_long_run)
    held.wait(10)
    greedy, other = Client(public_app.url, verbose=False), Client(public_app.url, verbose=False)
    try:
        jobs = []

        def until(check, what: str) -> None:
            deadline = time.time() + 30
            while not check() and time.time() < deadline:
                time.sleep(0.1)
            assert check(), what

        # One at a time: sent together, the fourth could arrive while the first still waited, and be refused.
        jobs.append(greedy.submit(**{**T2I, "seed": 100}, api_name="/text2img"))
        until(lambda: public_app.ctx.cancel_flags.running(greedy.session_hash), "the first one runs")
        for i in range(1, 4):
            jobs.append(greedy.submit(**{**T2I, "seed": 100 + i}, api_name="/text2img"))
            until(lambda i=i: attack.waiting_count(public_app, greedy.session_hash) == i, f"{i} waiting")
        refused = greedy.submit(**{**T2I, "seed": 200}, api_name="/text2img")
        with pytest.raises(Exception, match="Queue is full"):  # gradio_client's (and the page's) words for a 503
            refused.result(timeout=30)
        text2img = attack.fn_index(attack.config(public_app.url), "text2img-generate", "click")
        body = {"fn_index": text2img, "data": [], "session_hash": greedy.session_hash}
        raw = httpx.post(f"{public_app.url}gradio_api/queue/join", json=body)
        assert raw.status_code == 503 and "You already have 3 requests waiting" in raw.text
        fair = other.submit(**{**T2I, "seed": 300}, api_name="/text2img")  # another visitor still gets in line
    finally:
        release.set()
        blocker.result(30)
    assert fair.result(timeout=120)[1]["seeds"] == [300]
    assert [job.result(timeout=120)[1]["seeds"] for job in jobs] == [[100], [101], [102], [103]]


def test_public_mode_sweeps_gradios_cache_and_offers_no_adapter_that_would_be_refused(public_app):
    assert public_app.app.delete_cache == (900, 3600), "uploads and gallery copies go after an hour"
    conf = attack.config(public_app.url)
    hidden = {
        c["props"]["elem_id"]: c["props"].get("visible")
        for c in conf["components"]
        if c.get("props", {}).get("elem_id") in ("lora-panel", "ip-adapter-panel")
    }
    assert hidden == {"lora-panel": False, "ip-adapter-panel": False}


def test_a_public_visitor_is_not_told_to_load_a_model(public_app):
    from ui.model_panel import banner_markdown

    banner = banner_markdown(public_app.ctx)
    assert "every image is noise" in banner and "owner picks the model" in banner and "press **Load**" not in banner
