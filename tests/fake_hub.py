"""A fake Hugging Face Hub on 127.0.0.1: serves local folders as model repos, speaking the few routes
huggingface_hub uses (repo info, the recursive file tree, HEAD and ranged GET of `resolve/` URLs).

The real Hub is unreachable on CI; this lets the studio's preflight and download run through the library's own
code against real HTTP. It records every request so tests can check what was (not) downloaded.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

COMMIT = "1" * 40
_RESOLVE = re.compile(r"^/(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<file>.+)$")
_API = re.compile(r"^/api/models/(?P<repo>[^/]+/[^/]+)(?:/(?P<kind>revision|tree)/(?P<rev>[^/]+)(?:/.*)?)?$")


class FakeHub:
    def __init__(self, repos: dict[str, Path], *, bytes_per_second: int | None = None) -> None:
        self.repos = {repo: Path(folder) for repo, folder in repos.items()}
        self.bytes_per_second = bytes_per_second  # throttles downloads, to watch progress
        self.requests: list[tuple[str, str]] = []  # (method, path)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def downloaded(self) -> list[str]:
        """`repo/file` of every full (non-ranged) file GET so far."""
        return [path for method, path in self.requests if method == "GET"]

    def start(self) -> FakeHub:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _files(self, repo: str) -> list[Path]:
        root = self.repos[repo]
        return sorted(p for p in root.rglob("*") if p.is_file())

    def _handler(self):
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # quiet
                pass

            def _json(self, data, status: int = 200) -> None:
                body = json.dumps(data).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _not_found(self) -> None:
                # What the Hub says for a repo that does not exist (or that the caller may not see).
                self.send_response(401)
                self.send_header("X-Error-Code", "RepoNotFound")
                self.send_header("X-Error-Message", "Repository not found")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_GET(self) -> None:
                self._serve(head=False)

            def do_HEAD(self) -> None:
                self._serve(head=True)

            def _serve(self, head: bool) -> None:
                path = unquote(urlsplit(self.path).path)
                match = _API.match(path)
                if match:
                    repo = match["repo"]
                    if repo not in hub.repos:
                        return self._not_found()
                    files = hub._files(repo)
                    root = hub.repos[repo]
                    if match["kind"] == "tree":
                        return self._json([_tree_entry(f, root) for f in files])
                    siblings = [{"rfilename": str(f.relative_to(root))} for f in files]
                    return self._json({"id": repo, "modelId": repo, "sha": COMMIT, "siblings": siblings})
                match = _RESOLVE.match(path)
                if not match or match["repo"] not in hub.repos:
                    return self._not_found()
                file = hub.repos[match["repo"]] / match["file"]
                if not file.is_file():
                    self.send_response(404)
                    self.send_header("X-Error-Code", "EntryNotFound")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                data = file.read_bytes()
                ranged = self.headers.get("Range")
                hub.requests.append(
                    ("RANGE" if ranged else ("HEAD" if head else "GET"), f"{match['repo']}/{match['file']}")
                )
                status, body = 200, data
                if ranged:
                    start, _, end = ranged.removeprefix("bytes=").partition("-")
                    stop = min(int(end) + 1 if end else len(data), len(data))
                    status, body = 206, data[int(start) : stop]
                self.send_response(status)
                self.send_header("X-Repo-Commit", COMMIT)
                self.send_header("ETag", f'"{_etag(file)}"')
                self.send_header("Content-Length", str(len(body)))
                if ranged:
                    self.send_header("Content-Range", f"bytes {start}-{int(start) + len(body) - 1}/{len(data)}")
                self.end_headers()
                if head:
                    return
                chunk = 64 * 1024
                for i in range(0, len(body), chunk):
                    self.wfile.write(body[i : i + chunk])
                    if hub.bytes_per_second and not ranged:
                        time.sleep(chunk / hub.bytes_per_second)

        return Handler


def _etag(file: Path) -> str:
    return hashlib.sha256(file.read_bytes()).hexdigest()


def _tree_entry(file: Path, root: Path) -> dict:
    size = file.stat().st_size
    entry = {"type": "file", "oid": hashlib.sha1(file.read_bytes()).hexdigest(), "size": size}
    entry["path"] = str(file.relative_to(root))
    if file.suffix in (".safetensors", ".bin"):
        entry["lfs"] = {"oid": _etag(file), "size": size, "pointerSize": 134}
    return entry


@contextmanager
def serving(repos: dict[str, Path], monkeypatch, **kwargs):
    """Run a fake Hub and point huggingface_hub at it (online), for the duration of a test."""
    from huggingface_hub import constants

    hub = FakeHub(repos, **kwargs).start()
    monkeypatch.setattr(constants, "ENDPOINT", hub.url)
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", hub.url + "/{repo_id}/resolve/{revision}/{filename}")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    try:
        yield hub
    finally:
        hub.stop()
