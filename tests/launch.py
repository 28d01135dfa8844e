"""Start the real app in this process on a free localhost port, as `python app.py` would, without blocking."""

from __future__ import annotations

import socket
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RunningApp:
    def __init__(self, url: str, outputs: Path, studio, ctx, app) -> None:
        self.url, self.outputs, self.studio, self.ctx, self.app = url, outputs, studio, ctx, app


def start_app(outputs: Path, *extra: str) -> RunningApp:
    """Start `app.py --model demo` in this process, as `python app.py` would, without blocking."""
    import app as app_module
    from core import settings as settings_module

    port = free_port()
    argv = [
        "--model",
        "demo",
        "--variant",
        "default",
        "--dtype",
        "float32",
        "--port",
        str(port),
        "--outputs",
        str(outputs),
        *extra,
    ]
    settings = settings_module.from_args(argv, env={})
    studio, ctx, blocks = app_module.build_app(settings)
    app_module.launch(settings, blocks, ctx=ctx, prevent_thread_lock=True)
    app_module.load_initial_model(ctx, settings, background=False)
    return RunningApp(f"http://127.0.0.1:{port}/", outputs, studio, ctx, blocks)
