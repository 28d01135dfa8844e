"""Per-visitor cancel flags, so one visitor's Stop ends only that visitor's generation."""

from __future__ import annotations

import threading


class CancelFlags:
    """One `threading.Event` per running job, keyed by the visitor's session id."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._flags: dict[str, threading.Event] = {}

    def start(self, session: str) -> threading.Event:
        """A fresh flag for a job that is about to run in `session`."""
        flag = threading.Event()
        with self._lock:
            self._flags[session] = flag
        return flag

    def cancel(self, session: str) -> bool:
        """Ask the session's running job to stop; False if it has none."""
        with self._lock:
            flag = self._flags.get(session)
        if flag is None:
            return False
        flag.set()
        return True

    def finish(self, session: str, flag: threading.Event) -> None:
        """Forget the flag once its job has ended (unless a newer job of the session replaced it)."""
        with self._lock:
            if self._flags.get(session) is flag:
                del self._flags[session]
