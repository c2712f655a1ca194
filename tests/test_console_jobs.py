"""The console's jobs pages: the queue by state and kind, one job, retry, retry every dead job of a
kind, discard."""

from __future__ import annotations

import dataclasses
import json
import logging
import re
from datetime import timedelta

import pytest
import sqlalchemy as sa

from config import SyncMode
from jobqueue import queue
from models import (
    EventStatus,
    Job,
    JobStatus,
    OutboundEvent,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEvent,
    db,
)
from models.base import utcnow
from observability.logs import FIELDS
from sandbox import data as pf
from sync.connections import BankConnectionService

MFA_VALUE_IN_A_PAYLOAD = "482913"


@pytest.fixture
def db_session(console_app):
    with console_app.app_context():
        yield db.session


def add_job(db_session, kind="fetch_item", status=JobStatus.QUEUED, **fields) -> Job:
    now = utcnow()
    values = {"payload": {}, "run_at": now - timedelta(seconds=5), "created_at": now, "attempts": 0, **fields}
    if status == JobStatus.RUNNING:
        values.setdefault("locked_by", "host:1:worker-1")
        values.setdefault("locked_until", now + timedelta(minutes=5))
        values.setdefault("attempts", 1)
    if status in (JobStatus.DEAD, JobStatus.DONE):
        values.setdefault("finished_at", now)
    job = Job(kind=kind, status=status, **values)
    db_session.add(job)
    db_session.commit()
    return job


def listed_ids(html: str) -> list[int]:
    table = re.search(r'<table id="jobs">(.*?)</table>', html, re.S)
    assert table, "the page has no jobs table"
    return [
        int(n) for n in re.findall(r'<tr>\s*<td class="number"><a href="/console/jobs/(\d+)">\1</a>', table.group(1))
    ]


def job_status(html: str) -> str:
    match = re.search(r'<dd id="job-status">([^<]*)</dd>', html)
    assert match
    return match.group(1)


def fresh(db_session, job: Job) -> Job:
    db_session.expire_all()
    return db_session.get(Job, job.id)


def actions_logged(caplog) -> list[dict]:
    return [getattr(r, FIELDS) for r in caplog.records if r.getMessage() == "console action"]


def operator_session_id(operator) -> str:
    with operator.client.session_transaction("/console/") as cookie:
        return cookie["operator"]


# The list --------------------------------------------------------------------------------------


def test_jobs_are_listed_by_state_with_the_counts_on_top(operator, db_session):
    due = add_job(db_session)
    scheduled = add_job(db_session, run_at=utcnow() + timedelta(hours=1))
    running = add_job(db_session, status=JobStatus.RUNNING, item_id="item-r")
    dead = add_job(db_session, status=JobStatus.DEAD, attempts=8, last_error="PluggyUnavailable: 503\ntraceback...")
    done = add_job(db_session, status=JobStatus.DONE)

    expected = {"due": due, "scheduled": scheduled, "running": running, "dead": dead, "done": done}
    for state, job in expected.items():
        page = operator.get(f"/console/jobs?state={state}")
        assert page.status_code == 200
        assert listed_ids(page.text) == [job.id], state

    page = operator.get("/console/jobs?state=dead")
    assert "PluggyUnavailable: 503" in page.text and "traceback" not in page.text  # the first line only
    assert "8/8" in page.text
    for state in ("due", "scheduled", "running", "dead"):
        assert re.search(rf'data-queue="{state}">1<', page.text), state


def test_due_is_the_default_and_an_unknown_state_or_kind_is_ignored(operator, db_session):
    due = add_job(db_session)
    add_job(db_session, status=JobStatus.DEAD)
    assert listed_ids(operator.get("/console/jobs").text) == [due.id]
    assert listed_ids(operator.get("/console/jobs?state=nonsense&kind=nonsense").text) == [due.id]


def test_jobs_are_filtered_by_kind(operator, db_session):
    fetch = add_job(db_session, kind="fetch_item", status=JobStatus.DEAD)
    events = add_job(db_session, kind="webhook_events", status=JobStatus.DEAD)
    page = operator.get("/console/jobs?state=dead&kind=webhook_events")
    assert listed_ids(page.text) == [events.id]
    assert '<option value="webhook_events" selected>' in page.text
    assert '<option value="prune_jobs">' in page.text  # the queue's own kind is offered too
    assert listed_ids(operator.get("/console/jobs?state=dead&kind=fetch_item").text) == [fetch.id]


def test_pages_follow_each_other_by_keyset_cursor(operator, db_session):
    dead = [add_job(db_session, status=JobStatus.DEAD, kind="fetch_item").id for _ in range(120)]
    seen: list[int] = []
    path = "/console/jobs?state=dead&kind=fetch_item"
    pages = 0
    while path:
        page = operator.get(path)
        seen += listed_ids(page.text)
        pages += 1
        following = re.search(r'<a href="([^"]+)" rel="next">Next page</a>', page.text)
        path = following.group(1).replace("&amp;", "&") if following else None
    assert pages == 3
    assert seen == sorted(dead, reverse=True)  # newest first, none repeated, none missed


def test_due_jobs_page_in_the_order_a_worker_takes_them(operator, db_session):
    now = utcnow()
    jobs = [add_job(db_session, run_at=now - timedelta(minutes=n)).id for n in range(60)]
    first = operator.get("/console/jobs?state=due")
    cursor = re.search(r'<a href="([^"]+)" rel="next">', first.text).group(1).replace("&amp;", "&")
    second = operator.get(cursor)
    assert listed_ids(first.text) + listed_ids(second.text) == list(reversed(jobs))  # oldest run_at first


def test_a_cursor_is_refused_with_other_filters(operator, db_session):
    for _ in range(60):
        add_job(db_session, status=JobStatus.DEAD)
    page = operator.get("/console/jobs?state=dead")
    cursor = re.search(r"after=([^\"&]+)", page.text).group(1)
    assert operator.get(f"/console/jobs?state=done&after={cursor}").status_code == 400
    assert operator.get("/console/jobs?state=dead&after=forged").status_code == 400


# The job's page -----------------------------------------------------------------------------------


def test_the_job_page_shows_the_job_with_its_payload_secrets_redacted(operator, db_session):
    job = add_job(
        db_session,
        kind="fetch_item",
        status=JobStatus.DEAD,
        item_id="item-42",
        key="fetch:item-42",
        attempts=8,
        last_error="PluggyUnavailable: Pluggy 503\nsecond line of the error",
        payload={
            "connection_id": 7,
            "trigger": "webhook",
            "mfa": {"token": MFA_VALUE_IN_A_PAYLOAD},
            "parameters": {"sms": MFA_VALUE_IN_A_PAYLOAD},
            "client_secret": "a-client-secret",
            "nested": [{"password": "hunter2", "account_id": "acc-1"}],
        },
    )
    page = operator.get(f"/console/jobs/{job.id}")
    assert page.status_code == 200
    assert job_status(page.text) == "dead"
    for shown in ("item-42", "fetch:item-42", "8 of 8", "second line of the error", "&#34;connection_id&#34;: 7"):
        assert shown in page.text, shown
    assert "acc-1" in page.text and "[redacted]" in page.text
    for secret in (MFA_VALUE_IN_A_PAYLOAD, "a-client-secret", "hunter2"):
        assert secret not in page.text
    assert '<button type="submit">Retry</button>' in page.text
    assert '<button type="submit">Discard</button>' in page.text


def test_a_running_job_page_offers_no_action_and_an_unknown_job_is_404(operator, db_session):
    running = add_job(db_session, status=JobStatus.RUNNING, item_id="item-r")
    page = operator.get(f"/console/jobs/{running.id}")
    assert job_status(page.text) == "running" and "host:1:worker-1" in page.text
    assert "Retry</button>" not in page.text and "Discard</button>" not in page.text
    assert operator.get("/console/jobs/987654").status_code == 404
    # Past the column's range: an unknown job too, not the database's overflow.
    assert operator.get("/console/jobs/99999999999999999999").status_code == 404
    assert operator.get("/console/jobs/9223372036854775808").status_code == 404


# Actions --------------------------------------------------------------------------------------


def test_retrying_a_dead_job_queues_it_with_fresh_attempts_for_a_worker(operator, db_session, caplog):
    caplog.set_level(logging.INFO, logger="console")
    job = add_job(db_session, kind="webhook_events", status=JobStatus.DEAD, attempts=8, item_id="item-9")
    event = WebhookEvent(event_id="e-1", event="item/updated", item_id="item-9", payload={}, status=EventStatus.FAILED)
    db_session.add(event)
    db_session.commit()
    operator.get(f"/console/jobs/{job.id}")

    response = operator.post(f"/console/jobs/{job.id}/retry")

    assert response.status_code == 302 and response.headers["Location"] == f"/console/jobs/{job.id}"
    page = operator.get(response.headers["Location"])
    assert job_status(page.text) == "queued" and "queued to run now" in page.text
    retried = fresh(db_session, job)
    assert (retried.status, retried.attempts) == ("queued", 0)
    assert db_session.get(WebhookEvent, event.id).status == EventStatus.PENDING  # put back with the job
    # A worker's claim (its own session holds no copy of the job: RETURNING fills an expired one).
    db_session.expire_all()
    claimed = queue.claim(db_session, "test-worker")
    assert claimed is not None and claimed.id == job.id and claimed.attempts == 1
    assert actions_logged(caplog) == [
        {"action": "retry job", "operator_session": operator_session_id(operator), "job_id": job.id,
         "kind": "webhook_events", "was": "dead"}
    ]  # fmt: skip


def test_retrying_says_so_when_the_same_work_is_already_queued(operator, db_session, caplog):
    caplog.set_level(logging.INFO, logger="console")
    dead = add_job(db_session, status=JobStatus.DEAD, key="fetch:item-1", item_id="item-1")
    queued = add_job(db_session, key="fetch:item-1", item_id="item-1")
    operator.get(f"/console/jobs/{dead.id}")
    page = operator.get(operator.post(f"/console/jobs/{dead.id}/retry").headers["Location"])
    assert f"the same work is already queued (job {queued.id})" in page.text
    assert fresh(db_session, dead).status == "dead"
    assert actions_logged(caplog) == []


def test_retry_every_dead_job_of_a_kind_touches_only_that_kind(operator, db_session, caplog):
    caplog.set_level(logging.INFO, logger="console")
    fetches = [add_job(db_session, kind="fetch_item", status=JobStatus.DEAD, attempts=8).id for _ in range(3)]
    other = add_job(db_session, kind="deliver_event", status=JobStatus.DEAD, attempts=8, payload={"delivery_id": 1})
    page = operator.get("/console/jobs?state=dead&kind=fetch_item")
    assert "Retry every dead fetch_item job" in page.text

    response = operator.post("/console/jobs/retry-dead", {"kind": "fetch_item"})

    assert response.headers["Location"] == "/console/jobs?state=dead&kind=fetch_item"
    assert "3 dead fetch_item job(s) queued again" in operator.get(response.headers["Location"]).text
    db_session.expire_all()
    assert [db_session.get(Job, i).status for i in fetches] == ["queued"] * 3
    assert db_session.get(Job, other.id).status == "dead"
    (logged,) = actions_logged(caplog)
    assert logged["action"] == "retry dead jobs" and logged["kind"] == "fetch_item"
    assert logged["job_ids"] == fetches and logged["operator_session"] == operator_session_id(operator)


def test_retry_dead_needs_a_known_kind(operator):
    operator.get("/console/jobs?state=dead")
    assert operator.post("/console/jobs/retry-dead", {"kind": "nonsense"}).status_code == 400


def test_discarding_a_queued_events_job_fails_its_events_with_the_reason(operator, db_session, caplog):
    caplog.set_level(logging.INFO, logger="console")
    job = add_job(db_session, kind="webhook_events", item_id="item-5", key="webhooks:item-5")
    event = WebhookEvent(event_id="e-5", event="item/updated", item_id="item-5", payload={})
    db_session.add(event)
    db_session.commit()
    operator.get(f"/console/jobs/{job.id}")

    page = operator.get(operator.post(f"/console/jobs/{job.id}/discard").headers["Location"])

    assert job_status(page.text) == "done" and "is discarded" in page.text
    discarded = fresh(db_session, job)
    assert discarded.last_error == "discarded by an operator" and discarded.finished_at is not None
    event = db_session.get(WebhookEvent, event.id)
    assert (event.status, event.last_error) == (EventStatus.FAILED, "discarded by an operator")
    assert queue.claim(db_session, "test-worker") is None  # nothing left to run
    (logged,) = actions_logged(caplog)
    assert logged["action"] == "discard job" and logged["job_id"] == job.id and logged["was"] == "queued"
    assert logged["operator_session"] == operator_session_id(operator)


def test_discarding_a_delivery_job_ends_its_delivery_but_leaves_the_endpoint(operator, db_session):
    endpoint = WebhookEndpoint(url="https://app.example/hooks", sealed_secret="sealed")
    outbound = OutboundEvent(message_id="msg_1", type="connection.updated", payload={})
    db_session.add_all([endpoint, outbound])
    db_session.flush()
    delivery = WebhookDelivery(event_id=outbound.id, endpoint_id=endpoint.id)
    db_session.add(delivery)
    db_session.commit()
    job = add_job(db_session, kind="deliver_event", payload={"delivery_id": delivery.id}, key=f"deliver:{delivery.id}")
    operator.get(f"/console/jobs/{job.id}")

    operator.post(f"/console/jobs/{job.id}/discard")

    db_session.expire_all()
    delivery = db_session.get(WebhookDelivery, delivery.id)
    assert (delivery.status, delivery.last_error) == ("dead", "discarded by an operator")
    assert db_session.get(WebhookEndpoint, endpoint.id).status == "active"


def test_a_running_job_is_never_discarded(operator, db_session, caplog):
    caplog.set_level(logging.INFO, logger="console")
    pending = add_job(db_session, status=JobStatus.QUEUED, item_id="item-r")
    operator.get(f"/console/jobs/{pending.id}")  # the page was read while the job still waited...
    claimed = queue.claim(db_session, "host:1:worker-1")  # ...then a worker took it
    assert claimed is not None and claimed.id == pending.id

    page = operator.get(operator.post(f"/console/jobs/{pending.id}/discard").headers["Location"])

    assert "is running: only a dead or queued job can be discarded" in page.text
    assert job_status(page.text) == "running"
    assert fresh(db_session, pending).locked_by == "host:1:worker-1"
    assert actions_logged(caplog) == []


def test_a_done_job_is_neither_retried_nor_discarded(operator, db_session):
    done = add_job(db_session, status=JobStatus.DONE)
    operator.get("/console/jobs?state=done")
    retry = operator.get(operator.post(f"/console/jobs/{done.id}/retry").headers["Location"])
    assert "is done: only a dead or queued job can be retried" in retry.text
    discard = operator.get(operator.post(f"/console/jobs/{done.id}/discard").headers["Location"])
    assert "is done: only a dead or queued job can be discarded" in discard.text
    assert fresh(db_session, done).last_error is None


def test_an_action_without_its_csrf_token_is_refused(operator, db_session):
    dead = add_job(db_session, status=JobStatus.DEAD, attempts=8)
    for path, data in (
        (f"/console/jobs/{dead.id}/retry", {}),
        (f"/console/jobs/{dead.id}/discard", {}),
        ("/console/jobs/retry-dead", {"kind": "fetch_item"}),
    ):
        assert operator.client.post(path, data=data).status_code == 400
        assert operator.client.post(path, data={**data, "csrf_token": "forged"}).status_code == 400
    assert (fresh(db_session, dead).status, dead.attempts) == ("dead", 8)


def test_the_jobs_pages_need_a_signed_in_operator(console_app, db_session):
    job = add_job(db_session, status=JobStatus.DEAD)
    stranger = console_app.test_client()
    assert stranger.get("/console/jobs").status_code == 302
    assert stranger.get(f"/console/jobs/{job.id}").status_code == 302


# What job payloads hold ----------------------------------------------------------------------------


def test_an_mfa_value_never_reaches_a_job_payload(app, session, connection, fake_pluggy, pluggy_api, settings):
    """The answer to a bank's prompt goes to Pluggy only: the jobs it leads to (here the watcher a
    polling service queues) carry ids, so the console never has an MFA value to show."""
    fake_pluggy.set_item(connection.item_id, status="WAITING_USER_INPUT", parameter=pf.mfa_parameter())
    service = BankConnectionService(session, pluggy_api, dataclasses.replace(settings, sync_mode=SyncMode.POLL))

    service.send_mfa(connection, value=MFA_VALUE_IN_A_PAYLOAD)

    jobs = session.scalars(sa.select(Job)).all()
    assert [job.kind for job in jobs] == ["watch_item"]
    assert MFA_VALUE_IN_A_PAYLOAD not in json.dumps([job.payload for job in jobs])


# The command line -----------------------------------------------------------------------------


def test_flask_jobs_retry_dead_takes_a_kind(console_app, db_session):
    fetch = add_job(db_session, kind="fetch_item", status=JobStatus.DEAD)
    sweep = add_job(db_session, kind="sweep_items", status=JobStatus.DEAD)
    result = console_app.test_cli_runner().invoke(args=["jobs", "retry-dead", "--kind", "fetch_item"])
    assert "1 dead job(s) queued again" in result.output
    db_session.expire_all()
    assert (db_session.get(Job, fetch.id).status, db_session.get(Job, sweep.id).status) == ("queued", "dead")
    refused = console_app.test_cli_runner().invoke(args=["jobs", "retry-dead", "--kind", "nonsense"])
    assert refused.exit_code == 2
