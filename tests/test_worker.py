"""The worker and the job handlers: first sync, the watcher in poll mode, MFA, failures, stopping,
riding out a lost database."""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import timedelta
from enum import StrEnum

import psycopg
import pytest
import sqlalchemy as sa
from prometheus_client import REGISTRY

from harness.waiting import wait_until
from jobqueue import JobRegistry, MissingHandlers, Worker, maintenance, queue
from jobqueue import wakeup as wakeup_module
from jobqueue import worker as worker_module
from jobqueue.wakeup import CHANNEL, Wakeup
from models import Account, Job, SyncRun, Transaction, db
from models.base import utcnow
from pluggy_client import PluggyRateLimited
from sandbox import data as pf
from sync import jobs as sync_jobs
from sync import scheduling
from sync.connections import BankConnectionService, ItemOwnedByAnotherUser, MfaNotRequired, MfaValueRequired
from sync.item_state import sync_status
from sync.jobs import job_registry, sync_worker
from sync.manual_sync import ManualSync
from sync.results import ManualSyncStatus as Answer
from tests.conftest import drain
from tests.fake_pluggy import MFA_CONNECTOR, MFA_VALUE, OPEN_FINANCE_CONNECTOR, now_iso

APPROVAL_USER = "user-ok-app-approval"


@pytest.fixture
def worker(app, pluggy_api):
    app.config["SYNC_WATCH_INTERVAL_S"] = 0  # a watcher looks again at once instead of in 5 s
    return sync_worker(app, pluggy_api, lease=timedelta(minutes=1))


@pytest.fixture
def poll_service(session, pluggy_api, settings, worker):
    return ManualSync(session, pluggy_api, replace(settings, sync_mode="poll", watch_interval_s=0))


def runs_of(session, connection) -> list[SyncRun]:
    session.expire_all()
    return list(session.scalars(sa.select(SyncRun).where(SyncRun.connection_id == connection.id).order_by(SyncRun.id)))


def jobs(session) -> list[Job]:
    session.expire_all()
    return list(session.scalars(sa.select(Job).order_by(Job.id)))


def test_registering_an_item_queues_its_first_sync_which_fetches_everything(
    session, user, fake_pluggy, worker, pluggy_api, settings
):
    item = fake_pluggy.add_item()
    account = fake_pluggy.add_account(item["id"])
    fake_pluggy.add_transaction(account["id"], date=f"{utcnow().date()}T03:00:00.000Z")
    service = BankConnectionService(session, pluggy_api, settings)

    connection, created = service.register(user, item["id"])
    again, created_again = service.register(user, item["id"])

    assert (created, created_again, again.id) == (True, False, connection.id)
    assert [job.kind for job in jobs(session)] == ["initial_sync"]
    assert drain(worker, session) == 1
    (run,) = runs_of(session, connection)
    assert (run.trigger, run.status, run.accounts, run.created) == ("initial", "success", 1, 1)
    assert jobs(session)[0].status == "done"


def test_an_item_of_another_user_is_refused(session, user, fake_pluggy, pluggy_api, settings):
    from sync.users import create_user

    item = fake_pluggy.add_item()
    service = BankConnectionService(session, pluggy_api, settings)
    service.register(user, item["id"])

    with pytest.raises(ItemOwnedByAnotherUser):
        service.register(create_user(session, "bruno@example.com"), item["id"])


def test_the_first_sync_waits_while_pluggy_still_collects_the_item(
    session, user, fake_pluggy, worker, pluggy_api, settings
):
    item = fake_pluggy.add_item(status="UPDATING")
    connection, _ = BankConnectionService(session, pluggy_api, settings).register(user, item["id"])

    worker.run_one(session, "w")

    (job,) = jobs(session)
    assert (job.status, job.attempts, job.last_error) == ("queued", 0, "item still updating")
    assert runs_of(session, connection) == []


def test_poll_mode_watches_the_item_until_it_settles_then_fetches(
    session, connection, fake_pluggy, worker, poll_service
):
    account_id = fake_pluggy.accounts[connection.item_id][0]["id"]
    fake_pluggy.add_transaction(account_id, date=f"{utcnow().date()}T03:00:00.000Z")

    result = poll_service.trigger_manual_sync(connection)
    ran = drain(worker, session)

    assert ran == 2  # first look: still UPDATING; second: UPDATED, fetched
    (run,) = runs_of(session, connection)
    assert (run.id, run.status, run.created) == (result.sync_run.id, "success", 1)
    assert connection.last_synced_at is not None


def user_action_at_the_bank(fake_pluggy, item_id: str) -> None:
    fake_pluggy.set_credentials(item_id, user=APPROVAL_USER)  # the bank wants an approval in its app


@pytest.mark.parametrize(
    "update_ends, run_status, api_status",
    [
        (lambda fake, item_id: fake.set_connector(item_id, MFA_CONNECTOR), "mfa_required", "MFA_REQUIRED"),
        (user_action_at_the_bank, "user_action_required", "USER_ACTION_REQUIRED"),
        (
            lambda fake, item_id: fake.set_credentials(item_id, password="changed-at-the-bank"),
            "credentials_required",
            "CREDENTIALS_REQUIRED",
        ),
        (lambda fake, item_id: fake.set_credentials(item_id, user="user-unavailable"), "error", "OUTDATED"),
    ],
    ids=["mfa", "user action", "login error", "outdated"],
)
def test_a_watched_update_that_needs_the_user_closes_the_run_saying_so(
    session, connection, fake_pluggy, worker, poll_service, update_ends, run_status, api_status
):
    poll_service.trigger_manual_sync(connection)
    update_ends(fake_pluggy, connection.item_id)
    drain(worker, session)

    (run,) = runs_of(session, connection)
    assert run.status == run_status
    assert sync_status(connection) == api_status
    assert fake_pluggy.count("GET", "/v2/transactions") == 0


def test_an_approval_in_the_banks_app_round_trip(session, connection, fake_pluggy, worker, poll_service):
    user_action_at_the_bank(fake_pluggy, connection.item_id)
    poll_service.trigger_manual_sync(connection)
    drain(worker, session)
    assert connection.user_action["type"] == "authorize-access"
    assert poll_service.trigger_manual_sync(connection).status == Answer.USER_ACTION_REQUIRED

    fake_pluggy.authorize(connection.item_id)
    fake_pluggy.finish_update(connection.item_id)
    scheduling.queue_fetch(session, connection, "webhook")  # as its item/updated would
    session.commit()
    drain(worker, session)

    assert [run.status for run in runs_of(session, connection)] == ["user_action_required", "success"]
    assert (sync_status(connection), connection.user_action) == ("UPDATED", None)


def test_the_mfa_round_trip(session, connection, fake_pluggy, worker, poll_service, caplog):
    fake_pluggy.set_connector(connection.item_id, MFA_CONNECTOR)  # every update asks for a code
    poll_service.trigger_manual_sync(connection)
    drain(worker, session)
    assert poll_service.trigger_manual_sync(connection).status == Answer.MFA_REQUIRED

    poll_service.connections.send_mfa(connection, value=MFA_VALUE)
    drain(worker, session)

    ((_, _, _, body),) = fake_pluggy.calls_to("POST", r"/items/[^/]+/mfa")
    assert body == {"token": MFA_VALUE}
    first, second = runs_of(session, connection)
    assert (first.status, second.status) == ("mfa_required", "success")
    assert connection.mfa_parameter is None
    assert MFA_VALUE not in caplog.text
    assert not stored_anywhere(session, MFA_VALUE)


def stored_anywhere(session, value: str) -> bool:
    for table in db.metadata.sorted_tables:
        for row in session.execute(sa.select(table)):
            if any(value in str(cell) for cell in row):
                return True
    return False


def test_a_wrong_mfa_value_ends_in_a_login_error(session, connection, fake_pluggy, poll_service):
    fake_pluggy.set_item(connection.item_id, status="WAITING_USER_INPUT", parameter=pf.mfa_parameter())

    poll_service.connections.send_mfa(connection, value="000000")

    assert sync_status(connection) == "CREDENTIALS_REQUIRED"


def test_mfa_is_refused_when_pluggy_is_not_waiting_for_it(connection, poll_service):
    with pytest.raises(MfaNotRequired):
        poll_service.connections.send_mfa(connection, value=MFA_VALUE)
    with pytest.raises(MfaValueRequired):
        poll_service.connections.send_mfa(connection, value="")


def test_a_fetch_after_an_item_update_closes_the_waiting_run(
    session, connection, fake_pluggy, worker, pluggy_api, settings
):
    result = ManualSync(session, pluggy_api, settings).trigger_manual_sync(connection)
    fake_pluggy.set_item(connection.item_id, status="UPDATED", lastUpdatedAt=now_iso())
    scheduling.queue_fetch(session, connection, "webhook")
    session.commit()

    drain(worker, session)

    (run,) = runs_of(session, connection)
    assert (run.id, run.status, run.trigger) == (result.sync_run.id, "success", "manual")


def live_transactions(session, connection) -> int:
    session.expire_all()
    statement = (
        sa.select(sa.func.count())
        .select_from(Transaction)
        .join(Account)
        .where(Account.connection_id == connection.id, Transaction.deleted_at.is_(None))
    )
    return session.scalar(statement)


def test_a_withdrawn_open_finance_consent_leaves_the_stored_data_alone(session, connection, fake_pluggy, worker):
    fake_pluggy.set_connector(connection.item_id, OPEN_FINANCE_CONNECTOR)
    account_id = fake_pluggy.accounts[connection.item_id][0]["id"]
    fake_pluggy.add_transaction(account_id, date=f"{utcnow().date()}T03:00:00.000Z")
    scheduling.queue_fetch(session, connection, "webhook")
    session.commit()
    drain(worker, session)
    assert live_transactions(session, connection) == 1

    # Pluggy answers empty data from now on (PLUGGY.md "Consents"): an empty read is no deletion.
    fake_pluggy.end_consent(connection.item_id)
    fake_pluggy.set_item(connection.item_id, status="UPDATED", lastUpdatedAt=now_iso())
    scheduling.queue_fetch(session, connection, "webhook")
    session.commit()
    drain(worker, session)

    # Nothing read under the ended consent: the run says what the user must do (renew it).
    assert [run.status for run in runs_of(session, connection)] == ["success", "credentials_required"]
    assert runs_of(session, connection)[-1].error_code == "consent_expired"
    assert live_transactions(session, connection) == 1


def test_a_fetch_without_a_waiting_run_opens_one(session, connection, worker):
    scheduling.queue_fetch(session, connection, "webhook")
    session.commit()

    drain(worker, session)

    (run,) = runs_of(session, connection)
    assert (run.trigger, run.status) == ("webhook", "success")


def test_jobs_of_a_deleted_connection_do_nothing(session, connection, worker, fake_pluggy):
    connection.deleted_at = utcnow()
    scheduling.queue_fetch(session, connection, "webhook")
    session.commit()

    drain(worker, session)

    assert runs_of(session, connection) == [] and fake_pluggy.calls == []


def test_a_failing_fetch_keeps_its_run_open_and_the_retry_finishes_that_run(session, connection, fake_pluggy, worker):
    scheduling.queue_fetch(session, connection, "webhook")
    session.commit()
    fake_pluggy.refuse_next("GET", "/accounts", 400, "INVALID_PARAMETERS")

    worker.run_one(session, "w")

    (run,) = runs_of(session, connection)
    (job,) = jobs(session)
    assert run.status == "running"
    assert (job.status, job.attempts) == ("queued", 1)
    assert "INVALID_PARAMETERS" in job.last_error

    queue.retry_now(session, job.id)
    worker.run_one(session, "w")

    (same_run,) = runs_of(session, connection)
    assert (same_run.id, same_run.status, same_run.accounts) == (run.id, "success", 1)


def test_a_rate_limited_job_waits_as_long_as_pluggy_says(session, worker, monkeypatch):
    def limited(context):
        raise PluggyRateLimited(429, None, "slow down", retry_after=600)

    worker.registry.register("limited", limited)
    queue.enqueue(session, "limited")
    session.commit()

    worker.run_one(session, "w")

    (job,) = jobs(session)
    assert job.status == "queued" and (job.run_at - utcnow()).total_seconds() > 590


def test_an_unknown_kind_of_job_is_dead_at_once(session, worker):
    queue.enqueue(session, "no_such_kind")
    session.commit()

    worker.run_one(session, "w")

    assert (jobs(session)[0].status, jobs(session)[0].last_error) == ("dead", "no handler for job kind 'no_such_kind'")


def test_long_jobs_keep_their_lease_alive_at_checkpoints(session, worker, monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr(worker_module.time, "monotonic", lambda: clock[0])
    seen = []

    def long_job(context):
        before = context.session.get(Job, context.job.id).locked_until
        clock[0] += worker.lease.total_seconds()  # a long page later
        context.checkpoint()
        context.session.expire_all()
        seen.append(context.session.get(Job, context.job.id).locked_until > before)

    worker.registry.register("long", long_job)
    queue.enqueue(session, "long")
    session.commit()

    worker.run_one(session, "w")

    assert seen == [True] and jobs(session)[0].status == "done"


def test_a_job_taken_over_by_another_worker_is_left_to_it(session, worker, monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr(worker_module.time, "monotonic", lambda: clock[0])

    def stolen(context):
        later = utcnow() + timedelta(minutes=2)
        queue.complete(context.session, queue.claim(context.session, "thief", now=later))
        clock[0] += worker.lease.total_seconds()
        context.checkpoint()

    worker.registry.register("stolen", stolen)
    queue.enqueue(session, "stolen")
    session.commit()

    worker.run_one(session, "w")

    (job,) = jobs(session)
    assert (job.status, job.attempts) == ("done", 2)


def run_in_thread(worker) -> threading.Thread:
    thread = threading.Thread(target=worker.run)
    thread.start()
    return thread


def test_a_stop_request_lets_the_job_in_hand_finish(session, worker, monkeypatch):
    started, finish = threading.Event(), threading.Event()

    def slow(context):
        started.set()
        assert finish.wait(10)

    worker.registry.register("slow", slow)
    job_id = queue.enqueue(session, "slow")
    session.commit()
    thread = run_in_thread(worker)
    assert started.wait(10)

    worker.request_stop()
    finish.set()
    thread.join(10)

    assert not thread.is_alive()
    session.expire_all()
    assert session.get(Job, job_id).status == "done"


def test_a_second_stop_request_releases_the_job_at_its_next_checkpoint(session, worker, monkeypatch):
    started, go_on = threading.Event(), threading.Event()

    def slow(context):
        started.set()
        assert go_on.wait(10)
        context.checkpoint()

    worker.registry.register("slow", slow)
    job_id = queue.enqueue(session, "slow")
    session.commit()
    thread = run_in_thread(worker)
    assert started.wait(10)

    worker.request_stop()
    worker.request_stop()
    go_on.set()
    thread.join(10)

    session.expire_all()
    job = session.get(Job, job_id)
    assert (job.status, job.attempts, job.last_error) == ("queued", 0, "released by a stopping worker")


# The sync layer's own periodic jobs, which a worker queues at start too.
PERIODIC_OF_SYNC = ("sweep_items", "prune_changes", "prune_outbound_events")


def test_finished_jobs_are_pruned_by_a_periodic_job(session, worker):
    old = Job(kind="k", status="done", finished_at=utcnow() - timedelta(days=8))
    recent = Job(kind="k", status="done", finished_at=utcnow() - timedelta(days=1))
    dead = Job(kind="k", status="dead", finished_at=utcnow() - timedelta(days=30))
    session.add_all([old, recent, dead])
    session.commit()
    worker.schedule_periodic_jobs()

    drain(worker, session)

    kinds = [(job.kind, job.status) for job in jobs(session) if job.kind not in PERIODIC_OF_SYNC]
    assert kinds == [("k", "done"), ("k", "dead"), ("prune_jobs", "done"), ("prune_jobs", "queued")]
    (next_prune,) = [job for job in jobs(session) if job.kind == "prune_jobs" and job.status == "queued"]
    assert next_prune.run_at > utcnow() + timedelta(minutes=59)


def test_registering_a_deleted_item_again_asks_pluggy(session, user, connection, fake_pluggy, pluggy_api, settings):
    service = BankConnectionService(session, pluggy_api, settings)
    connection.deleted_at = utcnow()
    session.commit()

    again, created = service.register(user, connection.item_id)
    assert (again.id, again.deleted_at, created) == (connection.id, None, True)

    again.deleted_at = utcnow()
    session.commit()
    fake_pluggy.remove_item(connection.item_id)
    from pluggy_client import PluggyNotFound

    with pytest.raises(PluggyNotFound):
        service.register(user, connection.item_id)


def test_a_first_sync_already_done_another_way_is_not_repeated(session, connection, fake_pluggy, worker):
    connection.last_synced_at = utcnow()  # an item/updated webhook fetched it first
    scheduling.queue_initial_sync(session, connection)
    session.commit()

    drain(worker, session)

    assert runs_of(session, connection) == [] and fake_pluggy.calls == []


def test_an_idle_worker_wakes_when_a_job_is_queued_not_at_its_next_poll(app, session, pluggy_api, monkeypatch):
    ran = threading.Event()
    idle = sync_worker(app, pluggy_api, poll_interval=60)
    idle.registry.register("ping", lambda context: ran.set())
    thread = run_in_thread(idle)
    try:
        wait_until(lambda: idle.wakeup is not None and listening(idle.wakeup), what="the worker listening")
        queue.enqueue(session, "ping")
        session.commit()
        assert ran.wait(10), "the job waited for the poll interval"
    finally:
        idle.request_stop()
        thread.join(10)
    assert not thread.is_alive()


def test_notifications_go_out_when_a_due_job_is_committed_only(session):
    if db.engine.dialect.name != "postgresql":
        pytest.skip("PostgreSQL only: SQLite has no NOTIFY (its workers watch data_version instead)")
    conninfo = db.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(conninfo, autocommit=True) as listener:
        listener.execute(f"LISTEN {CHANNEL}")
        queue.enqueue(session, "ping")
        session.rollback()
        queue.enqueue(session, "later", run_at=utcnow() + timedelta(hours=1))
        session.commit()
        queue.enqueue(session, "ping")
        session.commit()
        session.execute(sa.select(sa.func.pg_notify(CHANNEL, "end")))
        session.commit()
        # Notifications arrive in commit order, so everything before "end" is all there was.
        received = []
        for notification in listener.notifies(timeout=10):
            if notification.payload == "end":
                break
            received.append(notification.payload)
    assert received == [""]


def test_the_sqlite_watcher_rings_when_another_connection_commits(session):
    if db.engine.dialect.name != "sqlite":
        pytest.skip("SQLite only: PostgreSQL workers LISTEN instead")
    wakeup = Wakeup(db.engine)
    wakeup.start()
    try:
        queue.enqueue(session, "ping")
        session.commit()
        assert wakeup.bell.wait(10)
    finally:
        wakeup.stop()


def test_a_worker_started_without_wake_only_polls(app, pluggy_api):
    quiet = sync_worker(app, pluggy_api, poll_interval=0.05, wake=False)
    quiet.stopping.set()
    quiet.run()
    assert quiet.wakeup is None


def listening(wakeup: Wakeup) -> bool:
    """True once the listener is in place: PostgreSQL lists our LISTEN; SQLite's watcher rings
    on the first change it sees, so it only needs to be running."""
    if db.engine.dialect.name != "postgresql":
        return wakeup.thread.is_alive()
    with db.engine.connect() as connection:
        return (
            connection.scalar(
                sa.text("SELECT count(*) FROM pg_stat_activity WHERE query = :q"), {"q": f"LISTEN {CHANNEL}"}
            )
            > 0
        )


# Riding out a lost database ----------------------------------------------------------------------

DATABASE_ERRORS_METRIC = "pluggy_sync_worker_database_errors_total"


def database_gone() -> sa.exc.OperationalError:
    return sa.exc.OperationalError("UPDATE jobs SET ...", {"param": "x"}, Exception("server closed the connection"))


def failing_first(function, times: int, error=database_gone):
    """`function`, whose first `times` calls raise `error()` instead."""
    calls = []

    def flaky(*args, **kwargs):
        calls.append(args)
        if len(calls) <= times:
            raise error()
        return function(*args, **kwargs)

    return flaky


def database_errors_counted() -> float:
    return REGISTRY.get_sample_value(DATABASE_ERRORS_METRIC) or 0.0


@contextmanager
def running(worker) -> Iterator[threading.Thread]:
    """The worker's `run` on a thread, stopped and joined at the end whatever happens."""
    thread = run_in_thread(worker)
    try:
        yield thread
    finally:
        worker.request_stop()
        worker.request_stop()  # release a job stuck in its handler too
        thread.join(10)


def messages(caplog, text: str) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.name == "jobqueue.worker" and record.getMessage() == text]


def test_a_claim_failing_while_the_database_is_down_is_tried_again_and_the_thread_lives(
    app, session, pluggy_api, monkeypatch, caplog
):
    caplog.set_level(logging.INFO, logger="jobqueue.worker")
    ran = threading.Event()
    monkeypatch.setattr(queue, "claim", failing_first(queue.claim, 3))
    queue.enqueue(session, "ping")
    session.commit()
    quick = sync_worker(app, pluggy_api, poll_interval=0.01, wake=False)
    quick.registry.register("ping", lambda context: ran.set())
    before = database_errors_counted()

    with running(quick):
        assert ran.wait(10), "the job never ran after the database came back"
        assert all(thread.is_alive() for thread in quick.threads)

    assert database_errors_counted() - before == 3
    (lost,) = messages(caplog, "database unavailable")  # one line for the outage, not one per try
    (back,) = messages(caplog, "database available again")
    assert lost.levelno == logging.WARNING
    assert lost.fields["error"] == "Exception: server closed the connection"  # no SQL, no parameters
    assert back.fields["errors"] == 3


def test_each_outage_has_its_line(app, pluggy_api, monkeypatch, caplog):
    caplog.set_level(logging.INFO, logger="jobqueue.worker")
    outcomes = [database_gone(), None, database_gone(), database_gone()]  # None: the database answers
    real_claim = queue.claim

    def claim(*args, **kwargs):
        error = outcomes.pop(0) if outcomes else None
        if error is not None:
            raise error
        return real_claim(*args, **kwargs)

    monkeypatch.setattr(queue, "claim", claim)

    with running(sync_worker(app, pluggy_api, poll_interval=0.01, wake=False)):
        wait_until(lambda: len(messages(caplog, "database available again")) == 2, timeout=10)

    assert [record.fields["errors"] for record in messages(caplog, "database available again")] == [1, 2]
    assert len(messages(caplog, "database unavailable")) == 2


def failed_attempt(session, job_id: int) -> Job | None:
    session.expire_all()
    job = session.get(Job, job_id)
    return job if (job.status, job.attempts) == ("queued", 1) else None


def test_a_failed_attempt_the_database_would_not_take_is_written_once_it_is_back(app, session, pluggy_api, monkeypatch):
    def loses_the_database(context):
        raise database_gone()

    monkeypatch.setattr(queue, "fail", failing_first(queue.fail, 2))
    job_id = queue.enqueue(session, "needs_the_database")
    session.commit()
    quick = sync_worker(app, pluggy_api, poll_interval=0.01, wake=False)
    quick.registry.register("needs_the_database", loses_the_database)
    before = database_errors_counted()

    with running(quick):
        job = wait_until(lambda: failed_attempt(session, job_id), timeout=10, what="the failed attempt written")
        assert all(thread.is_alive() for thread in quick.threads)

    assert "OperationalError" in job.last_error
    assert database_errors_counted() - before == 2


def test_a_done_job_the_database_would_not_record_is_left_to_its_lease(app, session, pluggy_api, monkeypatch):
    ran = threading.Event()
    monkeypatch.setattr(queue, "complete", failing_first(queue.complete, 1))
    job_id = queue.enqueue(session, "ping")
    session.commit()
    quick = sync_worker(app, pluggy_api, poll_interval=0.01, wake=False)
    quick.registry.register("ping", lambda context: ran.set())
    before = database_errors_counted()

    with running(quick):
        assert ran.wait(10)
        wait_until(lambda: database_errors_counted() > before, timeout=10, what="the lost outcome counted")
        assert all(thread.is_alive() for thread in quick.threads)

    session.expire_all()
    job = session.get(Job, job_id)
    assert (job.status, job.attempts) == ("running", 1)  # taken back once its lease runs out


def test_an_unexpected_error_in_the_loop_is_logged_with_its_traceback_and_the_thread_goes_on(
    app, session, pluggy_api, monkeypatch, caplog
):
    ran = threading.Event()
    monkeypatch.setattr(queue, "claim", failing_first(queue.claim, 1, error=lambda: RuntimeError("a bug")))
    queue.enqueue(session, "ping")
    session.commit()
    quick = sync_worker(app, pluggy_api, poll_interval=0.01, wake=False)
    quick.registry.register("ping", lambda context: ran.set())

    with running(quick):
        assert ran.wait(10)
        assert all(thread.is_alive() for thread in quick.threads)

    (record,) = [record for record in caplog.records if record.name == "jobqueue.worker" and record.exc_info]
    assert str(record.exc_info[1]) == "a bug"


class Fatal(BaseException):
    """Something no worker thread can ride out."""


def test_a_thread_ending_abnormally_stops_the_worker_and_run_says_so(app, pluggy_api, monkeypatch):
    real_run_one = Worker.run_one

    def run_one(self, session, worker_id, **kwargs):
        if worker_id.endswith(":0"):
            raise Fatal()
        return real_run_one(self, session, worker_id, **kwargs)

    monkeypatch.setattr(Worker, "run_one", run_one)
    doomed = sync_worker(app, pluggy_api, concurrency=2, poll_interval=0.01, wake=False)
    raised = []
    thread = threading.Thread(target=lambda: raised.append(raises(doomed.run)))
    thread.start()
    thread.join(10)
    stopped_by_itself = not thread.is_alive()
    doomed.request_stop()
    thread.join(10)

    assert stopped_by_itself, "the other thread went on as if nothing happened"
    assert isinstance(raised[0], worker_module.WorkerThreadDied)


def raises(function) -> BaseException | None:
    try:
        function()
    except BaseException as exc:
        return exc
    return None


def test_flask_worker_exits_1_when_its_threads_end_abnormally(runner, session, monkeypatch):
    def run_one(self, session, worker_id, **kwargs):
        raise Fatal()

    monkeypatch.setattr(Worker, "run_one", run_one)

    result = runner.invoke(args=["worker", "--no-wake", "--concurrency", "2", "--poll-interval", "0.05"])

    assert result.exit_code == 1, result.output
    assert "ended abnormally" in result.output


def test_every_kind_the_service_queues_has_a_handler(app, pluggy_api, settings):
    registry = job_registry(pluggy_api, settings)

    registry.check()
    assert set(registry.handlers) == {*scheduling.JobKind, *maintenance.KINDS}


def test_a_worker_refuses_to_start_naming_a_kind_that_can_be_queued_but_has_no_handler(app, session):
    registry = JobRegistry(expected=["ping", "pong"])
    registry.register("ping", lambda context: None)
    queue.enqueue(session, "ping")
    session.commit()

    with pytest.raises(MissingHandlers, match="'pong'"):
        Worker(app, registry, wake=False).run(burst=True)

    (job,) = jobs(session)
    assert job.status == "queued"  # nothing ran


def test_flask_worker_refuses_to_start_without_a_handler_for_every_kind(runner, monkeypatch):
    grown = StrEnum("JobKind", {**{kind.name: kind.value for kind in scheduling.JobKind}, "NEW": "new_kind"})
    monkeypatch.setattr(sync_jobs, "JobKind", grown)

    result = runner.invoke(args=["worker", "--burst", "--no-wake"])

    assert result.exit_code == 1
    assert "no handler for job kind(s) 'new_kind'" in result.output


def test_jobs_take_the_configured_number_of_attempts(app, session, worker):
    app.config["JOB_MAX_ATTEMPTS"] = 2
    queue.enqueue(session, "failing")
    session.commit()
    worker.registry.register("failing", lambda context: 1 / 0)

    worker.run_one(session, "w")
    queue.retry_now(session, jobs(session)[0].id)
    worker.run_one(session, "w")

    (job,) = jobs(session)
    assert (job.max_attempts, job.attempts, job.status) == (2, 2, "dead")


class ListeningConnection:
    """A LISTEN connection that works, and stops its Wakeup at its first look for notifications."""

    def __init__(self, wakeup: Wakeup) -> None:
        self.wakeup = wakeup

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        pass

    def execute(self, statement: str) -> None:
        pass

    def notifies(self, **kwargs):
        self.wakeup.stopping.set()
        return iter(())


def wakeup_lines(caplog, text: str) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.name == "jobqueue.wakeup" and text in record.getMessage()]


def test_the_job_listener_outlives_a_lost_database_and_says_so_once(session, monkeypatch, caplog):
    caplog.set_level(logging.INFO, logger="jobqueue.wakeup")
    wakeup = Wakeup(db.engine)
    attempts = [psycopg.OperationalError("server closed the connection")] * 3

    def connect(*args, **kwargs):
        if attempts:
            raise attempts.pop()
        return ListeningConnection(wakeup)

    monkeypatch.setattr(wakeup_module.psycopg, "connect", connect)
    monkeypatch.setattr(wakeup_module, "LISTEN_RETRY_S", 0.01)
    before = database_errors_counted()
    listener = threading.Thread(target=wakeup.listen)
    listener.start()
    listener.join(10)

    assert not listener.is_alive()
    assert database_errors_counted() - before == 3
    assert len(wakeup_lines(caplog, "not listening for new jobs")) == 1
    assert len(wakeup_lines(caplog, "listening for new jobs again")) == 1
    assert wakeup.bell.is_set()  # rung on reconnecting: jobs may have been queued meanwhile


class ClosableConnection:
    closed = False

    def close(self) -> None:
        self.closed = True


def test_the_sqlite_watcher_outlives_failing_reads(monkeypatch, caplog):
    caplog.set_level(logging.INFO, logger="jobqueue.wakeup")
    wakeup = Wakeup(sa.create_engine("sqlite://"))
    reads = [sqlite3.OperationalError("database is locked")] * 2

    def data_version(connection) -> int:
        if reads:
            raise reads.pop()
        wakeup.stopping.set()
        return 2

    monkeypatch.setattr(wakeup_module, "data_version", data_version)
    monkeypatch.setattr(wakeup_module, "SQLITE_WATCH_INTERVAL_S", 0.001)
    connection = ClosableConnection()
    before = database_errors_counted()
    watcher = threading.Thread(target=wakeup.watch_sqlite, args=(connection, 1))
    watcher.start()
    watcher.join(10)

    assert not watcher.is_alive() and connection.closed
    assert wakeup.bell.is_set()  # the version it read at last had changed
    assert database_errors_counted() - before == 2
    assert len(wakeup_lines(caplog, "not listening for new jobs")) == 1
    assert len(wakeup_lines(caplog, "listening for new jobs again")) == 1
