"""TransactionService: fetching accounts and transactions into the database, on either engine."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

import pytest
import sqlalchemy as sa

from models import Account, SyncRun, Transaction, db
from pluggy_client import PluggyError
from sync import bulk, runs, transactions
from sync.manual_sync import ManualSync
from sync.transactions import TransactionService

TODAY = date(2026, 11, 29)


def day(offset: int) -> str:
    """An ISO timestamp `offset` days before TODAY, at midnight in Brasília (03:00 UTC)."""
    return f"{TODAY - timedelta(days=offset)}T03:00:00.000Z"


@pytest.fixture
def service(session, pluggy_api, settings):
    return TransactionService(session, pluggy_api, settings, today=lambda: TODAY)


@pytest.fixture
def manual_sync(session, pluggy_api, settings):
    return ManualSync(session, pluggy_api, settings)


@pytest.fixture
def account_id(fake_pluggy, connection):
    return fake_pluggy.accounts[connection.item_id][0]["id"]


def sync(session, service, connection) -> SyncRun:
    run = runs.open_run(session, connection, "manual")
    return service.fetch(connection, run)


def live(session) -> dict[str, Transaction]:
    rows = session.scalars(sa.select(Transaction).where(Transaction.deleted_at.is_(None)))
    return {t.pluggy_id: t for t in rows}


def test_first_sync_brings_accounts_and_the_backfill_window(session, service, connection, fake_pluggy, account_id):
    fake_pluggy.add_transaction(account_id, date=day(3), amount=-52.9)
    fake_pluggy.add_transaction(account_id, date=day(30), amount=1500.0, status="PENDING")

    run = sync(session, service, connection)

    assert (run.status, run.accounts, run.created, run.updated, run.deleted) == ("success", 1, 2, 0, 0)
    _, _, query, _ = fake_pluggy.calls_to("GET", "/v2/transactions")[0]
    assert query == {"accountId": account_id, "dateFrom": str(TODAY - timedelta(days=365))}
    account = session.scalars(sa.select(Account)).one()
    assert account.balance == Decimal("3210.55") and account.transactions_watermark is not None
    amounts = sorted(t.amount for t in live(session).values())
    assert amounts == [Decimal("-52.9"), Decimal("1500")]
    assert connection.last_synced_at is not None


def test_a_repeated_sync_changes_nothing(session, service, connection, fake_pluggy, account_id):
    for offset in range(5):
        fake_pluggy.add_transaction(account_id, date=day(offset))
    sync(session, service, connection)
    before = {t.pluggy_id: (t.updated_at, t.amount) for t in live(session).values()}

    run = sync(session, service, connection)

    assert (run.created, run.updated, run.deleted) == (0, 0, 0)
    session.expire_all()
    assert {t.pluggy_id: (t.updated_at, t.amount) for t in live(session).values()} == before


def test_later_syncs_read_new_rows_by_ingestion_time_and_reread_the_lookback_window(
    session, service, connection, fake_pluggy, account_id, settings
):
    sync(session, service, connection)
    watermark = session.scalars(sa.select(Account)).one().transactions_watermark
    fake_pluggy.calls.clear()

    sync(session, service, connection)

    queries = [query for _, _, query, _ in fake_pluggy.calls_to("GET", "/v2/transactions")]
    assert queries[0]["createdAtFrom"].startswith(watermark.strftime("%Y-%m-%dT%H:%M:%S"))
    assert "dateFrom" not in queries[0]
    assert queries[1] == {"accountId": account_id, "dateFrom": str(TODAY - timedelta(days=settings.lookback_days))}


def test_a_backdated_row_ingested_later_is_found(session, service, connection, fake_pluggy, account_id):
    sync(session, service, connection)
    old = fake_pluggy.add_transaction(account_id, date=day(40))  # older than the lookback window

    run = sync(session, service, connection)

    assert run.created == 1
    assert old["id"] in live(session)


def test_pending_becoming_posted_under_the_same_id_updates_the_row(
    session, service, connection, fake_pluggy, account_id
):
    pending = fake_pluggy.add_transaction(account_id, date=day(1), status="PENDING", amount=-10.0)
    sync(session, service, connection)
    pending.update(status="POSTED", amount=-10.5)

    run = sync(session, service, connection)

    assert (run.created, run.updated, run.deleted) == (0, 1, 0)
    row = live(session)[pending["id"]]
    assert (row.status, row.amount) == ("POSTED", Decimal("-10.5"))


def test_a_restatement_leaves_one_live_row(session, service, connection, fake_pluggy, account_id):
    original = fake_pluggy.add_transaction(account_id, date=day(2), description="COMPRA CARTAO", amount=-99.0)
    sync(session, service, connection)
    fake_pluggy.remove_transaction(account_id, original["id"])
    restated = fake_pluggy.add_transaction(account_id, date=day(2), description="Compra no cartão", amount=-99.0)

    run = sync(session, service, connection)

    assert (run.created, run.deleted) == (1, 1)
    assert set(live(session)) == {restated["id"]}
    tombstone = session.scalars(sa.select(Transaction).where(Transaction.pluggy_id == original["id"])).one()
    assert tombstone.deleted_at is not None


def test_only_rows_surely_inside_the_reread_window_are_tombstoned(
    session, service, connection, fake_pluggy, account_id, settings
):
    edge = fake_pluggy.add_transaction(account_id, date=day(settings.lookback_days))  # first day of the window
    inside = fake_pluggy.add_transaction(account_id, date=day(1))
    older = fake_pluggy.add_transaction(account_id, date=day(60))
    sync(session, service, connection)
    for row in (edge, inside, older):
        fake_pluggy.remove_transaction(account_id, row["id"])

    run = sync(session, service, connection)

    assert run.deleted == 1
    assert set(live(session)) == {edge["id"], older["id"]}


def test_a_tombstoned_row_that_reappears_is_live_again(session, service, connection, fake_pluggy, account_id):
    row = fake_pluggy.add_transaction(account_id, date=day(1))
    sync(session, service, connection)
    fake_pluggy.remove_transaction(account_id, row["id"])
    sync(session, service, connection)
    fake_pluggy.add_transaction(account_id, **row)

    run = sync(session, service, connection)

    assert run.updated == 1
    assert row["id"] in live(session)


def test_the_watermark_does_not_move_when_the_fetch_fails(session, service, connection, fake_pluggy, account_id):
    sync(session, service, connection)
    account = session.scalars(sa.select(Account)).one()
    watermark = account.transactions_watermark
    fake_pluggy.add_transaction(account_id, date=day(1))
    fake_pluggy.page_size = 1
    fake_pluggy.add_transaction(account_id, date=day(1))
    fake_pluggy.refuse_next("GET", "/v2/transactions", 400, "INVALID_PARAMETERS")

    with pytest.raises(PluggyError):
        sync(session, service, connection)

    session.rollback()
    session.expire_all()
    assert session.get(Account, account.id).transactions_watermark == watermark


def test_a_large_sync_writes_a_handful_of_statements_per_page(
    app, session, service, connection, fake_pluggy, account_id, monkeypatch
):
    fake_pluggy.page_size = 500
    for n in range(3000):
        fake_pluggy.add_transaction(account_id, date=day(n % 300), amount=-(n + 1) / 100)
    statements, writes = [], []

    def count(conn, cursor, statement, parameters, context, executemany):
        statements.append(statement)

    upsert_transactions = bulk.upsert_transactions

    def counted_write(connection, rows):
        # The write itself goes to the driver (executemany, COPY), which SQLAlchemy's events miss.
        writes.append(len(rows))
        return upsert_transactions(connection, rows)

    monkeypatch.setattr(transactions, "upsert_transactions", counted_write)
    sa.event.listen(db.engine, "before_cursor_execute", count)
    try:
        run = sync(session, service, connection)
    finally:
        sa.event.remove(db.engine, "before_cursor_execute", count)

    assert run.created == 3000
    assert writes == [500] * 6  # one write per page
    # The run and accounts, then a few per page (the new rows entered in the change feed among
    # them: one statement, and SQLite's clock), then the account's restatement matching (two reads);
    # and, once per run whatever its size, the outbound events' look at the connection's status when
    # the run opens, starts and closes, and at the app's endpoints (sync/outbound/events.py).
    assert len(statements) <= 15 + 6 * 7 + 2 + 14, statements


def test_rows_stored_by_someone_else_meanwhile_are_updated_not_doubled(
    session, service, connection, fake_pluggy, account_id, monkeypatch
):
    first = fake_pluggy.add_transaction(account_id, date=day(2), status="PENDING", amount=-1.0)
    sync(session, service, connection)
    second = fake_pluggy.add_transaction(account_id, date=day(1), amount=-2.0)
    first.update(status="POSTED")
    # As if the first row appeared between our look at what is stored and our write.
    monkeypatch.setattr(bulk, "stored_owners", lambda connection, ids: {})

    run = sync(session, service, connection)

    assert (run.created, run.updated) == (1, 1)
    rows = live(session)
    assert set(rows) == {first["id"], second["id"]} and rows[first["id"]].status == "POSTED"


def test_one_account_only(session, service, connection, fake_pluggy, account_id):
    other = fake_pluggy.add_account(connection.item_id, name="Poupança", subtype="SAVINGS_ACCOUNT")
    fake_pluggy.add_transaction(account_id, date=day(1))
    fake_pluggy.add_transaction(other["id"], date=day(1))
    service.refresh_accounts(connection)
    savings = session.scalars(sa.select(Account).where(Account.pluggy_id == other["id"])).one()

    run = service.fetch(connection, runs.open_run(session, connection, "manual"), only_account=savings)

    assert (run.accounts, run.created) == (1, 1)
    assert [t.account_id for t in live(session).values()] == [savings.id]


def test_partial_success_is_recorded_as_partial(session, service, connection):
    connection.execution_status = "PARTIAL_SUCCESS"
    assert sync(session, service, connection).status == "partial"


def test_sync_transactions_with_an_update_asks_pluggy_once_for_the_whole_connection(
    manual_sync, service, connection, fake_pluggy
):
    fake_pluggy.add_account(connection.item_id, name="Poupança")

    result = manual_sync.sync_all_accounts_transactions(connection)

    assert result.status == "SYNC_STARTED"
    assert fake_pluggy.count("PATCH", r"/items/[^/]+") == 1
    assert fake_pluggy.count("GET", "/v2/transactions") == 0  # the fetch follows the update's outcome


def run_jobs(app, session, pluggy_api) -> None:
    from sync.jobs import sync_worker

    worker = sync_worker(app, pluggy_api)
    while worker.run_one(session, "test-worker"):
        pass


def test_sync_transactions_without_an_update_queues_a_reread(
    manual_sync, app, session, service, connection, fake_pluggy, account_id, pluggy_api
):
    fake_pluggy.add_transaction(account_id, date=day(1))
    fake_pluggy.set_item(connection.item_id, status="LOGIN_ERROR")  # what Pluggy has is read anyway

    result = manual_sync.sync_transactions(connection, trigger_update=False)
    run_jobs(app, session, pluggy_api)

    assert result.status == "SYNC_STARTED"
    session.refresh(result.sync_run)
    assert (result.sync_run.status, result.sync_run.created) == ("success", 1)
    assert fake_pluggy.count("PATCH", r"/items/[^/]+") == 0


def test_a_reread_of_one_account(manual_sync, app, session, service, connection, fake_pluggy, account_id, pluggy_api):
    other = fake_pluggy.add_account(connection.item_id, name="Poupança")
    fake_pluggy.add_transaction(account_id, date=day(1))
    fake_pluggy.add_transaction(other["id"], date=day(1))
    service.refresh_accounts(connection)
    savings = session.scalars(sa.select(Account).where(Account.pluggy_id == other["id"])).one()

    result = manual_sync.sync_transactions(connection, savings, trigger_update=False)
    run_jobs(app, session, pluggy_api)

    session.refresh(result.sync_run)
    assert (result.sync_run.accounts, result.sync_run.created) == (1, 1)


def test_a_failed_reread_stays_open_for_its_retry(
    manual_sync, app, session, service, connection, fake_pluggy, pluggy_api
):
    fake_pluggy.refuse_next("GET", "/accounts", 400, "INVALID_PARAMETERS")

    result = manual_sync.sync_transactions(connection, trigger_update=False)
    run_jobs(app, session, pluggy_api)

    session.refresh(result.sync_run)
    assert result.sync_run.status == "running"  # the job retries later, into the same run


def test_sync_transactions_while_a_run_is_open_is_already_syncing(manual_sync, session, service, connection):
    open_run = runs.open_run(session, connection, "webhook")

    result = manual_sync.sync_transactions(connection, trigger_update=False)

    assert (result.status, result.sync_run.id) == ("ALREADY_SYNCING", open_run.id)


def test_read_ahead_yields_every_page_in_order_and_fetches_at_most_one_ahead():
    fetched = []

    def pages():
        for n in range(5):
            fetched.append(n)
            yield [{"n": n}]

    reader = transactions.read_ahead(pages())
    assert next(reader) == [{"n": 0}]
    reader.close()  # the consumer stops after the first page (a stop request, a failed write)
    assert fetched in ([0], [0, 1])  # the next page may or may not have started when it stopped
    assert list(transactions.read_ahead(pages())) == [[{"n": n}] for n in range(5)]


def test_read_ahead_passes_on_a_failed_fetch():
    def pages():
        yield [{"n": 0}]
        raise ConnectionError("Pluggy went away")

    reader = transactions.read_ahead(pages())
    assert next(reader) == [{"n": 0}]
    with pytest.raises(ConnectionError, match="went away"):
        next(reader)
