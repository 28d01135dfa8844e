"""Raw HTTP calls as an attacker makes them: any dependency by `fn_index`, with hand-made event data and state,
in a session of the attacker's choosing (what gradio_client can't express)."""

from __future__ import annotations

import json
from typing import Any

import httpx


def config(url: str) -> dict[str, Any]:
    return httpx.get(f"{url}config", timeout=30).json()


def component_id(conf: dict[str, Any], elem_id: str) -> int:
    return next(c["id"] for c in conf["components"] if c.get("props", {}).get("elem_id") == elem_id)


def fn_index(conf: dict[str, Any], elem_id: str, trigger: str) -> int:
    """The index of the dependency that `trigger` on the component `elem_id` starts."""
    target = component_id(conf, elem_id)
    for index, dependency in enumerate(conf["dependencies"]):
        if [target, trigger] in [list(t) for t in dependency["targets"]]:
            return dependency.get("id", index)
    raise LookupError(f"no {trigger} event on #{elem_id}")


def call(url: str, fn: int, data: list, session: str, event_data: Any = None, timeout: float = 30) -> httpx.Response:
    """POST one event straight to `/gradio_api/run/predict`, as the page would for an unqueued event."""
    body = {"fn_index": fn, "data": data, "session_hash": session, "event_data": event_data}
    return httpx.post(f"{url}gradio_api/run/predict", json=body, timeout=timeout)


def waiting_count(running: Any, session: str) -> int:
    """What the per-visitor queue cap counts in a running app (ui.visitor_limits.waiting_in, as app.launch builds
    it), for a test to wait on."""
    from ui.visitor_limits import waiting_in

    return waiting_in(running.app, running.ctx.cancel_flags.count)(session)


def run_event(
    url: str,
    fn: int,
    data: list,
    session: str,
    event_data: Any = None,
    timeout: float = 10,
    http: httpx.Client | None = None,
) -> str:
    """Run one queued event as the page does (join, then read the session's event stream) and return everything
    the server said about it, as text (through `http`'s kept connections when given, as a browser keeps them)."""
    body = {"fn_index": fn, "data": data, "session_hash": session, "event_data": event_data}
    joined = (http or httpx).post(f"{url}gradio_api/queue/join", json=body, timeout=timeout)
    if joined.status_code != 200:
        return joined.text
    said = []
    with (http or httpx).stream(
        "GET", f"{url}gradio_api/queue/data", params={"session_hash": session}, timeout=timeout
    ) as stream:
        for line in stream.iter_lines():
            if not line.startswith("data:"):
                continue
            said.append(line)
            message = json.loads(line[5:])
            if message.get("msg") in ("process_completed", "close_stream", "unexpected_error"):
                break
    return "\n".join(said)


def files_in(value: Any) -> list[dict]:
    """Every FileData-like dict in a reply."""
    if isinstance(value, dict):
        found = [value] if ("url" in value or "path" in value) and isinstance(value.get("path"), str) else []
        return found + [f for v in value.values() for f in files_in(v)]
    if isinstance(value, list):
        return [f for v in value for f in files_in(v)]
    return []
