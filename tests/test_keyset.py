"""Keyset pagination: every list's `cursor`/`next_cursor` (api/paging.py, sync/listing.py `Order`)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from itertools import count

import pytest
from itsdangerous import URLSafeSerializer

from models import Account, Bill, Connection, Investment, InvestmentTransaction, Loan, SyncRun, Transaction
from models.sync_run import RunStatus
from sync.tokens import issue_api_token
from sync.users import create_user

API = "/api/banking"
DAY = datetime(2026, 11, 1, 12, tzinfo=UTC)
serial = count(1)


def pluggy_id(prefix: str) -> str:
    return f"{prefix}-{next(serial)}"


def auth_for(app, user) -> dict:
    return {"Authorization": f"Bearer {issue_api_token(app.config['SECRET_KEY'], user)}"}


def add_transactions(session, account: Account, days: list[int]) -> list[Transaction]:
    rows = [
        Transaction(
            account_id=account.id,
            pluggy_id=pluggy_id("tx"),
            date=DAY + timedelta(days=d),
            description="row",
            amount=Decimal("1.00"),
            status="POSTED" if i % 3 else "PENDING",
            raw={},
        )
        for i, d in enumerate(days)
    ]
    session.add_all(rows)
    session.commit()
    return rows


@pytest.fixture
def headers(app, user):
    return auth_for(app, user)


@pytest.fixture
def stored(session, user, connection):
    """A connection with a few rows in every list, many of them sharing their sort date (ties broken
    by id), and some loans without a contract date."""
    checking = Account(connection_id=connection.id, pluggy_id=pluggy_id("acc"), type="BANK", name="Checking", raw={})
    session.add_all(
        Account(connection_id=connection.id, pluggy_id=pluggy_id("acc"), type="BANK", name="Savings", raw={})
        for _ in range(3)
    )
    card = Account(connection_id=connection.id, pluggy_id=pluggy_id("acc"), type="CREDIT", name="Card", raw={})
    session.add_all([checking, card])
    session.add_all(Connection(user_id=user.id, item_id=pluggy_id("item")) for _ in range(4))
    session.commit()
    add_transactions(session, checking, [0, 0, 0, 1, 1, 2, 5, 5, 5, 5, 7])
    add_transactions(session, card, [0, 1, 1, 5, 9, 9, 9])
    session.add_all(
        Bill(
            connection_id=connection.id,
            account_id=card.id,
            pluggy_id=pluggy_id("bill"),
            due_date=date(2026, 1 + i % 3, 10),
            total_amount=Decimal("10.00"),
            finance_charges=[],
            finance_charges_total=Decimal(0),
            payments=[],
            last_seen_at=DAY,
            payments_total=Decimal(0),
            raw={},
        )
        for i in range(7)
    )
    investments = [
        Investment(connection_id=connection.id, pluggy_id=pluggy_id("inv"), type="EQUITY", name="Fund", raw={})
        for _ in range(5)
    ]
    session.add_all(investments)
    session.flush()
    session.add_all(
        InvestmentTransaction(
            investment_id=investments[0].id,
            connection_id=connection.id,
            pluggy_id=pluggy_id("mov"),
            date=DAY + timedelta(days=i % 3),
            raw={},
        )
        for i in range(8)
    )
    session.add_all(
        Loan(
            connection_id=connection.id,
            pluggy_id=pluggy_id("loan"),
            contract_date=None if i % 3 == 0 else DAY - timedelta(days=i % 2),
            raw={},
        )
        for i in range(8)
    )
    session.add_all(
        SyncRun(
            connection_id=connection.id,
            trigger="manual",
            status=RunStatus.SUCCESS,
            started_at=DAY + timedelta(hours=i % 2),
        )
        for i in range(7)
    )
    session.commit()
    return {"connection": connection, "checking": checking, "card": card, "investment": investments[0]}


LISTS = {
    # name: (path below the connection, or "" for the user's connections; the rows' key; its page size parameter)
    "connections": ("", "connections", "page_size"),
    "accounts": ("accounts/", "accounts", "page_size"),
    "transactions": ("transactions/", "transactions", "page_size"),
    "bills": ("bills/", "bills", "page_size"),
    "investments": ("investments/", "investments", "page_size"),
    "investment_transactions": ("investments/{investment}/transactions/", "transactions", "page_size"),
    "loans": ("loans/", "loans", "page_size"),
    "sync_runs": ("sync_runs/", "sync_runs", "limit"),
}


def list_url(stored, name: str) -> str:
    path = LISTS[name][0].format(investment=stored["investment"].pluggy_id)
    return f"{API}/connections/" if name == "connections" else f"{API}/connections/{stored['connection'].id}/{path}"


def ids(body: dict, name: str) -> list:
    return [row["id"] for row in body[LISTS[name][1]]]


def whole(client, headers, stored, name: str) -> list:
    """The whole list in its order, in one answer."""
    size = LISTS[name][2]
    body = client.get(list_url(stored, name), query_string={size: 500}, headers=headers).get_json()
    assert body["next_cursor"] is None
    return ids(body, name)


def follow(client, headers, url: str, name: str, params: dict, between=None) -> list:
    """Every row met following next_cursor from the first page (`cursor=` empty), in order."""
    met, cursor = [], ""
    while cursor is not None:
        answer = client.get(url, query_string={**params, "cursor": cursor}, headers=headers)
        assert answer.status_code == 200, answer.get_json()
        body = answer.get_json()
        assert "total" not in body and "page" not in body
        met += ids(body, name)
        cursor = body["next_cursor"]
        if between is not None and cursor is not None:
            between()
    return met


@pytest.mark.parametrize("name", LISTS)
def test_following_next_cursor_yields_every_row_once_in_the_lists_order(client, headers, stored, name):
    everything = whole(client, headers, stored, name)
    assert len(everything) >= 5

    met = follow(client, headers, list_url(stored, name), name, {LISTS[name][2]: 2})

    assert met == everything


@pytest.mark.parametrize("name", ["transactions", "bills", "investments", "investment_transactions", "loans"])
def test_a_numbered_page_answers_as_before_and_gives_a_cursor_to_go_on(client, headers, stored, name):
    url = list_url(stored, name)
    everything = whole(client, headers, stored, name)

    first = client.get(url, query_string={"page_size": 2}, headers=headers).get_json()
    second = client.get(url, query_string={"page_size": 2, "page": 2}, headers=headers).get_json()
    last = client.get(url, query_string={"page_size": 2, "page": 100}, headers=headers).get_json()
    on = client.get(url, query_string={"page_size": 3, "cursor": first["next_cursor"]}, headers=headers).get_json()

    assert (first["page"], first["page_size"], first["total"]) == (1, 2, len(everything))
    assert ids(first, name) == everything[:2] and ids(second, name) == everything[2:4]
    assert (ids(last, name), last["next_cursor"]) == ([], None)
    assert ids(on, name) == everything[2:5] and on["page_size"] == 3


@pytest.mark.parametrize("name", ["connections", "accounts"])
def test_the_lists_never_paged_are_whole_unless_asked(client, headers, stored, name):
    body = client.get(list_url(stored, name), headers=headers).get_json()

    assert body["next_cursor"] is None
    assert ids(body, name) == whole(client, headers, stored, name)


def test_rows_written_between_pages_neither_skip_nor_repeat_the_rows_there_were(client, headers, session, stored):
    url = list_url(stored, "transactions")
    before = whole(client, headers, stored, "transactions")
    checking = stored["checking"]
    on_top: list[str] = []

    def the_worker_writes():
        # Newer rows at the top (what shifts an OFFSET page down), rows among those already read, and
        # an update of a row already read.
        on_top.extend(row.pluggy_id for row in add_transactions(session, checking, [30, 31]))
        add_transactions(session, checking, [0, 5])
        row = session.query(Transaction).filter_by(pluggy_id=before[0]).one()
        row.description = "restated"
        session.commit()

    met = follow(client, headers, url, "transactions", {"page_size": 3}, between=the_worker_writes)

    assert len(met) == len(set(met))
    assert set(before) <= set(met)
    assert on_top and not set(on_top) & set(met)  # written above what was read: for the next reading


def test_an_offset_reader_would_have_repeated_rows(client, headers, session, stored):
    """The same writes, read by page number: the rows pushed down by newer ones come again."""
    url = list_url(stored, "transactions")
    first = client.get(url, query_string={"page_size": 3}, headers=headers).get_json()
    add_transactions(session, stored["checking"], [30])
    second = client.get(url, query_string={"page_size": 3, "page": 2}, headers=headers).get_json()
    by_cursor = client.get(url, query_string={"page_size": 3, "cursor": first["next_cursor"]}, headers=headers)

    assert set(ids(first, "transactions")) & set(ids(second, "transactions"))
    assert not set(ids(first, "transactions")) & set(ids(by_cursor.get_json(), "transactions"))


def next_cursor(client, headers, url: str, **params) -> str:
    return client.get(url, query_string={"page_size": 2, **params}, headers=headers).get_json()["next_cursor"]


def error(answer) -> tuple[int, str]:
    return answer.status_code, answer.get_json()["error"]["code"]


def test_a_malformed_tampered_or_foreign_cursor_is_400(app, client, headers, stored):
    url = list_url(stored, "transactions")
    cursor = next_cursor(client, headers, url)
    tampered = cursor[:-2] + ("AA" if not cursor.endswith("AA") else "BB")
    payload, _, signature = cursor.partition(".")
    other_payload = URLSafeSerializer("x").dumps({"k": ["2030-01-01T00:00:00+00:00", 1], "s": {}}).partition(".")[0]
    bills_cursor = next_cursor(client, headers, list_url(stored, "bills"))
    forged_types = URLSafeSerializer(app.config["SECRET_KEY"], salt="pluggy-sync.cursor.transactions").dumps(
        {"k": ["not a date", "1"], "s": {}}
    )

    for bad in ["nonsense", tampered, f"{other_payload}.{signature}", bills_cursor, forged_types, "x" * 1025]:
        answer = client.get(url, query_string={"cursor": bad}, headers=headers)
        assert answer.status_code == 400, bad
        assert answer.get_json()["error"]["code"] in {"invalid_cursor", "invalid_request"}
    assert error(client.get(url, query_string={"cursor": tampered}, headers=headers)) == (400, "invalid_cursor")
    assert error(client.get(url, query_string={"cursor": bills_cursor}, headers=headers)) == (400, "invalid_cursor")


def test_a_cursor_of_the_right_list_with_a_wrong_key_is_refused(app, client, headers, stored):
    url = list_url(stored, "transactions")
    scope = {
        "of": [stored["connection"].id],
        "account_id": None,
        "date_from": None,
        "date_to": None,
        "status": None,
        "include_deleted": False,
        "bill_id": None,
    }
    signer = URLSafeSerializer(app.config["SECRET_KEY"], salt="pluggy-sync.cursor.transactions")

    good = signer.dumps({"k": [(DAY + timedelta(days=5)).isoformat(), 10**9], "s": scope})
    for key in (["2026-11-01T12:00:00", 1], ["2026-11-01", 1], [None, 1], ["2026-11-01T12:00:00+00:00", True], [1]):
        answer = client.get(url, query_string={"cursor": signer.dumps({"k": key, "s": scope})}, headers=headers)
        assert error(answer) == (400, "invalid_cursor"), key
    assert client.get(url, query_string={"cursor": good}, headers=headers).status_code == 200


def test_cursor_and_page_together_are_400(client, headers, stored):
    url = list_url(stored, "loans")

    answer = client.get(url, query_string={"page": 1, "cursor": ""}, headers=headers)

    assert error(answer) == (400, "invalid_request")


def test_a_cursor_is_bound_to_its_filters(client, headers, stored):
    url = list_url(stored, "transactions")
    cursor = next_cursor(client, headers, url, status="POSTED")

    same = client.get(url, query_string={"cursor": cursor, "status": "POSTED"}, headers=headers)
    other = client.get(url, query_string={"cursor": cursor, "status": "PENDING"}, headers=headers)
    none = client.get(url, query_string={"cursor": cursor}, headers=headers)
    resized = client.get(url, query_string={"cursor": cursor, "status": "POSTED", "page_size": 5}, headers=headers)

    assert same.status_code == 200 and resized.status_code == 200
    assert all(row["status"] == "POSTED" for row in same.get_json()["transactions"])
    assert error(other) == error(none) == (400, "invalid_cursor")


def test_a_cursor_belongs_to_its_connection_and_user(app, client, headers, session, stored, fake_pluggy):
    mine = stored["connection"]
    cursor = next_cursor(client, headers, list_url(stored, "loans"))
    other_connection = session.query(Connection).filter(Connection.id != mine.id).first()
    stranger = create_user(session, "bea@example.com")
    theirs = auth_for(app, stranger)
    their_cursor = next_cursor(client, theirs, f"{API}/connections/")  # None: they have no connections
    connections_cursor = next_cursor(client, headers, f"{API}/connections/")

    on_my_other = client.get(
        f"{API}/connections/{other_connection.id}/loans/", query_string={"cursor": cursor}, headers=headers
    )
    by_stranger = client.get(list_url(stored, "loans"), query_string={"cursor": cursor}, headers=theirs)
    my_connections_cursor_for_them = client.get(
        f"{API}/connections/", query_string={"cursor": connections_cursor}, headers=theirs
    )

    assert their_cursor is None
    assert error(on_my_other) == (400, "invalid_cursor")
    assert error(by_stranger) == (404, "connection_not_found")
    assert error(my_connections_cursor_for_them) == (400, "invalid_cursor")
