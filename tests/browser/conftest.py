"""Debian's Chromium driven by Playwright against the launched app; a screenshot of the page on any failure."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.launch import start_app

SCREENSHOTS = Path(__file__).parent / "screenshots"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/browser" in str(item.fspath):
            item.add_marker(pytest.mark.browser)


@pytest.fixture(scope="session")
def browser_app(tmp_path_factory):
    app = start_app(tmp_path_factory.mktemp("browser-outputs"))
    yield app
    app.app.close()


@pytest.fixture(scope="session")
def browser():
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail("Chromium is missing: .ci/run installs Debian's `chromium`")
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"],
        )
        yield browser
        browser.close()


@pytest.fixture
def page(browser, browser_app, request):
    context = browser.new_context(viewport={"width": 1400, "height": 1200})
    page = context.new_page()
    page.set_default_timeout(30_000)
    page.goto(browser_app.url)
    yield page
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        SCREENSHOTS.mkdir(exist_ok=True)
        try:  # the visible part: a full page of this size can take Chromium over 30 s on a loaded 2-core machine
            page.screenshot(path=str(SCREENSHOTS / f"{request.node.name}-failure.png"), timeout=15_000)
        except Exception as e:  # the test's own failure is what matters
            print(f"no failure screenshot: {e}")
    context.close()
    _stop_every_run(browser_app)


def _stop_every_run(app, wait_s: float = 120.0) -> None:
    """Stop whatever run a test left going (a failed Stop click, an abandoned page): the next test's page would
    wait behind it on the one worker and fail for no fault of its own."""
    import time

    deadline = time.monotonic() + wait_s
    while app.ctx.cancel_flags._flags and time.monotonic() < deadline:
        for session in list(app.ctx.cancel_flags._flags):
            app.ctx.cancel_flags.cancel(session)
        time.sleep(0.1)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.when == "call":
        item.rep_call = report
    return report
