"""Logins that slow guessing down, owner sessions, and the memory report while the modules change."""

from __future__ import annotations

import threading

import pytest

from core.access import LockedOut, Owners, PasswordCheck, Throttle


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_five_failures_lock_a_name_out_until_the_lockout_passes():
    clock = Clock()
    check = PasswordCheck({"alice": "right"}, Throttle(max_failures=5, lockout_s=60, clock=clock))
    assert [check("alice", "wrong") for _ in range(5)] == [False] * 5
    assert check("alice", "right") is False, "locked: even the right password waits"
    clock.now += 61
    assert check("alice", "right") is True
    assert check("bob", "right") is False


def test_failures_spread_out_in_time_do_not_add_up():
    clock = Clock()
    check = PasswordCheck({"alice": "right"}, Throttle(max_failures=3, window_s=10, clock=clock))
    for _ in range(6):
        assert check("alice", "wrong") is False
        clock.now += 6  # two failures at most in any 10 s
    assert check("alice", "right") is True


def test_owner_sessions_and_their_lockout():
    owners = Owners(("owner", "pw"), Throttle(max_failures=2, lockout_s=30, clock=Clock()))
    assert not owners.login("s1", "owner", "nope") and not owners.login("s1", "owner", "nope")
    try:
        owners.login("s1", "owner", "pw")
        raise AssertionError("expected a lockout")
    except LockedOut as e:
        assert "try again in 30 s" in str(e)
    assert not owners.is_owner("s1")
    assert not owners.login("local", "owner", "pw"), "a call without a session is never the owner"
    assert Owners(None).login("s2", "", "") is False and not Owners(None).enabled


def test_api_guesses_at_the_owner_login_count_with_the_pages():
    owners = Owners(("root", "right"))
    for _ in range(5):
        assert not owners.check("root", "wrong")  # the HTTP API's Basic login
    assert owners.wait_s("root") > 0
    with pytest.raises(LockedOut):
        owners.login("page-session", "root", "right")  # the page's login is locked out as well
    assert not Owners(None).check("root", "right"), "no owner login configured: nobody is the owner"


def test_the_memory_report_does_not_wait_for_a_change_to_the_modules(demo_dir):
    from core.studio import Studio, StudioOptions

    studio = Studio(StudioOptions(device="cpu", offline=True))
    studio.load("demo", variant="default", dtype="float32")
    full = studio.memory_report()
    assert full["components"] and "changing" not in full
    held, release = threading.Event(), threading.Event()

    def changing_the_modules():
        with studio._load_lock:
            held.set()
            release.wait(10)

    thread = threading.Thread(target=changing_the_modules)
    thread.start()
    held.wait(5)
    try:
        during = studio.memory_report()
        assert during["changing"] is True and during["components"] == full["components"]
    finally:
        release.set()
        thread.join()
