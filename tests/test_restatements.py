"""Restatements: a row Pluggy deletes and creates again under a new id is linked to its replacement."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
import sqlalchemy as sa

from models import Transaction
from models.base import utcnow
from sandbox import data as pf
from sandbox import ingest
from sync import restatements, scheduling
from sync.tokens import issue_api_token
from tests.test_api import API
from tests.test_webhooks import deliver


def day(offset: int) -> str:
    return f"{utcnow().date() - timedelta(days=offset)}T03:00:00.000Z"


def rows(session) -> dict[str, Transaction]:
    session.expire_all()
    return {t.pluggy_id: t for t in session.scalars(sa.select(Transaction))}


def links(session) -> set[tuple[str, str]]:
    """(old, new) Pluggy ids of every link, checked to agree on both sides."""
    found = rows(session)
    by_id = {t.id: t for t in found.values()}
    forward = {(t.pluggy_id, by_id[t.replaced_by_id].pluggy_id) for t in found.values() if t.replaced_by_id}
    backward = {(by_id[t.replaces_id].pluggy_id, t.pluggy_id) for t in found.values() if t.replaces_id}
    assert forward == backward
    return forward


def created(client, worker, session, connection, account_id) -> None:
    deliver(
        client,
        worker,
        session,
        pf.webhook_event(
            "transactions/created",
            itemId=connection.item_id,
            accountId=account_id,
            transactionsCreatedAtFrom=(utcnow() - timedelta(minutes=5)).isoformat(),
        ),
    )


def deleted(client, worker, session, connection, account_id, *ids: str) -> None:
    deliver(
        client,
        worker,
        session,
        pf.webhook_event(
            "transactions/deleted", itemId=connection.item_id, accountId=account_id, transactionIds=list(ids)
        ),
    )


@pytest.fixture
def synced(session, connection, fake_pluggy, worker) -> str:
    """The connection after its first sync; answers its account's Pluggy id."""
    scheduling.queue_initial_sync(session, connection)
    session.commit()
    worker.run_one(session, "w")
    return fake_pluggy.accounts[connection.item_id][0]["id"]


@pytest.fixture
def replace(client, worker, session, connection, fake_pluggy, synced):
    """Pluggy replaces `old` by a row with `fields`, and the service hears of the deletion first
    (or of the creation first); answers the new row."""

    def replace(old: dict, *, deleted_first: bool = True, **fields) -> dict:
        fake_pluggy.remove_transaction(synced, old["id"])
        new = fake_pluggy.add_transaction(
            synced, **{"date": old["date"], "amount": old["amount"], "description": old["description"], **fields}
        )
        if deleted_first:
            deleted(client, worker, session, connection, synced, old["id"])
            created(client, worker, session, connection, synced)
        else:
            created(client, worker, session, connection, synced)
            deleted(client, worker, session, connection, synced, old["id"])
        return new

    return replace


@pytest.fixture
def existing(client, worker, session, connection, fake_pluggy, synced):
    """Rows the service already holds."""

    def existing(**fields) -> dict:
        row = fake_pluggy.add_transaction(synced, **fields)
        created(client, worker, session, connection, synced)
        return row

    return existing


@pytest.mark.parametrize("deleted_first", [True, False], ids=["deleted-then-created", "created-then-deleted"])
def test_a_pending_row_posted_under_a_new_id_is_linked(session, existing, replace, deleted_first):
    pending = existing(date=day(2), description="UBER *TRIP", amount=-23.4, status="PENDING")

    posted = replace(pending, deleted_first=deleted_first, date=day(1), description="Uber Trip", status="POSTED")

    assert links(session) == {(pending["id"], posted["id"])}
    stored = rows(session)
    assert stored[pending["id"]].deleted_at is not None and stored[posted["id"]].deleted_at is None


def test_a_restated_description_through_the_stand_in_is_linked(
    client, worker, session, connection, fake_pluggy, synced
):
    kept = fake_pluggy.add_transaction(synced, date=day(3), description="Padaria Sol", amount=-8.5)
    latest = fake_pluggy.add_transaction(synced, date=day(1), description="Farmácia São João", amount=-61.2)
    created(client, worker, session, connection, synced)
    with fake_pluggy.world.lock:
        answer = ingest.restate(fake_pluggy.world, fake_pluggy.world.record_for(connection.item_id), 1, False)
    assert answer["deleted"] == [latest["id"]]

    created(client, worker, session, connection, synced)
    deleted(client, worker, session, connection, synced, *answer["deleted"])

    (new_id,) = answer["created"]
    assert links(session) == {(latest["id"], new_id)}
    assert rows(session)[new_id].description == "Farmácia São João *"
    assert rows(session)[kept["id"]].replaced_by_id is None


def test_two_equal_candidates_link_nothing(session, existing, replace, fake_pluggy, synced, caplog):
    old = existing(date=day(1), description="IFOOD", amount=-30.0)
    twin = fake_pluggy.add_transaction(synced, date=day(1), description="IFOOD", amount=-30.0)

    with caplog.at_level(logging.INFO, logger="sync.restatements"):
        new = replace(old, description="iFood")

    assert links(session) == set()
    assert {twin["id"], new["id"]} <= {t.pluggy_id for t in rows(session).values() if t.deleted_at is None}
    assert "more than one equal match" in caplog.text


def test_an_unrelated_deletion_is_not_linked(session, existing, replace):
    old = existing(date=day(1), description="Mercado Central", amount=-120.0)

    replace(old, description="Posto Shell", amount=-120.0)

    assert links(session) == set()


def test_a_replacement_dated_too_far_away_is_not_linked(session, existing, replace):
    old = existing(date=day(6), description="Academia", amount=-99.9)

    replace(old, date=day(1))

    assert links(session) == set()


@pytest.mark.parametrize(
    ("amount", "offset", "description", "linked"),
    [
        (-55.0, 1, "Restaurante Bom Prato", True),  # a tip: 10 % more, same day, same description
        (-55.0, 2, "Restaurante Bom Prato", False),  # another day
        (-90.0, 1, "Restaurante Bom Prato", False),  # too far from the amount
        (50.0, 1, "Restaurante Bom Prato", False),  # the other way round
        (-55.0, 1, "Restaurante", False),  # not nearly the same description
    ],
)
def test_a_restated_amount_is_linked_only_on_the_same_day_with_the_same_description(
    session, existing, replace, amount, offset, description, linked
):
    old = existing(date=day(1), description="RESTAURANTE BOM PRATO", amount=-50.0)

    new = replace(old, date=day(offset), description=description, amount=amount)

    assert links(session) == ({(old["id"], new["id"])} if linked else set())


def test_a_row_ingested_with_the_deleted_one_is_not_its_replacement(session, fake_pluggy, existing, replace, synced):
    """Two bills of one payee paid the same day, one of them then restated: the other one, which
    Pluggy ingested together with it, is not taken for the replacement of the deleted one."""
    ingested = utcnow().isoformat()
    fake_pluggy.add_transaction(synced, date=day(1), description="Boleto Vivo", amount=-101.0, createdAt=ingested)
    old = existing(date=day(1), description="Boleto Vivo", amount=-92.0, createdAt=ingested)

    new = replace(old, description="Boleto Vivo *")

    assert links(session) == {(old["id"], new["id"])}


def test_links_survive_a_reread_and_are_served(
    app,
    client,
    session,
    connection,
    existing,
    replace,
    fake_pluggy,
    worker,
    synced,
):
    old = existing(date=day(1), description="Livraria Cultura", amount=-75.0)
    new = replace(old, description="LIVRARIA CULTURA SA")
    deliver(client, worker, session, pf.webhook_event("item/updated", itemId=connection.item_id))
    assert links(session) == {(old["id"], new["id"])}

    headers = {"Authorization": f"Bearer {issue_api_token(app.config['SECRET_KEY'], connection.user)}"}
    path = f"{API}/connections/{connection.id}/transactions/"
    served = {t["id"]: t for t in client.get(path, headers=headers).get_json()["transactions"]}
    assert (served[new["id"]]["replaces"], served[new["id"]]["replaced_by"]) == (old["id"], None)
    assert old["id"] not in served
    with_deleted = client.get(path, headers=headers, query_string={"include_deleted": "true"}).get_json()
    served = {t["id"]: t for t in with_deleted["transactions"]}
    assert (served[old["id"]]["replaces"], served[old["id"]]["replaced_by"]) == (None, new["id"])


def test_a_tombstoned_row_that_comes_back_loses_its_links(session, existing, replace, fake_pluggy, synced):
    old = existing(date=day(1), description="Cinema", amount=-40.0)
    new = replace(old)
    assert links(session) == {(old["id"], new["id"])}

    fake_pluggy.add_transaction(synced, **old)
    account_id = rows(session)[old["id"]].account_id
    session.execute(sa.update(Transaction).where(Transaction.pluggy_id == old["id"]).values(deleted_at=None))
    restatements.link_restatements(session, account_id)

    assert links(session) == set()


def test_normalising_ignores_case_accents_and_punctuation():
    assert restatements.normalise("  Farmácia  SÃO-João* ") == "farmacia sao joao"


def test_the_rows_to_unlink_are_found_by_the_index_of_linked_rows_not_the_accounts_history(session):
    """A fetch looks for revived rows on every account: through the partial index of the few linked
    rows, never the account's index (on SQLite, without statistics, a walk of its whole history)."""
    statement = restatements.revived_rows(1)
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        for kind in ("seqscan", "bitmapscan"):
            session.execute(sa.text(f"SET LOCAL enable_{kind} = off"))
    sql = str(statement.compile(session.get_bind(), compile_kwargs={"literal_binds": True}))
    prefix = "EXPLAIN QUERY PLAN " if dialect == "sqlite" else "EXPLAIN "
    plan = "\n".join(str(row[-1]) for row in session.connection().exec_driver_sql(prefix + sql))
    session.rollback()
    assert "ix_transactions_replaced_by_id" in plan
    assert "ix_transactions_account_id" not in plan
