"""Per-visitor limits Gradio has no setting for, checked on the HTTP requests before Gradio sees them (public mode):
how many files one upload request carries and how big it is, how often a client uploads, and how many requests one
visitor may have waiting in the queue (Gradio's `max_size` is for everyone together, so one visitor could fill it).

A plain ASGI middleware, handed to Gradio's FastAPI app through `launch(app_kwargs={"middleware": [...]})`."""

from __future__ import annotations

import json
import re
import secrets
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Scope = dict[str, Any]


@dataclass(frozen=True)
class VisitorLimits:
    max_files_per_upload: int = 4
    max_upload_request_bytes: int = 40 * 1024 * 1024
    uploads_per_minute: int = 60  # per client address
    max_waiting_per_visitor: int = 3  # queued (not yet running) requests of one session
    max_join_bytes: int = 1024 * 1024  # a queue/join body holds parameters and file references, never file data


class VisitorLimitsMiddleware:
    """`waiting(session_hash)` says how many requests that session has waiting in the queue."""

    def __init__(self, app: Any, limits: VisitorLimits, waiting: Callable[[str], int]) -> None:
        self.app, self.limits, self.waiting = app, limits, waiting
        self._uploads: defaultdict[str, deque[float]] = defaultdict(deque)
        self._lock = threading.Lock()

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope.get("method") != "POST":
            return await self.app(scope, receive, send)
        path = scope.get("path", "")
        if path.endswith("/upload"):
            return await self._upload(scope, receive, send)
        if path.endswith("/queue/join"):
            return await self._join(scope, receive, send)
        return await self.app(scope, receive, send)

    async def _upload(self, scope: Scope, receive: Any, send: Any) -> None:
        limits = self.limits
        client = (scope.get("client") or ("?", 0))[0]
        now = time.monotonic()
        with self._lock:
            recent = self._uploads[client]
            while recent and now - recent[0] > 60:
                recent.popleft()
            if len(recent) >= limits.uploads_per_minute:
                return await _refuse(send, 429, f"Over {limits.uploads_per_minute} uploads a minute; wait a little.")
            recent.append(now)
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > limits.max_upload_request_bytes:
            return await _refuse(send, 413, "That upload is too large for this public server.")
        boundary = _boundary(headers.get(b"content-type", b""))
        body = await _read(receive, limits.max_upload_request_bytes)
        if body is None:
            return await _refuse(send, 413, "That upload is too large for this public server.")
        files = body.count(b"--" + boundary) - 1 if boundary else 0
        if files > limits.max_files_per_upload:
            return await _refuse(send, 413, f"Upload at most {limits.max_files_per_upload} files at a time.")
        await self.app(scope, _replay(body, receive), send)

    async def _join(self, scope: Scope, receive: Any, send: Any) -> None:
        body = await _read(receive, self.limits.max_join_bytes)
        if body is None:
            return await _refuse(send, 413, "That request is too large; shorten the prompt.")
        try:
            session = json.loads(body).get("session_hash")
        except (ValueError, AttributeError):
            session = None  # Gradio answers a malformed body itself
        if isinstance(session, str) and self.waiting(session) >= self.limits.max_waiting_per_visitor:
            return await _refuse(
                send,
                503,
                f"You already have {self.limits.max_waiting_per_visitor} requests waiting; let them finish (or press "
                "Stop) before sending more.",
            )
        await self.app(scope, _replay(body, receive), send)


VISITOR_COOKIE = "studio_visitor"
_VISITOR_ID = re.compile(r"[0-9a-f]{32}")


def visitor_id(cookies: dict[str, str] | None) -> str | None:
    """The visitor id in a request's cookies, if it is one this server could have made (32 hex digits)."""
    value = (cookies or {}).get(VISITOR_COOKIE)
    return value if isinstance(value, str) and _VISITOR_ID.fullmatch(value) else None


class VisitorCookieMiddleware:
    """Public mode: the page's first answer gives a visitor a random id in an HttpOnly cookie, so their saved images
    (History) survive a reload; Gradio's session ends with the page. The id only names the visitor's outputs folder
    (hashed, core.outputs), and a guessed one would have to match 128 random bits."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope.get("method") != "GET" or scope.get("path") not in ("/", ""):
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        cookies = {}
        for part in headers.get(b"cookie", b"").decode("latin-1").split(";"):
            name, _, value = part.strip().partition("=")
            cookies[name] = value
        if visitor_id(cookies) is not None:
            return await self.app(scope, receive, send)
        secure = scope.get("scheme") == "https" or headers.get(b"x-forwarded-proto", b"") == b"https"
        cookie = (
            f"{VISITOR_COOKIE}={secrets.token_hex(16)}; Path=/; Max-Age=31536000; HttpOnly; SameSite=Lax"
            + ("; Secure" if secure else "")
        ).encode()

        async def with_cookie(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), (b"set-cookie", cookie)]}
            await send(message)

        await self.app(scope, receive, with_cookie)


def _boundary(content_type: bytes) -> bytes:
    for part in content_type.split(b";"):
        key, _, value = part.strip().partition(b"=")
        if key.lower() == b"boundary":
            return value.strip(b'"')
    return b""


async def _read(receive: Any, limit: int) -> bytes | None:
    """The whole request body, or None once it passes `limit` bytes."""
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replay(body: bytes, receive: Any) -> Callable[[], Any]:
    """The body already read, then the client's own messages (a disconnect, when it comes)."""
    sent = False

    async def replay() -> dict[str, Any]:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay


async def _refuse(send: Any, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail, "error": detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def waiting_in(blocks: Any, under_way: Callable[[str], int] | None = None) -> Callable[[str], int]:
    """How many requests of a session wait: in `blocks`' queue, and on the worker beyond the one that may be running
    (`under_way(session)`: its generations handed on; text-to-image requests leave Gradio's queue to wait for a call
    to share, core.batching). Gradio keeps no public count per session, so this reads its queue's lists (gradio 6.31:
    `_queue.event_queue_per_concurrency_id[...].queue`); a test of the cap fails if that changes."""

    def waiting(session: str) -> int:
        queue = getattr(blocks, "_queue", None)
        lines = getattr(queue, "event_queue_per_concurrency_id", {}) or {}
        queued = sum(1 for line in list(lines.values()) for event in list(line.queue) if event.session_hash == session)
        return queued + (max(0, under_way(session) - 1) if under_way is not None else 0)

    return waiting
