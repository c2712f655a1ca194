"""The change feed (sync/changes.py, /api/banking/changes/ and /api/app/changes/): a reader that
follows its cursors holds exactly what the API serves, each change told once, on either engine and
whatever the writers do meanwhile."""

from __future__ import annotations

import json
import random
import re
import threading
from datetime import date, timedelta
from decimal import Decimal

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from models import (
    Account,
    Bill,
    Change,
    ChangeKind,
    Connection,
    Identity,
    Loan,
    Transaction,
    User,
    db,
)
from models.base import BuiltJSON, utcnow
from models.change import UNWATCHED_COLUMNS
from sandbox import data as pf
from sync import changes, runs, scheduling
from sync.item_state import apply_item
from sync.tokens import issue_api_token
from sync.transactions import TransactionService
from sync.users import create_user
from tests.conftest import fresh_app, make_app
from tests.test_webhooks import post

FEED = "/api/banking/changes/"
APP_FEED = "/api/app/changes/"
APP_KEY = "app-key-for-the-change-feed-tests-0123456789"
LISTS = {
    "account": "accounts",
    "bill": "bills",
    "investment": "investments",
    "loan": "loans",
}


@pytest.fixture
def app(migrated_database):
    yield from fresh_app(migrated_database, APP_API_KEYS=(APP_KEY,))


def bearer(app, user: User) -> dict[str, str]:
    return {"Authorization": f"Bearer {issue_api_token(app.config['SECRET_KEY'], user)}"}


@pytest.fixture
def headers(app, user) -> dict[str, str]:
    return bearer(app, user)


@pytest.fixture
def synced(session, connection, fake_pluggy, worker) -> Connection:
    """The connection after its first sync: an account with a few rows, and investments."""
    account_id = fake_pluggy.accounts[connection.item_id][0]["id"]
    for offset in range(5):
        fake_pluggy.add_transaction(account_id, date=day(offset), amount=-10.5 - offset)
    fake_pluggy.add_investments(connection.item_id)
    scheduling.queue_initial_sync(session, connection)
    session.commit()
    while worker.run_one(session, "w"):
        pass
    session.expire_all()
    return connection


def day(offset: int) -> str:
    return f"{utcnow().date() - timedelta(days=offset)}T03:00:00.000Z"


class Mirror:
    """What an app holds: the entries it was told, by (kind, id)."""

    def __init__(self) -> None:
        self.held: dict[tuple[str, object], dict] = {}
        self.cursor: str | None = None
        self.told: list[tuple[str, str, object]] = []

    def apply(self, body: dict) -> None:
        for state in ("added", "modified"):
            for entry in body[state]:
                self.held[(entry["kind"], entry["id"])] = entry["data"]
                self.told.append((state, entry["kind"], entry["id"]))
        for entry in body["removed"]:
            assert set(entry) == {"kind", "id"}
            self.held.pop((entry["kind"], entry["id"]), None)
            self.told.append(("removed", entry["kind"], entry["id"]))
        self.cursor = body["next_cursor"]

    def follow(self, client, headers, *, path: str = FEED, limit: int = 500, pages: int | None = None) -> int:
        """Read pages until has_more is false (or `pages` were read); answers how many were read."""
        read = 0
        while pages is None or read < pages:
            query = {"limit": limit, **({"cursor": self.cursor} if self.cursor else {})}
            response = client.get(path, query_string=query, headers=headers)
            assert response.status_code == 200, response.get_json()
            body = response.get_json()
            self.apply(body)
            read += 1
            if not body["has_more"]:
                break
        return read

    def since(self, mark: int) -> list[tuple[str, str, object]]:
        return self.told[mark:]


def served(client, headers) -> dict[tuple[str, object], dict]:
    """Everything the API serves the user, read through its lists."""
    found: dict[tuple[str, object], dict] = {}
    for connection in client.get("/api/banking/connections/", headers=headers).get_json()["connections"]:
        cid = connection["id"]
        found[("connection", cid)] = client.get(f"/api/banking/connections/{cid}/", headers=headers).get_json()
        base = f"/api/banking/connections/{cid}"
        for kind, name in LISTS.items():
            for row in client.get(f"{base}/{name}/", query_string={"page_size": 500}, headers=headers).get_json()[name]:
                found[(kind, row["id"])] = row
        cursor = ""
        while cursor is not None:
            page = client.get(
                f"{base}/transactions/", query_string={"page_size": 500, "cursor": cursor}, headers=headers
            ).get_json()
            found.update({("transaction", row["id"]): row for row in page["transactions"]})
            cursor = page["next_cursor"]
        for investment in [key for kind, key in found if kind == "investment"]:
            page = client.get(
                f"{base}/investments/{investment}/transactions/", query_string={"page_size": 500}, headers=headers
            ).get_json()
            found.update({("investment_transaction", row["id"]): row for row in page["transactions"]})
        identity = client.get(f"{base}/identity/", headers=headers)
        if identity.status_code == 200:
            found[("identity", cid)] = identity.get_json()
    return found


def same_keys(mirror: Mirror, client, headers) -> None:
    assert set(mirror.held) == set(served(client, headers))


# A reader from the start ---------------------------------------------------------------------------


def test_a_reader_from_the_start_holds_exactly_what_the_api_serves(client, headers, synced):
    mirror = Mirror()
    mirror.follow(client, headers)
    expected = served(client, headers)
    assert set(mirror.held) == set(expected)
    assert {kind for kind, _ in mirror.held} >= {
        "connection",
        "account",
        "transaction",
        "investment",
        "investment_transaction",
    }
    for key, data in expected.items():
        if key[0] in ("transaction", "account", "investment", "investment_transaction"):
            assert mirror.held[key] == data, key
    assert all(state == "added" for state, _, _ in mirror.told)


def test_an_empty_feed_answers_a_cursor_that_later_reads_what_came(app, client, headers, session, user, fake_pluggy):
    body = client.get(FEED, headers=headers).get_json()
    assert body == {"added": [], "modified": [], "removed": [], "next_cursor": body["next_cursor"], "has_more": False}
    mirror = Mirror()
    mirror.cursor = body["next_cursor"]
    item = fake_pluggy.add_item()
    session.add(Connection(user_id=user.id, item_id=item["id"], item_status="UPDATED"))
    session.commit()
    mirror.follow(client, headers)
    assert [(state, kind) for state, kind, _ in mirror.told] == [("added", "connection")]


# Each change once ----------------------------------------------------------------------------------


def test_between_two_cursors_each_change_appears_once(client, headers, session, synced, fake_pluggy, worker):
    mirror = Mirror()
    mirror.follow(client, headers)
    rows = sorted(
        session.scalars(sa.select(Transaction).where(Transaction.deleted_at.is_(None))), key=lambda t: t.pluggy_id
    )
    changed, gone = rows[0], rows[1]
    changed.description = "PIX RECEBIDO - restated"
    gone.deleted_at = utcnow()
    account = session.get(Account, changed.account_id)
    new = Transaction(
        account_id=account.id,
        pluggy_id=pf.new_id(),
        date=utcnow(),
        description="NEW ROW",
        amount=Decimal("-1.00"),
        raw={},
    )
    session.add(new)
    session.commit()

    mark = len(mirror.told)
    mirror.follow(client, headers)
    assert sorted(mirror.since(mark)) == sorted(
        [
            ("modified", "transaction", changed.pluggy_id),
            ("removed", "transaction", gone.pluggy_id),
            ("added", "transaction", new.pluggy_id),
        ]
    )
    assert mirror.held[("transaction", changed.pluggy_id)]["description"] == "PIX RECEBIDO - restated"
    mark = len(mirror.told)
    mirror.follow(client, headers)
    assert mirror.since(mark) == []
    same_keys(mirror, client, headers)


def test_small_pages_tell_every_object_once(client, headers, synced):
    whole = Mirror()
    whole.follow(client, headers)
    paged = Mirror()
    pages = paged.follow(client, headers, limit=3)
    assert pages > 3
    assert paged.held == whole.held
    assert len(paged.told) == len(set(paged.told)) == len(whole.told)


def test_an_object_added_and_removed_between_two_reads_is_not_told(client, headers, session, synced):
    mirror = Mirror()
    mirror.follow(client, headers)
    account = session.scalars(sa.select(Account)).first()
    fleeting = Transaction(
        account_id=account.id, pluggy_id=pf.new_id(), date=utcnow(), description="X", amount=Decimal(1), raw={}
    )
    session.add(fleeting)
    session.commit()
    session.delete(fleeting)
    session.commit()
    mark = len(mirror.told)
    mirror.follow(client, headers)
    assert mirror.since(mark) == []


def test_a_row_id_handed_out_again_names_a_new_object_not_the_removed_one(client, headers, session, synced):
    """SQLite hands the highest id out again once its row is deleted (here forced on both engines):
    the row stored under it is told added, and the deleted one still told removed."""
    mirror = Mirror()
    mirror.follow(client, headers)
    last = session.scalars(sa.select(Transaction).order_by(Transaction.id.desc())).first()
    reused, gone, account_id = last.id, last.pluggy_id, last.account_id
    session.delete(last)
    session.commit()
    newcomer = Transaction(
        id=reused,
        account_id=account_id,
        pluggy_id=pf.new_id(),
        date=utcnow(),
        description="X",
        amount=Decimal(1),
        raw={},
    )
    session.add(newcomer)
    session.commit()
    mark = len(mirror.told)
    mirror.follow(client, headers)
    assert sorted(mirror.since(mark)) == [
        ("added", "transaction", newcomer.pluggy_id),
        ("removed", "transaction", gone),
    ]
    same_keys(mirror, client, headers)


def test_bookkeeping_writes_are_not_changes(client, headers, session, synced):
    mirror = Mirror()
    mirror.follow(client, headers)
    session.execute(sa.update(Transaction).values(updated_at=utcnow() + timedelta(seconds=5)))
    session.execute(sa.update(Connection).values(last_checked_at=utcnow()))
    session.commit()
    mark = len(mirror.told)
    mirror.follow(client, headers)
    assert mirror.since(mark) == []


def test_a_deleted_connection_removes_everything_under_it(client, headers, session, synced):
    mirror = Mirror()
    mirror.follow(client, headers)
    assert client.delete(f"/api/banking/connections/{synced.id}/", headers=headers).status_code == 204
    mark = len(mirror.told)
    mirror.follow(client, headers)
    told = mirror.since(mark)
    assert {state for state, _, _ in told} == {"removed"}
    assert mirror.held == {} == served(client, headers)


def test_a_restatement_is_a_modification_of_both_rows(client, headers, session, synced):
    mirror = Mirror()
    mirror.follow(client, headers)
    old, new = session.scalars(sa.select(Transaction).order_by(Transaction.id).limit(2))
    old.deleted_at = utcnow()
    old.replaced_by_id, new.replaces_id = new.id, old.id
    session.commit()
    mark = len(mirror.told)
    mirror.follow(client, headers)
    assert sorted(mirror.since(mark)) == sorted(
        [("removed", "transaction", old.pluggy_id), ("modified", "transaction", new.pluggy_id)]
    )
    assert mirror.held[("transaction", new.pluggy_id)]["replaces"] == old.pluggy_id


# Cursors and limits ----------------------------------------------------------------------------------


def error_code(response) -> tuple[int, str]:
    return response.status_code, response.get_json()["error"]["code"]


def object_ids(session) -> dict[tuple[str, str], int]:
    """Each served object's row id by (kind, key), as the change log names it."""
    found = {}
    for kind, (model, key) in changes.KEYS.items():
        row_id = model.connection_id if kind == ChangeKind.IDENTITY else model.id
        found.update({(str(kind), k): i for k, i in session.execute(sa.select(key, row_id))})
    return found


def test_the_migration_names_every_entry_by_its_objects_row_id(client, headers, runner, session, synced):
    gone = session.scalars(sa.select(Transaction).order_by(Transaction.id)).first()
    session.close()
    assert runner.invoke(args=["db", "downgrade", "0018"]).exit_code == 0
    try:
        with db.engine.begin() as connection:  # the revision before's trigger moves the row's entry
            connection.execute(sa.delete(Transaction).where(Transaction.id == gone.id))
    finally:
        result = runner.invoke(args=["db", "upgrade"])
        assert result.exit_code == 0, result.output

    stored = object_ids(session)
    entries = session.execute(sa.select(Change.kind, Change.key, Change.object_id)).all()
    assert len(entries) == len(stored) + 1
    assert {(kind, key): object_id for kind, key, object_id in entries} == {
        **stored,
        ("transaction", gone.pluggy_id): 0,  # nothing finds a deleted row by its id
    }
    # The triggers write and find entries by object id: a change moves the object's entry.
    mirror = Mirror()
    mirror.follow(client, headers)
    account = session.scalars(sa.select(Account)).first()
    account.name = "Renamed"
    session.commit()
    mark = len(mirror.told)
    mirror.follow(client, headers)
    assert mirror.since(mark) == [("modified", "account", account.pluggy_id)]
    same_keys(mirror, client, headers)


@pytest.mark.parametrize("cursor", ["nonsense", "a" * 60, "eyJwIjpbMSwxXSwicyI6eyJ1c2VyIjoxfX0.forged"])
def test_a_malformed_cursor_is_400_invalid_cursor(client, headers, cursor):
    assert error_code(client.get(FEED, query_string={"cursor": cursor}, headers=headers)) == (400, "invalid_cursor")


def test_a_cursor_belongs_to_its_feed(app, client, headers, session, synced):
    mine = client.get(FEED, headers=headers).get_json()["next_cursor"]
    other = bearer(app, create_user(session, "bruno@example.com"))
    assert error_code(client.get(FEED, query_string={"cursor": mine}, headers=other)) == (400, "invalid_cursor")
    app_headers = {"Authorization": f"Bearer {APP_KEY}"}
    assert error_code(client.get(APP_FEED, query_string={"cursor": mine}, headers=app_headers)) == (
        400,
        "invalid_cursor",
    )
    # A list's cursor is not a feed's either.
    listing = client.get(
        f"/api/banking/connections/{synced.id}/transactions/",
        query_string={"page_size": 1, "cursor": ""},
        headers=headers,
    ).get_json()["next_cursor"]
    assert error_code(client.get(FEED, query_string={"cursor": listing}, headers=headers)) == (400, "invalid_cursor")


@pytest.mark.parametrize("limit", ["0", "501", "-1", "many"])
def test_limit_is_between_1_and_500(client, headers, limit):
    assert error_code(client.get(FEED, query_string={"limit": limit}, headers=headers)) == (400, "invalid_request")


def test_a_cursor_stays_valid_across_a_restart(migrated_database, client, headers, session, synced):
    mirror = Mirror()
    mirror.follow(client, headers)
    session.execute(sa.update(Transaction).values(description="renamed"))
    session.commit()
    restarted = make_app(migrated_database, APP_API_KEYS=(APP_KEY,))
    mark = len(mirror.told)
    mirror.follow(restarted.test_client(), headers)
    assert {state for state, _, _ in mirror.since(mark)} == {"modified"}
    assert all(data["description"] == "renamed" for (kind, _), data in mirror.held.items() if kind == "transaction")


def test_a_cursor_older_than_what_is_kept_is_410_and_starting_over_works(client, headers, session, synced):
    mirror = Mirror()
    mirror.follow(client, headers)
    stale = mirror.cursor
    doomed = session.scalars(sa.select(Transaction)).first()
    session.delete(doomed)
    session.commit()
    assert changes.prune_removed(session, before=utcnow() + timedelta(days=1)) == 1
    session.commit()
    response = client.get(FEED, query_string={"cursor": stale}, headers=headers)
    assert error_code(response) == (410, "cursor_expired")
    again = Mirror()
    again.follow(client, headers)
    same_keys(again, client, headers)


def test_pruning_keeps_recent_removals_and_live_objects(session, synced):
    session.execute(sa.delete(Transaction).where(Transaction.id == session.scalars(sa.select(Transaction.id)).first()))
    session.commit()
    assert changes.prune_removed(session, before=utcnow() - timedelta(days=1)) == 0
    kept = session.scalar(sa.select(sa.func.count()).select_from(Change))
    assert changes.prune_removed(session, before=utcnow() + timedelta(days=1)) == 1
    assert session.scalar(sa.select(sa.func.count()).select_from(Change)) == kept - 1


def test_a_removed_objects_entry_never_shows_another_users_object_with_its_pluggy_id(
    app, client, session, user, connection, fake_pluggy, pluggy_api, settings
):
    """Pluggy's ids can collide across items: once Ana's transaction is gone, Bia's with the same id
    is not Ana's, in her feed or when the removed entries are pruned."""
    ana_headers = {"Authorization": f"Bearer {issue_api_token(app.config['SECRET_KEY'], user)}"}
    ana_account = fake_pluggy.accounts[connection.item_id][0]
    taken = fake_pluggy.add_transaction(ana_account["id"], date="2026-11-28T03:00:00.000Z", description="Ana's")
    service = TransactionService(session, pluggy_api, settings, today=lambda: date(2026, 11, 29))
    service.fetch(connection, runs.open_run(session, connection, "manual"))
    ana = Mirror()
    ana.follow(client, ana_headers)
    assert client.delete(f"/api/banking/connections/{connection.id}/", headers=ana_headers).status_code == 204
    assert session.scalars(sa.select(Transaction)).all() == []  # removed at once (no retention here)

    bia = create_user(session, "bia@example.com")
    item = fake_pluggy.add_item()
    bia_account = fake_pluggy.add_account(item["id"])
    bia_connection = Connection(user_id=bia.id, item_id=item["id"])
    apply_item(bia_connection, item)
    session.add(bia_connection)
    session.commit()
    date_of = "2026-11-28T03:00:00.000Z"
    fake_pluggy.add_transaction(bia_account["id"], id=taken["id"], date=date_of, description="Bia's")
    service.fetch(bia_connection, runs.open_run(session, bia_connection, "manual"))

    mark = len(ana.told)
    ana.follow(client, ana_headers)
    assert ("removed", "transaction", taken["id"]) in ana.since(mark)
    assert all(data.get("description") != "Bia's" for data in ana.held.values())
    assert changes.prune_removed(session, before=utcnow() + timedelta(days=1)) >= 1
    session.commit()
    ana_entries = sa.select(Change.key).where(Change.user_id == user.id, Change.kind == "transaction")
    assert session.scalars(ana_entries).all() == []


def test_the_worker_queues_the_pruning_and_it_comes_back(session, worker):
    from models import Job

    scheduling.queue_changes_pruning(session)
    session.commit()
    assert worker.run_one(session, "w")
    job = session.scalars(sa.select(Job).where(Job.kind == "prune_changes", Job.status == "queued")).one()
    assert job.run_at > utcnow() + timedelta(hours=5)


# The app's feed ------------------------------------------------------------------------------------------


def test_the_apps_feed_has_every_users_changes_and_no_personal_data(app, client, headers, session, synced):
    from models import Identity

    bruno = create_user(session, "bruno@example.com")
    session.add(Connection(user_id=bruno.id, item_id="item-of-bruno", item_status="UPDATED"))
    session.add(Identity(connection_id=synced.id, document="123.456.789-00", full_name="Ana Souza", raw={}))
    session.commit()
    mirror = Mirror()
    mirror.follow(client, {"Authorization": f"Bearer {APP_KEY}"}, path=APP_FEED)
    connections = {key for kind, key in mirror.held if kind == "connection"}
    assert connections == {
        synced.id,
        session.scalars(sa.select(Connection.id).where(Connection.user_id == bruno.id)).one(),
    }
    identity = mirror.held[("identity", synced.id)]
    assert "123.456.789-00" not in str(identity) and "Ana" not in str(identity)
    # Nor the owner's name and CPF where accounts, investments and payments show them.
    assert pf.OWNER_CPF not in str(mirror.held) and pf.OWNER not in str(mirror.held)
    own = Mirror()
    own.follow(client, headers)
    assert own.held[("identity", synced.id)]["document"] == "123.456.789-00"
    assert pf.OWNER_CPF in str(own.held) and pf.OWNER in str(own.held)


def test_the_apps_feed_needs_the_app_key(migrated_database, client, headers):
    assert client.get(APP_FEED, headers=headers).status_code == 401
    without = make_app(migrated_database).test_client()
    assert without.get(APP_FEED, headers={"Authorization": f"Bearer {APP_KEY}"}).status_code == 404


# The triggers ------------------------------------------------------------------------------------------


TRACKED_TABLES = (
    "connections",
    "accounts",
    "transactions",
    "bills",
    "investments",
    "investment_transactions",
    "identities",
    "loans",
)


def trigger_sql(session, table: str) -> str:
    if session.get_bind().dialect.name == "postgresql":
        return session.scalar(
            sa.text(
                "SELECT pg_get_triggerdef(t.oid) FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
                "WHERE c.relname = :table AND t.tgname = :name"
            ),
            {"table": table, "name": f"changes_{table}_update"},
        )
    return session.scalar(
        sa.text("SELECT sql FROM sqlite_master WHERE type = 'trigger' AND name = :name"),
        {"name": f"changes_{table}_update"},
    )


@pytest.mark.parametrize("table", TRACKED_TABLES)
def test_every_served_column_of_a_tracked_table_is_watched(session, table):
    """A migration that adds a column to a tracked table must recreate its triggers with it."""
    definition = trigger_sql(session, table)
    assert definition, f"no update trigger on {table}"
    watched = set(re.findall(r"\bold\.\"?(\w+)\"?", definition, flags=re.IGNORECASE))
    columns = {column.name for column in db.metadata.tables[table].columns}
    unwatched = UNWATCHED_COLUMNS["*"] | UNWATCHED_COLUMNS.get(table, frozenset())
    assert watched == columns - unwatched


# Writers meanwhile ---------------------------------------------------------------------------------------


def other_session(app) -> Session:
    return Session(bind=db.engine)


def test_a_reader_never_passes_a_commit_still_to_come(app, client, headers, session, synced):
    """PostgreSQL: a transaction that began first (smaller id) commits after one that began later.
    A reader between the two commits must not move past the first one's rows. (SQLite lets one
    writer at a time, so the same interleaving cannot happen there: the writers test covers it.)"""
    if session.get_bind().dialect.name != "postgresql":
        pytest.skip("PostgreSQL's interleaving: SQLite has one writer at a time")
    account_id = session.scalars(sa.select(Account.id)).first()
    mirror = Mirror()
    mirror.follow(client, headers)
    with app.app_context():
        first, second = other_session(app), other_session(app)
        try:
            early = new_row(account_id)
            first.add(early)
            first.flush()  # the first writer's transaction id is taken now
            late = new_row(account_id)
            second.add(late)
            second.commit()
            mark = len(mirror.told)
            mirror.follow(client, headers)
            assert mirror.since(mark) == []  # the later commit waits behind the open one
            first.commit()
            mirror.follow(client, headers)
            assert sorted(mirror.since(mark)) == sorted(
                [("added", "transaction", early.pluggy_id), ("added", "transaction", late.pluggy_id)]
            )
        finally:
            first.close()
            second.close()


def new_row(account_id: int, **fields) -> Transaction:
    return Transaction(
        account_id=account_id,
        pluggy_id=pf.new_id(),
        date=utcnow(),
        description="ROW",
        amount=Decimal("-2.50"),
        raw={},
        **fields,
    )


def test_a_reader_paging_while_several_writers_write_ends_with_exactly_the_live_state(
    app, client, headers, session, synced
):
    account_id = session.scalars(sa.select(Account.id)).first()
    failures: list[BaseException] = []

    def write(seed: int) -> None:
        """Random adds, changes, tombstones (and their undoing) and deletions of rows of its own, a
        few per transaction: writers never touch one another's rows, but their commits interleave."""
        rng = random.Random(seed)
        own: list[str] = []
        with app.app_context():
            writer = other_session(app)
            try:
                for _ in range(40):
                    for _ in range(rng.randint(1, 4)):
                        action = rng.choice(["add", "add", "change", "tombstone", "delete"]) if own else "add"
                        if action == "add":
                            row = new_row(account_id)
                            writer.add(row)
                            own.append(row.pluggy_id)
                            continue
                        target = sa.update(Transaction).where(Transaction.pluggy_id == rng.choice(own))
                        if action == "change":
                            writer.execute(target.values(description=f"changed {rng.random()}"))
                        elif action == "tombstone":
                            writer.execute(
                                target.values(deleted_at=sa.case((Transaction.deleted_at.is_(None), utcnow())))
                            )
                        else:
                            gone = own.pop(rng.randrange(len(own)))
                            writer.execute(sa.delete(Transaction).where(Transaction.pluggy_id == gone))
                    writer.commit()
            except BaseException as exc:
                failures.append(exc)
            finally:
                writer.close()

    writers = [threading.Thread(target=write, args=(seed,)) for seed in range(3)]
    mirror = Mirror()
    for thread in writers:
        thread.start()
    while any(thread.is_alive() for thread in writers):
        mirror.follow(client, headers, limit=7, pages=1)
    for thread in writers:
        thread.join()
    assert failures == []
    mirror.follow(client, headers, limit=7)
    expected = served(client, headers)
    assert set(mirror.held) == set(expected)
    for key, data in expected.items():
        if key[0] == "transaction":
            assert mirror.held[key] == data


def test_a_reader_paging_while_the_worker_syncs_ends_with_exactly_the_live_state(
    app, client, headers, session, connection, fake_pluggy, worker
):
    """The worker's first sync of a few hundred rows and investments, then Pluggy deleting some rows
    (a transactions/deleted webhook), while a reader pages five entries at a time."""
    account_id = fake_pluggy.accounts[connection.item_id][0]["id"]
    rows = [fake_pluggy.add_transaction(account_id, date=day(n % 200), amount=-1 - n) for n in range(300)]
    fake_pluggy.add_investments(connection.item_id)
    scheduling.queue_initial_sync(session, connection)
    session.commit()
    failures: list[BaseException] = []

    def work() -> None:
        with app.app_context():
            own = other_session(app)
            try:
                while worker.run_one(own, "w"):
                    pass
                gone = [row["id"] for row in rows[::10]]
                for transaction_id in gone:
                    fake_pluggy.remove_transaction(account_id, transaction_id)
                event = pf.webhook_event(
                    "transactions/deleted", itemId=connection.item_id, accountId=account_id, transactionIds=gone
                )
                assert post(app.test_client(), event).status_code == 200
                while worker.run_one(own, "w"):
                    pass
            except BaseException as exc:
                failures.append(exc)
            finally:
                own.close()

    writer = threading.Thread(target=work)
    mirror = Mirror()
    writer.start()
    while writer.is_alive():
        mirror.follow(client, headers, limit=5, pages=1)
    writer.join()
    assert failures == []
    mirror.follow(client, headers, limit=5)
    expected = served(client, headers)
    assert set(mirror.held) == set(expected)
    assert sum(kind == "transaction" for kind, _ in mirror.held) == 270
    for key, data in expected.items():
        if key[0] in ("transaction", "investment_transaction"):
            assert mirror.held[key] == data


# Every kind's JSON ---------------------------------------------------------------------------------

ODD_TEXT = 'Transferência PIX \u2615 \U0001f600 \x7f "quoted" back\\slash'
ODD_NUMBERS = {"tiny": 1e-7, "huge": 1e16, "negative_zero": -0.0, "plain": 12.5, "big": 12345678901234567890}


def every_kind(session, synced: Connection) -> None:
    """Beside the synced rows: a bill, a loan, an identity, a restatement's links and odd text and
    numbers in the columns and raw payloads the serialisers read."""
    account = session.scalars(sa.select(Account).where(Account.connection_id == synced.id)).first()
    rows = session.scalars(sa.select(Transaction).order_by(Transaction.id)).all()
    rows[0].replaces_id, rows[1].replaced_by_id = rows[1].id, rows[0].id
    rows[2].description = ODD_TEXT
    rows[2].raw = {**rows[2].raw, "paymentData": {"payer": {"name": ODD_TEXT}, **ODD_NUMBERS}, "merchant": None}
    rows[3].raw = {"merchant": 0.1 + 0.2, "creditCardMetadata": ODD_TEXT, "paymentData": [1, 2.5, 1e300, True]}
    rows[4].raw = {}
    now = utcnow()
    session.add(
        Bill(
            connection_id=synced.id,
            account_id=account.id,
            pluggy_id=pf.new_id(),
            due_date=now.date(),
            total_amount=Decimal("1895.3"),
            currency_code="BRL",
            finance_charges=[{"id": "c1", "type": "LATE_FEE", "amount": 1e-7, "additionalInfo": ODD_TEXT}],
            finance_charges_total=Decimal("0.0001"),
            payments=[{"id": "p1", "valueType": "TOTAL", "amount": 10, "paymentDate": "2026-01-02"}],
            payments_total=Decimal(10),
            raw={},
            last_seen_at=now,
        )
    )
    session.add(
        Loan(
            connection_id=synced.id,
            pluggy_id=pf.new_id(),
            product_name=ODD_TEXT,
            contract_amount=Decimal("1000.5"),
            cet=Decimal("0.21960000"),
            interest_rates=[{"taxType": "NOMINAL", "preFixedRate": 0.0123}],
            raw={},
            pluggy_date=now,
        )
    )
    session.add(
        Identity(
            connection_id=synced.id,
            pluggy_id=pf.new_id(),
            full_name="Ana Souza",
            document="123.456.789-00",
            emails=[{"value": "ana@example.com", "type": "Personal"}],
            addresses=[{"fullAddress": ODD_TEXT}],
            raw={},
        )
    )
    session.commit()


def test_each_kinds_entry_is_the_json_its_own_route_serves(client, headers, session, synced):
    every_kind(session, synced)
    mirror = Mirror()
    mirror.follow(client, headers)
    expected = served(client, headers)
    assert {kind for kind, _ in mirror.held} == set(ChangeKind)
    assert mirror.held == expected
    restated = [data for data in expected.values() if data.get("replaces") or data.get("replaced_by")]
    assert len(restated) == 2


@pytest.mark.parametrize(
    "text",
    [
        '{"a": 0.1, "b": [1e-7, -0.0, 18446744073709551615]}',
        '"\\ud800 lone"',
        "340282366920938463463374607431768211456",
    ],
)
def test_built_json_reads_what_json_loads_reads(text):
    assert BuiltJSON().process_result_value(text, None) == json.loads(text)
    assert BuiltJSON().process_result_value({"decoded": True}, None) == {"decoded": True}
