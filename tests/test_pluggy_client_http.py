"""The real requests/urllib3 stack against local sockets: retries, waits, timeouts, refused connections.

Pluggy is the sandbox served on loopback (tests/fake_pluggy.py); the answers these tests need before
its own are its refusals. Waits are recorded instead of slept by swapping the ``time`` module
urllib3's Retry uses.
"""

from __future__ import annotations

import importlib
import logging
import socket
import time
from collections.abc import Iterator
from types import SimpleNamespace

import pytest

from harness.ports import free_port
from pluggy_client import PluggyClient, PluggyRateLimited, PluggyUnavailable
from sandbox import data as pf
from tests.fake_pluggy import FakePluggy

ITEM_ID = "0b8e43f4-1c3a-4f6e-9b0c-4f2d9f6c8a11"
CLIENT_ID = "client-id"
CLIENT_SECRET = "client-secret-7d1f20"


@pytest.fixture
def waits(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Seconds urllib3's Retry asked to sleep (nothing actually sleeps)."""
    asked: list[float] = []
    retry_module = importlib.import_module("urllib3.util.retry")
    monkeypatch.setattr(retry_module, "time", SimpleNamespace(sleep=asked.append, time=time.time))
    return asked


@pytest.fixture
def pluggy(waits: list[float]) -> Iterator[FakePluggy]:
    """Pluggy on a loopback port, knowing item ITEM_ID."""
    fake = FakePluggy(client_id=CLIENT_ID, client_secret=CLIENT_SECRET)
    fake.add_item(id=ITEM_ID)
    with fake.serve() as url:
        fake.base_url = url
        yield fake
    fake.close()


@pytest.fixture
def client(pluggy: FakePluggy) -> Iterator[PluggyClient]:
    client = PluggyClient(pluggy.base_url, CLIENT_ID, CLIENT_SECRET, timeout=(1, 2))
    yield client
    client.close()


def received(pluggy: FakePluggy) -> list[str]:
    return [f"{method} {path}" for method, path, _, _ in pluggy.calls]


def test_a_503_on_get_is_retried(pluggy, client, waits):
    pluggy.refuse_next("GET", f"/items/{ITEM_ID}", 503, message="Service Unavailable")

    assert client.get_item(ITEM_ID)["id"] == ITEM_ID
    assert received(pluggy) == ["POST /auth", f"GET /items/{ITEM_ID}", f"GET /items/{ITEM_ID}"]
    assert waits == []  # urllib3 retries the first failure without backoff


def test_repeated_500s_on_get_back_off_with_jitter_then_raise(pluggy, client, waits):
    for _ in range(4):
        pluggy.refuse_next("GET", f"/items/{ITEM_ID}", 500, message="Internal Server Error")

    with pytest.raises(PluggyUnavailable) as raised:
        client.get_item(ITEM_ID)

    assert raised.value.status == 500
    assert received(pluggy).count(f"GET /items/{ITEM_ID}") == 4
    assert len(waits) == 2
    assert 1.0 <= waits[0] <= 1.5 and 2.0 <= waits[1] <= 2.5


def test_a_500_on_patch_is_not_retried(pluggy, client, waits):
    pluggy.refuse_next("PATCH", f"/items/{ITEM_ID}", 500, message="Internal Server Error")

    with pytest.raises(PluggyUnavailable):
        client.trigger_item_update(ITEM_ID)

    assert received(pluggy) == ["POST /auth", f"PATCH /items/{ITEM_ID}"]


def test_a_short_429_on_patch_is_waited_for_and_retried(pluggy, client, waits):
    pluggy.refuse_next("PATCH", f"/items/{ITEM_ID}", 429, "RATE_LIMIT_EXCEEDED", headers={"Retry-After": "1"})

    assert client.trigger_item_update(ITEM_ID)["status"] == "UPDATING"
    assert received(pluggy).count(f"PATCH /items/{ITEM_ID}") == 2
    assert waits == [1]


def test_a_long_429_is_raised_without_waiting(pluggy, client, waits):
    pluggy.refuse_next("PATCH", f"/items/{ITEM_ID}", 429, "RATE_LIMIT_EXCEEDED", headers={"Retry-After": "60"})

    with pytest.raises(PluggyRateLimited) as raised:
        client.trigger_item_update(ITEM_ID)

    assert raised.value.retry_after == 60
    assert received(pluggy).count(f"PATCH /items/{ITEM_ID}") == 1
    assert waits == []


def test_a_503_retry_after_is_capped(pluggy, client, waits):
    pluggy.refuse_next("GET", f"/items/{ITEM_ID}", 503, headers={"Retry-After": "3600"})

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


def test_debug_logs_of_the_whole_stack_carry_no_secret(pluggy, client, caplog):
    caplog.set_level(logging.DEBUG)
    pluggy.set_item(
        ITEM_ID, status="WAITING_USER_INPUT", executionStatus="WAITING_USER_INPUT", parameter=pf.mfa_parameter()
    )

    client.create_connect_token(ITEM_ID)
    client.send_mfa(ITEM_ID, {"token": "864209"})

    secrets = [CLIENT_SECRET, "864209", *pluggy.world.issued_keys("api"), *pluggy.world.issued_keys("connect")]
    assert len(secrets) == 4
    assert "urllib3.connectionpool" in {record.name for record in caplog.records}
    assert [s for s in secrets if s in caplog.text] == []
