"""Per-visitor cancel flags (one visitor's Stop ends only that visitor's generation), per-visitor shown results,
and the worker that runs generations."""

from __future__ import annotations

import contextvars
import queue
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any


class CancelFlags:
    """One `threading.Event` per running job, kept by the visitor's session id (a session may have several under
    way at once: text-to-image requests run side by side, see core.batching)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._flags: dict[str, set[threading.Event]] = {}

    def start(self, session: str) -> threading.Event:
        """A fresh flag for a job that is about to run in `session`."""
        flag = threading.Event()
        with self._lock:
            self._flags.setdefault(session, set()).add(flag)
        return flag

    def cancel(self, session: str) -> bool:
        """Ask every job of the session to stop; False if it has none."""
        with self._lock:
            flags = list(self._flags.get(session, ()))
        for flag in flags:
            flag.set()
        return bool(flags)

    def running(self, session: str) -> bool:
        """Whether the session has a job under way."""
        with self._lock:
            return session in self._flags

    def count(self, session: str) -> int:
        """How many jobs of the session are under way (running, or handed to the worker and waiting there)."""
        with self._lock:
            return len(self._flags.get(session, ()))

    def finish(self, session: str, flag: threading.Event) -> None:
        """Forget the flag once its job has ended."""
        with self._lock:
            flags = self._flags.get(session, set())
            flags.discard(flag)
            if not flags:
                self._flags.pop(session, None)


class ShownResults:
    """What each visitor's galleries show, kept on the server: a gallery selection is an index into this, never a
    path the browser sends back (a select event's `value` is whatever the client puts there)."""

    def __init__(self, max_sessions: int = 512) -> None:
        self._lock = threading.Lock()
        self._shown: OrderedDict[tuple[str, str], tuple[list, Any, float]] = OrderedDict()
        self._max = max_sessions

    def put(self, session: str, task: str, items: list, info: Any = None) -> None:
        with self._lock:
            self._shown[(session, task)] = (list(items), info, time.monotonic())
            self._shown.move_to_end((session, task))
            while len(self._shown) > self._max:  # the oldest visitors' selections are forgotten first
                self._shown.popitem(last=False)

    def get(self, session: str, task: str, index: Any) -> Any:
        """The item at `index` of what `task`'s gallery showed `session`, or None."""
        if isinstance(index, bool) or not isinstance(index, int):
            return None
        with self._lock:
            items = self._shown.get((session, task), ([], None, 0.0))[0]
            return items[index] if 0 <= index < len(items) else None

    def only(self, session: str, task: str) -> Any:
        """The one item `task`'s gallery showed `session`, or None when it showed none or several."""
        with self._lock:
            items = self._shown.get((session, task), ([], None, 0.0))[0]
            return items[0] if len(items) == 1 else None

    def since(self, session: str, task: str, moment: float) -> tuple[list, Any] | None:
        """(items, info) of `task`'s latest result for `session` if it came after `moment` (time.monotonic())."""
        with self._lock:
            found = self._shown.get((session, task))
        return (found[0], found[1]) if found is not None and found[2] >= moment else None

    def forget(self, session: str) -> None:
        with self._lock:
            for key in [key for key in self._shown if key[0] == session]:
                del self._shown[key]


class Worker:
    """Runs the jobs handed to it one at a time, on the thread that calls `serve` (`python app.py` gives it the
    main thread, which otherwise only waits), or, until one does, on a thread of its own.

    Why not just run them in the web server's worker threads: on this project's reference CPU machine the same
    diffusers call ran 12-19% slower in any thread but the process's main one, reproducibly within one run (see
    docs/benchmarks.md, "app"), and the cause lies below Python. One long-lived thread also matches the device:
    one generation at a time.
    """

    def __init__(self) -> None:
        self._jobs: queue.Queue = queue.Queue()
        self._lock = threading.Lock()
        self._serving: threading.Thread | None = None

    def submit(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Future:
        """Queue `fn(*args, **kwargs)`, to run in a copy of the caller's context (where gr.Progress finds its event)."""
        future: Future = Future()
        context = contextvars.copy_context()
        if threading.current_thread() is self._serving:  # a job that submits a job runs it in place
            self._run(future, context, fn, args, kwargs)
            return future
        self._jobs.put((future, context, fn, args, kwargs))
        self._ensure_serving()
        return future

    def defer(self, fn: Callable[..., Any], *args: Any) -> None:
        """Queue `fn(*args)` behind the jobs waiting, from the worker's own thread too (where `submit` runs a job in
        place): for a job nobody waits on, such as the next batch of core.batching."""
        self._jobs.put((Future(), contextvars.copy_context(), fn, args, {}))
        self._ensure_serving()

    def _ensure_serving(self) -> None:
        with self._lock:
            if self._serving is None:
                self._serving = threading.Thread(target=self.serve, name="studio-worker", daemon=True)
                self._serving.start()

    def claim(self) -> None:
        """Make the calling thread the one that will serve (jobs wait until it calls `serve`)."""
        with self._lock:
            self._serving = threading.current_thread()

    def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run `fn` on the worker and return its result (or raise its error) here."""
        return self.submit(fn, *args, **kwargs).result()

    def serve(self, stop: threading.Event | None = None) -> None:
        """Run jobs on this thread until `stop` is set (forever without one)."""
        with self._lock:
            if self._serving is not None and self._serving is not threading.current_thread():
                raise RuntimeError("another thread already serves this worker")
            self._serving = threading.current_thread()
        while stop is None or not stop.is_set():
            try:
                job = self._jobs.get(timeout=0.2)
            except queue.Empty:
                continue
            self._run(*job)

    @staticmethod
    def _run(future: Future, context: contextvars.Context, fn: Callable, args: tuple, kwargs: dict) -> None:
        if not future.set_running_or_notify_cancel():
            return
        try:
            future.set_result(context.run(fn, *args, **kwargs))
        except BaseException as e:  # handed to the waiting caller
            future.set_exception(e)
            if not isinstance(e, Exception):  # Ctrl+C or exit also ends the serving loop
                raise
