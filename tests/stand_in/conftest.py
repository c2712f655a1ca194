"""Fixtures of the stand-in's tests: a stand-in per test (closed after it), its test client and an
API key, a loopback webhook receiver, and the stand-in served over HTTP on loopback."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from werkzeug.serving import make_server

from sandbox import world_of
from tests.stand_in.helpers import Receiver, api_key, make_sandbox, serve


@pytest.fixture
def sandbox_factory():
    apps = []

    def build(**options):
        app = make_sandbox(**options)
        apps.append(app)
        return app

    yield build
    for app in apps:
        world_of(app).close()


@pytest.fixture
def app(sandbox_factory):
    return sandbox_factory()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def key(client) -> dict[str, str]:
    return {"X-API-KEY": api_key(client)}


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    receiver = Receiver()
    yield receiver
    receiver.close()


@pytest.fixture
def served(sandbox_factory) -> Iterator[str]:
    app = sandbox_factory(page_size=25)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=serve, args=(server,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.port}"
    server.shutdown()
    server.server_close()
