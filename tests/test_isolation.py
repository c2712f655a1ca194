"""Rows never change owner: when Pluggy ids collide across users (a stand-in restarted with the same
ids, new items), each user's accounts and transactions stay with their own connection and account.
The row of someone else is refused, logged and counted, never rewritten, on both engines' paths."""

from __future__ import annotations

import logging
from datetime import date, timedelta

import pytest
import sqlalchemy as sa
from prometheus_client import REGISTRY

from models import Account, Connection, SyncRun, Transaction, WebhookEvent
from sandbox import data as pf
from sync import bulk, runs
from sync.item_state import apply_item
from sync.tokens import issue_api_token
from sync.transactions import TransactionService, page_rows
from sync.users import create_user
from tests.conftest import drain

API = "/api/banking"
TODAY = date(2026, 11, 29)


def day(offset: int) -> str:
    return f"{TODAY - timedelta(days=offset)}T03:00:00.000Z"


@pytest.fixture
def service(session, pluggy_api, settings):
    return TransactionService(session, pluggy_api, settings, today=lambda: TODAY)


@pytest.fixture
def ana(app, user, connection, fake_pluggy):
    return {
        "connection": connection,
        "account": fake_pluggy.accounts[connection.item_id][0],
        "headers": {"Authorization": f"Bearer {issue_api_token(app.config['SECRET_KEY'], user)}"},
    }


@pytest.fixture
def bia(app, session, fake_pluggy):
    """Another user, whose item Pluggy created after a restart that started its ids over."""
    other = create_user(session, "bia@example.com")
    item = fake_pluggy.add_item()
    connection = Connection(user_id=other.id, item_id=item["id"])
    apply_item(connection, item)
    session.add(connection)
    session.commit()
    return {
        "connection": connection,
        "account": fake_pluggy.add_account(item["id"], name="Conta da Bia", balance=10.0),
        "headers": {"Authorization": f"Bearer {issue_api_token(app.config['SECRET_KEY'], other)}"},
    }


def sync(session, service, connection) -> SyncRun:
    return service.fetch(connection, runs.open_run(session, connection, "manual"))


def lists_account_of_another_item(fake_pluggy, item_id: str, account: dict) -> None:
    """Pluggy lists for `item_id` an account whose id another item's account has (as after a restart
    on its side); no state of the sandbox can hold that, so the listing is answered as it would be."""
    listing = pf.page([*fake_pluggy.accounts[item_id], account])
    fake_pluggy.answer_next("GET", "/accounts", 200, listing, when=lambda query: query["itemId"] == item_id, times=None)


def refused(kind: str) -> float:
    return REGISTRY.get_sample_value("pluggy_sync_rows_refused_total", {"kind": kind}) or 0.0


def warnings(caplog) -> list[tuple[str, dict]]:
    """The fetch's warnings: the start of each message, and its fields."""
    return [
        (r.getMessage().split(":")[0], r.fields)
        for r in caplog.records
        if r.name == "sync.transactions" and r.levelno == logging.WARNING
    ]


def owners(session) -> dict[str, tuple[int, str]]:
    """Each stored transaction's connection and description, by Pluggy id."""
    rows = session.execute(
        sa.select(Transaction.pluggy_id, Account.connection_id, Transaction.description).join(Account)
    )
    return {pluggy_id: (connection_id, description) for pluggy_id, connection_id, description in rows}


def api(client, person, what: str) -> dict:
    response = client.get(f"{API}/connections/{person['connection'].id}/{what}/", headers=person["headers"])
    assert response.status_code == 200
    return response.get_json()


def test_an_account_id_of_another_user_is_refused_and_the_account_stays_with_its_owner(
    client, session, service, fake_pluggy, ana, bia, caplog
):
    fake_pluggy.add_transaction(ana["account"]["id"], date=day(1), description="Aluguel da Ana")
    # After the restart, Bia's item lists an account with the id Ana's account already has.
    lists_account_of_another_item(fake_pluggy, bia["connection"].item_id, dict(ana["account"], name="Poupança da Bia"))
    before = refused("account")

    for _ in range(2):
        ana_run = sync(session, service, ana["connection"])
        bia_run = sync(session, service, bia["connection"])

    assert (ana_run.status, ana_run.accounts) == ("success", 1)
    assert (bia_run.status, bia_run.accounts) == ("success", 1)  # her own account only
    stored = session.scalars(sa.select(Account).where(Account.pluggy_id == ana["account"]["id"])).one()
    assert (stored.connection_id, stored.name) == (ana["connection"].id, ana["account"]["name"])
    assert refused("account") - before == 2  # once per sync of Bia's
    assert warnings(caplog) == [("accounts refused", {"refused": 1, "connection_id": bia["connection"].id})] * 2
    assert [a["id"] for a in api(client, ana, "accounts")["accounts"]] == [ana["account"]["id"]]
    assert [a["id"] for a in api(client, bia, "accounts")["accounts"]] == [bia["account"]["id"]]
    assert [t["description"] for t in api(client, ana, "transactions")["transactions"]] == ["Aluguel da Ana"]
    assert api(client, bia, "transactions")["transactions"] == []


def test_transaction_ids_of_another_user_are_refused_and_counted_neither_created_nor_updated(
    client, session, service, fake_pluggy, ana, bia, caplog
):
    ana_rows = [
        fake_pluggy.add_transaction(ana["account"]["id"], date=day(n), description=f"Ana {n}") for n in range(1, 4)
    ]
    # Bia's account returns two of Ana's transaction ids with her own data, and one row of her own.
    for n, colliding in enumerate(ana_rows[:2], start=1):
        fake_pluggy.add_transaction(bia["account"]["id"], id=colliding["id"], date=day(n), description=f"Bia {n}")
    own = fake_pluggy.add_transaction(bia["account"]["id"], date=day(5), description="Bia own")
    before = refused("transaction")

    assert sync(session, service, ana["connection"]).created == 3
    first = sync(session, service, bia["connection"])
    # Her next sync: a new row, a changed known one, and the same two of Ana's in one page.
    fake_pluggy.add_transaction(bia["account"]["id"], date=day(1), description="Bia new")
    own.update(status="PENDING")
    second = sync(session, service, bia["connection"])
    again = sync(session, service, ana["connection"])

    assert (first.created, first.updated) == (1, 0)
    assert (second.created, second.updated) == (1, 1)
    assert (again.created, again.updated, again.deleted) == (0, 0, 0)  # Ana's rows are as she left them
    stored = owners(session)
    ana_id, bia_id = ana["connection"].id, bia["connection"].id
    assert {stored[t["id"]] for t in ana_rows} == {(ana_id, f"Ana {n}") for n in range(1, 4)}
    assert sorted(d for c, d in stored.values() if c == bia_id) == ["Bia new", "Bia own"]
    bia_account = session.scalars(sa.select(Account.id).where(Account.connection_id == bia_id)).one()
    # Once in her first sync, twice in her second (what Pluggy ingested since, then the window re-read).
    refusal = ("transactions refused", {"refused": 2, "connection_id": bia_id, "account_id": bia_account})
    assert warnings(caplog) == [refusal] * 3
    assert "Bia 1" not in caplog.text and "Ana 1" not in caplog.text  # descriptions are personal data
    assert refused("transaction") - before == 6
    assert {t["description"] for t in api(client, ana, "transactions")["transactions"]} == {"Ana 1", "Ana 2", "Ana 3"}
    assert {t["description"] for t in api(client, bia, "transactions")["transactions"]} == {"Bia new", "Bia own"}


def test_a_webhook_of_another_user_naming_an_account_of_theirs_changes_nothing_of_it(
    client, session, service, fake_pluggy, ana, bia, worker
):
    row = fake_pluggy.add_transaction(ana["account"]["id"], date=day(1))
    sync(session, service, ana["connection"])
    lists_account_of_another_item(fake_pluggy, bia["connection"].item_id, dict(ana["account"]))
    event = pf.webhook_event(
        "transactions/deleted",
        itemId=bia["connection"].item_id,
        accountId=ana["account"]["id"],
        transactionIds=[row["id"]],
    )

    assert (
        client.post("/webhooks/pluggy", json=event, headers={"X-Webhook-Secret": "test-webhook-secret"}).status_code
        == 200
    )
    drain(worker, session)

    session.expire_all()
    assert session.scalars(sa.select(WebhookEvent.status)).one() == "ignored"
    stored = session.scalars(sa.select(Transaction)).one()
    assert (stored.deleted_at, stored.account.connection_id) == (None, ana["connection"].id)


# The page upsert itself, on the engine under test (PostgreSQL: COPY and staging). -----------------


@pytest.fixture
def two_accounts(session, ana, bia, service):
    """Ana's and Bia's stored accounts."""
    service.refresh_accounts(ana["connection"])
    service.refresh_accounts(bia["connection"])
    by_id = {a.pluggy_id: a for a in session.scalars(sa.select(Account))}
    return by_id[ana["account"]["id"]], by_id[bia["account"]["id"]]


def pluggy_rows(ids: list[str], note: str) -> list[dict]:
    return [
        {"id": pluggy_id, "date": day(1), "description": f"{note} {pluggy_id}", "amount": -1.0, "createdAt": day(1)}
        for pluggy_id in ids
    ]


def write(session, account: Account, ids: list[str], note: str) -> bulk.Written:
    written = bulk.upsert_transactions(session.connection(), page_rows(pluggy_rows(ids, note), account.id))
    session.commit()
    return written


def stored_rows(session) -> dict[str, tuple[int, str]]:
    rows = session.execute(sa.select(Transaction.pluggy_id, Transaction.account_id, Transaction.description))
    return {pluggy_id: (account_id, description) for pluggy_id, account_id, description in rows}


def test_a_page_of_new_known_and_foreign_rows_writes_only_its_own(session, two_accounts):
    mine, theirs = two_accounts
    write(session, theirs, ["t1", "t2"], "theirs")
    write(session, mine, ["t3", "t4"], "mine")

    # Someone else's (t1, t2) and a new one (t5); then, again someone else's, a changed one (t3),
    # unchanged ones (t4, t5) and a new one (t6).
    first = write(session, mine, ["t1", "t2", "t5"], "mine")
    page = page_rows(pluggy_rows(["t1", "t2", "t3"], "mine again") + pluggy_rows(["t4", "t5", "t6"], "mine"), mine.id)
    second = bulk.upsert_transactions(session.connection(), page)
    session.commit()

    assert tuple(first) == (1, 0, 2)  # created, updated, refused
    assert tuple(second) == (1, 1, 2)
    stored = stored_rows(session)
    assert stored["t1"] == (theirs.id, "theirs t1") and stored["t2"] == (theirs.id, "theirs t2")
    assert stored["t3"] == (mine.id, "mine again t3") and stored["t6"] == (mine.id, "mine t6")


def test_rows_someone_else_stored_meanwhile_are_refused_too(session, two_accounts, monkeypatch):
    mine, theirs = two_accounts
    write(session, theirs, ["t1"], "theirs")
    write(session, mine, ["t2"], "mine")
    look = bulk.stored_owners
    looks = []

    def blind_first_look(connection, ids):
        # As if t1 and t2 were stored between our first look at what is stored and our write.
        looks.append(ids)
        return {} if len(looks) == 1 else look(connection, ids)

    monkeypatch.setattr(bulk, "stored_owners", blind_first_look)
    outcome = write(session, mine, ["t1", "t2", "t3"], "mine again")

    assert tuple(outcome) == (1, 1, 1)
    stored = stored_rows(session)
    assert stored["t1"] == (theirs.id, "theirs t1")
    assert stored["t2"] == (mine.id, "mine again t2") and stored["t3"] == (mine.id, "mine again t3")
