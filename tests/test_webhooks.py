"""Webhooks: the receiver (authenticated, durable, idempotent), the handlers, the sweep, register."""

from __future__ import annotations

import json
import threading
from datetime import timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from jobqueue import queue
from jobqueue import worker as worker_module
from models import (
    Connection,
    ConnectorStatus,
    Job,
    OutboundEvent,
    ReportedStatus,
    SyncRun,
    Transaction,
    WebhookEvent,
    db,
)
from models.base import utcnow
from sandbox import data as pf
from sync import events as events_module
from sync import scheduling
from sync.item_state import apply_item, sync_status
from sync.manual_sync import ManualSync
from sync.tokens import issue_api_token, issue_webhook_token
from tests.conftest import make_app
from tests.fake_pluggy import now_iso

SECRET = {"X-Webhook-Secret": "test-webhook-secret"}


def post(client, payload, headers=SECRET, path="/webhooks/pluggy"):
    data = payload if isinstance(payload, (bytes, str)) else json.dumps(payload)
    return client.post(path, data=data, headers=headers, content_type="application/json")


def count(session, model) -> int:
    session.expire_all()
    return session.scalar(sa.select(sa.func.count()).select_from(model))


def events(session) -> list[WebhookEvent]:
    session.expire_all()
    return list(session.scalars(sa.select(WebhookEvent).order_by(WebhookEvent.id)))


# Receiving ------------------------------------------------------------------------------------


def test_an_event_is_stored_with_its_job_before_the_answer(client, session):
    payload = pf.webhook_event("item/updated", itemId="item-1")

    response = post(client, payload)

    assert response.status_code == 200
    assert response.get_json() == {"status": "accepted", "event_id": payload["eventId"]}
    (event,) = events(session)
    assert (event.event_id, event.event, event.item_id, event.status) == (
        payload["eventId"],
        "item/updated",
        "item-1",
        "pending",
    )
    assert event.payload == payload
    assert event.headers["X-Webhook-Secret"] == "[redacted]"
    (job,) = session.scalars(sa.select(Job)).all()
    assert (job.kind, job.payload, job.item_id) == ("webhook_events", {"item_id": "item-1"}, "item-1")


def test_headers_holding_a_secret_or_the_url_are_stored_redacted(app, client, session):
    """A URL-token address carries its token in the path, which a proxy may copy into a header."""
    token = issue_webhook_token(app.config["SECRET_KEY"])
    proxied = {
        "X-Original-URI": f"/webhooks/pluggy/{token}",
        "Referer": f"https://sync.example.com/webhooks/pluggy/{token}",
        "Proxy-Authorization": "Basic cHJveHk6c2VjcmV0",
        "X-Auth-Token": "a-bearer-token",
        "User-Agent": "Pluggy-Webhooks",
    }

    answer = post(client, pf.webhook_event("item/updated"), headers=proxied, path=f"/webhooks/pluggy/{token}")

    assert answer.status_code == 200
    (event,) = events(session)
    stored = {name.lower(): value for name, value in event.headers.items()}  # as the WSGI server spells them
    assert {name: stored[name.lower()] for name in proxied} == {
        **dict.fromkeys(["X-Original-URI", "Referer", "Proxy-Authorization", "X-Auth-Token"], "[redacted]"),
        "User-Agent": "Pluggy-Webhooks",
    }


def test_every_configured_secret_is_accepted_for_rotation(app, client, session):
    app.config["PLUGGY_WEBHOOK_SECRETS"] = ("new-secret", "old-secret")
    for secret in ("new-secret", "old-secret"):
        assert post(client, pf.webhook_event("item/updated"), headers={"X-Webhook-Secret": secret}).status_code == 200


@pytest.mark.parametrize(
    "headers",
    [{}, {"X-Webhook-Secret": ""}, {"X-Webhook-Secret": "wrong"}, {"X-Webhook-Secret": "test-webhook-secret "}],
    ids=["missing", "empty", "wrong", "almost"],
)
def test_a_wrong_or_missing_secret_is_401_and_nothing_is_stored(client, session, headers):
    response = post(client, b"{not even json", headers=headers)  # authenticated before parsed

    assert (response.status_code, response.get_json()["error"]["code"]) == (401, "unauthorized")
    assert count(session, WebhookEvent) == 0 and count(session, Job) == 0


def test_without_a_configured_secret_the_header_route_accepts_nothing(app, client, session):
    app.config["PLUGGY_WEBHOOK_SECRETS"] = ()
    assert post(client, pf.webhook_event("item/updated"), headers={"X-Webhook-Secret": ""}).status_code == 401


def test_the_signed_url_route_accepts_its_token_only(app, client, session, user):
    good = issue_webhook_token(app.config["SECRET_KEY"])
    api_token = issue_api_token(app.config["SECRET_KEY"], user)

    assert (
        post(client, pf.webhook_event("item/updated"), headers={}, path=f"/webhooks/pluggy/{good}").status_code == 200
    )
    for forged in (good[:-2] + "xx", api_token, "pluggy"):
        assert (
            post(client, pf.webhook_event("item/updated"), headers={}, path=f"/webhooks/pluggy/{forged}").status_code
            == 401
        )
    assert count(session, WebhookEvent) == 1


def test_a_body_over_64_kib_is_413_and_not_stored(client, session):
    payload = pf.webhook_event("item/updated", padding="x" * 64 * 1024)

    response = post(client, payload)

    assert (response.status_code, response.get_json()["error"]["code"]) == (413, "request_entity_too_large")
    assert count(session, WebhookEvent) == 0


@pytest.mark.parametrize(
    "body",
    [b"{oops", b"[]", b'"item/updated"', b"{}", b'{"event": 7}', b'{"event": ""}', b'{"a": ' * 3000],
    ids=["not json", "array", "string", "no event", "event not text", "empty event", "too deep"],
)
def test_a_body_that_is_not_an_event_is_400(client, session, body):
    assert post(client, body).status_code == 400
    assert count(session, WebhookEvent) == 0


def test_a_repeated_delivery_is_a_duplicate_and_done_once(client, session):
    payload = pf.webhook_event("item/updated", itemId="item-1")

    first, second = post(client, payload), post(client, payload)

    assert second.get_json() == {"status": "duplicate", "event_id": payload["eventId"]}
    assert first.get_json()["status"] == "accepted"
    assert count(session, WebhookEvent) == 1 and count(session, Job) == 1


def test_without_an_event_id_the_body_itself_is_the_dedupe_key(client, session):
    payload = {"event": "item/updated", "itemId": "item-1"}

    first, second = post(client, payload), post(client, payload)

    assert first.get_json()["event_id"].startswith("sha256:")
    assert second.get_json()["status"] == "duplicate"
    assert post(client, {**payload, "triggeredBy": "USER"}).get_json()["status"] == "accepted"


def test_concurrent_duplicates_store_one_event(app, session):
    payload = json.dumps(pf.webhook_event("item/updated", itemId="item-1"))
    answers, barrier = [], threading.Barrier(6, timeout=10)

    def deliver() -> None:
        client = app.test_client()
        barrier.wait()
        answers.append(post(client, payload).get_json()["status"])

    threads = [threading.Thread(target=deliver) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(answers) == ["accepted"] + ["duplicate"] * 5
    assert count(session, WebhookEvent) == 1 and count(session, Job) == 1


def test_when_the_database_cannot_store_it_the_answer_is_503(tmp_path):
    app = make_app(f"sqlite:///{tmp_path / 'missing' / 'db.sqlite'}")

    response = post(app.test_client(), pf.webhook_event("item/updated"))

    assert (response.status_code, response.get_json()["error"]["code"]) == (503, "unavailable")


def test_events_of_one_item_share_one_queued_job(client, session):
    for name in ("item/updated", "transactions/created", "item/updated"):
        post(client, pf.webhook_event(name, itemId="item-1"))
    post(client, pf.webhook_event("item/updated", itemId="item-2"))

    assert [job.item_id for job in session.scalars(sa.select(Job).order_by(Job.id))] == ["item-1", "item-2"]


# Processing -----------------------------------------------------------------------------------


def deliver(client, worker, session, *payloads):
    """Post the events through the receiver, then let the worker run everything due."""
    for payload in payloads:
        assert post(client, payload).status_code == 200
    while worker.run_one(session, "test-worker"):
        pass


def runs_of(session, connection) -> list[SyncRun]:
    session.expire_all()
    return list(session.scalars(sa.select(SyncRun).where(SyncRun.connection_id == connection.id).order_by(SyncRun.id)))


def test_item_updated_closes_the_waiting_manual_run_by_fetching(
    client, session, connection, fake_pluggy, worker, pluggy_api, settings
):
    account_id = fake_pluggy.accounts[connection.item_id][0]["id"]
    fake_pluggy.add_transaction(account_id, date=f"{utcnow().date()}T03:00:00.000Z")
    started = ManualSync(session, pluggy_api, settings).trigger_manual_sync(connection)
    fake_pluggy.set_item(connection.item_id, status="UPDATED", lastUpdatedAt=now_iso())

    deliver(client, worker, session, pf.webhook_event("item/updated", itemId=connection.item_id))

    (run,) = runs_of(session, connection)
    assert (run.id, run.status, run.created) == (started.sync_run.id, "success", 1)
    (event,) = events(session)
    assert (event.status, event.sync_run_id, event.attempts) == ("processed", run.id, 1)


def test_a_late_item_updated_of_the_previous_update_leaves_our_run_waiting(
    client, session, connection, fake_pluggy, worker, pluggy_api, settings
):
    started = ManualSync(session, pluggy_api, settings).trigger_manual_sync(connection)
    fake_pluggy.set_item(connection.item_id, status="UPDATED", lastUpdatedAt=pf.SYNCED_AT)  # before our PATCH

    deliver(client, worker, session, pf.webhook_event("item/updated", itemId=connection.item_id))

    (run,) = runs_of(session, connection)
    assert (run.id, run.status) == (started.sync_run.id, "pending")
    assert fake_pluggy.count("GET", "/v2/transactions") == 0


def test_a_burst_of_item_events_reads_and_fetches_the_item_once(client, session, connection, fake_pluggy, worker):
    burst = [pf.webhook_event("item/updated", itemId=connection.item_id) for _ in range(3)]

    deliver(client, worker, session, *burst)

    assert fake_pluggy.count("GET", f"/items/{connection.item_id}") == 1
    (run,) = runs_of(session, connection)
    assert (run.trigger, run.status) == ("webhook", "success")
    assert {(e.status, e.sync_run_id) for e in events(session)} == {("processed", run.id)}


@pytest.mark.parametrize("name", ["item/error", "item/login_error"])
def test_a_login_error_needs_credentials_and_closes_the_run_so(
    client, session, connection, fake_pluggy, worker, pluggy_api, settings, name
):
    ManualSync(session, pluggy_api, settings).trigger_manual_sync(connection)
    fake_pluggy.set_item(
        connection.item_id, status="LOGIN_ERROR", executionStatus="INVALID_CREDENTIALS", error=pf.item_error()
    )

    deliver(
        client,
        worker,
        session,
        pf.webhook_event(name, itemId=connection.item_id, error={"code": "INVALID_CREDENTIALS", "message": "x"}),
    )

    (run,) = runs_of(session, connection)
    assert (run.status, run.error_code) == ("credentials_required", "INVALID_CREDENTIALS")
    assert sync_status(connection) == "CREDENTIALS_REQUIRED"


@pytest.mark.parametrize(
    "name, item_fields, expected",
    [
        ("item/waiting_user_input", {"status": "WAITING_USER_INPUT", "parameter": pf.mfa_parameter()}, "MFA_REQUIRED"),
        (
            "item/waiting_user_action",
            {"status": "WAITING_USER_ACTION", "userAction": {"instructions": "Abra o app"}},
            "USER_ACTION_REQUIRED",
        ),
        ("item/login_succeeded", {"status": "UPDATING", "error": None}, "UPDATING"),
    ],
)
def test_item_events_store_what_the_item_needs(
    client, session, connection, fake_pluggy, worker, name, item_fields, expected
):
    connection.error_code = "INVALID_CREDENTIALS"
    session.commit()
    fake_pluggy.set_item(connection.item_id, **item_fields)

    deliver(client, worker, session, pf.webhook_event(name, itemId=connection.item_id))

    session.refresh(connection)
    assert sync_status(connection) == expected
    assert connection.error_code is None
    if expected == "MFA_REQUIRED":
        assert connection.mfa_parameter["name"] == "token"


def test_the_payload_is_never_trusted_over_the_item(client, session, connection, fake_pluggy, worker):
    # The event claims an error; Pluggy says the item is fine.
    deliver(
        client,
        worker,
        session,
        pf.webhook_event("item/error", itemId=connection.item_id, error={"code": "INVALID_CREDENTIALS"}),
    )

    session.refresh(connection)
    assert (connection.item_status, connection.error_code) == ("UPDATED", None)


def test_item_deleted_marks_the_connection_and_later_events_are_ignored(
    client, session, connection, fake_pluggy, worker, app, user
):
    deliver(client, worker, session, pf.webhook_event("item/deleted", itemId=connection.item_id))
    deliver(client, worker, session, pf.webhook_event("item/updated", itemId=connection.item_id))

    session.refresh(connection)
    assert connection.deleted_at is not None
    assert [e.status for e in events(session)] == ["processed", "ignored"]
    assert fake_pluggy.count("GET", f"/items/{connection.item_id}") == 0
    token = issue_api_token(app.config["SECRET_KEY"], user)
    listed = client.get("/api/banking/connections/", headers={"Authorization": f"Bearer {token}"}).get_json()
    assert listed == {"connections": [], "next_cursor": None}


def test_item_created_links_an_item_to_its_user_by_client_user_id(client, session, user, fake_pluggy, worker):
    item = fake_pluggy.add_item(clientUserId=str(user.id))
    fake_pluggy.add_account(item["id"])

    deliver(client, worker, session, pf.webhook_event("item/created", itemId=item["id"], clientUserId=str(user.id)))

    connection = session.scalars(sa.select(Connection)).one()
    assert (connection.user_id, connection.item_id) == (user.id, item["id"])
    (run,) = runs_of(session, connection)
    assert (run.trigger, run.status) == ("initial", "success")


def test_an_item_of_nobody_here_is_ignored(client, session, fake_pluggy, worker):
    item = fake_pluggy.add_item(clientUserId="someone-else")

    deliver(client, worker, session, pf.webhook_event("item/created", itemId=item["id"]))

    assert count(session, Connection) == 0
    assert events(session)[0].status == "ignored"


def test_item_updated_before_item_created_ends_the_same(client, session, user, fake_pluggy, worker):
    item = fake_pluggy.add_item(clientUserId=str(user.id))
    fake_pluggy.add_account(item["id"])

    deliver(client, worker, session, pf.webhook_event("item/updated", itemId=item["id"]))
    deliver(client, worker, session, pf.webhook_event("item/created", itemId=item["id"]))

    connection = session.scalars(sa.select(Connection)).one()
    # One update of the item, one run: the first sync fetched it, the second signal of it joins that run.
    assert [run.status for run in runs_of(session, connection)] == ["success"]
    assert {e.status for e in events(session)} == {"processed"}


def transactions(session) -> dict[str, Transaction]:
    session.expire_all()
    return {t.pluggy_id: t for t in session.scalars(sa.select(Transaction))}


@pytest.fixture
def synced(session, connection, fake_pluggy, worker):
    scheduling.queue_initial_sync(session, connection)
    session.commit()
    worker.run_one(session, "w")
    return fake_pluggy.accounts[connection.item_id][0]["id"]


def test_transactions_created_fetches_what_pluggy_ingested(client, session, connection, fake_pluggy, worker, synced):
    new = fake_pluggy.add_transaction(synced, date=f"{utcnow().date()}T03:00:00.000Z")

    deliver(
        client,
        worker,
        session,
        pf.webhook_event(
            "transactions/created",
            itemId=connection.item_id,
            accountId=synced,
            transactionsCreatedAtFrom=new["createdAt"],
            createdTransactionsLink="https://evil.example/steal",
        ),
    )

    assert new["id"] in transactions(session)
    ((_, _, query, _),) = [c for c in fake_pluggy.calls_to("GET", "/v2/transactions") if "createdAtFrom" in c[2]][-1:]
    assert query["createdAtFrom"] == new["createdAt"]
    event = events(session)[0]
    assert event.status == "processed"
    assert session.get(SyncRun, event.sync_run_id).created == 1


def test_transactions_for_an_account_not_seen_yet_refresh_the_accounts(
    client, session, connection, fake_pluggy, worker, synced
):
    card = fake_pluggy.add_account(connection.item_id, type="CREDIT", name="Cartão")
    row = fake_pluggy.add_transaction(card["id"], date=f"{utcnow().date()}T03:00:00.000Z")

    deliver(
        client,
        worker,
        session,
        pf.webhook_event("transactions/created", itemId=connection.item_id, accountId=card["id"]),
    )

    assert row["id"] in transactions(session)


def test_transactions_updated_rereads_them_by_id(client, session, connection, fake_pluggy, worker, synced):
    row = fake_pluggy.add_transaction(synced, date=f"{utcnow().date()}T03:00:00.000Z", status="PENDING")
    deliver(
        client, worker, session, pf.webhook_event("transactions/created", itemId=connection.item_id, accountId=synced)
    )
    row["status"] = "POSTED"

    deliver(
        client,
        worker,
        session,
        pf.webhook_event(
            "transactions/updated", itemId=connection.item_id, accountId=synced, transactionIds=[row["id"]]
        ),
    )

    assert transactions(session)[row["id"]].status == "POSTED"
    (_, _, query, _) = fake_pluggy.calls_to("GET", "/v2/transactions")[-1]
    assert query["ids"] == row["id"]


def test_transactions_deleted_tombstones_them(client, session, connection, fake_pluggy, worker, synced):
    row = fake_pluggy.add_transaction(synced, date=f"{utcnow().date()}T03:00:00.000Z")
    deliver(
        client, worker, session, pf.webhook_event("transactions/created", itemId=connection.item_id, accountId=synced)
    )
    fake_pluggy.remove_transaction(synced, row["id"])

    deliver(
        client,
        worker,
        session,
        pf.webhook_event(
            "transactions/deleted", itemId=connection.item_id, accountId=synced, transactionIds=[row["id"]]
        ),
    )

    assert transactions(session)[row["id"]].deleted_at is not None


def test_deleted_before_created_leaves_nothing_live(client, session, connection, fake_pluggy, worker, synced):
    row = fake_pluggy.add_transaction(synced, date=f"{utcnow().date()}T03:00:00.000Z")
    fake_pluggy.remove_transaction(synced, row["id"])  # created then deleted at Pluggy

    deliver(
        client,
        worker,
        session,
        pf.webhook_event(
            "transactions/deleted", itemId=connection.item_id, accountId=synced, transactionIds=[row["id"]]
        ),
        pf.webhook_event(
            "transactions/created",
            itemId=connection.item_id,
            accountId=synced,
            transactionsCreatedAtFrom=row["createdAt"],
        ),
    )

    assert row["id"] not in transactions(session)
    assert {e.status for e in events(session)} == {"processed"}


def test_an_attempt_that_lost_its_lease_leaves_the_events_the_new_attempt_handled(
    client, session, connection, fake_pluggy, worker, monkeypatch
):
    """Worker A stalls past its lease inside the job; B takes the job back and handles the event;
    A, at its next checkpoint, finds its lease lost and must leave the event as B left it."""
    assert post(client, pf.webhook_event("item/updated", itemId=connection.item_id)).status_code == 200
    clock = [1000.0]
    monkeypatch.setattr(worker_module.time, "monotonic", lambda: clock[0])
    stalled = queue.claim(session, "A", lease=worker.lease)
    checkpoint_for = worker.checkpoint_for

    def stalling_checkpoint_for(job):
        checkpoint = checkpoint_for(job)
        if job.worker_id != "A":
            return checkpoint

        def stalled_past_the_lease(progressed=False):
            clock[0] += worker.lease.total_seconds() + 1
            with Session(db.engine) as other:
                taken_back = queue.claim(other, "B", now=utcnow() + worker.lease + timedelta(seconds=1))
                assert taken_back is not None and taken_back.id == stalled.id
                worker.execute(other, taken_back)
            checkpoint(progressed)  # A's lease is gone: LeaseLost

        return stalled_past_the_lease

    monkeypatch.setattr(worker, "checkpoint_for", stalling_checkpoint_for)
    worker.execute(session, stalled)

    session.expire_all()
    (event,) = events(session)
    assert (event.status, event.last_error) == ("processed", None)
    assert session.get(Job, stalled.id).status == "done"


def test_a_last_attempt_leaves_its_events_to_the_job_queued_for_the_item_meanwhile(
    app, client, session, connection, fake_pluggy, worker
):
    item = connection.item_id
    account = fake_pluggy.accounts[item][0]["id"]
    changed = pf.webhook_event("transactions/updated", itemId=item, accountId=account, transactionIds=["t1"])
    assert post(client, changed).status_code == 200
    session.execute(sa.update(Job).values(max_attempts=1))
    session.commit()
    for _ in range(4):  # the one attempt's GET and the client's own retries; then Pluggy is back
        fake_pluggy.refuse_next("GET", f"/items/{item}", 500)
    handle = worker.registry.handlers["webhook_events"]

    def with_a_delivery_meanwhile(context):
        if context.job.attempts == 1 and context.job.max_attempts == 1:
            assert post(app.test_client(), pf.webhook_event("item/updated", itemId=item)).status_code == 200
        handle(context)

    worker.registry.handlers["webhook_events"] = with_a_delivery_meanwhile

    assert worker.run_one(session, "w")  # its only attempt fails; the delivery queued another job
    while worker.run_one(session, "w"):
        pass

    session.expire_all()
    statuses = session.execute(sa.select(Job.status).where(Job.kind == "webhook_events").order_by(Job.id)).scalars()
    assert list(statuses) == ["dead", "done"]
    assert [(e.event, e.status) for e in events(session)] == [
        ("transactions/updated", "processed"),
        ("item/updated", "processed"),
    ]


def test_a_failing_job_joined_by_new_deliveries_keeps_its_backoff_and_still_gives_up(
    app, client, session, connection, fake_pluggy, worker
):
    """Each run, a delivery for the item queues a job under the same key: the failed job is
    superseded by it, and hands it its spent attempts and its backoff."""
    item = connection.item_id
    app.config["JOB_MAX_ATTEMPTS"] = 3
    fake_pluggy.answer_next("GET", f"/items/{item}", 500, pf.error_body(500, None, "down"), times=None)
    assert post(client, pf.webhook_event("item/updated", itemId=item)).status_code == 200
    handle = worker.registry.handlers["webhook_events"]

    def with_a_delivery_meanwhile(context):
        assert post(app.test_client(), pf.webhook_event("item/updated", itemId=item)).status_code == 200
        handle(context)

    worker.registry.handlers["webhook_events"] = with_a_delivery_meanwhile
    waits = []
    for _ in range(3):
        queued = session.scalars(sa.select(Job).where(Job.status == "queued", Job.item_id == item)).one()
        waits.append((queued.attempts, queued.run_at > utcnow()))
        queued.run_at = utcnow()  # its backoff over
        session.commit()
        assert worker.run_one(session, "w")
        session.expire_all()

    assert waits == [(0, False), (1, True), (2, True)]
    statuses = session.execute(sa.select(Job.status).where(Job.item_id == item).order_by(Job.id)).scalars()
    # The third attempt gave up; the delivery made during it is new work, with attempts of its own.
    assert list(statuses) == ["done", "done", "dead", "queued"]


# The connector's id is recorded whatever JSON type it comes as (the official SDKs type every
# payload's id as a string; Pluggy sends a number): a whole number in any spelling is one key.
@pytest.mark.parametrize(
    "connector_id, key",
    [
        (201, "201"),
        ("201", "201"),
        (201.0, "201"),
        ("0201", "201"),
        (201.5, "201.5"),
        (-1, "-1"),
        ("-1", "-1"),
        (2**40, str(2**40)),
        ("abc", "abc"),
        ("pluggy-bank", "pluggy-bank"),
    ],
    ids=repr,
)
def test_connector_status_is_recorded(client, session, worker, connector_id, key):
    deliver(
        client,
        worker,
        session,
        {"event": "connector/status_updated", "eventId": "e1", "id": connector_id, "data": {"status": "UNSTABLE"}},
    )

    status = session.get(ConnectorStatus, key)
    assert status.status == "UNSTABLE"
    assert events(session)[0].status == "processed"


def test_every_spelling_of_one_connector_updates_one_row(client, session, worker):
    for number, (connector_id, health) in enumerate([(201, "ONLINE"), ("201", "UNSTABLE"), (201.0, "OFFLINE")]):
        payload = {"event": "connector/status_updated", "eventId": f"e{number}", "id": connector_id}
        deliver(client, worker, session, {**payload, "data": {"status": health}})

    (status,) = session.scalars(sa.select(ConnectorStatus)).all()
    assert (status.connector_id, status.status) == ("201", "OFFLINE")


@pytest.mark.parametrize("connector_id", [True, False, None, {"id": 201}, [201], "", "   ", "x" * 256], ids=repr)
def test_a_connector_status_without_a_usable_id_is_ignored(client, session, worker, connector_id):
    payload = {"event": "connector/status_updated", "eventId": "e1", "id": connector_id, "data": {"status": "ONLINE"}}
    deliver(client, worker, session, payload)

    assert session.scalar(sa.select(sa.func.count()).select_from(ConnectorStatus)) == 0
    (event,) = events(session)
    assert (event.status, event.last_error) == ("ignored", "no connector id or no status")


def test_a_connector_status_without_its_id_is_ignored(client, session, worker):
    deliver(
        client, worker, session, {"event": "connector/status_updated", "eventId": "e1", "data": {"status": "ONLINE"}}
    )

    assert events(session)[0].status == "ignored"


def test_unknown_events_are_stored_and_ignored(client, session, worker):
    deliver(client, worker, session, pf.webhook_event("payment_intent/created", paymentIntentId="p1"))

    (event,) = events(session)
    assert (event.status, event.last_error) == ("ignored", "not handled: payment_intent/created")


def test_pluggy_failing_during_processing_retries_then_the_events_fail(
    client, session, connection, fake_pluggy, worker
):
    post(client, pf.webhook_event("item/updated", itemId=connection.item_id))
    job = session.scalars(sa.select(Job)).one()
    job.max_attempts = 2
    session.commit()
    for _ in range(2 * 4):  # each attempt: the GET and its three retries
        fake_pluggy.refuse_next("GET", f"/items/{connection.item_id}", 500)

    worker.run_one(session, "w")
    (event,) = events(session)
    assert (event.status, event.attempts) == ("pending", 1) and "500" in event.last_error
    session.execute(sa.update(Job).values(run_at=utcnow()))
    session.commit()
    worker.run_one(session, "w")

    (event,) = events(session)
    assert (event.status, event.attempts) == ("failed", 2)
    assert session.scalars(sa.select(Job)).one().status == "dead"


def test_pluggy_rate_limiting_a_job_delays_it_as_asked(client, session, connection, fake_pluggy, worker):
    post(client, pf.webhook_event("item/updated", itemId=connection.item_id))
    fake_pluggy.refuse_next("GET", f"/items/{connection.item_id}", 429, headers={"Retry-After": "120"})

    worker.run_one(session, "w")

    job = session.scalars(sa.select(Job).where(Job.kind == "webhook_events")).one()
    assert job.status == "queued" and (job.run_at - utcnow()).total_seconds() > 110
    assert events(session)[0].status == "pending"


# The missed-webhook sweep ---------------------------------------------------------------------


def age(session, connection, *, synced_hours_ago: float | None, created_hours_ago: float = 48) -> None:
    connection.created_at = utcnow() - timedelta(hours=created_hours_ago)
    connection.last_synced_at = None if synced_hours_ago is None else utcnow() - timedelta(hours=synced_hours_ago)
    session.commit()


def sweep(session, worker) -> None:
    scheduling.queue_sweep(session)
    session.commit()
    while worker.run_one(session, "w"):
        pass


def test_the_sweep_fetches_items_updated_since_our_last_fetch(session, connection, fake_pluggy, worker):
    age(session, connection, synced_hours_ago=12)
    fake_pluggy.set_item(connection.item_id, lastUpdatedAt=(utcnow() - timedelta(hours=1)).isoformat())

    sweep(session, worker)

    (run,) = runs_of(session, connection)
    assert (run.trigger, run.status) == ("reconcile", "success")
    assert fake_pluggy.count("PATCH", r"/items/.*") == 0


def test_the_sweep_leaves_unchanged_items_and_looks_once_per_window(session, connection, fake_pluggy, worker):
    age(session, connection, synced_hours_ago=12)
    fake_pluggy.set_item(connection.item_id, lastUpdatedAt=(utcnow() - timedelta(hours=13)).isoformat())

    sweep(session, worker)
    sweep(session, worker)

    assert runs_of(session, connection) == []
    assert fake_pluggy.count("GET", f"/items/{connection.item_id}") == 1
    session.refresh(connection)
    assert connection.last_checked_at is not None


def test_the_sweep_skips_fresh_and_new_connections(session, connection, fake_pluggy, worker, user):
    age(session, connection, synced_hours_ago=1)
    item = fake_pluggy.add_item()
    newcomer = Connection(user_id=user.id, item_id=item["id"])
    apply_item(newcomer, item)
    session.add(newcomer)
    session.commit()

    sweep(session, worker)

    assert fake_pluggy.calls_to("GET", r"/items/.*") == []


def test_the_sweep_marks_items_pluggy_forgot_as_deleted(session, connection, fake_pluggy, worker):
    age(session, connection, synced_hours_ago=None)
    fake_pluggy.remove_item(connection.item_id)

    sweep(session, worker)

    session.refresh(connection)
    assert connection.deleted_at is not None


def second_stale_connection(session, user, fake_pluggy) -> Connection:
    item = fake_pluggy.add_item()
    other = Connection(user_id=user.id, item_id=item["id"])
    apply_item(other, item)
    session.add(other)
    session.commit()
    age(session, other, synced_hours_ago=None)
    return other


def test_an_item_pluggy_keeps_failing_on_does_not_stop_the_sweep_for_the_others(
    session, connection, user, fake_pluggy, worker
):
    age(session, connection, synced_hours_ago=None)
    other = second_stale_connection(session, user, fake_pluggy)
    body = pf.error_body(500, None, "boom")
    fake_pluggy.answer_next("GET", f"/items/{connection.item_id}", 500, body, times=None)

    sweep(session, worker)

    session.expire_all()
    assert session.get(Connection, other.id).last_checked_at is not None
    assert session.get(Connection, connection.id).last_checked_at is not None  # last in the next window
    sweeps = session.execute(sa.select(Job.status).where(Job.kind == "sweep_items").order_by(Job.id)).scalars()
    assert list(sweeps) == ["done", "queued"]


def test_a_rate_limit_ends_the_sweep_early_and_leaves_the_rest_due(session, connection, user, fake_pluggy, worker):
    age(session, connection, synced_hours_ago=None)
    other = second_stale_connection(session, user, fake_pluggy)
    for item_id in (connection.item_id, other.item_id):
        fake_pluggy.refuse_next("GET", f"/items/{item_id}", 429, headers={"Retry-After": "60"})

    sweep(session, worker)

    session.expire_all()
    assert len(fake_pluggy.calls_to("GET", r"/items/.*")) == 1
    assert [session.get(Connection, c.id).last_checked_at for c in (connection, other)] == [None, None]
    sweeps = session.execute(sa.select(Job.status).where(Job.kind == "sweep_items").order_by(Job.id)).scalars()
    assert list(sweeps) == ["done", "queued"]


def test_the_sweep_queues_again_events_no_job_will_handle(client, session, connection, fake_pluggy, worker):
    """The net under any path that one day leaves a stored event without its job."""
    for payload in (
        pf.webhook_event("item/updated", itemId=connection.item_id),
        pf.webhook_event("item/updated", itemId=connection.item_id),
        {"event": "connector/status_updated", "id": 201, "data": {"status": "UNSTABLE"}},
    ):
        assert post(client, payload).status_code == 200
    session.execute(sa.delete(Job))  # their jobs lost
    session.commit()
    assert post(client, pf.webhook_event("item/updated", itemId="item-of-a-job-still-queued")).status_code == 200
    session.execute(sa.update(WebhookEvent).values(received_at=utcnow() - timedelta(minutes=11)))
    session.commit()
    assert events_module.queue_stranded(session, now=utcnow(), limit=100) == 3  # not the one with its job
    session.rollback()

    sweep(session, worker)

    session.expire_all()
    assert {(e.event, e.status) for e in events(session) if e.item_id != "item-of-a-job-still-queued"} == {
        ("item/updated", "processed"),
        ("connector/status_updated", "processed"),
    }
    jobs = session.scalars(sa.select(Job.payload).where(Job.kind == "webhook_events").order_by(Job.id)).all()
    assert sum(1 for payload in jobs if "item_id" in payload and payload["item_id"] == connection.item_id) == 1


def test_the_sweep_comes_back_on_its_own(session, worker, settings):
    sweep(session, worker)

    (queued,) = session.scalars(sa.select(Job).where(Job.kind == "sweep_items", Job.status == "queued")).all()
    wait = (queued.run_at - utcnow()).total_seconds()
    assert settings.sweep_interval_minutes * 60 - 5 < wait <= settings.sweep_interval_minutes * 60


# flask webhooks register ----------------------------------------------------------------------


def test_register_subscribes_every_handled_event_with_the_secret(runner, fake_pluggy):
    result = runner.invoke(args=["webhooks", "register", "https://sync.example.com/webhooks/pluggy"])

    assert result.exit_code == 0, result.output
    subscribed = {(w["event"], w["url"]) for w in fake_pluggy.webhooks.values()}
    assert len(subscribed) == 11
    assert ("item/updated", "https://sync.example.com/webhooks/pluggy") in subscribed
    assert all(w["headers"] == {"X-Webhook-Secret": "test-webhook-secret"} for w in fake_pluggy.webhooks.values())
    assert "item/login_error" not in {w["event"] for w in fake_pluggy.webhooks.values()}


def test_register_twice_changes_nothing_and_removes_duplicates(runner, fake_pluggy):
    url = "https://sync.example.com/webhooks/pluggy"
    runner.invoke(args=["webhooks", "register", url])
    before = {w["id"]: dict(w) for w in fake_pluggy.webhooks.values()}
    duplicate = fake_pluggy.add_webhook("item/updated", url)  # left by an earlier run, without the secret header
    assert duplicate["id"] in fake_pluggy.webhooks

    result = runner.invoke(args=["webhooks", "register", url])

    assert result.exit_code == 0
    assert not [line for line in result.output.splitlines() if line.endswith(" created")]
    assert set(fake_pluggy.webhooks) == set(before)
    assert all(fake_pluggy.webhooks[i]["headers"] == before[i]["headers"] for i in before)


def test_register_enables_again_a_subscription_pluggy_disabled(runner, fake_pluggy):
    url = "https://sync.example.com/webhooks/pluggy"
    disabled = fake_pluggy.add_webhook("item/updated", url, {"X-Webhook-Secret": "old"}, enabled=False)

    result = runner.invoke(args=["webhooks", "register", url])

    assert result.exit_code == 0, result.output
    assert fake_pluggy.webhooks[disabled["id"]]["disabledAt"] is None
    assert fake_pluggy.webhooks[disabled["id"]]["headers"] == {"X-Webhook-Secret": "test-webhook-secret"}


def test_register_needs_a_secret(app, runner, fake_pluggy):
    app.config["PLUGGY_WEBHOOK_SECRETS"] = ()
    result = runner.invoke(args=["webhooks", "register", "https://sync.example.com/webhooks/pluggy"])
    assert result.exit_code == 1 and "PLUGGY_WEBHOOK_SECRET" in result.output


def test_transactions_created_beside_an_item_update_is_read_by_that_fetch(
    client, session, connection, fake_pluggy, worker, synced
):
    fake_pluggy.set_item(connection.item_id, lastUpdatedAt=now_iso())  # Pluggy finished a new update
    deliver(
        client,
        worker,
        session,
        pf.webhook_event("item/updated", itemId=connection.item_id),
        pf.webhook_event("transactions/created", itemId=connection.item_id, accountId=synced),
    )

    initial, fetch = runs_of(session, connection)
    assert fetch.trigger == "webhook"
    assert {(e.status, e.sync_run_id) for e in events(session)} == {("processed", fetch.id)}


def test_the_sweep_records_the_status_of_connections_that_have_none(session, connection, user, worker):
    """Connections made before statuses were recorded (migration 0014) get their current one, which
    the console counts and filters by, without an event to the app: none was reported before."""
    older = Connection(user_id=user.id, item_id="item-from-before", item_status="LOGIN_ERROR")
    session.add(older)
    session.commit()
    session.execute(sa.delete(ReportedStatus))
    session.commit()

    sweep(session, worker)

    reported = dict(session.execute(sa.select(ReportedStatus.connection_id, ReportedStatus.sync_status)).all())
    assert reported == {connection.id: str(sync_status(connection)), older.id: "CREDENTIALS_REQUIRED"}
    assert session.scalar(sa.select(sa.func.count()).select_from(OutboundEvent)) == 0
