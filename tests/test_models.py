"""The schema's guarantees, checked against the real engine: uniqueness, delete rules, types."""

import logging
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from jobqueue import describe
from models import Account, Connection, Job, SyncRun, Transaction, User, WebhookEvent
from models.base import utcnow
from observability.logs import JsonFormatter, TextFormatter


def add_user_with_data(session) -> tuple[User, Connection, Account, Transaction]:
    user = User(email="ana@example.com")
    connection = Connection(user=user, item_id="item-1", item_status="UPDATED")
    account = Account(connection=connection, pluggy_id="acc-1", type="BANK", name="Conta", raw={})
    transaction = Transaction(
        account=account,
        pluggy_id="tx-1",
        date=datetime(2026, 11, 1, 3, tzinfo=UTC),
        description="PIX",
        amount=Decimal("-1234.56"),
        raw={"id": "tx-1"},
    )
    session.add_all([user, connection, account, transaction])
    session.commit()
    return user, connection, account, transaction


def count(session, model) -> int:
    return session.scalar(sa.select(sa.func.count()).select_from(model))


def test_amounts_are_exact_decimals(session):
    *_, transaction = add_user_with_data(session)
    transaction.amount_in_account_currency = Decimal("0.1234")
    session.commit()
    session.expire_all()
    stored = session.get(Transaction, transaction.id)
    assert stored.amount == Decimal("-1234.56")
    assert isinstance(stored.amount, Decimal)
    assert stored.amount_in_account_currency == Decimal("0.1234")


def test_timestamps_come_back_aware_in_utc(session):
    *_, transaction = add_user_with_data(session)
    session.expire_all()
    stored = session.get(Transaction, transaction.id)
    assert stored.date == datetime(2026, 11, 1, 3, tzinfo=UTC)
    assert stored.date.utcoffset() == timedelta(0)
    assert stored.created_at.tzinfo is not None


def test_other_time_zones_are_stored_as_the_same_instant(session):
    *_, transaction = add_user_with_data(session)
    brasilia = timezone(timedelta(hours=-3))
    transaction.date = datetime(2026, 11, 1, 0, tzinfo=brasilia)
    session.commit()
    session.expire_all()
    assert session.get(Transaction, transaction.id).date == datetime(2026, 11, 1, 3, tzinfo=UTC)


def test_naive_timestamps_are_refused(session):
    *_, transaction = add_user_with_data(session)
    transaction.date = datetime(2026, 11, 1)
    with pytest.raises(sa.exc.StatementError, match="naive datetime"):
        session.commit()
    session.rollback()


@pytest.mark.parametrize(
    "duplicate",
    [
        lambda c, a: User(email="ana@example.com"),
        lambda c, a: Connection(user_id=c.user_id, item_id="item-1"),
        lambda c, a: Account(connection_id=c.id, pluggy_id="acc-1", type="BANK", name="x", raw={}),
        lambda c, a: Transaction(account_id=a.id, pluggy_id="tx-1", date=utcnow(), description="x", amount=1, raw={}),
    ],
    ids=["user email", "item id", "account id", "transaction id"],
)
def test_pluggy_ids_and_emails_are_unique(session, duplicate):
    _, connection, account, _ = add_user_with_data(session)
    session.add(duplicate(connection, account))
    with pytest.raises(IntegrityError):
        session.commit()
    session.rollback()


def test_webhook_event_ids_are_unique(session):
    session.add(WebhookEvent(event_id="evt-1", event="item/updated", payload={}))
    session.commit()
    session.add(WebhookEvent(event_id="evt-1", event="item/updated", payload={}))
    with pytest.raises(IntegrityError):
        session.commit()
    session.rollback()


def test_deleting_a_user_deletes_their_data_and_unlinks_webhook_events(session):
    user, connection, *_ = add_user_with_data(session)
    run = SyncRun(connection=connection, trigger="manual", status="success")
    session.add(run)
    session.flush()
    session.add(WebhookEvent(event_id="evt-1", event="item/updated", payload={}, sync_run_id=run.id))
    session.commit()

    session.execute(sa.delete(User).where(User.id == user.id))
    session.commit()

    for model in (Connection, Account, Transaction, SyncRun):
        assert count(session, model) == 0, model
    event = session.scalars(sa.select(WebhookEvent)).one()
    assert event.sync_run_id is None


def test_one_open_sync_run_per_connection(session):
    _, connection, *_ = add_user_with_data(session)
    session.add(SyncRun(connection=connection, trigger="manual", status="success"))
    session.add(SyncRun(connection=connection, trigger="manual", status="pending"))
    session.commit()
    session.add(SyncRun(connection=connection, trigger="webhook", status="running"))
    with pytest.raises(IntegrityError):
        session.commit()
    session.rollback()


def test_queued_jobs_coalesce_on_key_but_finished_ones_do_not_block(session):
    session.add_all(
        [
            Job(kind="sync", key="sync:item-1", status="done"),
            Job(kind="sync", key="sync:item-1", status="queued"),
        ]
    )
    session.commit()
    session.add(Job(kind="sync", key="sync:item-1", status="queued"))
    with pytest.raises(IntegrityError):
        session.commit()
    session.rollback()


def test_two_jobs_of_one_item_never_run_at_once(session):
    session.add_all(
        [
            Job(kind="sync", item_id="item-1", status="running"),
            Job(kind="sync", item_id="item-1", status="queued"),
            Job(kind="sync", item_id="item-2", status="running"),
        ]
    )
    session.commit()
    queued = session.scalars(sa.select(Job).where(Job.status == "queued")).one()
    queued.status = "running"
    with pytest.raises(IntegrityError):
        session.commit()
    session.rollback()


@pytest.mark.parametrize(
    "row",
    [
        lambda: Job(kind="sync", status="sleeping"),
        lambda: WebhookEvent(event_id="e", event="x", payload={}, status="lost"),
    ],
    ids=["job status", "webhook event status"],
)
def test_our_own_statuses_are_checked(session, row):
    session.add(row())
    with pytest.raises(IntegrityError):
        session.commit()
    session.rollback()


def test_sync_run_status_and_trigger_are_checked(session):
    _, connection, *_ = add_user_with_data(session)
    session.add(SyncRun(connection=connection, trigger="cron", status="pending"))
    with pytest.raises(IntegrityError):
        session.commit()
    session.rollback()


def test_reprs_are_short_and_carry_no_payload(session):
    *_, transaction = add_user_with_data(session)
    assert repr(transaction) == f"<Transaction {transaction.id} tx-1 -1234.5600 None>"


def test_a_refused_statement_is_stored_and_logged_without_the_rows_values(session):
    """Its parameters are hidden by the engine, and PostgreSQL's DETAIL, which repeats the row's
    values, is left out of what the worker stores (describe) and of every logged traceback."""
    user, *_ = add_user_with_data(session)
    with pytest.raises(IntegrityError) as refused:
        session.add(User(email=user.email))
        session.flush()
    session.rollback()
    assert "hidden due to hide_parameters" in str(refused.value)
    record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", None, (IntegrityError, refused.value, None))
    for text in (describe(refused.value), JsonFormatter().format(record), TextFormatter().format(record)):
        assert "unique" in text.lower() and "ana@example.com" not in text
