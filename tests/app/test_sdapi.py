"""The AUTOMATIC1111-compatible API (`/sdapi/v1`, ui.sdapi) on the real app, driven by the `webuiapi` client from
PyPI as A1111's users drive it: the same fields in, A1111's answers out, the studio's engine behind them. A local
server, then a public one with a login and an owner."""

from __future__ import annotations

import base64
import io
import json
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import requests
import webuiapi
from PIL import Image

from tests.launch import start_app
from ui.sdapi import ApiJobs
from ui.sdapi_fields import ApiError
from ui.sdapi_images import crop_region, resize_image

VISITOR = ("alice", "s3cret-visitor")
OWNER = ("root", "t0p-secret-owner")
SMALL = {"width": 64, "height": 64, "steps": 2, "seed": 5}


@pytest.fixture(scope="module")
def local_app(tmp_path_factory):
    app = start_app(tmp_path_factory.mktemp("sdapi-outputs"))
    yield app
    app.app.close()


@pytest.fixture(scope="module")
def api(local_app):
    return webuiapi.WebUIApi(baseurl=local_app.url + "sdapi/v1")


@pytest.fixture(scope="module")
def login_app(tmp_path_factory):
    """A public server with a visitor login and an owner (not conftest's `public_app`, which has neither)."""
    login, owner = ":".join(VISITOR), ":".join(OWNER)
    app = start_app(tmp_path_factory.mktemp("sdapi-public"), "--public", "--auth", login, "--admin", owner)
    yield app
    app.app.close()


def url(app: Any, path: str) -> str:
    return f"{app.url}sdapi/v1/{path}"


def client(app: Any, login: tuple[str, str]) -> webuiapi.WebUIApi:
    return webuiapi.WebUIApi(baseurl=url(app, "").rstrip("/"), username=login[0], password=login[1])


def wait_for(check: Callable[[], Any], what: str, timeout: float = 60.0) -> Any:
    """Poll `check` until it returns something true, or fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


def b64_png(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def gradient(size: int = 64) -> Image.Image:
    ramp = np.linspace(0, 255, size, dtype=np.uint8)
    return Image.fromarray(np.stack(np.broadcast_arrays(ramp[None, :], ramp[:, None], 128), axis=-1).astype(np.uint8))


# -- a local server ----------------------------------------------------------------------------------------------


def test_txt2img_runs_what_was_asked_and_the_same_request_gives_the_same_image(api):
    asked = {
        "prompt": "a lighthouse at dusk",
        "negative_prompt": "blurry",
        "seed": 1234,
        "width": 64,
        "height": 72,
        "steps": 3,
        "cfg_scale": 6.5,
        "sampler_name": "DPM++ 2M",
        "scheduler": "Karras",
    }
    first, again = api.txt2img(**asked), api.txt2img(**asked)

    info = first.info
    assert (info["seed"], info["all_seeds"], info["width"], info["height"], info["steps"]) == (1234, [1234], 64, 72, 3)
    assert (info["sampler_name"], info["scheduler"], info["cfg_scale"]) == ("DPM++ 2M", "Karras", 6.5)
    assert (info["prompt"], info["negative_prompt"], info["sd_model_name"]) == (asked["prompt"], "blurry", "demo")
    ran = info["diffusion_studio"]  # the studio's own info: what it ran the A1111 pair as
    assert (ran["scheduler"], ran["scheduler_class"], ran["task"]) == (
        "DPM++ 2M Karras",
        "DPMSolverMultistepScheduler",
        "text2img",
    )
    image = first.images[0]
    assert image.size == (64, 72)
    text = image.info["parameters"]  # the PNG's own infotext, as A1111 writes it
    for part in ("Steps: 3", "Sampler: DPM++ 2M", "Schedule type: Karras", "CFG scale: 6.5", "Seed: 1234", "64x72"):
        assert part in text
    assert info["infotexts"] == [text]
    assert np.array_equal(np.asarray(image), np.asarray(again.images[0]))

    batch = api.txt2img(prompt="a cat", batch_size=2, sampler_name="Euler a", **SMALL)
    assert batch.info["all_seeds"] == [5, 6] and len(batch.images) == 2
    assert (batch.info["sampler_name"], batch.info["scheduler"]) == ("Euler a", "Uniform")


def test_img2img_with_a_mask_repaints_only_the_mask(api):
    source = gradient()
    mask = Image.new("L", source.size, 0)
    mask.paste(255, (16, 16, 48, 48))
    asked = {"images": [source], "prompt": "a red door", "denoising_strength": 0.9, "sampler_name": "Euler", **SMALL}

    plain = api.img2img(**asked)
    whole = api.img2img(**asked, mask_image=mask, mask_blur=0, inpaint_full_res=False, inpainting_fill=1)
    only_masked = api.img2img(**asked, mask_image=mask, mask_blur=0, inpaint_full_res=True, inpaint_full_res_padding=8)

    assert plain.info["diffusion_studio"]["task"] == "img2img"
    inside, before = np.asarray(mask) > 0, np.asarray(source)
    assert (np.asarray(plain.image.convert("RGB"))[~inside] != before[~inside]).any()  # unmasked: it all changes
    for result in (whole, only_masked):
        assert result.info["diffusion_studio"]["task"] == "inpaint"
        assert result.info["denoising_strength"] == 0.9
        after = np.asarray(result.image.convert("RGB"))
        assert after.shape == before.shape
        assert np.array_equal(after[~inside], before[~inside]), "outside the mask the original comes back"
        assert (after[inside] != before[inside]).any()


def test_switching_the_model_through_options_loads_it(api, local_app):
    try:
        api.set_options({"sd_model_checkpoint": "demo-xs-base"})
        assert api.util_get_current_model() == "demo-xs-base"
        assert local_app.studio.model_info()["model"] == "demo-xs-base"
        assert "demo-xs-base" in api.util_get_model_names()
        assert api.txt2img(prompt="a cat", **SMALL).info["sd_model_name"] == "demo-xs-base"
    finally:
        api.util_set_model("demo")  # back, by its title from /sd-models, as webuiapi's helper does it
    assert api.util_get_current_model() == "demo"
    assert local_app.studio.model_info()["model"] == "demo"


def test_progress_of_a_long_run_and_interrupting_it(api):
    answer: dict[str, Any] = {}

    def run() -> None:
        answer["result"] = api.txt2img(
            prompt="a long one", width=256, height=256, steps=150, seed=3, sampler_name="Euler"
        )

    thread = threading.Thread(target=run)
    thread.start()
    try:
        under_way = wait_for(lambda: (p := api.get_progress())["state"]["sampling_step"] >= 2 and p, "steps reported")
        assert 0 < under_way["progress"] < 1 and under_way["eta_relative"] >= 0
        state = under_way["state"]
        assert (state["job"], state["job_count"], state["sampling_steps"]) == ("scripts_txt2img", 1, 150)
        assert api.interrupt() == {}
    finally:
        thread.join(timeout=120)
    ran = answer["result"].info["diffusion_studio"]
    assert ran["interrupted"] is True and 2 <= ran["stopped_at_step"] < 150
    assert len(answer["result"].images) == 1  # A1111 answers an interrupted run with the image as far as it got
    idle = api.get_progress()
    assert (idle["progress"], idle["state"]["job_count"], idle["current_image"]) == (0.0, 0, None)


@pytest.mark.parametrize(
    ("path", "body", "says"),
    [
        ("txt2img", {"sampler_name": "Foo", "scheduler": "Karras"}, ["'Foo'", "DPM++ 2M (Uniform, Karras)"]),
        ("txt2img", {"width": 100_000}, ["width", "2048"]),
        ("txt2img", {"steps": 10_000}, ["steps"]),
        ("img2img", {"init_images": ["not base64!"]}, ["init_images[0]", "base64"]),
        ("img2img", {"init_images": [base64.b64encode(b"not an image").decode()]}, ["could not be read"]),
        ("txt2img", {"enable_hr": True, "restore_faces": True}, ["hires fix", "face restoration"]),
        ("txt2img", {"alwayson_scripts": {"ControlNet": {"args": []}}}, ["alwayson_scripts"]),
        ("txt2img", {"prompt": "a cat <lora:ink:0.8>"}, ["'ink'", "load it first"]),
        ("txt2img", {"override_settings": {"sd_model_checkpoint": "other"}}, ["POST /sdapi/v1/options"]),
        ("txt2img", {"override_settings": {"CLIP_stop_at_last_layers": 2}}, ["CLIP_stop_at_last_layers"]),
        ("txt2img", {"sampler_name": "Euler a", "eta": 0.5}, ["eta 0.5", "eta 1"]),
        ("txt2img", {"prompt": 42}, ["prompt must be text"]),
        ("options", {"sd_vae": "some-vae"}, ["sd_vae", "only sd_model_checkpoint"]),
    ],
)
def test_bad_requests_are_refused_saying_what_to_do(local_app, path, body, says):
    answer = requests.post(url(local_app, path), json={**SMALL, **body} if path != "options" else body, timeout=60)
    assert answer.status_code == 422, answer.text
    refusal = answer.json()
    assert refusal["error"] in ("InvalidRequest", "Unauthorized") and "Traceback" not in refusal["detail"]
    for words in says:
        assert words in refusal["detail"]


def test_a_body_that_is_not_json_is_refused(local_app):
    assert requests.post(url(local_app, "txt2img"), data="prompt=a cat", timeout=60).status_code == 415
    answer = requests.post(url(local_app, "txt2img"), data="{", headers={"Content-Type": "application/json"})
    assert answer.status_code == 422 and "not valid JSON" in answer.json()["detail"]


def test_png_info_reads_the_parameters_back(api):
    image = api.txt2img(prompt="a lighthouse", sampler_name="Euler", **SMALL).image
    found = api.png_info(image)
    assert found.info == image.info["parameters"]
    parameters = found.parameters
    assert (parameters["Prompt"], parameters["Seed"], parameters["Size-1"], parameters["Steps"]) == (
        "a lighthouse",
        "5",
        "64",
        "2",
    )
    assert (parameters["Sampler"], parameters["Schedule type"]) == ("Euler", "Uniform")
    assert "diffusion_studio" in found.json["items"]


def test_the_listings_clients_read_at_start(api, local_app):
    samplers = api.get_samplers()
    assert {"Euler a", "DPM++ 2M", "DPM++ 2M SDE", "PLMS"} <= {s["name"] for s in samplers}
    assert all(set(s) == {"name", "aliases", "options"} for s in samplers)
    assert next(s for s in samplers if s["name"] == "DPM++ 2M")["options"] == {"scheduler": "karras"}
    schedules = api.get_schedulers()
    assert [(s["name"], s["label"]) for s in schedules] == [
        ("automatic", "Automatic"),
        ("uniform", "Uniform"),
        ("karras", "Karras"),
        ("exponential", "Exponential"),
    ]
    assert all(set(s) == {"name", "label", "aliases", "default_rho", "need_inner_model"} for s in schedules)
    models = api.get_sd_models()
    assert models[0]["title"] == "demo"
    assert all(set(m) == {"title", "model_name", "hash", "sha256", "filename", "config"} for m in models)
    assert api.get_loras() == []
    assert api.get_options()["sd_model_checkpoint"] == "demo"
    assert requests.get(local_app.url, timeout=60).status_code == 200  # the page itself still serves


def test_a_local_server_can_skip_the_safety_checker(local_app):
    answer = requests.post(url(local_app, "txt2img"), json={**SMALL, "safety_checker": False}, timeout=60)
    assert answer.status_code == 200
    assert json.loads(answer.json()["info"])["diffusion_studio"]["nsfw"] is None


# -- a public server with a login and an owner ------------------------------------------------------------------


def test_every_call_needs_the_login(login_app):
    for login in (None, ("alice", "wrong"), ("mallory", "s3cret-visitor")):
        answer = requests.get(url(login_app, "options"), auth=login, timeout=60)
        assert answer.status_code == 401
        assert answer.headers["WWW-Authenticate"].startswith("Basic") and answer.json()["error"] == "Unauthorized"
    assert requests.post(url(login_app, "txt2img"), json=SMALL, timeout=60).status_code == 401
    assert requests.get(url(login_app, "options"), auth=VISITOR, timeout=60).status_code == 200
    assert requests.get(url(login_app, "options"), auth=OWNER, timeout=60).status_code == 200  # the owner's passes


def test_only_the_owner_switches_the_model(login_app):
    options = url(login_app, "options")
    hub_model = {"sd_model_checkpoint": "stable-diffusion-v1-5/stable-diffusion-v1-5"}
    refused = requests.post(options, json=hub_model, auth=VISITOR, timeout=60)
    assert refused.status_code == 403 and "owner" in refused.json()["detail"]
    assert requests.post(options, json={"sd_model_checkpoint": "demo"}, auth=VISITOR, timeout=60).status_code == 200
    # The owner's login gets past the rule; offline, that checkpoint can't be had, and the demo goes on serving.
    tried = requests.post(options, json=hub_model, auth=OWNER, timeout=60)
    assert tried.status_code == 422 and tried.json()["error"] == "LoadError"
    not_curated = requests.post(options, json={"sd_model_checkpoint": "demo-xs-base"}, auth=OWNER, timeout=60)
    assert not_curated.status_code == 422 and "only loads" in not_curated.json()["detail"]
    assert login_app.studio.model_info()["model"] == "demo"
    assert [m["title"] for m in requests.get(url(login_app, "sd-models"), auth=VISITOR, timeout=60).json()] == [
        "demo",
        "stable-diffusion-v1-5/stable-diffusion-v1-5",
        "stabilityai/stable-diffusion-2-1-base",
        "stable-diffusion-v1-5/stable-diffusion-inpainting",
    ]


def test_a_public_server_always_runs_the_safety_checker(login_app):
    refused = requests.post(url(login_app, "txt2img"), json={**SMALL, "safety_checker": False}, auth=VISITOR)
    assert refused.status_code == 422 and "safety checker" in refused.json()["detail"]
    ran = requests.post(url(login_app, "txt2img"), json=SMALL, auth=VISITOR, timeout=60)
    assert ran.status_code == 200
    assert json.loads(ran.json()["info"])["diffusion_studio"]["nsfw"] == [False]


def test_a_public_server_checks_its_limits_before_any_work(login_app):
    txt2img, img2img = url(login_app, "txt2img"), url(login_app, "img2img")
    too_big = requests.post(
        txt2img, data=b" " * (40 * 2**20), auth=VISITOR, headers={"Content-Type": "application/json"}
    )
    assert too_big.status_code == 413 and too_big.json()["error"] == "PayloadTooLarge"
    # One image over the upload limit (10 MB here) is refused from its base64 length, before decoding.
    over = base64.b64encode(b"\0" * (11 * 2**20)).decode()
    image = requests.post(img2img, json={**SMALL, "init_images": [over]}, auth=VISITOR, timeout=60)
    assert image.status_code == 413 and "init_images[0]" in image.json()["detail"]
    for body, says in (({"steps": 51}, "steps"), ({"width": 2048}, "width"), ({"batch_size": 5}, "batch_size")):
        refused = requests.post(txt2img, json={**SMALL, **body}, auth=VISITOR, timeout=60)
        assert refused.status_code == 422 and says in refused.json()["detail"]


def test_progress_and_interrupt_touch_only_the_callers_own_run(login_app):
    visitor, owner = client(login_app, VISITOR), client(login_app, OWNER)
    answer: dict[str, Any] = {}

    def run() -> None:
        answer["result"] = visitor.txt2img(prompt="mine", width=512, height=512, steps=50, seed=9, sampler_name="Euler")

    def step() -> int:
        return visitor.get_progress()["state"]["sampling_step"]

    thread = threading.Thread(target=run)
    thread.start()
    try:
        seen = wait_for(lambda: step() >= 1 and step(), "the visitor's run to report steps")
        assert owner.interrupt() == {}
        assert owner.get_progress()["state"]["job_count"] == 0  # the owner sees no run of theirs
        wait_for(lambda: step() >= seen + 3, "the visitor's run to go on after the owner's interrupt")
        assert visitor.interrupt() == {}
    finally:
        thread.join(timeout=120)
    ran = answer["result"].info["diffusion_studio"]
    assert ran["interrupted"] is True and seen + 3 <= ran["stopped_at_step"] < 50


def test_lora_tags_name_the_loras_loaded_for_everyone(api, local_app):
    studio = local_app.studio
    local_app.ctx.worker.call(studio.load_lora, "demo-lora", 0.8)
    try:
        assert [(lora["name"], lora["path"]) for lora in api.get_loras()] == [("demo-lora", "demo-lora")]
        ran = api.txt2img(prompt="a cat <lora:demo-lora:0.8>", sampler_name="Euler", **SMALL).info
        assert ran["prompt"] == "a cat <lora:demo-lora:0.8>"  # as sent, as A1111 reports it
        assert ran["diffusion_studio"]["prompt"] == "a cat"  # what the text encoder read
        assert "<lora:demo-lora:0.8>" in ran["infotexts"][0]
        other_weight = requests.post(url(local_app, "txt2img"), json={**SMALL, "prompt": "a <lora:demo-lora:0.5>"})
        assert other_weight.status_code == 422 and "loaded at weight 0.8" in other_weight.json()["detail"]
    finally:
        for name in list(studio.loras.loras):
            local_app.ctx.worker.call(studio.unload_lora, name)
    assert api.get_loras() == []


def test_a_callers_requests_wait_their_turn_and_a_public_server_caps_them():
    jobs = ApiJobs(per_caller=2, total=3)
    first_running, release, second_running = threading.Event(), threading.Event(), threading.Event()

    def hold(event: threading.Event, until: threading.Event | None) -> None:
        with jobs.admitted("a"), jobs.turn("a", "scripts_txt2img"):
            event.set()
            if until is not None:
                assert until.wait(timeout=60)

    threads = [threading.Thread(target=hold, args=(first_running, release))]
    threads[0].start()
    assert first_running.wait(timeout=60)
    threads.append(threading.Thread(target=hold, args=(second_running, None)))
    threads[1].start()
    wait_for(lambda: jobs.current("a")[1] == 2, "the second request to be counted in")
    assert not second_running.is_set(), "a caller's second run waits for their first"
    with pytest.raises(ApiError) as third, jobs.admitted("a"):
        pass
    assert third.value.status == 429
    with jobs.admitted("b"), pytest.raises(ApiError) as everyone, jobs.admitted("c"):
        pass
    assert everyone.value.status == 503
    release.set()
    for thread in threads:
        thread.join(timeout=60)
    assert second_running.is_set() and jobs.current("a") == (None, 0)


def test_a1111_resize_modes_and_the_only_masked_region():
    tall = np.zeros((64, 32, 3), dtype=np.uint8)
    tall[:, :, 0] = 200
    tall[:, 0], tall[:, -1] = (0, 200, 0), (0, 0, 200)  # a green left edge, a blue right one
    image = Image.fromarray(tall)
    assert resize_image(0, image, 64, 48).size == (64, 48)
    cropped = np.asarray(resize_image(1, image, 64, 64)).astype(int)  # scaled to the width, top and bottom cut
    assert (abs(cropped[:, 8:56] - (200, 0, 0)) <= 2).all()
    filled = np.asarray(resize_image(2, image, 64, 64))  # the edges stretched into the sides
    assert (filled[:, :16] == (0, 200, 0)).all() and (filled[:, 48:] == (0, 0, 200)).all()
    assert np.array_equal(filled[:, 16:48], tall)

    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (20, 20, 40, 40))
    x1, y1, x2, y2 = crop_region(mask, 4, 64, 32)
    assert (x2 - x1, y2 - y1) == (56, 28) and x1 <= 16 and y1 <= 16 and x2 >= 44 and y2 >= 44
    assert crop_region(Image.new("L", (64, 64), 0), 4, 64, 64) is None


def test_the_page_and_the_api_share_one_visitor_check(tmp_path):
    import app as app_module
    from core import settings as settings_module
    from ui.sdapi import SdApi

    settings = settings_module.from_args(["--auth", "alice:pw", "--outputs", str(tmp_path)], env={})
    _studio, ctx, blocks = app_module.build_app(settings)
    try:
        assert ctx.visitors is not None and SdApi(ctx).visitors is ctx.visitors
        assert app_module.visitor_check(settings, ctx) is ctx.visitors, "what Gradio's login is given"
    finally:
        blocks.close()
