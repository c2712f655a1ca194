"""The real requests/urllib3 stack against local sockets: retries, waits, timeouts, refused connections.

Waits are recorded instead of slept by swapping the ``time`` module urllib3's Retry uses.
"""

from __future__ import annotations

import importlib
import json
import logging
import socket
import threading
import time
from collections import deque
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace

import pytest

from harness.ports import free_port
from pluggy_client import PluggyClient, PluggyRateLimited, PluggyUnavailable
from tests import pluggy_fixtures as pf

Answer = tuple[int, dict[str, str], dict]

ITEM_ID = "0b8e43f4-1c3a-4f6e-9b0c-4f2d9f6c8a11"
CLIENT_SECRET = "client-secret-7d1f20"
API_KEY = pf.api_key()
AUTH_OK: Answer = (200, {}, pf.auth_response(API_KEY))
ITEM_OK: Answer = (200, {}, pf.item(id=ITEM_ID))


class ScriptedPluggy(ThreadingHTTPServer):
    """Answers requests with the scripted answers, in order, and records what it was asked."""

    daemon_threads = True

    def __init__(self, answers: list[Answer]) -> None:
        super().__init__(("127.0.0.1", 0), _ScriptedHandler)
        self.answers = deque(answers)
        self.received: list[str] = []

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"


class _ScriptedHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in two writes; avoid the delayed-ACK stall
    server: ScriptedPluggy

    def _answer(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.received.append(f"{self.command} {self.path}")
        status, headers, body = self.server.answers.popleft()
        payload = json.dumps(body).encode()
        self.send_response(status)
        for name, value in {"Content-Type": "application/json", **headers}.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_PATCH = do_DELETE = _answer

    def log_message(self, format: str, *args: object) -> None:
        """Silence the default stderr access log."""


@pytest.fixture
def waits(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Seconds urllib3's Retry asked to sleep (nothing actually sleeps)."""
    asked: list[float] = []
    retry_module = importlib.import_module("urllib3.util.retry")
    monkeypatch.setattr(retry_module, "time", SimpleNamespace(sleep=asked.append, time=time.time))
    return asked


@pytest.fixture
def serve(waits: list[float]) -> Iterator:
    started: list[tuple[ScriptedPluggy, PluggyClient]] = []

    def start(*answers: Answer) -> tuple[ScriptedPluggy, PluggyClient]:
        server = ScriptedPluggy(list(answers))
        serving = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01})
        serving.daemon = True
        serving.start()
        started.append((server, PluggyClient(server.url, "client-id", CLIENT_SECRET, timeout=(1, 2))))
        return started[-1]

    yield start
    for server, client in started:
        client.close()
        server.shutdown()
        server.server_close()


def test_a_503_on_get_is_retried(serve, waits):
    server, client = serve(AUTH_OK, (503, {}, pf.error_body(503, None, "Service Unavailable")), ITEM_OK)

    assert client.get_item(ITEM_ID)["id"] == ITEM_ID
    assert server.received == ["POST /auth", f"GET /items/{ITEM_ID}", f"GET /items/{ITEM_ID}"]
    assert waits == []  # urllib3 retries the first failure without backoff


def test_repeated_500s_on_get_back_off_with_jitter_then_raise(serve, waits):
    failure = (500, {}, pf.error_body(500, None, "Internal Server Error"))
    server, client = serve(AUTH_OK, failure, failure, failure, failure)

    with pytest.raises(PluggyUnavailable) as raised:
        client.get_item(ITEM_ID)

    assert raised.value.status == 500
    assert server.received.count(f"GET /items/{ITEM_ID}") == 4
    assert len(waits) == 2
    assert 1.0 <= waits[0] <= 1.5 and 2.0 <= waits[1] <= 2.5


def test_a_500_on_patch_is_not_retried(serve, waits):
    server, client = serve(AUTH_OK, (500, {}, pf.error_body(500, None, "Internal Server Error")))

    with pytest.raises(PluggyUnavailable):
        client.trigger_item_update(ITEM_ID)

    assert server.received == ["POST /auth", f"PATCH /items/{ITEM_ID}"]


def test_a_short_429_on_patch_is_waited_for_and_retried(serve, waits):
    limited = (429, {"Retry-After": "1"}, pf.error_body(429, None, "Too Many Requests"))
    server, client = serve(AUTH_OK, limited, ITEM_OK)

    assert client.trigger_item_update(ITEM_ID)["id"] == ITEM_ID
    assert server.received.count(f"PATCH /items/{ITEM_ID}") == 2
    assert waits == [1]


def test_a_long_429_is_raised_without_waiting(serve, waits):
    limited = (429, {"Retry-After": "60"}, pf.error_body(429, None, "Too Many Requests"))
    server, client = serve(AUTH_OK, limited)

    with pytest.raises(PluggyRateLimited) as raised:
        client.trigger_item_update(ITEM_ID)

    assert raised.value.retry_after == 60
    assert server.received.count(f"PATCH /items/{ITEM_ID}") == 1
    assert waits == []


def test_a_503_retry_after_is_capped(serve, waits):
    unavailable = (503, {"Retry-After": "3600"}, pf.error_body(503, None, "Service Unavailable"))
    _, client = serve(AUTH_OK, unavailable, ITEM_OK)

    client.get_item(ITEM_ID)

    assert waits == [5]


def test_a_server_that_never_answers_times_out(waits):
    # Connections land in the listen backlog and are never accepted, so no answer ever comes.
    silent = socket.create_server(("127.0.0.1", 0))
    host, port = silent.getsockname()
    client = PluggyClient(f"http://{host}:{port}", "client-id", CLIENT_SECRET, timeout=(1, 0.1))
    try:
        with pytest.raises(PluggyUnavailable) as raised:
            client.get_item(ITEM_ID)
    finally:
        client.close()
        silent.close()

    assert raised.value.status is None


def test_a_closed_port_is_unavailable(waits):
    client = PluggyClient(f"http://127.0.0.1:{free_port()}", "client-id", CLIENT_SECRET, timeout=(1, 1))

    with pytest.raises(PluggyUnavailable) as raised:
        client.get_item(ITEM_ID)
    client.close()

    assert raised.value.status is None
    assert len(waits) == 2  # connection errors are retried even for POST /auth, with backoff


def test_debug_logs_of_the_whole_stack_carry_no_secret(serve, caplog):
    caplog.set_level(logging.DEBUG)
    _, client = serve(AUTH_OK, (200, {}, pf.connect_token_response("ct-secret-token")), ITEM_OK)

    client.create_connect_token(ITEM_ID)
    client.send_mfa(ITEM_ID, {"token": "864209"})

    assert "urllib3.connectionpool" in {record.name for record in caplog.records}
    assert [s for s in (CLIENT_SECRET, API_KEY, "ct-secret-token", "864209") if s in caplog.text] == []
