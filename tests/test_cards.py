"""Credit cards: accounts' creditData and bankData, transactions' bill id and installments, and the
cards' bills, from Pluggy's client through the sync (the stand-in, whose executions close the
card's periods as its clock passes) to the API; and the migration that adds them."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
import responses
import sqlalchemy as sa
from responses import matchers

from models import Account, Bill, Connection, SyncRun, Transaction, User, db
from pluggy_client import PluggyClient, PluggyError
from sandbox import data as pf
from sandbox import products
from sync import rows as rows_module
from sync import runs, values
from sync.item_state import apply_item
from sync.tokens import issue_api_token
from sync.transactions import TransactionService
from sync.users import create_user
from tests.conftest import TEST_SECRETS
from tests.oas import validate_response

API = "/api/banking"
NOW = datetime.now(UTC)


# The client ----------------------------------------------------------------------------------------

BASE_URL = "https://api.pluggy.test"
ACCOUNT_ID = "3f7a9c2e-5b1d-4e8a-a6c4-7d2e1f0b9c33"


def sandbox_bills(count: int) -> list[dict]:
    rng = random.Random(7)
    closing = date(2026, 5, 25)
    return [
        products._bill(rng, ACCOUNT_ID, closing - timedelta(days=30 * n), closing - timedelta(days=30 * n - 9), [], NOW)
        for n in range(count)
    ]


def test_list_bills_reads_every_page_of_the_cards_bills():
    first, second = sandbox_bills(3), sandbox_bills(1)
    pages = [pf.page(first, total_pages=2, total=4), pf.page(second, number=2, total_pages=2, total=4)]
    for page in pages:
        validate_response("GET", "/bills", page)
    client = PluggyClient(BASE_URL, "client-id", "client-secret")
    with responses.RequestsMock() as pluggy:
        pluggy.post(f"{BASE_URL}/auth", json=pf.auth_response(pf.api_key(exp=NOW.timestamp() + 7200)))
        pluggy.get(f"{BASE_URL}/bills", json=pages[0], match=[matchers.query_param_matcher({"accountId": ACCOUNT_ID})])
        pluggy.get(
            f"{BASE_URL}/bills",
            json=pages[1],
            match=[matchers.query_param_matcher({"accountId": ACCOUNT_ID, "page": "2"})],
        )

        assert client.list_bills(ACCOUNT_ID) == first + second


# Reading Pluggy's loose fields -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "value, expected", [(3, 3), (3.0, 3), (0, 0), (2.5, None), (-1, None), (2**31, None), (True, None), ("3", None)]
)
def test_installments_are_whole_numbers_that_fit(value, expected):
    assert values.whole(value) == expected


@pytest.mark.parametrize(
    "value, expected",
    [
        ("2024-05-25T00:00:00.000Z", date(2024, 5, 25)),
        ("2024-05-25T00:00:00-03:00", date(2024, 5, 25)),
        ("2024-05-25", date(2024, 5, 25)),
        ("soon", None),
        (None, None),
    ],
)
def test_a_day_is_read_as_pluggy_wrote_it(value, expected):
    assert values.day(value) == expected


# The sync, against the stand-in ---------------------------------------------------------------------


class Clock:
    """The stand-in's clock, moved by the test. It starts two months back, so that moving it on
    stays in the past of the service's own clock (its watermark never passes the real now)."""

    def __init__(self) -> None:
        self.now = NOW - timedelta(days=60)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock(fake_pluggy) -> Clock:
    clock = Clock()
    fake_pluggy.world.clock = clock
    return clock


@pytest.fixture
def card_connection(session, user, fake_pluggy, clock) -> Connection:
    """A generated sandbox item (a checking account and a card with a year of history and its
    bills), connected as the stand-in's Connect widget does, registered and not synced yet."""
    stand_in = fake_pluggy.app.test_client()
    credentials = {"clientId": TEST_SECRETS["PLUGGY_CLIENT_ID"], "clientSecret": TEST_SECRETS["PLUGGY_CLIENT_SECRET"]}
    key = {"X-API-KEY": stand_in.post("/auth", json=credentials).json["apiKey"]}
    body = {"connectorId": 0, "parameters": {"user": pf.GOOD_USER, "password": pf.GOOD_PASSWORD}}
    created = stand_in.post("/items", json=body, headers=key)
    assert created.status_code == 200, created.json
    item = fake_pluggy.finish_update(created.json["id"])
    assert item["status"] == "UPDATED"
    connection = Connection(user_id=user.id, item_id=item["id"])
    apply_item(connection, item)
    session.add(connection)
    session.commit()
    return connection


def card_of(fake_pluggy, connection) -> dict:
    return next(a for a in fake_pluggy.accounts[connection.item_id] if a["type"] == "CREDIT")


def pluggy_bills(fake_pluggy, card: dict) -> dict[str, dict]:
    with fake_pluggy.world.lock:
        stored = fake_pluggy.world.products[card["itemId"]]["bills"]
        return {bill["id"]: dict(bill) for bill in stored if bill["accountId"] == card["id"]}


def sync(session, pluggy_api, settings, connection, clock) -> SyncRun:
    service = TransactionService(session, pluggy_api, settings, today=lambda: clock.now.date())
    return service.fetch(connection, runs.open_run(session, connection, "manual"))


def update_at_pluggy(fake_pluggy, pluggy_api, session, connection) -> None:
    pluggy_api.trigger_item_update(connection.item_id)
    apply_item(connection, fake_pluggy.finish_update(connection.item_id))
    session.commit()


def stored_bills(session) -> dict[str, Bill]:
    return {bill.pluggy_id: bill for bill in session.scalars(sa.select(Bill))}


def bill_ids_of_rows(session, account_pluggy_id: str) -> dict[str, str | None]:
    rows = session.execute(
        sa.select(Transaction.pluggy_id, Transaction.bill_id)
        .join(Account, Transaction.account_id == Account.id)
        .where(Account.pluggy_id == account_pluggy_id, Transaction.deleted_at.is_(None))
    )
    return dict(rows.all())


def pluggy_bill_ids(fake_pluggy, card: dict) -> dict[str, str | None]:
    return {row["id"]: (row["creditCardMetadata"] or {}).get("billId") for row in fake_pluggy.transactions[card["id"]]}


def test_the_first_sync_brings_the_cards_figures_its_bills_and_the_bill_of_each_row(
    session, pluggy_api, settings, fake_pluggy, card_connection, clock
):
    card = card_of(fake_pluggy, card_connection)

    run = sync(session, pluggy_api, settings, card_connection, clock)

    assert run.status == "success"
    listed = pluggy_bills(fake_pluggy, card)
    bills = stored_bills(session)
    assert set(bills) == set(listed) and len(bills) == products.BILL_MONTHS
    for pluggy_id, bill in bills.items():
        sent = listed[pluggy_id]
        assert bill.due_date == date.fromisoformat(sent["dueDate"][:10])
        assert bill.closing_date == date.fromisoformat(sent["billClosingDate"][:10])
        assert bill.total_amount == Decimal(str(sent["totalAmount"]))
        assert bill.minimum_payment_amount == Decimal(str(sent["minimumPaymentAmount"]))
        assert bill.finance_charges_total == sum(
            (Decimal(str(c["amount"])) for c in sent["financeCharges"]), Decimal(0)
        )
        assert bill.payments_total == sum((Decimal(str(p["amount"])) for p in sent["payments"]), Decimal(0))
        assert (bill.currency_code, bill.raw) == ("BRL", sent)
    # Every card row names its bill as Pluggy does, and the rows of a bill add up to it.
    assert bill_ids_of_rows(session, card["id"]) == pluggy_bill_ids(fake_pluggy, card)
    assert any(bill_ids_of_rows(session, card["id"]).values())
    # The history already carried the bill ids: no period is read again.
    assert all("dateTo" not in query for _, _, query, _ in fake_pluggy.calls_to("GET", "/v2/transactions"))

    stored_card = session.scalars(sa.select(Account).where(Account.pluggy_id == card["id"])).one()
    credit = card["creditData"]
    assert stored_card.credit_limit == Decimal(str(credit["creditLimit"]))
    assert stored_card.available_credit_limit == Decimal(str(credit["availableCreditLimit"]))
    assert stored_card.minimum_payment == Decimal(str(credit["minimumPayment"]))
    assert stored_card.balance_close_date == date.fromisoformat(credit["balanceCloseDate"][:10])
    assert stored_card.balance_due_date == date.fromisoformat(credit["balanceDueDate"][:10])
    assert (stored_card.credit_brand, stored_card.credit_level, stored_card.credit_status) == (
        "MASTERCARD",
        "BLACK",
        "ACTIVE",
    )
    assert stored_card.transfer_number is None and stored_card.closing_balance is None
    bank = next(a for a in fake_pluggy.accounts[card_connection.item_id] if a["type"] == "BANK")
    checking = session.scalars(sa.select(Account).where(Account.pluggy_id == bank["id"])).one()
    assert checking.transfer_number == bank["bankData"]["transferNumber"]
    assert checking.closing_balance == Decimal(str(bank["bankData"]["closingBalance"]))
    assert checking.overdraft_contracted_limit == Decimal("1000")
    assert checking.credit_limit is None and checking.credit_brand is None

    installments = session.execute(
        sa.select(Transaction.pluggy_id, Transaction.installment_number, Transaction.total_installments).where(
            Transaction.total_installments.is_not(None)
        )
    ).all()
    sent_rows = {row["id"]: row for row in fake_pluggy.transactions[card["id"]]}
    assert installments and {row.pluggy_id for row in installments} <= set(sent_rows)
    for pluggy_id, number, total in installments:
        metadata = sent_rows[pluggy_id]["creditCardMetadata"]
        assert (number, total) == (metadata["installmentNumber"], metadata["totalInstallments"])


def test_the_first_sync_reads_no_period_twice_for_rows_pluggy_left_untagged(
    session, pluggy_api, settings, fake_pluggy, card_connection, clock
):
    card = card_of(fake_pluggy, card_connection)
    with fake_pluggy.world.lock:
        tagged = [
            row for row in fake_pluggy.transactions[card["id"]] if (row["creditCardMetadata"] or {}).get("billId")
        ]
        for row in tagged[:3]:
            row["creditCardMetadata"] = {**row["creditCardMetadata"], "billId": None}
    assert tagged and all(row["status"] == "POSTED" for row in tagged[:3])

    assert sync(session, pluggy_api, settings, card_connection, clock).status == "success"

    # Those rows were read by this very sync: as Pluggy has them now, so reading their period again
    # would bring nothing new.
    assert bill_ids_of_rows(session, card["id"]) == pluggy_bill_ids(fake_pluggy, card)
    assert all("dateTo" not in query for _, _, query, _ in fake_pluggy.calls_to("GET", "/v2/transactions"))


def test_an_update_after_a_period_closes_brings_its_bill_and_links_its_rows(
    session, pluggy_api, settings, fake_pluggy, card_connection, clock
):
    card = card_of(fake_pluggy, card_connection)
    sync(session, pluggy_api, settings, card_connection, clock)
    clock.now += timedelta(days=2)  # before the card's next closing day (3 to 20 days ahead)
    update_at_pluggy(fake_pluggy, pluggy_api, session, card_connection)
    sync(session, pluggy_api, settings, card_connection, clock)  # the watermark moves past the first rows
    before = stored_bills(session)
    clock.now += timedelta(days=33)  # past the card's next closing day
    update_at_pluggy(fake_pluggy, pluggy_api, session, card_connection)
    closed = set(pluggy_bills(fake_pluggy, card)) - set(before)
    assert len(closed) == 1
    fake_pluggy.calls.clear()

    run = sync(session, pluggy_api, settings, card_connection, clock)

    assert run.status == "success"
    assert set(stored_bills(session)) == set(before) | closed
    # Every row of the new bill carries its id, those older than the re-read window too.
    (new_bill,) = closed
    rows = {tid for tid, bill_id in pluggy_bill_ids(fake_pluggy, card).items() if bill_id == new_bill}
    assert rows, "the closed period has rows"
    assert {tid for tid, bill_id in bill_ids_of_rows(session, card["id"]).items() if bill_id == new_bill} == rows
    assert bill_ids_of_rows(session, card["id"]) == pluggy_bill_ids(fake_pluggy, card)
    reread = [query for _, _, query, _ in fake_pluggy.calls_to("GET", "/v2/transactions") if "dateTo" in query]
    assert len(reread) == 1 and reread[0]["accountId"] == card["id"]


def test_a_period_whose_reading_failed_is_read_by_the_retry(
    session, pluggy_api, settings, fake_pluggy, card_connection, clock
):
    card = card_of(fake_pluggy, card_connection)
    sync(session, pluggy_api, settings, card_connection, clock)
    clock.now += timedelta(days=2)
    update_at_pluggy(fake_pluggy, pluggy_api, session, card_connection)
    sync(session, pluggy_api, settings, card_connection, clock)
    before = set(stored_bills(session))
    clock.now += timedelta(days=33)
    update_at_pluggy(fake_pluggy, pluggy_api, session, card_connection)
    (new_bill,) = set(pluggy_bills(fake_pluggy, card)) - before
    fake_pluggy.answer_next(
        "GET", "/v2/transactions", 400, pf.error_body(400, "X", "refused"), when=lambda query: "dateTo" in query
    )
    service = TransactionService(session, pluggy_api, settings, today=lambda: clock.now.date())
    run = runs.open_run(session, card_connection, "manual")

    with pytest.raises(PluggyError):
        service.fetch(card_connection, run)
    session.rollback()
    assert new_bill not in stored_bills(session)  # still new to the retry

    assert service.fetch(card_connection, run).status == "success"
    assert new_bill in stored_bills(session)
    assert bill_ids_of_rows(session, card["id"]) == pluggy_bill_ids(fake_pluggy, card)


def test_a_bill_pluggy_changes_is_updated_in_place(session, pluggy_api, settings, fake_pluggy, card_connection, clock):
    card = card_of(fake_pluggy, card_connection)
    sync(session, pluggy_api, settings, card_connection, clock)
    bill_id = next(iter(pluggy_bills(fake_pluggy, card)))
    first = stored_bills(session)[bill_id]
    created_at, updated_at = first.created_at, first.updated_at
    with fake_pluggy.world.lock:
        for bill in fake_pluggy.world.products[card["itemId"]]["bills"]:
            if bill["id"] == bill_id:
                bill["payments"] = [
                    *bill["payments"],
                    {
                        "id": "late",
                        "valueType": "OTHER_PAYMENT",
                        "paymentDate": "2026-01-10T00:00:00.000Z",
                        "paymentMode": "PIX",
                        "amount": 10.25,
                        "currencyCode": "BRL",
                    },
                ]
    unchanged = {pid: bill.updated_at for pid, bill in stored_bills(session).items() if pid != bill_id}

    sync(session, pluggy_api, settings, card_connection, clock)

    session.expire_all()
    bills = stored_bills(session)
    again = bills[bill_id]
    assert again.id == first.id and again.created_at == created_at and again.updated_at > updated_at
    assert again.payments[-1]["id"] == "late"
    assert again.payments_total == sum((Decimal(str(p["amount"])) for p in again.payments), Decimal(0))
    assert {pid: bill.updated_at for pid, bill in bills.items() if pid != bill_id} == unchanged


def test_an_empty_or_shorter_list_deletes_nothing(session, pluggy_api, settings, fake_pluggy, card_connection, clock):
    card = card_of(fake_pluggy, card_connection)
    sync(session, pluggy_api, settings, card_connection, clock)
    before = {pid: bill.last_seen_at for pid, bill in stored_bills(session).items()}
    fake_pluggy.answer_next("GET", "/bills", 200, pf.page([]))

    assert sync(session, pluggy_api, settings, card_connection, clock).status == "success"
    session.expire_all()
    assert {pid: bill.last_seen_at for pid, bill in stored_bills(session).items()} == before

    kept = next(iter(before))
    fake_pluggy.answer_next("GET", "/bills", 200, pf.page([pluggy_bills(fake_pluggy, card)[kept]]))
    sync(session, pluggy_api, settings, card_connection, clock)
    session.expire_all()
    seen = {pid: bill.last_seen_at for pid, bill in stored_bills(session).items()}
    assert set(seen) == set(before)
    assert seen[kept] > before[kept]
    assert all(seen[pid] == before[pid] for pid in before if pid != kept)


def test_an_ended_consent_deletes_nothing(session, pluggy_api, settings, fake_pluggy, card_connection, clock):
    sync(session, pluggy_api, settings, card_connection, clock)
    bills = set(stored_bills(session))
    linked = session.scalar(sa.select(sa.func.count()).where(Transaction.bill_id.is_not(None)))
    fake_pluggy.set_connector(card_connection.item_id, pf.OPEN_FINANCE_CONNECTOR)
    fake_pluggy.end_consent(card_connection.item_id)

    sync(session, pluggy_api, settings, card_connection, clock)

    assert set(stored_bills(session)) == bills
    assert session.scalar(sa.select(sa.func.count()).where(Transaction.bill_id.is_not(None))) == linked


def test_bills_are_not_asked_for_when_the_item_does_not_collect_cards(
    session, pluggy_api, settings, fake_pluggy, card_connection, clock
):
    card_connection.products = ["ACCOUNTS", "TRANSACTIONS"]
    session.commit()

    sync(session, pluggy_api, settings, card_connection, clock)

    assert fake_pluggy.count("GET", "/bills") == 0
    assert stored_bills(session) == {}


def test_a_card_pluggy_no_longer_knows_is_skipped(session, pluggy_api, settings, fake_pluggy, card_connection, clock):
    fake_pluggy.refuse_next("GET", "/bills", 404, "ACCOUNT_NOT_FOUND")

    assert sync(session, pluggy_api, settings, card_connection, clock).status == "success"
    assert stored_bills(session) == {}


def test_a_bill_id_stored_under_another_connection_is_refused(
    session, pluggy_api, settings, fake_pluggy, card_connection, clock
):
    card = card_of(fake_pluggy, card_connection)
    sync(session, pluggy_api, settings, card_connection, clock)
    taken = next(iter(pluggy_bills(fake_pluggy, card)))
    other_item = fake_pluggy.add_item()
    other_card = fake_pluggy.add_account(other_item["id"], type="CREDIT", subtype="CREDIT_CARD")
    fake_pluggy.add_bill(other_card["id"], id=taken, totalAmount=1.0)
    other = Connection(user_id=card_connection.user_id, item_id=other_item["id"])
    apply_item(other, other_item)
    session.add(other)
    session.commit()

    sync(session, pluggy_api, settings, other, clock)

    session.expire_all()
    bill = stored_bills(session)[taken]
    assert bill.connection_id == card_connection.id and bill.total_amount != Decimal("1")


# The API ----------------------------------------------------------------------------------------


@pytest.fixture
def synced(session, pluggy_api, settings, fake_pluggy, card_connection, clock) -> Connection:
    sync(session, pluggy_api, settings, card_connection, clock)
    return card_connection


def auth(app, user) -> dict[str, str]:
    return {"Authorization": f"Bearer {issue_api_token(app.config['SECRET_KEY'], user)}"}


@pytest.fixture
def stranger(app, session, pluggy_api, settings, fake_pluggy, clock):
    """Another user, with a connection to a card and its bill."""
    other = create_user(session, "bea@example.com")
    item = fake_pluggy.add_item()
    card = fake_pluggy.add_account(item["id"], type="CREDIT", subtype="CREDIT_CARD")
    bill = fake_pluggy.add_bill(card["id"])
    fake_pluggy.add_transaction(
        card["id"], date=pf.iso(clock.now - timedelta(days=3)), creditCardMetadata={"billId": bill["id"]}
    )
    connection = Connection(user_id=other.id, item_id=item["id"])
    apply_item(connection, item)
    session.add(connection)
    session.commit()
    sync(session, pluggy_api, settings, connection, clock)
    return {"connection": connection.id, "bill": bill["id"], "headers": auth(app, other)}


def test_accounts_carry_their_credit_and_bank_data(app, client, user, fake_pluggy, synced):
    answer = client.get(f"{API}/connections/{synced.id}/accounts/", headers=auth(app, user))

    assert answer.status_code == 200
    accounts = {a["type"]: a for a in answer.json["accounts"]}
    card = card_of(fake_pluggy, synced)
    credit = card["creditData"]
    assert accounts["CREDIT"]["credit_data"] == {
        "credit_limit": credit["creditLimit"],
        "available_credit_limit": credit["availableCreditLimit"],
        "minimum_payment": credit["minimumPayment"],
        "balance_close_date": credit["balanceCloseDate"][:10],
        "balance_due_date": credit["balanceDueDate"][:10],
        "brand": "MASTERCARD",
        "level": "BLACK",
        "status": "ACTIVE",
    }
    assert accounts["CREDIT"]["bank_data"] is None
    assert accounts["BANK"]["credit_data"] is None
    assert accounts["BANK"]["bank_data"]["overdraft_contracted_limit"] == 1000
    assert set(accounts["BANK"]["bank_data"]) == {
        "transfer_number",
        "closing_balance",
        "automatically_invested_balance",
        "overdraft_contracted_limit",
        "overdraft_used_limit",
    }


def test_bills_newest_due_first_a_page_at_a_time(app, client, user, fake_pluggy, synced):
    url = f"{API}/connections/{synced.id}/bills/"
    first = client.get(url, query_string={"page_size": 5}, headers=auth(app, user))
    second = client.get(url, query_string={"page_size": 5, "page": 2}, headers=auth(app, user))

    assert first.status_code == second.status_code == 200
    assert first.json["total"] == products.BILL_MONTHS
    bills = first.json["bills"] + second.json["bills"]
    assert len(bills) == 10
    due = [bill["due_date"] for bill in bills]
    assert due == sorted(due, reverse=True)
    card = card_of(fake_pluggy, synced)
    assert {bill["account_id"] for bill in bills} == {card["id"]}
    only_card = client.get(url, query_string={"account_id": card["id"]}, headers=auth(app, user))
    assert only_card.json["total"] == products.BILL_MONTHS
    bank = next(a for a in fake_pluggy.accounts[synced.item_id] if a["type"] == "BANK")
    assert client.get(url, query_string={"account_id": bank["id"]}, headers=auth(app, user)).json["total"] == 0
    missing = client.get(url, query_string={"account_id": "nope"}, headers=auth(app, user))
    assert (missing.status_code, missing.json["error"]["code"]) == (404, "account_not_found")


def test_a_bill_with_its_transactions(app, client, user, fake_pluggy, synced):
    card = card_of(fake_pluggy, synced)
    rows_of = {}
    for tid, bill_id in pluggy_bill_ids(fake_pluggy, card).items():
        rows_of.setdefault(bill_id, set()).add(tid)
    bill_id = max((b for b in rows_of if b), key=lambda b: len(rows_of[b]))

    answer = client.get(f"{API}/connections/{synced.id}/bills/{bill_id}/", headers=auth(app, user))

    assert answer.status_code == 200
    body = answer.json
    sent = pluggy_bills(fake_pluggy, card)[bill_id]
    assert (body["id"], body["account_id"], body["total_amount"]) == (bill_id, card["id"], sent["totalAmount"])
    assert body["due_date"] == sent["dueDate"][:10]
    assert {t["id"] for t in body["transactions"]} == rows_of[bill_id]
    assert all(t["bill_id"] == bill_id for t in body["transactions"])
    dates = [t["date"] for t in body["transactions"]]
    assert dates == sorted(dates, reverse=True)

    filtered = client.get(
        f"{API}/connections/{synced.id}/transactions/", query_string={"bill_id": bill_id}, headers=auth(app, user)
    )
    assert filtered.json["total"] == len(rows_of[bill_id])
    assert {t["id"] for t in filtered.json["transactions"]} == rows_of[bill_id]


def test_transactions_carry_their_bill_and_installments(app, client, user, fake_pluggy, synced):
    answer = client.get(
        f"{API}/connections/{synced.id}/transactions/", query_string={"page_size": 500}, headers=auth(app, user)
    )

    rows = answer.json["transactions"]
    assert {"bill_id", "installment_number", "total_installments"} <= set(rows[0])
    card_rows = [row for row in rows if row["account_id"] == card_of(fake_pluggy, synced)["id"]]
    with_installments = [row for row in card_rows if row["total_installments"]]
    assert with_installments
    for row in with_installments:
        metadata = row["credit_card_metadata"]
        assert (row["installment_number"], row["total_installments"]) == (
            metadata["installmentNumber"],
            metadata["totalInstallments"],
        )
    assert all(row["bill_id"] == (row["credit_card_metadata"] or {}).get("billId") for row in rows)


def test_another_users_bills_are_not_found(app, client, user, synced, stranger):
    mine = auth(app, user)
    theirs_bill = client.get(f"{API}/connections/{synced.id}/bills/{stranger['bill']}/", headers=mine)
    assert (theirs_bill.status_code, theirs_bill.json["error"]["code"]) == (404, "bill_not_found")
    for path in (f"bills/{stranger['bill']}/", "bills/"):
        theirs = client.get(f"{API}/connections/{stranger['connection']}/{path}", headers=mine)
        assert (theirs.status_code, theirs.json["error"]["code"]) == (404, "connection_not_found")
    # A bill id of another user's connection matches nothing in one's own.
    filtered = client.get(
        f"{API}/connections/{synced.id}/transactions/", query_string={"bill_id": stranger["bill"]}, headers=mine
    )
    assert (filtered.status_code, filtered.json["total"]) == (200, 0)
    # Its owner sees it.
    own = client.get(
        f"{API}/connections/{stranger['connection']}/bills/{stranger['bill']}/", headers=stranger["headers"]
    )
    assert own.status_code == 200 and len(own.json["transactions"]) == 1


@pytest.mark.parametrize("bill_id", ["nope", "x" * 65, "a\x01b"])
def test_an_unknown_or_impossible_bill_id_is_not_found(app, client, user, synced, bill_id):
    answer = client.get(f"{API}/connections/{synced.id}/bills/{bill_id}/", headers=auth(app, user))
    assert (answer.status_code, answer.json["error"]["code"]) == (404, "bill_not_found")


def test_bills_go_with_their_connection(app, client, user, session, synced):
    assert stored_bills(session)
    session.delete(session.get(Connection, synced.id))
    session.commit()
    assert stored_bills(session) == {}


# The migration --------------------------------------------------------------------------------------


def test_the_migration_fills_stored_rows_bill_and_installments(app, runner, session):
    """Rows stored before it get their bill and installments from their payload (a re-read would not
    rewrite them: their payload has not changed)."""
    assert runner.invoke(args=["db", "downgrade", "0008"]).exit_code == 0
    try:
        # Only columns the schema had before: the models' tables, with the values given.
        user = session.execute(User.__table__.insert().values(email="m@example.com").returning(User.id)).scalar_one()
        # The connection as that schema had it (the model's later columns carry defaults of their own).
        connections = sa.table(
            "connections",
            sa.column("id"),
            sa.column("user_id"),
            sa.column("item_id"),
            sa.column("created_at"),
            sa.column("updated_at"),
        )
        connection = session.execute(
            connections.insert()
            .values(user_id=user, item_id="item-m", created_at=NOW, updated_at=NOW)
            .returning(connections.c.id)
        ).scalar_one()
        account = session.execute(
            Account.__table__.insert()
            .values(connection_id=connection, pluggy_id="card-m", type="CREDIT", name="Card", raw={})
            .returning(Account.id)
        ).scalar_one()
        metadata = {
            "t1": {"billId": "bill-1", "installmentNumber": 2, "totalInstallments": 3.0},
            "t2": {"billId": "b" * 65, "installmentNumber": 1.5, "totalInstallments": "3"},
            "t3": None,
            "t4": {"installmentNumber": 2**31, "totalInstallments": -1},
        }
        for pluggy_id, card in metadata.items():
            session.execute(
                Transaction.__table__.insert().values(
                    account_id=account,
                    pluggy_id=pluggy_id,
                    date=NOW,
                    description="x",
                    amount=Decimal(1),
                    raw={"id": pluggy_id, "creditCardMetadata": card},
                )
            )
        session.commit()
    finally:
        session.remove()
        result = runner.invoke(args=["db", "upgrade"])
        assert result.exit_code == 0, result.output

    rows = db.session.execute(
        sa.select(
            Transaction.pluggy_id, Transaction.bill_id, Transaction.installment_number, Transaction.total_installments
        )
    ).all()
    assert sorted(rows) == [
        ("t1", "bill-1", 2, 3),
        ("t2", None, None, None),
        ("t3", None, None, None),
        ("t4", None, None, None),
    ]
    # What the sync makes of the same payloads.
    for pluggy_id, stored, number, total in rows:
        assert rows_module.card_columns(values.mapping(metadata[pluggy_id])) == {
            "bill_id": stored,
            "installment_number": number,
            "total_installments": total,
        }
