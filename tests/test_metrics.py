"""Prometheus metrics: GET /metrics, the counters the web and worker code paths feed, the database
figures read at scrape time, the worker's own metrics port and multiprocess mode.

Counters and histograms live in the process-wide default registry, so every test compares a value
before and after what it does (REGISTRY.get_sample_value) instead of expecting absolute numbers.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import socket
import sys
import textwrap
import time
import urllib.request
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from harness.ports import free_port
from harness.processes import run
from models import Connection, Job, db
from models.base import utcnow
from observability import metrics as metrics_module
from observability.metrics import endpoint_label
from pluggy_client import PluggyClient, PluggyNotFound, PluggyUnavailable
from pluggy_client.client import record_call
from sandbox import data as pf
from sync import scheduling
from sync.connections import BankConnectionService
from sync.events import event_label
from sync.item_state import apply_item
from sync.tokens import issue_webhook_token
from tests.conftest import TEST_SECRETS, drain, make_app
from tests.fake_pluggy import FakePluggy, now_iso
from tests.test_pluggy_client_http import ITEM_ID

ROOT = Path(__file__).resolve().parent.parent
SECRET = {"X-Webhook-Secret": "test-webhook-secret"}

PROCESS_METRICS = [
    "pluggy_sync_http_request_duration_seconds",
    "pluggy_sync_webhooks_received_total",
    "pluggy_sync_webhook_processing_lag_seconds",
    "pluggy_sync_job_duration_seconds",
    "pluggy_sync_pluggy_requests_total",
    "pluggy_sync_pluggy_request_duration_seconds",
    "pluggy_sync_sync_runs_total",
    "pluggy_sync_transactions_written_total",
    "pluggy_sync_worker_database_errors_total",
]
DATABASE_METRICS = [
    "pluggy_sync_database_up",
    "pluggy_sync_jobs",
    "pluggy_sync_oldest_due_job_age_seconds",
    "pluggy_sync_oldest_connection_staleness_seconds",
]


def value(name: str, **labels: str) -> float:
    """A sample of this process's default registry; 0 when the labelled child does not exist yet."""
    return REGISTRY.get_sample_value(name, labels) or 0.0


class Delta:
    """The change of some samples across a block: `with Delta(...) as d: ...; d["name", labels]`."""

    def __init__(self, *keys: tuple[str, dict]) -> None:
        self.keys = keys

    def __enter__(self) -> Delta:
        self.before = {self.key(name, labels): value(name, **labels) for name, labels in self.keys}
        return self

    def __exit__(self, *exc) -> None:
        self.after = {self.key(name, labels): value(name, **labels) for name, labels in self.keys}

    @staticmethod
    def key(name: str, labels: dict) -> tuple:
        return name, tuple(sorted(labels.items()))

    def __call__(self, name: str, labels: dict | None = None, **more: str) -> float:
        key = self.key(name, {**(labels or {}), **more})
        return self.after[key] - self.before[key]


def parse(text: str) -> dict[tuple, float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def scrape(client) -> tuple[str, dict[tuple, float]]:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.content_type == CONTENT_TYPE_LATEST
    text = response.get_data(as_text=True)
    return text, parse(text)


def post_webhook(client, payload, headers=SECRET, path="/webhooks/pluggy"):
    data = payload if isinstance(payload, (bytes, str)) else json.dumps(payload)
    return client.post(path, data=data, headers=headers, content_type="application/json")


def http_get(url: str) -> tuple[int, str, str]:
    """Over real loopback HTTP with urllib (never intercepted by `responses`)."""
    with urllib.request.urlopen(url, timeout=5) as answer:
        return answer.status, answer.headers["Content-Type"], answer.read().decode()


# GET /metrics -----------------------------------------------------------------------------------


def test_metrics_is_prometheus_text_with_every_metric(client):
    text, _ = scrape(client)

    for name in PROCESS_METRICS + DATABASE_METRICS:
        kind = "gauge" if name in DATABASE_METRICS else ("counter" if name.endswith("_total") else "histogram")
        assert f"# TYPE {name} {kind}\n" in text, name
        assert f"# HELP {name} " in text, name


def test_metrics_needs_no_authentication_and_shows_no_secret(client):
    text, _ = scrape(client)
    for secret in ("test-secret-key", "test-client-secret", "test-webhook-secret"):
        assert secret not in text


def test_an_empty_database_gives_zero_figures(client):
    _, found = scrape(client)

    assert found[("pluggy_sync_database_up", ())] == 1
    for state in ("due", "scheduled", "running", "dead"):
        assert found[("pluggy_sync_jobs", (("state", state),))] == 0
    assert found[("pluggy_sync_oldest_due_job_age_seconds", ())] == 0
    for waiting in ("false", "true"):
        assert found[("pluggy_sync_oldest_connection_staleness_seconds", (("waiting_for_user", waiting),))] == 0


def test_queue_gauges_count_the_rows(app, client):
    now = utcnow()
    with app.app_context():
        db.session.add_all(
            [
                Job(kind="sync", status="queued", run_at=now - timedelta(seconds=90)),
                Job(kind="sync", status="queued", run_at=now - timedelta(seconds=5)),
                Job(kind="sync", status="queued", run_at=now + timedelta(hours=1)),
                Job(kind="sync", status="queued", run_at=now + timedelta(hours=2)),
                Job(kind="sync", status="running", item_id="item-1"),
                Job(kind="sync", status="dead"),
                Job(kind="sync", status="dead"),
                Job(kind="sync", status="dead"),
                Job(kind="sync", status="done"),
            ]
        )
        db.session.commit()

    _, found = scrape(client)

    jobs = {
        state: found[("pluggy_sync_jobs", (("state", state),))] for state in ("due", "scheduled", "running", "dead")
    }
    assert jobs == {"due": 2, "scheduled": 2, "running": 1, "dead": 3}
    assert 90 <= found[("pluggy_sync_oldest_due_job_age_seconds", ())] < 120


STALE = ("pluggy_sync_oldest_connection_staleness_seconds", (("waiting_for_user", "false"),))


def add_connection(session, user, item_id: str, **fields) -> Connection:
    connection = Connection(user_id=user.id, item_id=item_id)
    apply_item(connection, pf.item(id=item_id))
    for name, given in fields.items():
        setattr(connection, name, given)
    session.add(connection)
    session.commit()
    return connection


def test_staleness_is_the_least_recently_synced_live_connection(client, session, user):
    now = utcnow()
    add_connection(session, user, "synced-recently", last_synced_at=now - timedelta(minutes=5))
    add_connection(session, user, "synced-two-hours-ago", last_synced_at=now - timedelta(hours=2))
    # Deleted at Pluggy: however stale, it no longer counts.
    add_connection(session, user, "deleted", last_synced_at=now - timedelta(days=30), deleted_at=now)

    _, found = scrape(client)

    assert 7200 <= found[STALE] < 7300


def test_a_connection_never_synced_is_as_stale_as_its_age(client, session, user):
    add_connection(session, user, "new", created_at=utcnow() - timedelta(hours=3))
    add_connection(session, user, "synced", last_synced_at=utcnow() - timedelta(hours=1))

    _, found = scrape(client)

    assert 3 * 3600 <= found[STALE] < 3 * 3600 + 100


@pytest.mark.parametrize("item_status", ["WAITING_USER_INPUT", "WAITING_USER_ACTION", "LOGIN_ERROR"])
def test_connections_waiting_for_their_user_are_counted_apart(client, session, user, item_status):
    add_connection(session, user, "waits", item_status=item_status, last_synced_at=utcnow() - timedelta(days=3))
    add_connection(session, user, "fresh", last_synced_at=utcnow() - timedelta(minutes=10))

    _, found = scrape(client)

    assert 600 <= found[STALE] < 700
    assert (
        3 * 86400
        <= found[("pluggy_sync_oldest_connection_staleness_seconds", (("waiting_for_user", "true"),))]
        < 3 * 86400 + 100
    )


@pytest.mark.parametrize(
    "database_url",
    [None, "postgresql+psycopg://nobody@127.0.0.1:9/none"],
    ids=["sqlite cannot be opened", "postgresql refuses connections"],
)
def test_without_the_database_metrics_still_answer_with_database_up_0(tmp_path, database_url):
    app = make_app(database_url or f"sqlite:///{tmp_path / 'missing-dir' / 'x.db'}")

    text, found = scrape(app.test_client())

    assert found[("pluggy_sync_database_up", ())] == 0
    assert "pluggy_sync_jobs" not in text  # no made-up figures: absent, not zero
    assert "pluggy_sync_oldest_due_job_age_seconds" not in text
    for name in PROCESS_METRICS:  # the process's own metrics are still there
        assert f"# TYPE {name} " in text


# HTTP requests ----------------------------------------------------------------------------------


def test_requests_are_timed_by_route_and_status_never_by_raw_path(app, client):
    token = issue_webhook_token(app.config["SECRET_KEY"])
    route = "/webhooks/pluggy/<token>"
    keys = [
        ("pluggy_sync_http_request_duration_seconds_count", {"method": "GET", "route": "/health", "status": "200"}),
        ("pluggy_sync_http_request_duration_seconds_count", {"method": "POST", "route": route, "status": "200"}),
        ("pluggy_sync_http_request_duration_seconds_count", {"method": "POST", "route": route, "status": "401"}),
        ("pluggy_sync_http_request_duration_seconds_count", {"method": "GET", "route": "<unmatched>", "status": "404"}),
    ]
    with Delta(*keys) as delta:
        client.get("/health")
        post_webhook(client, pf.webhook_event("item/updated"), headers={}, path=f"/webhooks/pluggy/{token}")
        post_webhook(client, pf.webhook_event("item/updated"), headers={}, path="/webhooks/pluggy/forged")
        client.get(f"/no/such/{token}")

    assert [delta(*key) for key in keys] == [1, 1, 1, 1]
    text, _ = scrape(client)
    assert token not in text and "forged" not in text and "/no/such" not in text


# Webhooks received ------------------------------------------------------------------------------


def received(event: str, outcome: str) -> tuple[str, dict]:
    return "pluggy_sync_webhooks_received_total", {"event": event, "outcome": outcome}


def test_webhooks_are_counted_by_event_and_outcome(app, client):
    payload = pf.webhook_event("item/updated", itemId="item-1")
    keys = [
        received("item/updated", "accepted"),
        received("item/updated", "duplicate"),
        received("transactions/created", "accepted"),
        received("other", "unauthorized"),
        received("other", "invalid"),
        received("other", "accepted"),
    ]
    token = issue_webhook_token(app.config["SECRET_KEY"])
    with Delta(*keys) as delta:
        assert post_webhook(client, payload).status_code == 200
        assert post_webhook(client, payload).status_code == 200  # the same delivery again
        assert (
            post_webhook(
                client, pf.webhook_event("item/updated"), headers={}, path=f"/webhooks/pluggy/{token}"
            ).status_code
            == 200
        )
        assert post_webhook(client, pf.webhook_event("transactions/created", itemId="item-1")).status_code == 200
        assert post_webhook(client, payload, headers={"X-Webhook-Secret": "wrong"}).status_code == 401
        assert post_webhook(client, payload, headers={}, path="/webhooks/pluggy/forged").status_code == 401
        assert post_webhook(client, b"{not json").status_code == 400
        assert post_webhook(client, {"no": "event"}).status_code == 400
        assert post_webhook(client, pf.webhook_event("item/updated", padding="x" * 64 * 1024)).status_code == 413
        # Names are the sender's: anything unknown shares one label value.
        assert post_webhook(client, pf.webhook_event("bank/robbed")).status_code == 200
        assert post_webhook(client, pf.webhook_event("x" * 500)).status_code == 200

    assert [delta(*key) for key in keys] == [2, 1, 1, 2, 3, 2]
    text, _ = scrape(client)
    assert "bank/robbed" not in text and "x" * 500 not in text


def test_an_event_the_database_cannot_store_is_counted_unavailable(tmp_path):
    app = make_app(f"sqlite:///{tmp_path / 'missing' / 'db.sqlite'}")

    with Delta(received("item/updated", "unavailable")) as delta:
        response = post_webhook(app.test_client(), pf.webhook_event("item/updated"))

    assert response.status_code == 503
    assert delta(*received("item/updated", "unavailable")) == 1


@pytest.mark.parametrize(
    "event, label",
    [
        ("item/updated", "item/updated"),
        ("connector/status_updated", "connector/status_updated"),
        ("ITEM/UPDATED", "other"),
        ("", "other"),
        (None, "other"),
        (7, "other"),
        (["item/updated"], "other"),
    ],
)
def test_event_labels_are_the_known_names_or_other(event, label):
    assert event_label(event) == label


# Calls to Pluggy --------------------------------------------------------------------------------


def calls(method: str, endpoint: str, status: str) -> tuple[str, dict]:
    return "pluggy_sync_pluggy_requests_total", {"method": method, "endpoint": endpoint, "status": status}


def duration_count(method: str, endpoint: str) -> tuple[str, dict]:
    return "pluggy_sync_pluggy_request_duration_seconds_count", {"method": method, "endpoint": endpoint}


@pytest.mark.parametrize(
    "path, label",
    [
        ("/auth", "/auth"),
        ("/connect_token", "/connect_token"),
        ("/accounts", "/accounts"),
        ("/v2/transactions", "/v2/transactions"),
        ("/items/0b8e43f4-1c3a-4f6e-9b0c-4f2d9f6c8a11", "/items/{id}"),
        ("/items/0b8e43f4-1c3a-4f6e-9b0c-4f2d9f6c8a11/mfa", "/items/{id}/mfa"),
        ("/transactions/3f7a9c2e-5b1d-4e8a-a6c4-7d2e1f0b9c33", "/transactions/{id}"),
        ("/webhooks/7c1e2f0a-1b2c-4d5e-8f90-a1b2c3d4e5f6", "/webhooks/{id}"),
        ("/items/item%2F1", "/items/{id}"),
        ("/items/" + "a" * 40, "/items/{id}"),  # letters only, but no word is that long
    ],
)
def test_endpoint_labels_replace_ids(path, label):
    assert endpoint_label(path) == label


def test_pluggy_calls_are_counted_by_endpoint_template_and_status(client, session, connection, fake_pluggy, pluggy_api):
    item_id = connection.item_id
    account_id = fake_pluggy.accounts[item_id][0]["id"]
    fake_pluggy.refuse_next("GET", f"/items/{item_id}", 404, "ITEM_NOT_FOUND")
    keys = [
        calls("POST", "/auth", "200"),
        calls("GET", "/items/{id}", "200"),
        calls("GET", "/items/{id}", "404"),
        calls("GET", "/v2/transactions", "200"),
        calls("GET", "/accounts", "200"),
        duration_count("GET", "/items/{id}"),
    ]
    with Delta(*keys) as delta:
        with pytest.raises(PluggyNotFound):
            pluggy_api.get_item(item_id)
        pluggy_api.get_item(item_id)
        pluggy_api.list_accounts(item_id)
        list(pluggy_api.iter_transactions(account_id))

    assert [delta(*key) for key in keys] == [1, 1, 1, 1, 1, 2]
    text, _ = scrape(client)
    assert item_id not in text and account_id not in text  # ids never become label values


@pytest.fixture
def no_retry_sleep(monkeypatch) -> list[float]:
    """Seconds urllib3's Retry asked to sleep; nothing actually sleeps."""
    asked: list[float] = []
    monkeypatch.setattr(
        importlib.import_module("urllib3.util.retry"), "time", SimpleNamespace(sleep=asked.append, time=time.time)
    )
    return asked


@pytest.fixture
def served(no_retry_sleep):
    """Pluggy over real loopback HTTP: urllib3 really retries, keeping history. (`responses` replays
    urllib3's Retry but does not put the retry history on the final response, so a retried attempt
    is only visible to the client over a real connection.)"""
    fake = FakePluggy(client_id="client-id", client_secret="client-secret")
    fake.add_item(id=ITEM_ID)
    with fake.serve() as url:
        client = PluggyClient(url, "client-id", "client-secret", timeout=(1, 2))
        yield fake, client
        client.close()
    fake.close()


def test_a_429_that_urllib3_retried_is_counted_as_well_as_the_200(served, no_retry_sleep, caplog):
    caplog.set_level(logging.INFO)
    fake, client = served
    fake.refuse_next("GET", f"/items/{ITEM_ID}", 429, "RATE_LIMIT_EXCEEDED", headers={"Retry-After": "1"})
    keys = [
        calls("GET", "/items/{id}", "429"),
        calls("GET", "/items/{id}", "200"),
        duration_count("GET", "/items/{id}"),
    ]

    with Delta(*keys) as delta:
        assert client.get_item(ITEM_ID)["id"] == ITEM_ID

    assert fake.count("GET", f"/items/{ITEM_ID}") == 2 and no_retry_sleep == [1]
    assert [delta(*key) for key in keys] == [1, 1, 1]  # one call, two attempts
    (line,) = [r for r in caplog.records if r.getMessage() == "pluggy call" and r.fields["path"] == f"/items/{ITEM_ID}"]
    assert (line.fields["status"], line.fields["retried"]) == (200, [429])


def test_server_errors_retried_on_a_get_are_each_counted(served):
    fake, client = served
    for _ in range(2):
        fake.refuse_next("GET", f"/items/{ITEM_ID}", 503, message="Service Unavailable")
    keys = [calls("GET", "/items/{id}", "503"), calls("GET", "/items/{id}", "200")]

    with Delta(*keys) as delta:
        client.get_item(ITEM_ID)

    assert [delta(*key) for key in keys] == [2, 1]


def test_no_answer_is_counted_with_status_none(no_retry_sleep):
    port = free_port()  # nothing listens there
    client = PluggyClient(f"http://127.0.0.1:{port}", "client-id", "client-secret", timeout=(1, 1))
    keys = [calls("POST", "/auth", "none")]

    with Delta(*keys) as delta, pytest.raises(PluggyUnavailable):
        client.get_item(ITEM_ID)
    client.close()

    # One sample per call that got no answer: urllib3's connection retries leave no answer to count.
    assert delta(*keys[0]) == 1


def test_record_call_counts_the_retried_statuses_of_one_call():
    keys = [calls("PATCH", "/items/{id}", s) for s in ("429", "503", "none", "200")]

    with Delta(*keys, duration_count("PATCH", "/items/{id}")) as delta:
        record_call("PATCH", f"/items/{ITEM_ID}", 200, 0.25, retried=[429, 503, None])

    assert [delta(*key) for key in keys] == [1, 1, 1, 1]
    assert delta(*duration_count("PATCH", "/items/{id}")) == 1


# The worker: jobs, sync runs, transactions, webhook lag -----------------------------------------


def test_a_first_sync_counts_its_job_run_and_rows(session, user, fake_pluggy, pluggy_api, settings, worker):
    item = fake_pluggy.add_item()
    account = fake_pluggy.add_account(item["id"])
    for n in range(3):
        fake_pluggy.add_transaction(account["id"], date=f"{utcnow().date() - timedelta(days=n)}T03:00:00.000Z")
    BankConnectionService(session, pluggy_api, settings).register(user, item["id"])
    keys = [
        ("pluggy_sync_job_duration_seconds_count", {"kind": "initial_sync", "outcome": "done"}),
        ("pluggy_sync_sync_runs_total", {"trigger": "initial", "status": "success"}),
        ("pluggy_sync_transactions_written_total", {"change": "created"}),
    ]

    with Delta(*keys) as delta:
        assert drain(worker, session) == 1

    assert [delta(*key) for key in keys] == [1, 1, 3]


def test_a_webhook_counts_its_job_lag_run_and_the_changes(client, session, connection, fake_pluggy, worker):
    account_id = fake_pluggy.accounts[connection.item_id][0]["id"]
    today = utcnow().date()
    kept = fake_pluggy.add_transaction(account_id, date=f"{today}T03:00:00.000Z", amount=-10.0)
    gone = fake_pluggy.add_transaction(account_id, date=f"{today}T04:00:00.000Z", amount=-20.0)
    scheduling.queue_initial_sync(session, connection)
    session.commit()
    drain(worker, session)
    fake_pluggy.add_transaction(account_id, date=f"{today}T05:00:00.000Z")
    fake_pluggy.set_item(connection.item_id, status="UPDATED", lastUpdatedAt=now_iso())
    keys = [
        ("pluggy_sync_job_duration_seconds_count", {"kind": "webhook_events", "outcome": "done"}),
        ("pluggy_sync_webhook_processing_lag_seconds_count", {"event": "item/updated"}),
        ("pluggy_sync_webhook_processing_lag_seconds_count", {"event": "transactions/deleted"}),
        ("pluggy_sync_webhook_processing_lag_seconds_count", {"event": "transactions/updated"}),
        ("pluggy_sync_sync_runs_total", {"trigger": "webhook", "status": "success"}),
        ("pluggy_sync_transactions_written_total", {"change": "created"}),
        ("pluggy_sync_transactions_written_total", {"change": "updated"}),
        ("pluggy_sync_transactions_written_total", {"change": "deleted"}),
        ("pluggy_sync_webhook_processing_lag_seconds_bucket", {"event": "item/updated", "le": "60.0"}),
    ]

    with Delta(*keys) as delta:
        assert post_webhook(client, pf.webhook_event("item/updated", itemId=connection.item_id)).status_code == 200
        drain(worker, session)
        kept["amount"] = -11.0
        deleted = pf.webhook_event(
            "transactions/deleted", itemId=connection.item_id, accountId=account_id, transactionIds=[gone["id"]]
        )
        updated = pf.webhook_event(
            "transactions/updated", itemId=connection.item_id, accountId=account_id, transactionIds=[kept["id"]]
        )
        fake_pluggy.remove_transaction(account_id, gone["id"])
        assert post_webhook(client, deleted).status_code == 200
        assert post_webhook(client, updated).status_code == 200
        drain(worker, session)

    assert delta(*keys[0]) == 2
    assert [delta(*key) for key in keys[1:4]] == [1, 1, 1]
    assert delta(*keys[4]) == 1  # the item/updated fetch; the transaction events join its run
    assert [delta(*key) for key in keys[5:8]] == [1, 1, 1]
    assert delta(*keys[8]) == 1  # handled in the same second it arrived: within the 60 s bucket


def test_failed_and_dead_jobs_are_timed_under_their_outcome(session, connection, fake_pluggy, worker):
    scheduling.queue_initial_sync(session, connection)
    session.add(Job(kind="no_such_kind", payload={}))
    session.commit()
    fake_pluggy.refuse_next("GET", f"/items/{connection.item_id}", 400, "SOMETHING_WRONG")
    keys = [
        ("pluggy_sync_job_duration_seconds_count", {"kind": "initial_sync", "outcome": "failed"}),
        ("pluggy_sync_job_duration_seconds_count", {"kind": "no_such_kind", "outcome": "dead"}),
    ]

    with Delta(*keys) as delta:
        drain(worker, session)

    assert [delta(*key) for key in keys] == [1, 1]


def test_a_manual_sync_pluggy_refuses_counts_an_error_run(client, app, session, user, connection, fake_pluggy):
    from sync.tokens import issue_api_token

    headers = {"Authorization": f"Bearer {issue_api_token(app.config['SECRET_KEY'], user)}"}
    fake_pluggy.refuse_next("PATCH", f"/items/{connection.item_id}", 500)
    key = ("pluggy_sync_sync_runs_total", {"trigger": "manual", "status": "error"})

    with Delta(key) as delta:
        response = client.post(f"/api/banking/connections/{connection.id}/sync_transactions/", headers=headers)

    assert response.status_code == 502
    assert delta(*key) == 1


# The worker's metrics port ----------------------------------------------------------------------


@pytest.fixture
def metrics_servers(monkeypatch):
    """The HTTP servers metrics.serve starts, shut down after the test (a worker would keep them)."""
    servers = []
    real = metrics_module.start_http_server

    def start(*args, **kwargs):
        started = real(*args, **kwargs)
        servers.append(started)
        return started

    monkeypatch.setattr(metrics_module, "start_http_server", start)
    yield servers
    for server, thread in servers:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_flask_worker_serves_its_metrics_on_the_given_port(runner, session, metrics_servers):
    session.add(Job(kind="no_such_kind_for_the_port", payload={}))
    session.commit()
    port = free_port()

    result = runner.invoke(
        args=["worker", "--burst", "--no-wake", "--metrics-port", str(port), "--metrics-host", "127.0.0.1"]
    )

    assert result.exit_code == 0, result.output
    assert len(metrics_servers) == 1
    status, content_type, text = http_get(f"http://127.0.0.1:{port}/metrics")
    # prometheus-client's own server negotiates the format (Accept); the text format without one.
    assert status == 200 and content_type.startswith("text/plain;")
    found = parse(text)
    assert (
        found[("pluggy_sync_job_duration_seconds_count", (("kind", "no_such_kind_for_the_port"), ("outcome", "dead")))]
        == 1
    )
    for name in PROCESS_METRICS:
        assert f"# TYPE {name} " in text
    assert "pluggy_sync_database_up" not in text  # the database figures are the web process's


def test_a_metrics_port_in_use_is_a_clear_error(runner, session, metrics_servers):
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        result = runner.invoke(
            args=["worker", "--burst", "--no-wake", "--metrics-port", str(port), "--metrics-host", "127.0.0.1"]
        )

    assert result.exit_code == 1
    assert f"cannot serve metrics on 127.0.0.1:{port}" in result.output


def test_serve_answers_over_http(metrics_servers):
    port = free_port()
    metrics_module.serve(port, "127.0.0.1")

    status, content_type, text = http_get(f"http://127.0.0.1:{port}/metrics")

    assert (status, content_type.split(";")[0]) == (200, "text/plain")
    assert "# TYPE pluggy_sync_pluggy_requests_total counter" in text


# Multiprocess mode ------------------------------------------------------------------------------


def run_python(code: str, multiproc_dir: Path, **env: str) -> str:
    environment = {**os.environ, "PYTHONPATH": str(ROOT), "PROMETHEUS_MULTIPROC_DIR": str(multiproc_dir), **env}
    (output,) = run([sys.executable, "-c", textwrap.dedent(code)], env=environment, timeout=60)
    return output


def test_multiprocess_mode_reports_every_process(tmp_path, migrated_database):
    multiproc_dir = tmp_path / "prometheus"
    multiproc_dir.mkdir()
    increment = """
        from observability import metrics
        metrics.SYNC_RUNS.labels("manual", "success").inc({n})
        metrics.JOB_DURATION.labels("initial_sync", "done").observe(0.5)
        metrics.WEBHOOKS_RECEIVED.labels("item/updated", "accepted").inc()
    """
    run_python(increment.format(n=2), multiproc_dir)
    run_python(increment.format(n=3), multiproc_dir)
    assert len(list(multiproc_dir.glob("*.db"))) >= 2  # each process wrote files of its own

    text = run_python(
        """
        import json, os
        from api import create_app
        config = {"TESTING": True, "SQLALCHEMY_DATABASE_URI": os.environ["DB_URL"], **json.loads(os.environ["SECRETS"])}
        app = create_app(config)
        answer = app.test_client().get("/metrics")
        assert answer.status_code == 200, answer.status_code
        print(answer.get_data(as_text=True))
        """,
        multiproc_dir,
        DB_URL=migrated_database,
        SECRETS=json.dumps({k: list(v) if isinstance(v, tuple) else v for k, v in TEST_SECRETS.items()}),
    )

    found = parse(text)
    assert found[("pluggy_sync_sync_runs_total", (("status", "success"), ("trigger", "manual")))] == 5
    assert found[("pluggy_sync_job_duration_seconds_count", (("kind", "initial_sync"), ("outcome", "done")))] == 2
    assert found[("pluggy_sync_job_duration_seconds_sum", (("kind", "initial_sync"), ("outcome", "done")))] == 1.0
    assert found[("pluggy_sync_webhooks_received_total", (("event", "item/updated"), ("outcome", "accepted")))] == 2
    assert found[("pluggy_sync_database_up", ())] == 1  # the database figures follow the processes' own


def test_multiprocess_exposition_without_the_web_app(tmp_path):
    multiproc_dir = tmp_path / "prometheus"
    multiproc_dir.mkdir()
    for n in (1, 4):
        run_python(
            f"from observability import metrics; metrics.TRANSACTIONS_WRITTEN.labels('created').inc({n})", multiproc_dir
        )

    text = run_python("from observability import metrics; print(metrics.exposition()[0].decode())", multiproc_dir)

    assert parse(text)[("pluggy_sync_transactions_written_total", (("change", "created"),))] == 5
    assert "pluggy_sync_database_up" not in text  # no database figures asked for
