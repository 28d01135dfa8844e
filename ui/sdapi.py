"""AUTOMATIC1111's HTTP API (`/sdapi/v1/...`) on the studio's own server, so the clients that speak it (Open WebUI,
SillyTavern, editor plugins, the `webuiapi` package) use the studio as their backend. docs/sdapi.md says what is
supported, what is refused, and the rules.

The routes are handed to Gradio's FastAPI app when it is made (`launch(app_kwargs={"routes": ...})`, app.py), so
they come before Gradio's own in its router and serve wherever the page does, a share link included. A run goes
through `ui.results.run_request` onto the studio's one worker, like the page's: API runs never run beside page runs.
A model switch goes onto the same worker, like the page's Load button.

Who may do what follows the page (DESIGN.md, "Public mode"): Gradio's login does not cover routes added to its app,
so with `--auth` every call needs HTTP Basic with those credentials (A1111's `--api-auth` is Basic too); on a public
server switching the model is the owner's (Basic with the `--admin` credentials), the safety checker always runs,
and every limit is checked before work starts. A caller is the Basic user when one logged in, else the client
address; /progress and /interrupt see only the caller's own run.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import logging
import re
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio.to_thread
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.routing import BaseRoute

from core import infotext
from core.errors import StudioError
from core.outputs import png_metadata
from core.png_info import parse_parameters, read_png_info, text_chunks
from ui import sdapi_answers as answers
from ui import sdapi_fields as fields
from ui.common import AppContext
from ui.results import WAITING, run_request
from ui.sdapi_fields import ApiError, refuse

logger = logging.getLogger("diffusion_studio.sdapi")
PREFIX = "/sdapi/v1"
LOCAL_MAX_IMAGE_BYTES = 64 * 1024 * 1024  # without an upload limit (a local server), still a bound on one image
SMALL_BODY_BYTES = 64 * 1024  # options and interrupts carry a few fields
PUBLIC_WAITING_PER_CALLER = 3  # as the page's visitors (ui.visitor_limits): runs one caller may have waiting
REALM = 'Basic realm="Diffusion Studio API", charset="UTF-8"'


@dataclass(frozen=True)
class Caller:
    """Who sent a request: `key` names their run, Stop flag and outputs folder; `owner` may change shared state."""

    key: str
    owner: bool


class ApiJob:
    """One API run as /progress reports it; the studio reports to it as to the page's progress bar
    (`progress(0, desc=...)` when the run starts on the worker, `progress((step, steps), ...)` after each step)."""

    def __init__(self, name: str) -> None:
        self.name = name  # A1111's job name: scripts_txt2img, scripts_img2img
        self.timestamp = time.strftime("%Y%m%d%H%M%S")
        self.started_at: float | None = None  # None while it waits for the worker
        self.step = self.steps = 0
        self.interrupted = False

    def __call__(self, value: Any, desc: str | None = None, unit: str | None = None, **_more: Any) -> None:
        if desc == WAITING:  # handed to the worker, not started yet
            return
        if self.started_at is None:
            self.started_at = time.time()
        if isinstance(value, tuple) and len(value) == 2:
            self.step, self.steps = int(value[0]), int(value[1])


class ApiJobs:
    """The API's runs by caller. A caller's requests run one after another (each run has its own Stop flag, keyed
    by the caller); on a public server a caller may have at most `per_caller` admitted (running or waiting) and all
    callers `total`, counted when a request arrives, before its body is read."""

    def __init__(self, per_caller: int | None = None, total: int | None = None) -> None:
        self.per_caller, self.total = per_caller, total
        self._changed = threading.Condition()
        self._admitted: dict[str, int] = {}  # running or waiting, per caller
        self._running: dict[str, ApiJob] = {}

    @contextlib.contextmanager
    def admitted(self, caller: str) -> Iterator[None]:
        """Count a request in while it is handled; refused at once (429, 503) over the caps."""
        with self._changed:
            mine = self._admitted.get(caller, 0)
            if self.per_caller is not None and mine >= self.per_caller:
                raise ApiError(429, f"You already have {mine} runs under way or waiting; let them finish first.")
            if self.total is not None and sum(self._admitted.values()) >= self.total:
                raise ApiError(503, "This server has as many API runs waiting as it takes; try again in a minute.")
            self._admitted[caller] = mine + 1
        try:
            yield
        finally:
            with self._changed:
                self._admitted[caller] -= 1
                if not self._admitted[caller]:
                    del self._admitted[caller]

    @contextlib.contextmanager
    def turn(self, caller: str, name: str) -> Iterator[ApiJob]:
        """Wait until the caller has no run going, then hold their turn while this one goes on."""
        with self._changed:
            while caller in self._running:
                self._changed.wait()
            job = self._running[caller] = ApiJob(name)
        try:
            yield job
        finally:
            with self._changed:
                del self._running[caller]
                self._changed.notify_all()

    def current(self, caller: str) -> tuple[ApiJob | None, int]:
        """The caller's running run, and how many they have under way or waiting."""
        with self._changed:
            return self._running.get(caller), self._admitted.get(caller, 0)


def sdapi_routes(ctx: AppContext) -> list[BaseRoute]:
    """The `/sdapi/v1/...` routes over `ctx`, for Gradio's FastAPI app (`FastAPI(routes=...)`)."""
    return SdApi(ctx).routes()


def basic_credentials(header: str | None) -> tuple[str, str] | None:
    """(user, password) of an `Authorization: Basic ...` header; None without one; 401 for a malformed one."""
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, sep, password = base64.b64decode(value.strip(), validate=True).decode("utf-8").partition(":")
    except (ValueError, UnicodeDecodeError):
        user, sep, password = "", "", ""
    if not sep:
        raise ApiError(401, "The Authorization header is not HTTP Basic user:password.", {"WWW-Authenticate": REALM})
    return user, password


class SdApi:
    """The endpoints, over the app's context (the studio, its settings, the worker and the Stop flags)."""

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx
        settings = ctx.settings
        self.visitors = ctx.visitors  # the page's own check: both count the same guesses
        self.jobs = ApiJobs(
            PUBLIC_WAITING_PER_CALLER if settings.public else None,
            (settings.queue_size or 20) if settings.public else None,
        )
        self.max_image_bytes = settings.max_upload_bytes or LOCAL_MAX_IMAGE_BYTES
        # One input image and its mask, base64-encoded (4 characters per 3 bytes), and room for the other fields.
        self.image_body_bytes = 2 * (self.max_image_bytes * 4 // 3 + 64) + 1024 * 1024

    def routes(self) -> list[BaseRoute]:
        router = APIRouter(prefix=PREFIX)
        for method, path, fn in (
            ("POST", "/txt2img", self.txt2img),
            ("POST", "/img2img", self.img2img),
            ("GET", "/options", self.get_options),
            ("POST", "/options", self.set_options),
            ("GET", "/sd-models", self.sd_models),
            ("GET", "/samplers", self.samplers),
            ("GET", "/schedulers", self.schedulers),
            ("GET", "/loras", self.loras),
            ("GET", "/scripts", self.scripts),
            ("GET", "/progress", self.progress),
            ("POST", "/interrupt", self.interrupt),
            ("POST", "/png-info", self.png_info),
        ):
            router.add_api_route(path, self._answering(fn), methods=[method], name=f"sdapi_{fn.__name__}")
        return list(router.routes)

    def _answering(self, fn: Callable[[Request], Awaitable[Any]]) -> Callable[[Request], Awaitable[JSONResponse]]:
        """`fn` with its refusals as A1111-style JSON errors ({"error": type, "detail": message}); anything else is a
        bug: logged with its traceback, answered with a short message (on a public server, with no detail)."""

        async def endpoint(request: Request):
            try:
                return JSONResponse(await fn(request))
            except ApiError as e:
                return _error(e.status, e.error, e.detail, e.headers)
            except StudioError as e:
                return _error(422, type(e).__name__, str(e))
            except Exception as e:
                logger.exception("Unexpected error in %s %s", request.method, request.url.path)
                what = type(e).__name__ if self.ctx.settings.public else f"{type(e).__name__}: {e}"
                detail = (
                    f"Something went wrong ({what}). The model is still loaded; try again, and if it keeps failing, "
                )
                return _error(500, "InternalError", detail + "check the server log.")

        return endpoint

    # -- who is asking -----------------------------------------------------------------------------------------

    def caller(self, request: Request) -> Caller:
        """The caller, after the Basic login `--auth` asks for (the owner's `--admin` login passes it too); 401
        otherwise. Unchecked credentials (a server with no logins) are ignored, as A1111 does."""
        credentials = basic_credentials(request.headers.get("authorization"))
        public = self.ctx.settings.public
        owners = self.ctx.owners
        if credentials is not None and (self.visitors or owners.enabled):
            user, password = credentials
            admin = self.ctx.settings.admin
            if admin is not None and user == admin[0] and owners.check(user, password):
                return Caller(f"sdapi:user:{user}", owner=True)
            if self.visitors is not None and self.visitors(user, password):
                return Caller(f"sdapi:user:{user}", owner=not public)
            waits = [owners.wait_s(user)] + ([self.visitors.throttle.wait_s(user)] if self.visitors else [])
            why = f"Too many failed logins as {user!r}; try again in {max(waits):.0f} s." if max(waits) > 0 else ""
            raise ApiError(401, why or "Wrong user name or password.", {"WWW-Authenticate": REALM})
        if self.visitors is not None:
            raise ApiError(
                401,
                "This server needs a login: send HTTP Basic credentials (webuiapi: api.set_auth(user, password); "
                "curl: -u user:password).",
                {"WWW-Authenticate": REALM},
            )
        address = request.client.host if request.client else "unknown"
        return Caller(f"sdapi:address:{address}", owner=not public)

    async def _json(self, request: Request, limit: int) -> Any:
        """The JSON body, refused before parsing when over `limit` bytes (by its Content-Length, and while it is
        read). JSON only: a cross-site form can't send it without the browser asking first (CORS)."""
        kind = request.headers.get("content-type", "")
        if kind.split(";")[0].strip().lower() != "application/json":
            raise ApiError(415, "Send the body as JSON, with Content-Type: application/json.")
        too_large = ApiError(413, f"The request is over {limit / 2**20:.1f} MB, more than this server takes.")
        length = request.headers.get("content-length", "")
        if length.isdigit() and int(length) > limit:
            raise too_large
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise too_large
            chunks.append(chunk)
        try:
            return json.loads(b"".join(chunks) or b"null")
        except (ValueError, RecursionError):
            raise refuse("The body is not valid JSON.") from None

    # -- generating --------------------------------------------------------------------------------------------

    async def txt2img(self, request: Request) -> dict:
        return await self._generation(request, from_image=False)

    async def img2img(self, request: Request) -> dict:
        return await self._generation(request, from_image=True)

    async def _generation(self, request: Request, *, from_image: bool) -> dict:
        caller = self.caller(request)
        with self.jobs.admitted(caller.key):
            body = await self._json(request, self.image_body_bytes)
            return await anyio.to_thread.run_sync(self._generate, caller, body, from_image)

    def _generate(self, caller: Caller, body: Any, from_image: bool) -> dict:
        """Translate, check every limit, wait for the caller's turn, run on the worker, answer as A1111 does."""
        ctx, studio, limits = self.ctx, self.ctx.studio, self.ctx.settings.limits
        options = self.options()
        if from_image:
            translation = fields.img2img(body, studio, limits, options, self.is_loaded, self.max_image_bytes)
        else:
            translation = fields.txt2img(body, studio, limits, options, self.is_loaded)
        if ctx.settings.public and not translation.request.safety_checker:
            raise refuse("The safety checker can't be turned off on a public server.")
        with self.jobs.turn(caller.key, "scripts_img2img" if from_image else "scripts_txt2img") as job:
            result = run_request(ctx, translation.request, caller.key, job, owner=caller.key)
        inpainting_unet = translation.request.mask is not None and studio.companion("inpaint") is not None
        info = answers.a1111_info(translation, result.info, studio, inpainting_unet=inpainting_unet)
        images = []
        if translation.send_images:
            for i, image in enumerate(result.images):
                buffer = io.BytesIO()
                translation.finish(image).save(buffer, format="PNG", pnginfo=png_metadata(result.info, i))
                images.append(base64.b64encode(buffer.getvalue()).decode("ascii"))
        return {"images": images, "parameters": translation.parameters, "info": json.dumps(info, default=str)}

    async def progress(self, request: Request) -> dict:
        """The caller's own run: A1111's progress (0..1), ETA and state; no live image."""
        job, count = self.jobs.current(self.caller(request).key)
        state = {
            "skipped": False,
            "interrupted": bool(job and job.interrupted),
            "stopping_generation": False,
            "job": job.name if job else "",
            "job_count": count,
            "job_timestamp": job.timestamp if job else time.strftime("%Y%m%d%H%M%S"),
            "job_no": 0,
            "sampling_step": job.step if job else 0,
            "sampling_steps": job.steps if job else 0,
        }
        idle = {"progress": 0.0, "eta_relative": 0.0, "state": state, "current_image": None, "textinfo": None}
        if job is None:
            return idle
        if job.started_at is None:
            return {**idle, "textinfo": "Waiting for the GPU: another run is under way."}
        done = 0.01 + (job.step / job.steps if job.steps else 0.0)
        elapsed = time.time() - job.started_at
        text = f"Step {job.step} of {job.steps}" if job.steps else "Starting"
        return {
            **idle,
            "progress": min(done, 1.0),
            "eta_relative": max(elapsed / done - elapsed, 0.0),
            "textinfo": text,
        }

    async def interrupt(self, request: Request) -> dict:
        """Stop the caller's own run at its next step (it still answers, with the image as far as it got)."""
        caller = self.caller(request)
        job, _count = self.jobs.current(caller.key)
        if job is not None:
            job.interrupted = True
            self.ctx.cancel_flags.cancel(caller.key)
        return {}

    # -- the model and what it offers --------------------------------------------------------------------------

    def options(self) -> dict[str, Any]:
        """A1111's options the studio has: the loaded model (`sd_model_checkpoint`), its VAE, and what it runs with."""
        studio = self.ctx.studio
        vae = studio.pool.vae_source if studio.is_loaded else "default"
        return {
            "sd_model_checkpoint": studio.pool.files.source if studio.is_loaded else None,
            "sd_checkpoint_hash": None,  # hashing a checkpoint takes seconds: only GET /sd-models does it
            "sd_vae": "Automatic" if vae == "default" else vae,
            **fields.FIXED_OPTIONS,
        }

    async def get_options(self, request: Request) -> dict:
        self.caller(request)
        return await anyio.to_thread.run_sync(self.options)

    async def set_options(self, request: Request) -> None:
        """`{"sd_model_checkpoint": title}` loads that model as the page's Load button does (on the worker, between
        runs); on a public server only the owner may. Other options are refused unless they repeat the current."""
        caller = self.caller(request)
        body = await self._json(request, SMALL_BODY_BYTES)
        if not isinstance(body, dict):
            raise refuse('The body must be a JSON object, e.g. {"sd_model_checkpoint": "demo"}.')
        return await anyio.to_thread.run_sync(self._set_options, caller, body)

    def _set_options(self, caller: Caller, body: dict) -> None:
        current = self.options()
        for key, value in body.items():
            if key != "sd_model_checkpoint" and not fields.same_option(current, key, value):
                raise refuse(
                    f"Option {key}={value!r} can't be set here: only sd_model_checkpoint can (this studio runs with "
                    f"{', '.join(f'{k}={v!r}' for k, v in current.items() if k != 'sd_model_checkpoint')})."
                )
        wanted = body.get("sd_model_checkpoint")
        if wanted is None:
            return None
        if not isinstance(wanted, str) or not wanted.strip():
            raise refuse("sd_model_checkpoint must be a model's title from GET /sdapi/v1/sd-models.")
        if self.is_loaded(wanted):
            return None
        if self.ctx.settings.public and not caller.owner:
            how = (
                "send the owner's login (HTTP Basic with the --admin credentials)"
                if self.ctx.owners.enabled
                else "its owner sets that when starting the server (flags, spaces_config.yaml)"
            )
            raise ApiError(403, f"Loading a checkpoint changes what every user of this public server gets; {how}.")
        source, settings = self._source_for(wanted), self.ctx.settings
        self.ctx.worker.call(self.ctx.studio.load, source, variant=settings.variant, dtype=settings.dtype)
        return None

    def is_loaded(self, name: str) -> bool:
        studio = self.ctx.studio
        return studio.is_loaded and self._source_for(name) == studio.pool.files.source

    def _source_for(self, name: str) -> str:
        """The source a model title names (A1111's `title [hash]` too): a listed model's title or short name;
        otherwise the text itself, as the page's model box takes it (a public server loads only its curated list:
        the studio refuses others)."""
        bare = re.sub(r"\s*\[[0-9a-fA-F]{6,64}\]$", "", name.strip())
        for row in self._model_rows(hashes=False):
            if bare in (row["title"], row["model_name"]):
                return row["title"]
        return bare

    def _hashes(self, pool: Any) -> tuple[str | None, str | None]:
        """(A1111's short hash, SHA-256) of a single-file checkpoint; a diffusers folder has no one file to hash."""
        single = pool.files.single_file
        if single is None or not Path(single).is_file():
            return None, None
        sha256 = infotext.file_hash(Path(single))
        return sha256[:10], sha256

    def _model_rows(self, hashes: bool = True) -> list[dict[str, Any]]:
        """GET /sd-models' rows: the loaded model first, then the curated ones and (locally) the cached ones."""
        studio, settings = self.ctx.studio, self.ctx.settings
        loaded = studio.pool.files.source if studio.is_loaded else None
        sources = ([loaded] if loaded else []) + list(settings.model_choices)
        if not settings.public:  # the cache is the owner's business on a public server
            with contextlib.suppress(StudioError, OSError):
                sources += [row["id"] for row in studio.cached_checkpoints() if str(row["kind"]).endswith("Pipeline")]
        where = studio.model_info().get("model_path") if loaded and not settings.public else None
        rows = []
        for source in dict.fromkeys(sources):
            short, sha256 = self._hashes(studio.pool) if hashes and source == loaded else (None, None)
            rows.append(
                {
                    "title": source,
                    "model_name": infotext.model_name(source),
                    "hash": short,
                    "sha256": sha256,
                    "filename": (where if source == loaded else None) or source,
                    "config": None,
                }
            )
        return rows

    async def sd_models(self, request: Request) -> list:
        self.caller(request)
        return await anyio.to_thread.run_sync(self._model_rows)

    async def samplers(self, request: Request) -> list:
        self.caller(request)
        return answers.samplers(self.ctx.studio)

    async def schedulers(self, request: Request) -> list:
        self.caller(request)
        return answers.schedule_types()

    async def loras(self, request: Request) -> list:
        """The LoRAs loaded for everyone (the page's LoRA panel): what a prompt's `<lora:name:weight>` may name."""
        self.caller(request)
        return [
            {"name": infotext.lora_name(lora), "alias": lora.name, "path": lora.source, "metadata": {}}
            for lora in self.ctx.studio.loras.loras.values()
        ]

    async def scripts(self, request: Request) -> dict:
        self.caller(request)
        return {"txt2img": [], "img2img": []}  # no scripts; clients (webuiapi) ask at start

    # -- reading a PNG -----------------------------------------------------------------------------------------

    async def png_info(self, request: Request) -> dict:
        """`{"image": base64}` -> the parameters it carries, read from its text chunks without decoding its pixels."""
        self.caller(request)
        body = await self._json(request, self.image_body_bytes)
        if not isinstance(body, dict):
            raise refuse('The body must be a JSON object: {"image": "<base64 PNG>"}.')
        return await anyio.to_thread.run_sync(self._png_info, body.get("image"))

    def _png_info(self, data: Any) -> dict:
        raw = fields.base64_bytes(data, "image", self.max_image_bytes)
        with tempfile.TemporaryDirectory(prefix="sdapi-") as folder:
            path = Path(folder) / "image"
            path.write_bytes(raw)
            found = read_png_info(path)
            items = {key: value for key, value in text_chunks(path).items() if key != "parameters"}
        text = found.get("text") or ""
        # Our own images' fields come from their JSON; A1111's `parameters` names are their text's.
        parsed = parse_parameters(text) if text and found.get("found") == "diffusion-studio" else found
        return {"info": text, "items": items, "parameters": answers.png_info_parameters(parsed)}


def _error(status: int, error: str, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": error, "detail": detail}, status_code=status, headers=headers)
