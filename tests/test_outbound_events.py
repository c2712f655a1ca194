"""Outbound events to the app (Standard Webhooks): the endpoints API, the URL guard, each event
queued in the transaction of the change that causes it, and deliveries to a real HTTP receiver on
loopback, verified by the `standardwebhooks` package itself."""

from __future__ import annotations

import json
import logging
import signal
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import sqlalchemy as sa
from flask import current_app
from prometheus_client import REGISTRY
from sqlalchemy.orm import Session
from standardwebhooks import Webhook

from config import Settings
from harness.processes import PIPE, STDOUT, finish, killed_on_exit, python_m, service_env, start
from harness.waiting import wait_until
from models import (
    Account,
    Connection,
    DeliveryStatus,
    EndpointStatus,
    Job,
    OutboundEvent,
    SyncRun,
    Transaction,
    WebhookDelivery,
    WebhookEndpoint,
    db,
)
from models.base import utcnow
from models.connection import DeletedReason
from pluggy_client import PluggyClient
from sandbox import data as pf
from sync import removal, runs, scheduling
from sync.item_state import apply_item
from sync.jobs import sync_worker
from sync.outbound import delivery as sending
from sync.outbound import events as outbound
from sync.outbound import guard, pruning
from sync.tokens import issue_api_token
from tests.conftest import TEST_SECRETS, drain, fresh_app
from webhooks import inbox

APP = "/api/app"
KEY = "app-key-outbound-5f0c2e9a7b3d41c8a6e2f0"
HEADERS = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture
def app(migrated_database):
    """The app API on, and endpoints on loopback allowed (the receiver of these tests)."""
    yield from fresh_app(migrated_database, APP_API_KEYS=(KEY,), ALLOW_PRIVATE_WEBHOOK_URLS=True)


# A receiver: http.server on loopback, in a thread -------------------------------------------------


@dataclass
class Receiver:
    """What it was sent, and how it answers: each request takes the next of `answers` (status, delay
    in s, extra headers), the last one repeating; `hold`, while set, keeps a request waiting."""

    url: str = ""
    answers: list[tuple[int, float, dict]] = field(default_factory=lambda: [(200, 0.0, {})])
    requests: list[tuple[str, dict, bytes]] = field(default_factory=list)
    arrived: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    hold: bool = False

    def paths(self) -> list[str]:
        return [path for path, _, _ in self.requests]


@contextmanager
def receiving(*answers: tuple[int, float, dict]) -> Iterator[Receiver]:
    receiver = Receiver()
    if answers:
        receiver.answers = list(answers)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            receiver.requests.append((self.path, dict(self.headers), body))
            receiver.arrived.set()
            if receiver.hold:
                receiver.release.wait(30)
            status, delay, extra = receiver.answers[min(len(receiver.requests), len(receiver.answers)) - 1]
            if delay:
                receiver.release.wait(delay)
            self.send_response(status)
            for name, value in extra.items():
                self.send_header(name, value)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}/hooks"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        receiver.release.set()
        server.shutdown()
        server.server_close()


def verified(secret: str, request: tuple[str, dict, bytes]) -> dict:
    """The body, once the standardwebhooks package has verified its signature."""
    _, headers, body = request
    return Webhook(secret).verify(body, headers)


def register(client, url: str, **extra) -> tuple[dict, str]:
    response = client.post(f"{APP}/webhook_endpoints/", json={"url": url, **extra}, headers=HEADERS)
    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    return body["endpoint"], body["secret"]


def deliveries(session) -> list[WebhookDelivery]:
    session.expire_all()
    return list(session.scalars(sa.select(WebhookDelivery).order_by(WebhookDelivery.id)))


def events_of(session, event_type: str) -> list[dict]:
    session.expire_all()
    rows = session.scalars(sa.select(OutboundEvent).where(OutboundEvent.type == event_type).order_by(OutboundEvent.id))
    return [row.payload for row in rows]


def make_due(session) -> None:
    """Time passes: every delivery's next attempt, and its job, is due now."""
    session.execute(sa.update(WebhookDelivery).values(next_attempt_at=None))
    session.execute(sa.update(Job).where(Job.status == "queued").values(run_at=utcnow()))
    session.commit()


def counter(name: str, labels: dict | None = None) -> float:
    return REGISTRY.get_sample_value(name, labels or {}) or 0.0


def emit_deleted(session, connection) -> None:
    removal.mark_deleted(session, connection, DeletedReason.ITEM_DELETED, settings_of(session))
    session.commit()


def settings_of(session) -> Settings:
    return Settings.from_config(current_app.config)


# The API ---------------------------------------------------------------------------------------


def test_without_the_app_key_there_is_no_endpoints_api_and_a_wrong_key_is_401(migrated_database, app, client):
    bare = next(fresh_app(migrated_database, APP_API_KEYS=()))
    assert bare.test_client().get(f"{APP}/webhook_endpoints/", headers=HEADERS).status_code == 404
    for path in ("/webhook_endpoints/", "/webhook_deliveries/"):
        response = client.get(f"{APP}{path}", headers={"Authorization": "Bearer wrong-key-wrong-key-wrong-key-wrong"})
        assert response.status_code == 401
        assert response.get_json()["error"]["code"] == "unauthorized"


def test_an_endpoint_is_made_listed_read_and_deleted_its_secret_shown_only_once(app, client, session):
    endpoint, secret = register(client, "http://127.0.0.1:9/a", events=["connection.deleted"])
    assert secret.startswith("whsec_") and len(secret) > 30
    assert (endpoint["url"], endpoint["events"], endpoint["status"]) == (
        "http://127.0.0.1:9/a",
        ["connection.deleted"],
        "active",
    )
    register(client, "http://127.0.0.1:9/b")
    register(client, "http://127.0.0.1:9/c")

    first = client.get(f"{APP}/webhook_endpoints/?page_size=2", headers=HEADERS).get_json()
    assert [e["url"][-1] for e in first["webhook_endpoints"]] == ["a", "b"]
    rest = client.get(f"{APP}/webhook_endpoints/?page_size=2&cursor={first['next_cursor']}", headers=HEADERS)
    assert [e["url"][-1] for e in rest.get_json()["webhook_endpoints"]] == ["c"]
    assert rest.get_json()["next_cursor"] is None
    one = client.get(f"{APP}/webhook_endpoints/{endpoint['id']}/", headers=HEADERS)
    for answer in (first, rest.get_json(), one.get_json()):
        assert secret not in json.dumps(answer) and "secret" not in json.dumps(answer).replace("previous_secret", "")
    # Never in clear in the database, nor in the row's repr.
    row = session.get(WebhookEndpoint, endpoint["id"])
    stored = [str(getattr(row, column.key)) for column in WebhookEndpoint.__table__.columns]
    assert not any(secret in value or secret[6:] in value for value in stored)
    assert secret not in repr(row)

    assert client.delete(f"{APP}/webhook_endpoints/{endpoint['id']}/", headers=HEADERS).status_code == 204
    gone = client.get(f"{APP}/webhook_endpoints/{endpoint['id']}/", headers=HEADERS)
    assert gone.status_code == 404 and gone.get_json()["error"]["code"] == "webhook_endpoint_not_found"


@pytest.mark.parametrize(
    "body",
    [
        {"url": "http://127.0.0.1/x", "events": ["item.created"]},
        {"url": "http://127.0.0.1/x", "events": []},
        {"url": "http://127.0.0.1/x", "events": "connection.deleted"},
        {"url": "http://127.0.0.1/x", "other": 1},
        {"url": "http://127.0.0.1/x\u0000"},  # no HTTP client sends it; PostgreSQL refuses it
        {"url": 5},
        {},
    ],
)
def test_bad_input_is_a_clear_400(app, client, body):
    response = client.post(f"{APP}/webhook_endpoints/", json=body, headers=HEADERS)
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "invalid_request"


def test_the_url_guard(migrated_database, monkeypatch):
    strict = next(fresh_app(migrated_database, APP_API_KEYS=(KEY,), ALLOW_PRIVATE_WEBHOOK_URLS=False))
    lenient = next(fresh_app(migrated_database, APP_API_KEYS=(KEY,), ALLOW_PRIVATE_WEBHOOK_URLS=True))

    def status(app, url: str) -> int:
        return app.test_client().post(f"{APP}/webhook_endpoints/", json={"url": url}, headers=HEADERS).status_code

    for app in (strict, lenient):
        assert status(app, "ftp://127.0.0.1/x") == 400
        assert status(app, "file:///etc/passwd") == 400
        assert status(app, "https://user:pw@127.0.0.1/") == 400
    assert status(strict, "http://127.0.0.1:8080/hooks") == 400
    assert status(lenient, "http://127.0.0.1:8080/hooks") == 201
    for url in ("https://10.1.2.3/x", "https://169.254.169.254/latest", "https://[::1]/x", "https://localhost/x"):
        assert status(strict, url) == 400, url
    refusal = strict.test_client().post(
        f"{APP}/webhook_endpoints/", json={"url": "https://10.1.2.3/x"}, headers=HEADERS
    )
    assert refusal.get_json()["error"]["code"] == "invalid_url"
    assert "not a public address" in refusal.get_json()["error"]["message"]
    assert status(strict, "https://224.0.0.1/x") == 400 and status(lenient, "http://0.0.0.0/x") == 400

    # A public host (its resolver stubbed: tests reach nothing beyond loopback), and one whose name
    # resolves to an internal address.
    resolve = socket.getaddrinfo
    answers = {"hooks.example.com": "93.184.215.14", "internal.example.com": "10.0.0.7"}

    def stub(host, port, *args, **kwargs):
        if host in answers:
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (answers[host], port))]
        return resolve(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", stub)
    assert status(strict, "https://hooks.example.com/pluggy") == 201
    assert status(strict, "https://internal.example.com/pluggy") == 400
    assert status(strict, "https://does-not-resolve.example.com/") == 400


# Each event, in the transaction of its change ------------------------------------------------------


def test_a_status_change_is_queued_with_its_change_and_a_rollback_queues_nothing(app, client, session, connection):
    register(client, "http://127.0.0.1:9/hooks")
    connection.item_status = "UPDATED"
    session.commit()  # the first status seen is recorded without an event
    assert events_of(session, "connection.status_changed") == []

    apply_item(connection, {"id": connection.item_id, "status": "LOGIN_ERROR"})
    session.flush()
    session.rollback()
    assert (
        events_of(session, "connection.status_changed") == [] and session.scalar(sa.select(sa.func.count(Job.id))) == 0
    )

    connection = session.get(Connection, connection.id)
    apply_item(connection, {"id": connection.item_id, "status": "LOGIN_ERROR"})
    session.commit()
    (event,) = events_of(session, "connection.status_changed")
    assert event["data"] == {
        "user_id": connection.user_id,
        "connection_id": connection.id,
        "item_id": connection.item_id,
        "old_status": "UPDATED",
        "new_status": "CREDENTIALS_REQUIRED",
    }
    assert event["type"] == "connection.status_changed" and event["timestamp"].endswith("Z")
    (job,) = session.scalars(sa.select(Job).where(Job.kind == "deliver_event")).all()
    assert job.payload == {"delivery_id": deliveries(session)[0].id}


def test_a_tombstone_is_told_with_its_change_and_a_rollback_tells_nothing(app, client, session, connection):
    register(client, "http://127.0.0.1:9/hooks", events=["connection.deleted"])
    removal.mark_deleted(session, connection, DeletedReason.ITEM_DELETED, settings_of(session))
    session.rollback()
    assert events_of(session, "connection.deleted") == []

    emit_deleted(session, session.get(Connection, connection.id))
    (event,) = events_of(session, "connection.deleted")
    assert event["data"] == {
        "user_id": connection.user_id,
        "connection_id": connection.id,
        "item_id": connection.item_id,
        "reason": "item_deleted",
    }
    emit_deleted(session, session.get(Connection, connection.id))  # deleted again: nothing new to tell
    assert len(events_of(session, "connection.deleted")) == 1


def test_updates_available_is_written_in_the_closing_transaction(app, client, session, connection):
    register(client, "http://127.0.0.1:9/hooks")
    run = runs.open_run(session, connection, "manual")
    session.commit()
    account = Account(connection_id=connection.id, pluggy_id="acc-1", type="BANK", name="Conta", raw={})
    session.add(account)
    session.flush()
    session.add(
        Transaction(account_id=account.id, pluggy_id="tx-1", date=utcnow(), description="PIX", amount=1, raw={})
    )
    session.commit()  # what the run's fetch stored
    run.status = "success"
    outbound.updates_available(session, run)  # what close_run does before its commit
    session.rollback()
    assert events_of(session, "sync.updates_available") == []

    runs.close_run(session, session.get(SyncRun, run.id), "success")
    (event,) = events_of(session, "sync.updates_available")
    assert event["data"]["kinds"] == ["account", "transaction"] and event["data"]["sync_run_id"] == run.id


def test_an_erased_user_is_one_connection_deleted_per_live_connection(app, client, session, user, fake_pluggy):
    register(client, "http://127.0.0.1:9/hooks")
    for _ in range(2):
        item = fake_pluggy.add_item()
        connection = Connection(user_id=user.id, item_id=item["id"])
        apply_item(connection, item)
        session.add(connection)
    session.commit()
    user_id = user.id
    assert client.delete(f"{APP}/users/{user_id}/", headers=HEADERS).status_code == 204
    told = events_of(session, "connection.deleted")
    assert [event["data"]["reason"] for event in told] == ["user_erased", "user_erased"]
    assert {event["data"]["user_id"] for event in told} == {user_id}


def test_no_endpoint_no_event(app, session, connection):
    emit_deleted(session, connection)
    assert session.scalar(sa.select(sa.func.count(OutboundEvent.id))) == 0


def test_a_sync_that_stored_changes_sends_updates_available(app, client, session, connection, worker, fake_pluggy):
    with receiving() as receiver:
        _, secret = register(client, receiver.url, events=["sync.updates_available"])
        scheduling.queue_initial_sync(session, connection)
        session.commit()
        drain(worker, session)
        (request,) = receiver.requests
        event = verified(secret, request)
    assert event["type"] == "sync.updates_available"
    assert event["data"]["connection_id"] == connection.id and event["data"]["item_id"] == connection.item_id
    assert "account" in event["data"]["kinds"]
    (delivery,) = deliveries(session)
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("delivered", 1, 200)

    # The same sync again changes nothing: nothing to tell.
    scheduling.queue_reread(session, connection)
    session.commit()
    drain(worker, session)
    assert len(events_of(session, "sync.updates_available")) == 1


# Deliveries ------------------------------------------------------------------------------------


def test_a_delivery_is_signed_as_standard_webhooks_verifies_it(app, client, session, connection, worker, caplog):
    caplog.set_level(logging.DEBUG)
    with receiving() as receiver:
        _, secret = register(client, receiver.url)
        emit_deleted(session, connection)
        drain(worker, session)
        (request,) = receiver.requests
        path, headers, _ = request
        event = verified(secret, request)
        with pytest.raises(Exception, match="signature"):
            Webhook("whsec_" + "A" * 32).verify(request[2], headers)
    assert path == "/hooks" and headers["webhook-id"].startswith("msg_")
    assert headers["webhook-signature"].startswith("v1,") and " " not in headers["webhook-signature"]
    assert event["type"] == "connection.deleted"
    endpoint = session.scalars(sa.select(WebhookEndpoint)).one()
    assert endpoint.last_delivered_at is not None
    assert secret not in caplog.text and secret[6:] not in caplog.text  # no log line carries the secret


def test_a_failing_receiver_is_retried_with_backoff_and_each_attempt_recorded(app, client, session, connection, worker):
    with receiving((500, 0, {}), (200, 0, {})) as receiver:
        register(client, receiver.url)
        emit_deleted(session, connection)
        started = utcnow()
        drain(worker, session)
        (delivery,) = deliveries(session)
        assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("failed_retrying", 1, 500)
        assert delivery.last_error == "answered 500"
        wait = (delivery.next_attempt_at - started).total_seconds()
        assert sending.RETRY_DELAYS[0] - 1 <= wait <= sending.RETRY_DELAYS[0] + 5
        job = session.scalars(sa.select(Job).where(Job.kind == "deliver_event")).one()
        assert (job.status, abs((job.run_at - delivery.next_attempt_at).total_seconds()) < 2) == ("queued", True)

        make_due(session)
        drain(worker, session)
        (delivery,) = deliveries(session)
    assert (delivery.status, delivery.attempts, delivery.last_status_code, delivery.last_error) == (
        "delivered",
        2,
        200,
        None,
    )
    ids = {headers["webhook-id"] for _, headers, _ in receiver.requests}
    assert len(receiver.requests) == 2 and len(ids) == 1  # the same message id on a retry


def test_a_slow_receiver_times_out(app, client, session, connection, worker, monkeypatch):
    monkeypatch.setattr(sending, "READ_TIMEOUT_S", 0.3)
    with receiving((200, 3.0, {})) as receiver:
        register(client, receiver.url)
        emit_deleted(session, connection)
        drain(worker, session)
        receiver.release.set()
    (delivery,) = deliveries(session)
    assert delivery.status == "failed_retrying" and delivery.last_status_code is None
    assert delivery.last_error.startswith("timeout")


def test_a_redirect_is_a_failure_and_never_followed(app, client, session, connection, worker):
    with receiving((302, 0, {"Location": "/elsewhere"})) as receiver:
        register(client, receiver.url)
        emit_deleted(session, connection)
        drain(worker, session)
    assert receiver.paths() == ["/hooks"]
    (delivery,) = deliveries(session)
    assert (delivery.status, delivery.last_status_code) == ("failed_retrying", 302)
    assert "redirect" in delivery.last_error


def test_a_private_address_is_refused_at_delivery_time(app, client, session, connection, pluggy_api):
    with receiving() as receiver:
        register(client, receiver.url)  # allowed then
        emit_deleted(session, connection)
        app.config["ALLOW_PRIVATE_WEBHOOK_URLS"] = False  # not any more
        drain(sync_worker(app, pluggy_api), session)
    assert receiver.requests == []
    (delivery,) = deliveries(session)
    assert delivery.status == "failed_retrying" and delivery.last_error.startswith("refused: the URL must be https")


def test_dead_after_the_schedule_then_the_endpoint_is_disabled(
    app, client, session, connection, worker, monkeypatch, caplog
):
    monkeypatch.setattr(sending, "RETRY_DELAYS", (0.0, 0.0))
    disabled_before = counter("pluggy_sync_webhook_endpoints_disabled_total")
    with receiving((500, 0, {})) as receiver, caplog.at_level(logging.ERROR):
        endpoint, _ = register(client, receiver.url)
        emit_deleted(session, connection)
        drain(worker, session)
    (delivery,) = deliveries(session)
    assert (delivery.status, delivery.attempts, delivery.next_attempt_at) == ("dead", 3, None)
    assert len(receiver.requests) == 3
    row = session.get(WebhookEndpoint, endpoint["id"])
    assert row.status == EndpointStatus.DISABLED and row.disabled_at is not None
    assert counter("pluggy_sync_webhook_endpoints_disabled_total") == disabled_before + 1
    assert any("webhook endpoint disabled" in record.getMessage() for record in caplog.records)
    shown = client.get(f"{APP}/webhook_endpoints/{endpoint['id']}/", headers=HEADERS).get_json()
    assert shown["status"] == "disabled"

    # A disabled endpoint is sent nothing new.
    item_connection = Connection(user_id=connection.user_id, item_id="another-item")
    session.add(item_connection)
    session.commit()
    emit_deleted(session, item_connection)
    assert len(deliveries(session)) == 1


def test_a_delivery_whose_job_gives_up_is_dead_not_pending_for_ever(
    app, client, session, connection, worker, monkeypatch
):
    def broken(*args, **kwargs):
        raise RuntimeError("a bug in the sender")

    monkeypatch.setattr(sending, "attempt", broken)
    register(client, "http://127.0.0.1:9/hooks")
    emit_deleted(session, connection)
    session.execute(sa.update(Job).where(Job.kind == "deliver_event").values(max_attempts=1))
    session.commit()
    drain(worker, session)
    (delivery,) = deliveries(session)
    assert delivery.status == "dead" and "a bug in the sender" in delivery.last_error


def test_a_manual_retry(app, client, session, connection, worker, monkeypatch):
    monkeypatch.setattr(sending, "RETRY_DELAYS", ())
    with receiving((500, 0, {}), (200, 0, {})) as receiver:
        endpoint, secret = register(client, receiver.url)
        emit_deleted(session, connection)
        drain(worker, session)
        (delivery,) = deliveries(session)
        assert delivery.status == "dead"
        assert session.get(WebhookEndpoint, endpoint["id"]).status == "disabled"

        retried = client.post(f"{APP}/webhook_deliveries/{delivery.id}/retry", headers=HEADERS)
        assert retried.status_code == 202 and retried.get_json()["status"] == "pending"
        again = client.post(f"{APP}/webhook_deliveries/{delivery.id}/retry", headers=HEADERS)
        assert again.status_code == 409 and again.get_json()["error"]["code"] == "delivery_not_retryable"
        drain(worker, session)
        verified(secret, receiver.requests[-1])
    (delivery,) = deliveries(session)
    assert (delivery.status, delivery.attempts) == ("delivered", 2)
    assert session.get(WebhookEndpoint, endpoint["id"]).status == "active"  # enabled again by the retry
    assert client.post(f"{APP}/webhook_deliveries/{delivery.id}/retry", headers=HEADERS).status_code == 409
    assert client.post(f"{APP}/webhook_deliveries/999/retry", headers=HEADERS).status_code == 404

    listed = client.get(f"{APP}/webhook_deliveries/?endpoint_id={endpoint['id']}", headers=HEADERS).get_json()
    (shown,) = listed["webhook_deliveries"]
    assert (shown["id"], shown["status"], shown["event_type"], shown["attempts"]) == (
        delivery.id,
        "delivered",
        "connection.deleted",
        2,
    )
    assert client.get(f"{APP}/webhook_deliveries/?endpoint_id=999", headers=HEADERS).status_code == 404


def test_a_rotated_secret_signs_beside_the_old_one_for_a_day(app, client, session, connection, worker):
    with receiving() as receiver:
        endpoint, old = register(client, receiver.url)
        rotated = client.post(f"{APP}/webhook_endpoints/{endpoint['id']}/rotate_secret/", headers=HEADERS)
        assert rotated.status_code == 200
        new = rotated.get_json()["secret"]
        assert new != old and rotated.get_json()["endpoint"]["previous_secret_expires_at"] is not None
        emit_deleted(session, connection)
        drain(worker, session)
        (request,) = receiver.requests
        assert len(request[1]["webhook-signature"].split(" ")) == 2
        assert verified(old, request) == verified(new, request)

        # A day later only the new one signs.
        row = session.get(WebhookEndpoint, endpoint["id"])
        row.previous_secret_expires_at = utcnow() - timedelta(seconds=1)
        session.commit()
        second = Connection(user_id=connection.user_id, item_id="another-item")
        session.add(second)
        session.commit()
        emit_deleted(session, second)
        drain(worker, session)
        last = receiver.requests[-1]
        assert len(last[1]["webhook-signature"].split(" ")) == 1
        verified(new, last)
        with pytest.raises(Exception, match="signature"):
            verified(old, last)


def test_a_killed_worker_loses_no_event(app, client, session, connection, database_url):
    with receiving((200, 0, {})) as receiver:
        receiver.hold = True
        register(client, receiver.url)
        emit_deleted(session, connection)
        env = service_env(
            database_url,
            TEST_SECRETS["SECRET_KEY"],
            ALLOW_PRIVATE_WEBHOOK_URLS="1",
            PLUGGY_CLIENT_ID="x",
            PLUGGY_CLIENT_SECRET="y",
        )
        worker_command = python_m("flask", "worker", "--lease", "1")
        with killed_on_exit(start(worker_command, env=env, stdout=PIPE, stderr=STDOUT)) as doomed:
            assert receiver.arrived.wait(30)  # the worker is sending
            doomed.send_signal(signal.SIGKILL)
            doomed.wait()
        receiver.hold = False
        receiver.release.set()
        job = session.scalars(sa.select(Job).where(Job.kind == "deliver_event")).one()
        wait_until(lambda: lease_expired(session, job.id))
        finish(start(python_m("flask", "worker", "--burst"), env=env, stdout=PIPE, stderr=STDOUT))
    (delivery,) = deliveries(session)
    assert (delivery.status, delivery.attempts) == (DeliveryStatus.DELIVERED, 1)
    assert len(receiver.requests) == 2
    assert len({headers["webhook-id"] for _, headers, _ in receiver.requests}) == 1


def lease_expired(session, job_id: int) -> bool:
    session.expire_all()
    job = db.session.get(Job, job_id)
    return job.locked_until is not None and job.locked_until < utcnow()


def test_the_guard_resolves_once_and_sends_to_the_checked_address(monkeypatch):
    looked_up = []
    resolve = socket.getaddrinfo

    def counting(host, *args, **kwargs):
        looked_up.append(host)
        return resolve(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", counting)
    target = guard.check_url("http://localhost:8080/a?b=c", allow_private=True)
    assert (target.host, target.port, target.path) == ("localhost", 8080, "/a?b=c")
    assert target.address in ("127.0.0.1", "::1") and looked_up == ["localhost"]


# Pruning -------------------------------------------------------------------------------------------


def test_events_every_delivery_of_which_got_through_are_pruned_after_a_month(app, client, session, connection):
    register(client, "http://127.0.0.1:9/hooks")
    register(client, "http://127.0.0.1:9/other")
    for reason in ("item_deleted", "item_not_found", "user_request"):
        outbound.connection_deleted(session, connection, reason)
    session.commit()
    old, waiting, recent = session.scalars(sa.select(OutboundEvent.id).order_by(OutboundEvent.id))
    session.execute(
        sa.update(OutboundEvent)
        .where(OutboundEvent.id.in_([old, waiting]))
        .values(created_at=utcnow() - timedelta(days=31))
    )
    session.execute(sa.update(WebhookDelivery).values(status=DeliveryStatus.DELIVERED))
    # One of the old event's two deliveries gave up: the event stays until it is retried and goes through.
    dead = session.scalars(sa.select(WebhookDelivery.id).where(WebhookDelivery.event_id == waiting)).first()
    session.execute(sa.update(WebhookDelivery).where(WebhookDelivery.id == dead).values(status=DeliveryStatus.DEAD))
    session.commit()

    assert pruning.prune_delivered(session, before=utcnow() - pruning.KEEP_DELIVERED_EVENTS) == 1
    session.commit()
    assert set(session.scalars(sa.select(OutboundEvent.id))) == {waiting, recent}
    assert {d.event_id for d in deliveries(session)} == {waiting, recent}


def test_the_worker_queues_the_pruning_and_it_comes_back(session, worker):
    scheduling.queue_events_pruning(session)
    session.commit()
    assert worker.run_one(session, "w")
    job = session.scalars(sa.select(Job).where(Job.kind == "prune_outbound_events", Job.status == "queued")).one()
    assert job.run_at > utcnow() + timedelta(hours=5)


@pytest.fixture
def item_deleted_echo(app, pluggy_api, monkeypatch):
    """Each item deleted at Pluggy makes Pluggy send `item/deleted`, stored and handled by a worker in
    a session of its own (the receiver and a worker, in other processes) before the request that
    deleted it goes on: the race of a deletion with the webhook it causes."""
    worker = sync_worker(app, pluggy_api)
    deleted_at_pluggy = PluggyClient.delete_item

    def delete_then_handle_the_echo(self, item_id):
        answer = deleted_at_pluggy(self, item_id)
        echo = pf.webhook_event("item/deleted", itemId=item_id)
        with Session(db.engine) as elsewhere:
            inbox.store(elsewhere, json.dumps(echo).encode(), echo, {})
            assert drain(worker, elsewhere) >= 1
        return answer

    monkeypatch.setattr(PluggyClient, "delete_item", delete_then_handle_the_echo)


def bearer(app, user) -> dict[str, str]:
    return {"Authorization": f"Bearer {issue_api_token(app.config['SECRET_KEY'], user)}"}


def test_a_users_delete_and_the_item_deleted_it_makes_pluggy_send_tell_the_app_once(
    app, client, session, connection, item_deleted_echo
):
    """Pluggy sends `item/deleted` for the item the user's DELETE deletes, and a worker may handle it
    before that request commits: whichever makes the tombstone, it is the user's, told once."""
    register(client, "http://127.0.0.1:9/hooks", events=["connection.deleted"])

    assert (
        client.delete(f"/api/banking/connections/{connection.id}/", headers=bearer(app, connection.user)).status_code
        == 204
    )

    assert [told["data"]["reason"] for told in events_of(session, "connection.deleted")] == ["user_request"]
    tombstone = session.get(Connection, connection.id)
    assert (tombstone.deleted_reason, tombstone.data_removed_at is not None) == ("user_request", True)


def test_a_deletion_pluggy_refused_leaves_no_request_behind(app, client, session, connection, fake_pluggy):
    """The API answered that nothing was deleted: a later item/deleted is the bank's, not the user's."""
    register(client, "http://127.0.0.1:9/hooks", events=["connection.deleted"])
    fake_pluggy.refuse_next("DELETE", f"/items/{connection.item_id}", 500)

    assert (
        client.delete(f"/api/banking/connections/{connection.id}/", headers=bearer(app, connection.user)).status_code
        == 502
    )

    emit_deleted(session, session.get(Connection, connection.id))
    (told,) = events_of(session, "connection.deleted")
    assert told["data"]["reason"] == "item_deleted"


def test_an_erasure_and_the_item_deleted_it_makes_pluggy_send_tell_the_app_once(
    app, client, session, connection, item_deleted_echo
):
    """A worker handles Pluggy's `item/deleted` for an item of the user being erased before the
    erasure commits: the app hears of the connection once, from whichever made the tombstone."""
    register(client, "http://127.0.0.1:9/hooks", events=["connection.deleted"])

    assert client.delete(f"{APP}/users/{connection.user_id}/", headers=HEADERS).status_code == 204

    assert [told["data"]["reason"] for told in events_of(session, "connection.deleted")] == ["item_deleted"]
