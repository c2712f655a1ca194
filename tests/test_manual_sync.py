"""BankConnectionService.trigger_manual_sync: every item status, every refusal, one PATCH at a time."""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import timedelta

import pytest
import sqlalchemy as sa

from models import Connection, Job, SyncRun
from models.base import utcnow
from sandbox import data as pf
from sync import runs, scheduling
from sync.connections import BankConnectionService
from sync.item_state import sync_status
from sync.manual_sync import ManualSync
from sync.results import ManualSyncStatus as Answer

PATCH = r"/items/[^/]+"


@pytest.fixture
def service(session, pluggy_api, settings):
    return ManualSync(session, pluggy_api, settings)


def set_item(fake_pluggy, connection, **fields):
    fake_pluggy.set_item(connection.item_id, **fields)


@pytest.mark.parametrize("status", ["UPDATED", "OUTDATED"])
def test_an_idle_item_is_asked_to_update_and_a_run_waits_for_the_outcome(service, connection, fake_pluggy, status):
    set_item(fake_pluggy, connection, status=status)

    result = service.trigger_manual_sync(connection)

    assert result.status == Answer.SYNC_STARTED
    patches = fake_pluggy.calls_to("PATCH", PATCH)
    assert [body for *_, body in patches] == [{}]
    run = result.sync_run
    assert (run.status, run.trigger) == ("pending", "manual")
    assert run.item_update_requested_at is not None
    assert connection.item_status == "UPDATING"
    assert sync_status(connection, run) == "UPDATING"


@pytest.mark.parametrize("status", ["UPDATING", "MERGING"])
def test_a_busy_item_is_already_syncing(service, connection, fake_pluggy, status):
    set_item(fake_pluggy, connection, status=status)

    result = service.trigger_manual_sync(connection)

    assert (result.status, result.sync_run) == (Answer.ALREADY_SYNCING, None)
    assert fake_pluggy.count("PATCH", PATCH) == 0


def test_our_own_open_run_answers_after_reading_the_item_and_never_patches_again(service, connection, fake_pluggy):
    first = service.trigger_manual_sync(connection)
    fake_pluggy.calls.clear()

    second = service.trigger_manual_sync(connection)

    assert (second.status, second.sync_run.id) == (Answer.ALREADY_SYNCING, first.sync_run.id)
    assert [(method, path) for method, path, *_ in fake_pluggy.calls] == [("GET", f"/items/{connection.item_id}")]


def test_a_run_the_worker_is_fetching_answers_without_asking_pluggy(session, service, connection, fake_pluggy):
    run = runs.open_run(session, connection, "webhook")
    run.status = "running"
    job = session.get(Job, scheduling.queue_fetch(session, connection, "webhook"))
    job.status = "running"  # the worker's job doing that fetch
    session.commit()

    result = service.trigger_manual_sync(connection)

    assert (result.status, result.sync_run.id) == (Answer.ALREADY_SYNCING, run.id)
    assert fake_pluggy.calls == []


def test_waiting_for_input_answers_mfa_required_with_the_prompt(service, connection, fake_pluggy):
    set_item(fake_pluggy, connection, status="WAITING_USER_INPUT", parameter=pf.mfa_parameter())

    result = service.trigger_manual_sync(connection)

    assert result.status == Answer.MFA_REQUIRED
    assert result.mfa["name"] == "token" and result.mfa["type"] == "number"
    assert fake_pluggy.count("PATCH", PATCH) == 0


def test_waiting_for_user_action_answers_user_action_required(service, connection, fake_pluggy):
    action = {"instructions": "Aprove o acesso no app do banco", "type": "qr", "expiresAt": "2026-11-29T12:00:00.000Z"}
    set_item(fake_pluggy, connection, status="WAITING_USER_ACTION", userAction=action)

    result = service.trigger_manual_sync(connection)

    assert (result.status, result.user_action) == (Answer.USER_ACTION_REQUIRED, action)


def test_a_login_error_answers_credentials_required_with_an_update_mode_token(service, connection, fake_pluggy, user):
    set_item(fake_pluggy, connection, status="LOGIN_ERROR", error=pf.item_error())

    result = service.trigger_manual_sync(connection)

    assert result.status == Answer.CREDENTIALS_REQUIRED
    assert result.connect_token.item_id == connection.item_id
    ((_, _, _, body),) = fake_pluggy.calls_to("POST", "/connect_token")
    assert body == {"itemId": connection.item_id, "options": {"clientUserId": str(user.id), "avoidDuplicates": True}}
    assert connection.error_code == "INVALID_CREDENTIALS"
    assert fake_pluggy.count("PATCH", PATCH) == 0


def refuse_patch(fake_pluggy, connection, *args, **kwargs):
    fake_pluggy.refuse_next("PATCH", f"/items/{connection.item_id}", *args, **kwargs)


def test_updating_too_often_is_rate_limited_until_pluggy_allows_it(service, connection, fake_pluggy, session):
    last = (utcnow() - timedelta(hours=1)).isoformat().replace("+00:00", "Z")
    refuse_patch(
        fake_pluggy,
        connection,
        409,
        "CLIENT_IS_UPDATING_BEFORE_ALLOWED_FREQUENCY",
        {"minUpdateFrequencyAllowedInHours": 4, "lastUpdatedAt": last},
    )

    result = service.trigger_manual_sync(connection)

    assert result.status == Answer.RATE_LIMITED
    assert 3 * 3600 - 60 < result.retry_after <= 3 * 3600
    run = session.scalars(sa.select(SyncRun)).one()
    assert (run.status, run.error_code) == ("error", "CLIENT_IS_UPDATING_BEFORE_ALLOWED_FREQUENCY")


def test_a_long_429_is_rate_limited_with_its_retry_after(service, connection, fake_pluggy):
    refuse_patch(fake_pluggy, connection, 429, None, headers={"Retry-After": "60"})

    result = service.trigger_manual_sync(connection)

    assert (result.status, result.retry_after) == (Answer.RATE_LIMITED, 60)
    assert fake_pluggy.count("PATCH", PATCH) == 1


def test_a_connector_that_needs_new_parameters_sends_the_user_to_the_widget(service, connection, fake_pluggy, session):
    refuse_patch(fake_pluggy, connection, 400, "CONNECTOR_REQUIRED_PARAMETER_VALIDATION_ERROR", {"parameter": "token"})

    result = service.trigger_manual_sync(connection)

    assert result.status == Answer.CREDENTIALS_REQUIRED
    assert result.connect_token is not None
    assert session.scalars(sa.select(SyncRun)).one().status == "credentials_required"


def test_an_item_pluggy_already_updates_keeps_our_run_waiting(service, connection, fake_pluggy):
    refuse_patch(fake_pluggy, connection, 409, "ITEM_ALREADY_UPDATING")

    result = service.trigger_manual_sync(connection)

    assert result.status == Answer.ALREADY_SYNCING
    assert result.sync_run.status == "pending"


def test_too_many_consecutive_errors_waits_until_pluggy_allows_a_retry(service, connection, fake_pluggy):
    when = (utcnow() + timedelta(minutes=30)).isoformat().replace("+00:00", "Z")
    refuse_patch(fake_pluggy, connection, 400, "TOO_MANY_CONSECUTIVE_ERRORS", {"canRetryAfterDate": when})

    result = service.trigger_manual_sync(connection)

    assert result.status == Answer.RATE_LIMITED
    assert 29 * 60 < result.retry_after <= 30 * 60


def test_too_many_login_failures_needs_new_credentials(service, connection, fake_pluggy):
    refuse_patch(fake_pluggy, connection, 400, "TOO_MANY_CONSECUTIVE_LOGIN_FAILURES", {"canRetryAfterDate": None})

    assert service.trigger_manual_sync(connection).status == Answer.CREDENTIALS_REQUIRED


def test_a_server_error_on_the_update_is_an_error_and_the_patch_is_not_repeated(
    service, connection, fake_pluggy, session
):
    refuse_patch(fake_pluggy, connection, 500)

    result = service.trigger_manual_sync(connection)

    assert (result.status, result.error["code"]) == (Answer.ERROR, "pluggy_unavailable")
    assert fake_pluggy.count("PATCH", PATCH) == 1
    assert session.scalars(sa.select(SyncRun)).one().status == "error"


def test_pluggy_unreachable_while_reading_the_item_is_an_error(service, connection, fake_pluggy):
    for _ in range(4):  # the first try and three retries of a GET
        fake_pluggy.refuse_next("GET", f"/items/{connection.item_id}", 503)

    result = service.trigger_manual_sync(connection)

    assert result.status == Answer.ERROR
    assert fake_pluggy.count("PATCH", PATCH) == 0


def test_an_item_unknown_to_pluggy_is_an_error(service, connection, fake_pluggy):
    fake_pluggy.remove_item(connection.item_id)

    result = service.trigger_manual_sync(connection)

    assert (result.status, result.error["code"]) == (Answer.ERROR, "item_not_found")


def test_our_own_throttle_answers_before_pluggy_has_to(service, connection, fake_pluggy, session, settings):
    now = utcnow()
    for n in range(settings.item_updates_per_minute):
        session.add(
            SyncRun(
                connection_id=connection.id,
                trigger="manual",
                status="success",
                item_update_requested_at=now - timedelta(seconds=50 - n),
            )
        )
    session.commit()

    result = service.trigger_manual_sync(connection)

    assert result.status == Answer.RATE_LIMITED
    assert 5 <= result.retry_after <= 10
    assert fake_pluggy.count("PATCH", PATCH) == 0


def test_concurrent_manual_syncs_of_one_connection_send_one_patch(app, connection, fake_pluggy):
    from models import db
    from sync.runtime import pluggy_client, sync_settings

    results, barrier = [], threading.Barrier(6, timeout=10)
    connection_id = connection.id

    def sync_now() -> None:
        with app.app_context():
            service = ManualSync(db.session, pluggy_client(), sync_settings())
            mine = db.session.get(Connection, connection_id)
            barrier.wait()
            results.append(service.trigger_manual_sync(mine).status)

    threads = [threading.Thread(target=sync_now) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert fake_pluggy.count("PATCH", PATCH) == 1
    assert sorted(results) == [Answer.ALREADY_SYNCING] * 5 + [Answer.SYNC_STARTED]


def test_poll_mode_queues_a_watcher(app, session, connection, fake_pluggy, pluggy_api, settings):
    from dataclasses import replace

    service = ManualSync(session, pluggy_api, replace(settings, sync_mode="poll"))

    result = service.trigger_manual_sync(connection)

    job = session.scalars(sa.select(Job)).one()
    assert (job.kind, job.payload["run_id"], job.item_id) == ("watch_item", result.sync_run.id, connection.item_id)


def test_a_new_runs_watcher_is_its_own_not_the_closed_runs(session, connection, fake_pluggy, pluggy_api, settings):
    """The user syncs again while the first run's watcher waits, and the item now reads OUTDATED: the
    first run is closed and a second starts, whose watcher must watch it."""
    poll = replace(settings, sync_mode="poll", watch_interval_s=5)
    sync = ManualSync(session, pluggy_api, poll)
    first = sync.trigger_manual_sync(connection)
    fake_pluggy.set_credentials(connection.item_id, user="user-unavailable")  # this update ends OUTDATED
    BankConnectionService(session, pluggy_api, poll).check_status(connection)
    fake_pluggy.set_credentials(connection.item_id, user="user-ok")

    second = sync.trigger_manual_sync(connection)

    assert second.status == Answer.SYNC_STARTED and second.sync_run.id != first.sync_run.id
    watched = session.scalars(sa.select(Job.payload["run_id"].as_integer()).where(Job.kind == "watch_item")).all()
    assert second.sync_run.id in watched


def test_a_reread_of_every_account_is_not_joined_to_one_of_an_account(session, connection):
    scheduling.queue_reread(session, connection, "account-a")
    scheduling.queue_reread(session, connection, None)
    scheduling.queue_reread(session, connection, "account-a")
    session.commit()

    queued = session.scalars(sa.select(Job.payload["account_id"].as_string()).order_by(Job.id)).all()
    assert queued == ["account-a", None]


def test_check_status_reads_pluggy_and_stores_it(service, connection, fake_pluggy, session):
    set_item(
        fake_pluggy, connection, status="LOGIN_ERROR", executionStatus="INVALID_CREDENTIALS", error=pf.item_error()
    )

    service.connections.check_status(connection)

    session.expire_all()
    assert (connection.item_status, connection.execution_status, connection.error_code) == (
        "LOGIN_ERROR",
        "INVALID_CREDENTIALS",
        "INVALID_CREDENTIALS",
    )
    assert sync_status(connection) == "CREDENTIALS_REQUIRED"


@pytest.mark.parametrize(
    "item_status, expected",
    [
        ("UPDATED", "UPDATED"),
        ("OUTDATED", "OUTDATED"),
        ("UPDATING", "UPDATING"),
        ("MERGING", "UPDATING"),
        ("WAITING_USER_INPUT", "MFA_REQUIRED"),
        ("WAITING_USER_ACTION", "USER_ACTION_REQUIRED"),
        ("LOGIN_ERROR", "CREDENTIALS_REQUIRED"),
        ("SOMETHING_NEW", "ERROR"),
        (None, "ERROR"),
    ],
)
def test_sync_status_in_the_words_of_the_api(connection, item_status, expected):
    connection.item_status = item_status
    assert sync_status(connection) == expected


def test_a_run_whose_outcome_never_came_is_let_go(service, connection, fake_pluggy, session, settings):
    stuck = service.trigger_manual_sync(connection).sync_run
    stuck.started_at = utcnow() - timedelta(seconds=settings.watch_timeout_s + 1)
    session.commit()
    fake_pluggy.set_item(connection.item_id, status="UPDATED")

    result = service.trigger_manual_sync(connection)

    assert result.status == Answer.SYNC_STARTED
    session.refresh(stuck)
    assert (stuck.status, stuck.error_code) == ("error", "timeout")
