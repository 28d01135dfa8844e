"""The real app on a free localhost port, on the demo checkpoint, and a gradio_client talking to it."""

from __future__ import annotations

import pytest

from tests.launch import start_app


@pytest.fixture(scope="session")
def running_app(tmp_path_factory):
    app = start_app(tmp_path_factory.mktemp("outputs"))
    yield app
    app.app.close()


@pytest.fixture(scope="session")
def public_app(tmp_path_factory):
    """`--public`, as a share link or a Space runs it."""
    app = start_app(tmp_path_factory.mktemp("public-outputs"), "--public")
    yield app
    app.app.close()


@pytest.fixture(scope="session")
def client(running_app):
    from gradio_client import Client

    return Client(running_app.url, verbose=False)
