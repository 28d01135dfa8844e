"""The per-visitor limits middleware on its own, over a stand-in app (the real app's caps: test_public_attacks)."""

from __future__ import annotations

import asyncio
import concurrent.futures

import httpx

from ui.visitor_limits import VisitorLimits, VisitorLimitsMiddleware


def in_own_loop(coroutine):
    """Run `coroutine` in a thread of its own: in a pytest worker that ran the browser tests first, Playwright's
    sync API keeps an event loop running in the main thread, and asyncio.run refuses to start beside it."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


async def _ok(scope, receive, send):
    await receive()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def _post_many(limits: VisitorLimits, count: int) -> list[int]:
    app = VisitorLimitsMiddleware(_ok, limits, waiting=lambda session: 0)

    async def run() -> list[int]:
        transport = httpx.ASGITransport(app=app, client=("10.0.0.7", 1234))
        async with httpx.AsyncClient(transport=transport, base_url="http://studio") as client:
            files = {"files": ("a.png", b"x", "image/png")}
            return [(await client.post("/gradio_api/upload", files=files)).status_code for _ in range(count)]

    return in_own_loop(run())


def test_a_client_uploading_too_often_is_asked_to_wait():
    codes = _post_many(VisitorLimits(uploads_per_minute=5), 7)
    assert codes == [200] * 5 + [429, 429]


def test_an_oversized_upload_body_is_refused_while_it_streams():
    app = VisitorLimitsMiddleware(_ok, VisitorLimits(max_upload_request_bytes=1000), waiting=lambda session: 0)

    async def run() -> int:
        async def body():
            for _ in range(10):
                yield b"x" * 500  # no content-length: counted as it arrives

        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://studio") as client:
            return (await client.post("/gradio_api/upload", content=body())).status_code

    assert in_own_loop(run()) == 413
