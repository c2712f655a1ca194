"""Sync runs a client relies on: one update of an item is one run, its counts are what it stored,
a run never waits on an outcome that cannot come, and a run succeeds only by fetching."""

from __future__ import annotations

import itertools
import json
from datetime import timedelta

import pytest
import sqlalchemy as sa

from config import Settings, read_environment
from jobqueue import queue
from models import Job, SyncRun, Transaction, WebhookEvent
from models.base import utcnow
from sandbox import data as pf
from sync import runs, scheduling
from sync.connections import BankConnectionService
from sync.manual_sync import ManualSync
from sync.results import ManualSyncStatus as Answer
from tests.conftest import drain
from tests.fake_pluggy import MFA_VALUE, now_iso
from webhooks import inbox

PATCH = r"/items/[^/]+"


@pytest.fixture
def service(session, pluggy_api, settings):
    return ManualSync(session, pluggy_api, settings)


def runs_of(session, connection) -> list[SyncRun]:
    session.expire_all()
    return list(session.scalars(sa.select(SyncRun).where(SyncRun.connection_id == connection.id).order_by(SyncRun.id)))


def receive(session, *payloads: dict) -> None:
    """Store deliveries as the receiver does (the same inbox, without HTTP)."""
    for payload in payloads:
        assert inbox.store(session, json.dumps(payload).encode(), payload, {})[0]


def pending_events(session) -> int:
    return session.scalar(sa.select(sa.func.count()).select_from(WebhookEvent).where(WebhookEvent.status == "pending"))


def new_update_at_pluggy(fake_pluggy, connection, **fields) -> None:
    fake_pluggy.set_item(connection.item_id, status="UPDATED", lastUpdatedAt=now_iso(), **fields)


def add_transactions(fake_pluggy, account_id: str, count: int) -> None:
    for n in range(count):
        fake_pluggy.add_transaction(account_id, date=f"{utcnow().date() - timedelta(days=n % 30)}T03:00:00.000Z")


# A job drains what it was queued for ----------------------------------------------------------


def test_more_pending_events_of_an_item_than_a_batch_are_all_processed(session, connection, fake_pluggy, worker):
    new_update_at_pluggy(fake_pluggy, connection)
    receive(session, *(pf.webhook_event("item/updated", itemId=connection.item_id) for _ in range(1200)))

    drain(worker, session)

    assert pending_events(session) == 0
    statuses = set(session.scalars(sa.select(WebhookEvent.status)))
    assert statuses == {"processed"}
    # However many signals of the update, it is fetched once, into one run.
    (run,) = runs_of(session, connection)
    assert run.status == "success"
    assert fake_pluggy.count("GET", "/accounts") == 1


# Counts after a retry ---------------------------------------------------------------------------


def refuse_transactions_pages(fake_pluggy, refused) -> None:
    """Pages of transactions whose query `refused` picks are answered 400 (the client retries no 4xx)."""
    fake_pluggy.refuse_when("GET", "/v2/transactions", refused, 400, "INVALID_PARAMETERS")


def fail_transactions_page(fake_pluggy, number: int) -> None:
    """The `number`th call for a page of transactions is refused, once."""
    calls = itertools.count(1)
    refuse_transactions_pages(fake_pluggy, lambda _query: next(calls) == number)


def test_a_retried_fetch_resumes_its_run_and_counts_what_it_stored(session, connection, fake_pluggy, worker):
    fake_pluggy.page_size = 10
    account_id = fake_pluggy.accounts[connection.item_id][0]["id"]
    add_transactions(fake_pluggy, account_id, 35)
    fail_transactions_page(fake_pluggy, 3)  # pages 1 and 2 are committed, then the bank fails
    scheduling.queue_initial_sync(session, connection)
    session.commit()

    worker.run_one(session, "w")

    (run,) = runs_of(session, connection)
    stored = session.scalar(sa.select(sa.func.count()).select_from(Transaction))
    assert (run.status, run.created, stored) == ("running", 20, 20)

    job = session.scalars(sa.select(Job).where(Job.kind == scheduling.JobKind.INITIAL_SYNC)).one()
    job.run_at = utcnow()
    session.commit()
    drain(worker, session)

    (same,) = runs_of(session, connection)
    assert (same.id, same.status) == (run.id, "success")
    assert (same.accounts, same.created, same.updated) == (1, 35, 0)


# A run whose outcome cannot come ------------------------------------------------------------------


def test_an_item_update_that_never_reached_pluggy_stops_blocking_after_a_minute(
    session, service, connection, fake_pluggy
):
    # The web process died between reserving the update and sending the PATCH.
    lost = runs.reserve_item_update(session, connection, "manual", per_minute=20)
    lost.item_update_requested_at = utcnow() - timedelta(seconds=61)
    lost.started_at = lost.item_update_requested_at
    session.commit()

    result = service.trigger_manual_sync(connection)

    assert result.status == Answer.SYNC_STARTED
    session.refresh(lost)
    assert (lost.status, lost.error_code) == ("error", "item_update_not_sent")
    assert fake_pluggy.count("PATCH", PATCH) == 1


@pytest.mark.parametrize("status", ["UPDATED", "OUTDATED"])
def test_an_update_pluggy_is_still_answering_keeps_its_run(session, service, connection, fake_pluggy, status):
    fake_pluggy.set_item(connection.item_id, status=status)  # what the item shows until the PATCH lands
    waiting = runs.reserve_item_update(session, connection, "manual", per_minute=20)  # just sent

    result = service.trigger_manual_sync(connection)

    assert (result.status, result.sync_run.id) == (Answer.ALREADY_SYNCING, waiting.id)
    assert fake_pluggy.count("PATCH", PATCH) == 0


def test_an_update_whose_webhook_never_came_is_fetched_by_the_next_sync(
    session, service, connection, fake_pluggy, worker
):
    started = service.trigger_manual_sync(connection)
    assert started.status == Answer.SYNC_STARTED
    new_update_at_pluggy(fake_pluggy, connection)  # Pluggy finished; no webhook reaches the service

    again = service.trigger_manual_sync(connection)

    assert (again.status, again.sync_run.id) == (Answer.ALREADY_SYNCING, started.sync_run.id)
    drain(worker, session)
    (run,) = runs_of(session, connection)
    assert (run.id, run.status, run.accounts) == (started.sync_run.id, "success", 1)
    assert service.trigger_manual_sync(connection).status == Answer.SYNC_STARTED
    assert fake_pluggy.count("PATCH", PATCH) == 2
    assert started.closed_by == "webhook"  # the answer said what would close its run


def test_an_update_that_ended_waiting_for_a_code_closes_its_run_on_the_next_sync(
    session, service, connection, fake_pluggy
):
    started = service.trigger_manual_sync(connection)
    fake_pluggy.set_item(connection.item_id, status="WAITING_USER_INPUT", parameter=pf.mfa_parameter())

    again = service.trigger_manual_sync(connection)

    assert again.status == Answer.MFA_REQUIRED
    (run,) = runs_of(session, connection)
    assert (run.id, run.status) == (started.sync_run.id, "mfa_required")


def test_check_status_closes_a_run_the_item_shows_is_over(session, service, connection, fake_pluggy):
    service.trigger_manual_sync(connection)
    fake_pluggy.set_item(connection.item_id, status="LOGIN_ERROR", error=pf.item_error("INVALID_CREDENTIALS"))

    service.connections.check_status(connection)

    (run,) = runs_of(session, connection)
    assert run.status == "credentials_required"


def test_the_watch_timeout_is_a_setting(app):
    config = read_environment({"SYNC_WATCH_TIMEOUT_S": "90"}, app.instance_path)
    assert Settings.from_config({**app.config, **config}).watch_timeout_s == 90


# One update of an item is one run ----------------------------------------------------------------


def test_the_webhook_of_an_update_the_watcher_fetched_joins_its_run(session, service, connection, fake_pluggy, worker):
    started = service.trigger_manual_sync(connection)
    scheduling.queue_watch(session, started.sync_run, connection)  # as `?wait=` and poll mode do
    session.commit()
    drain(worker, session)
    (run,) = runs_of(session, connection)
    assert run.status == "success"

    receive(session, pf.webhook_event("item/updated", itemId=connection.item_id))
    drain(worker, session)

    (same,) = runs_of(session, connection)
    assert same.id == run.id
    event = session.scalars(sa.select(WebhookEvent)).one()
    assert (event.status, event.sync_run_id) == ("processed", run.id)


def test_after_a_code_the_update_arrives_as_one_run_whatever_the_order_of_its_webhooks(
    session, service, user, fake_pluggy, worker
):
    item = fake_pluggy.add_item(
        status="WAITING_USER_INPUT", parameter=pf.mfa_parameter(), lastUpdatedAt=None, clientUserId=str(user.id)
    )
    account = fake_pluggy.add_account(item["id"])
    add_transactions(fake_pluggy, account["id"], 3)
    connection, _ = service.connections.register(user, item["id"])
    drain(worker, session)
    service.connections.send_mfa(connection, value=MFA_VALUE)
    fake_pluggy.finish_update(item["id"])  # Pluggy logs in with the code and collects

    receive(session, pf.webhook_event("item/login_succeeded", itemId=item["id"]))
    drain(worker, session)
    receive(session, pf.webhook_event("transactions/created", itemId=item["id"], accountId=account["id"]))
    drain(worker, session)
    receive(session, pf.webhook_event("item/updated", itemId=item["id"]))
    drain(worker, session)

    initial, update = runs_of(session, connection)
    assert (initial.trigger, initial.status) == ("initial", "mfa_required")
    assert (update.status, update.created) == ("success", 3)
    assert set(session.scalars(sa.select(WebhookEvent.status))) == {"processed"}


# A run succeeds only by fetching -------------------------------------------------------------------


def test_a_first_sync_of_an_item_waiting_for_its_code_fetches_nothing_and_says_so(
    session, service, user, fake_pluggy, worker
):
    item = fake_pluggy.add_item(status="WAITING_USER_INPUT", parameter=pf.mfa_parameter(), lastUpdatedAt=None)
    fake_pluggy.add_account(item["id"])

    connection, _ = service.connections.register(user, item["id"])
    drain(worker, session)

    (run,) = runs_of(session, connection)
    assert (run.trigger, run.status, run.accounts) == ("initial", "mfa_required", 0)
    session.refresh(connection)
    assert connection.last_synced_at is None  # never fetched: the connection says so
    assert fake_pluggy.count("GET", "/accounts") == 0


def test_a_first_sync_that_finds_the_code_just_sent_waits_for_the_outcome_then_fetches(
    session, service, user, fake_pluggy, worker, monkeypatch
):
    item = fake_pluggy.add_item(status="WAITING_USER_INPUT", parameter=pf.mfa_parameter(), lastUpdatedAt=None)
    fake_pluggy.add_account(item["id"])
    fake_pluggy.add_transaction(fake_pluggy.accounts[item["id"]][0]["id"], date=now_iso())
    connection, _ = service.connections.register(user, item["id"])
    # The user sends the code between the job's read of the item and its look at what Pluggy has:
    # the web process writes the item's new state in between.
    read_item = BankConnectionService.refresh_item

    def code_sent_meanwhile(self, connection):
        answer = read_item(self, connection)
        connection.item_status = "UPDATING"
        self.session.commit()
        return answer

    monkeypatch.setattr(BankConnectionService, "refresh_item", code_sent_meanwhile)
    drain(worker, session)
    monkeypatch.undo()

    (run,) = runs_of(session, connection)
    assert (run.trigger, run.status) == ("initial", "pending")  # not closed as an error

    fake_pluggy.set_item(item["id"], status="UPDATED", lastUpdatedAt=now_iso())
    scheduling.queue_fetch(session, connection, "webhook")  # what item/updated queues
    session.commit()
    drain(worker, session)

    (run,) = runs_of(session, connection)
    assert (run.trigger, run.status, run.created) == ("initial", "success", 1)


def test_a_fetch_whose_job_gave_up_no_longer_blocks_manual_syncs(session, service, connection, fake_pluggy, worker):
    scheduling.queue_fetch(session, connection, "webhook")
    session.commit()
    fake_pluggy.refuse_next("GET", "/accounts", 400, "INVALID_PARAMETERS")
    worker.run_one(session, "w")
    job = session.scalars(sa.select(Job)).one()
    job.status = "dead"  # every attempt spent
    session.commit()

    result = service.trigger_manual_sync(connection)

    assert result.status == Answer.SYNC_STARTED
    failed, started = runs_of(session, connection)
    assert (failed.status, failed.error_code) == ("error", "fetch_failed")


# A job that gives up closes what it owned ----------------------------------------------------------


def crash(session, job_id: int) -> None:
    """The worker holding the job died: the job stays running and its lease runs out."""
    session.expire_all()
    job = session.get(Job, job_id)
    job.locked_until = utcnow() - timedelta(seconds=1)
    session.commit()


def events_job_whose_worker_died(session, connection, fake_pluggy) -> Job:
    """An item update's webhook, whose job's only attempt was spent by a worker that died."""
    new_update_at_pluggy(fake_pluggy, connection)
    receive(session, pf.webhook_event("item/updated", itemId=connection.item_id))
    job = session.scalars(sa.select(Job)).one()
    job.max_attempts = 1
    queue.claim(session, "doomed")
    crash(session, job.id)
    return job


def test_a_sync_whose_worker_keeps_dying_goes_dead_closing_its_run_and_events(
    session, service, connection, fake_pluggy, worker
):
    job = events_job_whose_worker_died(session, connection, fake_pluggy)

    assert worker.run_one(session, "w")  # taken back with no attempt left: dead

    session.expire_all()
    assert session.get(Job, job.id).status == "dead"
    event = session.scalars(sa.select(WebhookEvent)).one()
    assert (event.status, event.last_error) == ("failed", "gave up: its worker kept disappearing")
    assert service.trigger_manual_sync(connection).status == Answer.SYNC_STARTED  # nothing left open blocks it


def test_a_fetch_that_fails_its_last_attempt_closes_its_run(session, service, connection, fake_pluggy, worker):
    scheduling.queue_fetch(session, connection, "webhook")
    session.execute(sa.update(Job).values(max_attempts=1))
    session.commit()
    fake_pluggy.refuse_next("GET", "/accounts", 400, "INVALID_PARAMETERS")

    worker.run_one(session, "w")

    (run,) = runs_of(session, connection)
    assert (run.status, run.error_code) == ("error", "fetch_failed")
    assert session.scalars(sa.select(Job.status)).one() == "dead"


def test_events_of_an_item_are_left_to_the_job_queued_after_the_one_that_gave_up(
    session, connection, fake_pluggy, worker
):
    new_update_at_pluggy(fake_pluggy, connection)
    receive(session, pf.webhook_event("item/updated", itemId=connection.item_id))
    first = queue.claim(session, "doomed")
    receive(session, pf.webhook_event("item/updated", itemId=connection.item_id))  # queues a second job
    session.execute(sa.update(Job).where(Job.id == first.id).values(max_attempts=1))
    session.commit()
    crash(session, first.id)

    drain(worker, session)

    assert session.get(Job, first.id).status == "dead"
    assert set(session.scalars(sa.select(WebhookEvent.status))) == {"processed"}
    (run,) = runs_of(session, connection)
    assert run.status == "success"


def first_sync_of(session, connection, fake_pluggy, *, transactions: int, max_attempts: int) -> None:
    fake_pluggy.page_size = 10
    add_transactions(fake_pluggy, fake_pluggy.accounts[connection.item_id][0]["id"], transactions)
    scheduling.queue_initial_sync(session, connection)
    session.execute(sa.update(Job).values(max_attempts=max_attempts))
    session.commit()


def attempt_now(session, worker) -> bool:
    """The job's next attempt, without waiting out its backoff."""
    session.execute(sa.update(Job).values(run_at=utcnow()))
    session.commit()
    return worker.run_one(session, "w")


def test_a_sync_that_fails_after_more_progress_each_time_keeps_its_attempts(session, connection, fake_pluggy, worker):
    offset = {"at": 10}
    refuse_transactions_pages(fake_pluggy, lambda query: fake_pluggy.rows_before(query) >= offset["at"])
    first_sync_of(session, connection, fake_pluggy, transactions=95, max_attempts=3)
    # Eight attempts, each refused one page further than the one before: each one makes progress.
    for _ in range(8):
        assert attempt_now(session, worker)
        offset["at"] += 10
    offset["at"] = 10**6
    assert attempt_now(session, worker)

    job = session.scalars(sa.select(Job)).one()
    assert (job.status, job.attempts) == ("done", 1)
    assert session.scalar(sa.select(sa.func.count()).select_from(Transaction)) == 95


def test_a_sync_that_fails_without_progress_spends_its_attempts(session, connection, fake_pluggy, worker):
    refuse_transactions_pages(fake_pluggy, lambda query: fake_pluggy.rows_before(query) >= 20)
    first_sync_of(session, connection, fake_pluggy, transactions=35, max_attempts=3)
    for _ in range(3):
        assert attempt_now(session, worker)

    assert session.scalars(sa.select(Job.status)).one() == "dead"
    (run,) = runs_of(session, connection)
    assert (run.status, run.error_code, run.created) == ("error", "fetch_failed", 20)


def test_retrying_a_dead_events_job_puts_its_events_back(session, connection, fake_pluggy, worker, runner):
    job = events_job_whose_worker_died(session, connection, fake_pluggy)
    worker.run_one(session, "w")
    assert session.scalars(sa.select(WebhookEvent.status)).one() == "failed"

    assert runner.invoke(args=["jobs", "retry", str(job.id)]).exit_code == 0
    assert session.scalars(sa.select(WebhookEvent.status)).one() == "pending"
    drain(worker, session)

    session.expire_all()
    assert session.scalars(sa.select(WebhookEvent.status)).one() == "processed"
    assert runs_of(session, connection)[-1].status == "success"
