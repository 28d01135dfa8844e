"""Who may do what on a public server: password checks that slow down guessing, and the owner's sessions.

What all visitors share (the loaded checkpoint, its dtype, VAE, memory modes, adapters) belongs to the owner: set
at start, or changed after an owner login (`--admin USER:PASS`). Visitors' requests carry only per-request choices.
"""

from __future__ import annotations

import hmac
import threading
import time
from collections import OrderedDict
from collections.abc import Callable


class Throttle:
    """Counts failed logins per key (a user name, a session) and locks a key out for `lockout_s` after
    `max_failures` failures within `window_s`; a success clears the key. Memory stays bounded (oldest keys go)."""

    def __init__(
        self,
        max_failures: int = 5,
        window_s: float = 600.0,
        lockout_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 10_000,
    ) -> None:
        self.max_failures, self.window_s, self.lockout_s = max_failures, window_s, lockout_s
        self._clock, self._max_keys = clock, max_keys
        self._lock = threading.Lock()
        self._failures: OrderedDict[str, list[float]] = OrderedDict()
        self._locked_until: dict[str, float] = {}

    def wait_s(self, key: str) -> float:
        """Seconds until `key` may try again (0 when it may now)."""
        with self._lock:
            return max(0.0, self._locked_until.get(key, 0.0) - self._clock())

    def failed(self, key: str) -> None:
        now = self._clock()
        with self._lock:
            recent = [t for t in self._failures.pop(key, []) if now - t < self.window_s] + [now]
            self._failures[key] = recent
            if len(recent) >= self.max_failures:
                self._locked_until[key] = now + self.lockout_s
                self._failures[key] = []
            while len(self._failures) > self._max_keys:
                old, _ = self._failures.popitem(last=False)
                self._locked_until.pop(old, None)

    def succeeded(self, key: str) -> None:
        with self._lock:
            self._failures.pop(key, None)
            self._locked_until.pop(key, None)


class LockedOut(Exception):
    """Too many failed logins; `wait_s` says for how long."""

    def __init__(self, wait_s: float) -> None:
        super().__init__(f"Too many failed logins; try again in {wait_s:.0f} s.")
        self.wait_s = wait_s


def same_secret(given: str, expected: str) -> bool:
    """Compare in constant time, so the answer's timing tells nothing of the password."""
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


class PasswordCheck:
    """`check(user, password)` for Gradio's `auth=` callable: constant-time, and locked out per user name after
    repeated failures (Gradio's own /login has no limit: 20 wrong tries took 0.05 s)."""

    def __init__(self, users: dict[str, str], throttle: Throttle | None = None) -> None:
        self._users = dict(users)
        self.throttle = throttle or Throttle()

    def __call__(self, user: str, password: str) -> bool:
        user, password = str(user)[:256], str(password)[:256]
        if self.throttle.wait_s(user) > 0:
            return False  # locked out: even the right password waits
        ok = user in self._users and same_secret(password, self._users[user])
        if ok:
            self.throttle.succeeded(user)
        else:
            self.throttle.failed(user)
        return ok


class Owners:
    """The sessions that logged in as the owner (`--admin USER:PASS`); none when no owner login is configured."""

    def __init__(self, credentials: tuple[str, str] | None, throttle: Throttle | None = None) -> None:
        self._check = PasswordCheck(dict([credentials]) if credentials else {}, throttle)
        self.enabled = credentials is not None
        self._lock = threading.Lock()
        self._sessions: set[str] = set()

    def login(self, session: str, user: str, password: str) -> bool:
        """Mark `session` as the owner's if the credentials match; raises LockedOut after repeated failures (per
        session and per user name, so neither a new session nor another name resets the count)."""
        if not session or session == "local":  # a call without a session would make every such call the owner
            return False
        throttle = self._check.throttle
        wait = max(throttle.wait_s(f"session:{session}"), throttle.wait_s(str(user)[:256]))
        if wait > 0:
            raise LockedOut(wait)
        if not self.enabled or not self._check(user, password):
            throttle.failed(f"session:{session}")
            return False
        throttle.succeeded(f"session:{session}")
        with self._lock:
            self._sessions.add(session)
        return True

    def check(self, user: str, password: str) -> bool:
        """Whether these are the owner's credentials, for callers without a page session (the HTTP API), counted
        on the same throttle as the page's owner login: the API is not a second set of guesses."""
        return self.enabled and self._check(user, password)

    def wait_s(self, user: str) -> float:
        """Seconds until `user` may try the owner's login again."""
        return self._check.throttle.wait_s(str(user)[:256])

    def is_owner(self, session: str) -> bool:
        with self._lock:
            return session in self._sessions

    def logout(self, session: str) -> None:
        with self._lock:
            self._sessions.discard(session)
