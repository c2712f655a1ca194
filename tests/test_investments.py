"""Investments and their movements (sync/investments.py) fetched from the stand-in, in process, on
either engine; and the two API routes that serve them."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
import sqlalchemy as sa

from models import Connection, Investment, InvestmentTransaction
from sync import investments, runs
from sync.item_state import apply_item
from sync.products import ProductContext
from sync.tokens import issue_api_token
from sync.transactions import TransactionService
from sync.users import create_user
from tests.fake_pluggy import OPEN_FINANCE_CONNECTOR

MOVEMENTS = r"/investments/[^/]+/transactions"


@pytest.fixture
def service(session, pluggy_api, settings):
    return TransactionService(session, pluggy_api, settings)


@pytest.fixture
def listed(fake_pluggy, connection) -> list[dict]:
    """The item's investments at Pluggy (the stand-in's usual ones, with their movements)."""
    return fake_pluggy.add_investments(connection.item_id)


def sync(session, service, connection):
    return service.fetch(connection, runs.open_run(session, connection, "manual"))


def stored(session, *, live: bool = True) -> dict[str, Investment]:
    statement = sa.select(Investment)
    if live:
        statement = statement.where(Investment.deleted_at.is_(None))
    return {i.pluggy_id: i for i in session.scalars(statement)}


def movements(session, investment_pluggy_id: str, *, live: bool = True) -> dict[str, InvestmentTransaction]:
    statement = (
        sa.select(InvestmentTransaction)
        .join(Investment, InvestmentTransaction.investment_id == Investment.id)
        .where(Investment.pluggy_id == investment_pluggy_id)
    )
    if live:
        statement = statement.where(InvestmentTransaction.deleted_at.is_(None))
    return {m.pluggy_id: m for m in session.scalars(statement)}


def movement_calls(fake_pluggy) -> list[str]:
    return [path.split("/")[2] for _, path, _, _ in fake_pluggy.calls_to("GET", MOVEMENTS)]


def age_reads(session, by: timedelta, pluggy_id: str | None = None) -> None:
    """As if the last full read of the movements (of one investment, or all) was `by` earlier."""
    for investment in stored(session).values():
        if pluggy_id in (None, investment.pluggy_id):
            investment.movements_read_at -= by
    session.commit()


# Fetching ----------------------------------------------------------------------------------------


def test_investments_and_their_movements_arrive_on_the_first_sync(session, service, connection, fake_pluggy, listed):
    run = sync(session, service, connection)

    assert run.status == "success"
    assert set(stored(session)) == {i["id"] for i in listed}
    assert fake_pluggy.count("GET", "/investments") == 1
    assert sorted(movement_calls(fake_pluggy)) == sorted(i["id"] for i in listed)
    for data in listed:
        investment = stored(session)[data["id"]]
        assert investment.connection_id == connection.id and investment.raw == data
        assert (investment.type, investment.subtype, investment.name) == (data["type"], data["subtype"], data["name"])
        assert investment.balance == Decimal(str(data["balance"]))
        assert investment.quantity == Decimal(str(data["quantity"]))
        assert investment.amount_original == Decimal(str(data["amountOriginal"]))
        assert investment.movements_read_at is not None
        expected = fake_pluggy.investment_transactions(data["id"])
        assert set(movements(session, data["id"])) == {m["id"] for m in expected}
        for movement in expected:
            row = movements(session, data["id"])[movement["id"]]
            assert (row.type, row.movement_type, row.amount) == (
                movement["type"],
                movement["movementType"],
                Decimal(str(movement["amount"])),
            )
            assert row.connection_id == connection.id


def test_a_later_sync_reads_again_only_the_movements_of_what_moved(session, service, connection, fake_pluggy, listed):
    sync(session, service, connection)
    fake_pluggy.calls.clear()

    sync(session, service, connection)  # nothing moved: the list only
    assert fake_pluggy.count("GET", "/investments") == 1
    assert movement_calls(fake_pluggy) == []

    bought = listed[-1]["id"]
    movement = fake_pluggy.add_investment_movement(connection.item_id, bought)
    fake_pluggy.calls.clear()
    sync(session, service, connection)

    assert movement_calls(fake_pluggy) == [bought]
    assert movement["id"] in movements(session, bought)
    session.expire_all()
    assert stored(session)[bought].amount_original == Decimal(str(listed[-1]["amountOriginal"] + movement["amount"]))


def test_every_investments_movements_are_read_again_after_a_week(session, service, connection, fake_pluggy, listed):
    sync(session, service, connection)
    age_reads(session, investments.MOVEMENTS_REREAD_AFTER, listed[0]["id"])
    age_reads(session, investments.MOVEMENTS_REREAD_AFTER - timedelta(hours=1), listed[1]["id"])
    fake_pluggy.calls.clear()

    sync(session, service, connection)

    assert movement_calls(fake_pluggy) == [listed[0]["id"]]


def test_a_restated_movement_leaves_one_live_row(session, service, connection, fake_pluggy, listed):
    sync(session, service, connection)
    investment_id = listed[0]["id"]
    restated = fake_pluggy.restate_investment_movement(connection.item_id, investment_id)
    [old_id], [new] = restated["deleted"], restated["created"]

    # The position did not move: the restatement waits for the weekly full read...
    sync(session, service, connection)
    assert old_id in movements(session, investment_id) and new["id"] not in movements(session, investment_id)

    age_reads(session, investments.MOVEMENTS_REREAD_AFTER)
    sync(session, service, connection)

    live = movements(session, investment_id)
    assert new["id"] in live and old_id not in live
    assert len(live) == len(fake_pluggy.investment_transactions(investment_id))
    assert movements(session, investment_id, live=False)[old_id].deleted_at is not None


def test_an_investment_gone_from_a_complete_list_is_tombstoned_and_live_again_if_it_returns(
    session, service, connection, fake_pluggy, listed
):
    sync(session, service, connection)
    gone = listed[0]
    fake_pluggy.remove_investment(connection.item_id, gone["id"])

    sync(session, service, connection)

    assert gone["id"] not in stored(session)
    assert stored(session, live=False)[gone["id"]].deleted_at is not None
    assert len(stored(session)) == len(listed) - 1

    fake_pluggy.add_investments(connection.item_id)  # new ones (and not the gone one) come back
    sync(session, service, connection)
    assert len(stored(session)) == 2 * len(listed) - 1


def test_an_empty_read_deletes_nothing(session, service, connection, fake_pluggy, listed):
    fake_pluggy.set_connector(connection.item_id, OPEN_FINANCE_CONNECTOR)
    sync(session, service, connection)
    before = {pluggy_id: len(movements(session, pluggy_id)) for pluggy_id in stored(session)}
    fake_pluggy.end_consent(connection.item_id, "expire")  # every data route answers empty from now on
    age_reads(session, investments.MOVEMENTS_REREAD_AFTER)  # and every movement list is due

    sync(session, service, connection)

    assert {pluggy_id: len(movements(session, pluggy_id)) for pluggy_id in stored(session)} == before
    assert fake_pluggy.count("GET", "/investments") == 2


def test_movements_answered_empty_are_kept_and_read_again_next_time(session, service, connection, fake_pluggy, listed):
    sync(session, service, connection)
    investment_id = listed[0]["id"]
    before = set(movements(session, investment_id))
    age_reads(session, investments.MOVEMENTS_REREAD_AFTER, investment_id)
    empty = {"results": [], "page": 1, "total": 0, "totalPages": 0}
    fake_pluggy.answer_next("GET", f"/investments/{investment_id}/transactions", 200, empty)

    sync(session, service, connection)
    assert set(movements(session, investment_id)) == before
    fake_pluggy.calls.clear()

    sync(session, service, connection)  # the empty read was not taken as a complete one
    assert movement_calls(fake_pluggy) == [investment_id]


def test_an_item_without_the_products_is_not_asked(session, service, connection, fake_pluggy, listed):
    fake_pluggy.set_item(connection.item_id, products=["ACCOUNTS", "TRANSACTIONS", "INVESTMENTS"])
    apply_item(connection, fake_pluggy.items[connection.item_id])
    sync(session, service, connection)
    assert len(stored(session)) == len(listed)
    assert movement_calls(fake_pluggy) == []

    fake_pluggy.set_item(connection.item_id, products=["ACCOUNTS", "TRANSACTIONS"])
    apply_item(connection, fake_pluggy.items[connection.item_id])
    fake_pluggy.calls.clear()
    sync(session, service, connection)
    assert fake_pluggy.count("GET", "/investments") == 0


def test_rows_stored_under_another_connection_are_refused(session, service, connection, fake_pluggy, listed, user):
    sync(session, service, connection)
    item = fake_pluggy.add_item()
    other = Connection(user_id=user.id, item_id=item["id"])
    apply_item(other, item)
    session.add(other)
    session.commit()
    # Pluggy (a stand-in restarted with the same ids) lists the first item's investments under it.
    fake_pluggy.answer_next(
        "GET",
        "/investments",
        200,
        {"results": listed[:1], "page": 1, "total": 1, "totalPages": 1},
        when=lambda query: query.get("itemId") == item["id"],
    )

    sync(session, service, other)

    owner = stored(session)[listed[0]["id"]]
    assert owner.connection_id == connection.id
    assert (
        session.scalar(sa.select(sa.func.count()).select_from(Investment).where(Investment.connection_id == other.id))
        == 0
    )


def test_investments_go_with_their_connection(session, service, connection, listed):
    sync(session, service, connection)
    session.delete(connection)
    session.commit()
    assert session.scalar(sa.select(sa.func.count()).select_from(Investment)) == 0
    assert session.scalar(sa.select(sa.func.count()).select_from(InvestmentTransaction)) == 0


# The API -----------------------------------------------------------------------------------------


@pytest.fixture
def auth(app, user):
    return {"Authorization": f"Bearer {issue_api_token(app.config['SECRET_KEY'], user)}"}


@pytest.fixture
def synced(session, service, connection, listed):
    sync(session, service, connection)
    return connection


def test_the_connections_live_investments_a_page_at_a_time(client, auth, session, service, synced, fake_pluggy, listed):
    fake_pluggy.remove_investment(synced.item_id, listed[0]["id"])
    sync(session, service, synced)
    url = f"/api/banking/connections/{synced.id}/investments/"

    answer = client.get(url, headers=auth)

    assert answer.status_code == 200
    body = answer.get_json()
    assert (body["page"], body["page_size"], body["total"]) == (1, 50, len(listed) - 1)
    assert [i["id"] for i in body["investments"]] == [i["id"] for i in listed[1:]]
    first = body["investments"][0]
    assert first["balance"] == listed[1]["balance"] and first["type"] == listed[1]["type"]
    paged = client.get(url, query_string={"page": 2, "page_size": 2}, headers=auth).get_json()
    assert [i["id"] for i in paged["investments"]] == [i["id"] for i in listed[3:5]]


def test_an_investments_movements_newest_first(client, auth, synced, fake_pluggy, listed):
    investment = max(listed, key=lambda i: len(fake_pluggy.investment_transactions(i["id"])))
    expected = fake_pluggy.investment_transactions(investment["id"])
    url = f"/api/banking/connections/{synced.id}/investments/{investment['id']}/transactions/"

    body = client.get(url, query_string={"page_size": 500}, headers=auth).get_json()

    assert body["total"] == len(expected)
    dates = [m["date"] for m in body["transactions"]]
    assert dates == sorted(dates, reverse=True)
    assert {m["id"] for m in body["transactions"]} == {m["id"] for m in expected}
    assert all(m["investment_id"] == investment["id"] for m in body["transactions"])
    one = client.get(url, query_string={"page_size": 1, "page": 2}, headers=auth).get_json()
    assert one["transactions"] == body["transactions"][1:2]


def test_another_users_investments_answer_404(app, client, session, synced, listed, fake_pluggy):
    stranger = create_user(session, "bea@example.com")
    theirs = {"Authorization": f"Bearer {issue_api_token(app.config['SECRET_KEY'], stranger)}"}
    base = f"/api/banking/connections/{synced.id}/investments/"

    assert client.get(base, headers=theirs).status_code == 404
    answer = client.get(f"{base}{listed[0]['id']}/transactions/", headers=theirs)
    assert (answer.status_code, answer.get_json()["error"]["code"]) == (404, "connection_not_found")


def test_an_unknown_or_gone_investment_answers_404(client, auth, session, service, synced, fake_pluggy, listed):
    base = f"/api/banking/connections/{synced.id}/investments"
    for unknown in ("nope", "x" * 65, "%00"):
        answer = client.get(f"{base}/{unknown}/transactions/", headers=auth)
        assert (answer.status_code, answer.get_json()["error"]["code"]) == (404, "investment_not_found"), unknown
    fake_pluggy.remove_investment(synced.item_id, listed[0]["id"])
    sync(session, service, synced)
    answer = client.get(f"{base}/{listed[0]['id']}/transactions/", headers=auth)
    assert answer.status_code == 404


def test_a_reread_that_changed_nothing_writes_nothing(session, pluggy_api, settings, connection, listed):
    context = ProductContext(session, pluggy_api, settings, connection, runs.open_run(session, connection, "manual"))
    first = investments.InvestmentReader(context).read()
    assert (first.investments, first.created, first.updated, first.movements_read) == (len(listed),) * 2 + (
        0,
        len(listed),
    )
    assert first.movements_created > 0

    again = investments.InvestmentReader(context).read()

    assert (again.created, again.updated, again.deleted, again.movements_read) == (0, 0, 0, 0)


def test_a_long_read_calls_the_jobs_checkpoint_after_every_page(session, pluggy_api, settings, connection, listed):
    """The checkpoint keeps the job's lease and honours a stop request (jobqueue/registry.py)."""
    calls = []
    run = runs.open_run(session, connection, "manual")
    context = ProductContext(session, pluggy_api, settings, connection, run, lambda **kw: calls.append(kw))

    investments.InvestmentReader(context).read()

    # A page of investments, then a page of movements for each: every one committed, then a checkpoint.
    assert len(calls) == 1 + len(listed)
    assert all(call == {"progressed": True} for call in calls)
