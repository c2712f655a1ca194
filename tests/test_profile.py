"""Identity, loans and Open Finance consents: the client's calls, the readers, the consent rule
(an ended consent makes Pluggy answer empty data, and nothing stored is taken for deleted), and
the API (identity, loans, the connection's products, consent and status_detail)."""

from __future__ import annotations

import logging
import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import responses
import sqlalchemy as sa
from prometheus_client import REGISTRY
from responses import matchers
from werkzeug.test import Client

from models import Account, Connection, Identity, Investment, Loan, SyncRun, Transaction
from models.base import utcnow
from pluggy_client import PluggyClient, PluggyNotFound
from sandbox import data as pf
from sandbox import products as sandbox_products
from sync import runs, scheduling
from sync.connections import BankConnectionService
from sync.item_state import SyncStatus, apply_item, sync_status
from sync.jobs import sync_worker
from sync.monitoring import oldest_connection_staleness
from sync.tokens import issue_api_token
from sync.users import create_user
from tests.conftest import TEST_SECRETS, drain
from tests.fake_pluggy import OPEN_FINANCE_CONNECTOR, now_iso

API = "/api/banking"
CPF = {"cpf": pf.OWNER_CPF}
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)

# --- the client (responses) ----------------------------------------------------------------------

BASE_URL = "https://api.pluggy.test"
ITEM_ID = "0b8e43f4-1c3a-4f6e-9b0c-4f2d9f6c8a11"


@pytest.fixture
def mocked():
    with responses.RequestsMock(assert_all_requests_are_fired=True) as mock:
        mock.post(f"{BASE_URL}/auth", json=pf.auth_response(pf.api_key(exp=4102444800)))
        yield mock


@pytest.fixture
def api_client():
    client = PluggyClient(BASE_URL, "5f9f2a74-7f0e-4b6c-9a43-1b1c1f0d9f10", "secret")
    yield client
    client.close()


def test_client_reads_the_identity_of_an_item(api_client, mocked):
    identity = sandbox_products.new_identity(random.Random(1), ITEM_ID, NOW)
    mocked.get(f"{BASE_URL}/identity", json=identity, match=[matchers.query_param_matcher({"itemId": ITEM_ID})])

    assert api_client.get_identity(ITEM_ID) == identity


def test_client_raises_not_found_for_an_item_without_identity(api_client, mocked):
    body = pf.error_body(404, "IDENTITY_NOT_FOUND", "Identity not found")
    mocked.get(f"{BASE_URL}/identity", json=body, status=404)

    with pytest.raises(PluggyNotFound):
        api_client.get_identity(ITEM_ID)


def test_client_pages_through_loans_lazily(api_client, mocked):
    first, second = (
        sandbox_products.new_loans(random.Random(3), ITEM_ID, NOW)[:1],
        [sandbox_products.new_loans(random.Random(4), ITEM_ID, NOW)[0]],
    )
    mocked.get(
        f"{BASE_URL}/loans",
        json=pf.page(first, total_pages=2),
        match=[matchers.query_param_matcher({"itemId": ITEM_ID, "page": "1", "pageSize": "500"})],
    )
    mocked.get(
        f"{BASE_URL}/loans",
        json=pf.page(second, number=2, total_pages=2),
        match=[matchers.query_param_matcher({"itemId": ITEM_ID, "page": "2", "pageSize": "500"})],
    )

    pages = api_client.iter_loans(ITEM_ID)
    assert len(mocked.calls) == 0  # nothing asked before the first page is wanted
    assert list(pages) == [first, second]


def test_client_lists_consents(api_client, mocked):
    consent = pf.consent(random.Random(5), ITEM_ID, ["ACCOUNTS", "LOANS"], NOW)
    mocked.get(
        f"{BASE_URL}/consents", json=pf.page([consent]), match=[matchers.query_param_matcher({"itemId": ITEM_ID})]
    )

    assert api_client.list_consents(ITEM_ID) == [consent]


# --- an Open Finance item, through the stand-in ----------------------------------------------------


@pytest.fixture
def stand_in(fake_pluggy):
    """The stand-in's own routes (items, control routes), with an API key."""
    client = Client(fake_pluggy.wsgi)
    key = client.post(
        "/auth",
        json={"clientId": TEST_SECRETS["PLUGGY_CLIENT_ID"], "clientSecret": TEST_SECRETS["PLUGGY_CLIENT_SECRET"]},
    ).json["apiKey"]
    return client, {"X-API-KEY": key}


@pytest.fixture
def worker(app, pluggy_api):
    app.config["SYNC_WATCH_INTERVAL_S"] = 0
    return sync_worker(app, pluggy_api)


def open_finance_item(stand_in, fake_pluggy, user) -> dict:
    """Connector 600 with a CPF, its OAuth step authorized at the institution: UPDATED, under a consent."""
    client, key = stand_in
    body = {"connectorId": OPEN_FINANCE_CONNECTOR, "parameters": CPF, "clientUserId": str(user.id)}
    item = client.post("/items", json=body, headers=key).json
    waiting = fake_pluggy.finish_update(item["id"])
    assert (waiting["status"], waiting["parameter"]["name"]) == ("WAITING_USER_INPUT", "oauthCode")
    assert client.post(f"/sandbox/items/{item['id']}/authorize", json={}).status_code == 200
    item = fake_pluggy.finish_update(item["id"])
    assert item["status"] == "UPDATED" and item["consentExpiresAt"]
    return dict(item)


@pytest.fixture
def of_connection(session, user, stand_in, fake_pluggy, pluggy_api, settings, worker) -> Connection:
    """An Open Finance connection registered and synced once: accounts, transactions, identity, loans."""
    item = open_finance_item(stand_in, fake_pluggy, user)
    connection, created = BankConnectionService(session, pluggy_api, settings).register(user, item["id"])
    assert created
    drain(worker, session)
    return connection


def stored(session, connection) -> dict:
    """Everything stored of the connection, live or tombstoned (a tombstone counts as a change)."""
    session.expire_all()
    transactions = session.execute(
        sa.select(Transaction.pluggy_id, Transaction.deleted_at)
        .join(Account)
        .where(Account.connection_id == connection.id)
        .order_by(Transaction.pluggy_id)
    ).all()
    return {
        "accounts": sorted(session.scalars(sa.select(Account.pluggy_id).where(Account.connection_id == connection.id))),
        "transactions": [tuple(row) for row in transactions],
        "identity": session.scalars(sa.select(Identity.document).where(Identity.connection_id == connection.id)).all(),
        "loans": session.execute(
            sa.select(Loan.pluggy_id, Loan.deleted_at).where(Loan.connection_id == connection.id).order_by(Loan.id)
        ).all(),
    }


def last_run(session, connection) -> SyncRun:
    return session.scalars(
        sa.select(SyncRun).where(SyncRun.connection_id == connection.id).order_by(SyncRun.id.desc()).limit(1)
    ).one()


def withheld_count(reason: str, found: str) -> float:
    return REGISTRY.get_sample_value("pluggy_sync_consent_withheld_total", {"reason": reason, "found": found}) or 0.0


def fetch_again(session, connection, worker, fake_pluggy) -> SyncRun:
    """A new update of the item at Pluggy, announced: the worker fetches it."""
    fake_pluggy.set_item(connection.item_id, status="UPDATED", lastUpdatedAt=now_iso())
    scheduling.queue_fetch(session, connection, "webhook")
    session.commit()
    drain(worker, session)
    return last_run(session, connection)


def test_a_first_sync_of_an_open_finance_item_brings_identity_loans_and_its_consent(
    session, of_connection, fake_pluggy
):
    run = last_run(session, of_connection)
    assert run.status == "success"
    identity = session.scalars(sa.select(Identity)).one()
    sandbox_identity = fake_pluggy.world.products[of_connection.item_id]["identity"]
    assert (identity.full_name, identity.document, identity.document_type) == (pf.OWNER, pf.OWNER_CPF, "CPF")
    assert identity.birth_date.isoformat() == sandbox_identity["birthDate"][:10]
    assert identity.emails == sandbox_identity["emails"] and identity.addresses == sandbox_identity["addresses"]
    assert identity.raw == sandbox_identity

    loans = {loan.pluggy_id: loan for loan in session.scalars(sa.select(Loan))}
    expected = {loan["id"]: loan for loan in fake_pluggy.world.products[of_connection.item_id]["loans"]}
    assert set(loans) == set(expected) and loans
    for pluggy_id, loan in loans.items():
        source = expected[pluggy_id]
        assert loan.contract_amount == Decimal(str(source["contractAmount"]))
        assert loan.outstanding_balance == Decimal(str(source["payments"]["contractOutstandingBalance"]))
        assert loan.total_installments == source["installments"]["totalNumberOfInstallments"]
        assert loan.paid_installments == source["installments"]["paidInstallments"]
        assert (loan.product_name, loan.type, loan.currency_code) == (
            source["productName"],
            source["type"],
            source["currencyCode"],
        )
        assert loan.deleted_at is None and loan.raw == source

    session.refresh(of_connection)
    [consent] = fake_pluggy.world.consents_of(of_connection.item_id)
    assert of_connection.open_finance and of_connection.consent_id == consent["id"]
    assert of_connection.consent_expires_at.isoformat().startswith(consent["expiresAt"][:19])
    assert of_connection.consent_revoked_at is None
    assert "CREDIT_OPERATIONS_ALL" in of_connection.consent_permissions
    assert sync_status(of_connection) == SyncStatus.UPDATED


@pytest.mark.parametrize("how, reason", [("expire", "expired"), ("revoke", "revoked")])
def test_an_ended_consent_keeps_every_stored_row_and_says_consent_expired(
    session, of_connection, stand_in, fake_pluggy, worker, how, reason
):
    client, _ = stand_in
    before = stored(session, of_connection)
    assert before["accounts"] and before["transactions"] and before["identity"] and before["loans"]
    counted = withheld_count(reason, "before_fetch")

    assert client.post(f"/sandbox/items/{of_connection.item_id}/consent/{how}").status_code == 200
    run = fetch_again(session, of_connection, worker, fake_pluggy)

    assert stored(session, of_connection) == before
    assert (run.status, run.error_code) == ("credentials_required", "consent_expired")
    assert (run.created, run.updated, run.deleted) == (0, 0, 0)
    session.refresh(of_connection)
    assert sync_status(of_connection) == SyncStatus.CONSENT_EXPIRED
    assert withheld_count(reason, "before_fetch") == counted + 1


def test_a_consent_ending_during_a_fetch_tombstones_nothing(
    session, of_connection, fake_pluggy, pluggy_api, worker, monkeypatch
):
    before = stored(session, of_connection)
    counted = withheld_count("revoked", "during_fetch")
    list_accounts = pluggy_api.list_accounts

    def accounts_then_revoked(item_id, *args, **kwargs):
        accounts = list_accounts(item_id, *args, **kwargs)
        fake_pluggy.end_consent(item_id, "revoke")  # every read after this one answers empty
        return accounts

    monkeypatch.setattr(pluggy_api, "list_accounts", accounts_then_revoked)
    run = fetch_again(session, of_connection, worker, fake_pluggy)

    assert stored(session, of_connection) == before
    assert (run.status, run.error_code, run.deleted) == ("credentials_required", "consent_expired", 0)
    assert withheld_count("revoked", "during_fetch") >= counted + 1
    session.refresh(of_connection)
    assert sync_status(of_connection) == SyncStatus.CONSENT_EXPIRED


def test_an_investment_left_out_as_the_consent_ends_is_kept(
    session, of_connection, fake_pluggy, pluggy_api, worker, monkeypatch
):
    live = list(session.scalars(sa.select(Investment.pluggy_id).where(Investment.deleted_at.is_(None))))
    assert len(live) > 1
    iter_investments = pluggy_api.iter_investments

    def all_but_one_then_revoked(item_id, *args, **kwargs):
        for page in iter_investments(item_id, *args, **kwargs):
            yield [each for each in page if each["id"] != live[0]]
        fake_pluggy.end_consent(item_id, "revoke")

    monkeypatch.setattr(pluggy_api, "iter_investments", all_but_one_then_revoked)
    fetch_again(session, of_connection, worker, fake_pluggy)

    session.expire_all()
    assert set(session.scalars(sa.select(Investment.pluggy_id).where(Investment.deleted_at.is_(None)))) == set(live)


def test_a_renewed_consent_syncs_again(session, of_connection, stand_in, fake_pluggy, pluggy_api, settings, worker):
    client, key = stand_in
    client.post(f"/sandbox/items/{of_connection.item_id}/consent/revoke")
    fetch_again(session, of_connection, worker, fake_pluggy)
    # The user renews it through the widget: a new OAuth authorization, a new consent.
    client.patch(f"/items/{of_connection.item_id}", json={}, headers=key)
    assert fake_pluggy.finish_update(of_connection.item_id)["status"] == "WAITING_USER_INPUT"
    client.post(f"/sandbox/items/{of_connection.item_id}/authorize", json={})
    assert fake_pluggy.finish_update(of_connection.item_id)["status"] == "UPDATED"

    BankConnectionService(session, pluggy_api, settings).check_status(of_connection)
    assert sync_status(of_connection) == SyncStatus.UPDATED  # /consents read again: a new consent
    run = fetch_again(session, of_connection, worker, fake_pluggy)
    assert run.status == "success"
    session.refresh(of_connection)
    assert of_connection.consent_revoked_at is None


def test_loans_pluggy_stops_listing_are_tombstoned_and_an_empty_list_is_not(
    session, of_connection, fake_pluggy, worker
):
    loans = fake_pluggy.world.products[of_connection.item_id]["loans"]
    kept, settled = loans[0], {**loans[0], "id": "settled-loan"}
    loans.append(settled)
    fetch_again(session, of_connection, worker, fake_pluggy)
    assert session.scalars(sa.select(Loan).where(Loan.pluggy_id == "settled-loan")).one().deleted_at is None

    loans.remove(settled)
    fetch_again(session, of_connection, worker, fake_pluggy)
    session.expire_all()
    assert session.scalars(sa.select(Loan).where(Loan.pluggy_id == "settled-loan")).one().deleted_at is not None
    assert session.scalars(sa.select(Loan).where(Loan.pluggy_id == kept["id"])).one().deleted_at is None

    loans.clear()  # an empty list (a product withheld, or none left) tombstones nothing
    fetch_again(session, of_connection, worker, fake_pluggy)
    session.expire_all()
    assert session.scalars(sa.select(Loan).where(Loan.pluggy_id == kept["id"])).one().deleted_at is None


def test_identity_is_replaced_by_each_read_and_kept_on_a_404(session, of_connection, fake_pluggy, worker):
    products = fake_pluggy.world.products[of_connection.item_id]
    products["identity"] = {**products["identity"], "fullName": "John Q. Doe"}
    fetch_again(session, of_connection, worker, fake_pluggy)
    assert session.scalars(sa.select(Identity.full_name)).one() == "John Q. Doe"

    products["identity"] = None  # Pluggy answers 404 IDENTITY_NOT_FOUND
    fetch_again(session, of_connection, worker, fake_pluggy)
    session.expire_all()
    assert session.scalars(sa.select(Identity.full_name)).all() == ["John Q. Doe"]


def test_products_the_item_does_not_offer_are_not_read(session, connection, fake_pluggy, pluggy_api, settings):
    connection.products = ["ACCOUNTS", "TRANSACTIONS"]
    session.commit()
    service = BankConnectionService(session, pluggy_api, settings)
    service.fetch(connection, scheduling_run(session, connection))

    assert fake_pluggy.count("GET", "/identity") == 0 and fake_pluggy.count("GET", "/loans") == 0
    assert fake_pluggy.count("GET", "/consents") == 0  # not an Open Finance item


def scheduling_run(session, connection) -> SyncRun:
    return runs.open_run(session, connection, "manual")


def test_identity_is_never_logged(session, of_connection, fake_pluggy, worker, caplog):
    caplog.set_level(logging.DEBUG)
    fetch_again(session, of_connection, worker, fake_pluggy)
    logged = caplog.text + " ".join(str(getattr(r, "fields", "")) for r in caplog.records)
    assert pf.OWNER_CPF not in logged and pf.OWNER not in logged


def test_the_connection_is_deleted_with_its_identity_and_loans(session, of_connection):
    session.delete(of_connection)
    session.commit()
    assert session.scalar(sa.select(sa.func.count()).select_from(Identity)) == 0
    assert session.scalar(sa.select(sa.func.count()).select_from(Loan)) == 0


# --- API -------------------------------------------------------------------------------------------


@pytest.fixture
def headers(app, user):
    return {"Authorization": f"Bearer {issue_api_token(app.config['SECRET_KEY'], user)}"}


@pytest.fixture
def stranger_headers(app, session):
    other = create_user(session, "bruno@example.com")
    return {"Authorization": f"Bearer {issue_api_token(app.config['SECRET_KEY'], other)}"}


def test_the_identity_endpoint_answers_the_owner_only(client, headers, stranger_headers, of_connection):
    answer = client.get(f"{API}/connections/{of_connection.id}/identity/", headers=headers)
    assert answer.status_code == 200
    body = answer.get_json()
    assert (body["full_name"], body["document"], body["document_type"]) == (pf.OWNER, pf.OWNER_CPF, "CPF")
    assert body["addresses"][0]["full_address"] and body["phone_numbers"][0]["area_code"]
    assert body["emails"][0]["value"]

    for who, connection_id in ((stranger_headers, of_connection.id), (headers, 999999)):
        refused = client.get(f"{API}/connections/{connection_id}/identity/", headers=who)
        assert (refused.status_code, refused.get_json()["error"]["code"]) == (404, "connection_not_found")


def test_no_identity_is_a_404(client, headers, connection):
    answer = client.get(f"{API}/connections/{connection.id}/identity/", headers=headers)
    assert answer.status_code == 404
    assert answer.get_json() == {
        "error": {"code": "identity_not_found", "message": "Pluggy has given no identity for this connection."}
    }


def test_the_loans_endpoint_pages_and_hides_tombstones(
    client, headers, stranger_headers, session, of_connection, fake_pluggy
):
    total = session.scalar(sa.select(sa.func.count()).select_from(Loan))
    first = client.get(f"{API}/connections/{of_connection.id}/loans/?page_size=1", headers=headers).get_json()
    assert (first["page"], first["page_size"], first["total"], len(first["loans"])) == (1, 1, total, 1)
    loan = first["loans"][0]
    source = next(x for x in fake_pluggy.world.products[of_connection.item_id]["loans"] if x["id"] == loan["id"])
    assert loan["contract_amount"] == source["contractAmount"]
    assert loan["outstanding_balance"] == source["payments"]["contractOutstandingBalance"]
    assert loan["installments"]["total"] == source["installments"]["totalNumberOfInstallments"]
    assert loan["interest_rates"][0]["pre_fixed_rate"] == source["interestRates"][0]["preFixedRate"]

    session.execute(sa.update(Loan).where(Loan.pluggy_id == loan["id"]).values(deleted_at=utcnow()))
    session.commit()
    shown = client.get(f"{API}/connections/{of_connection.id}/loans/", headers=headers).get_json()
    assert loan["id"] not in [x["id"] for x in shown["loans"]] and shown["total"] == total - 1
    every = client.get(f"{API}/connections/{of_connection.id}/loans/?include_deleted=true", headers=headers)
    assert every.get_json()["total"] == total

    refused = client.get(f"{API}/connections/{of_connection.id}/loans/", headers=stranger_headers)
    assert refused.status_code == 404
    bad = client.get(f"{API}/connections/{of_connection.id}/loans/?page_size=0", headers=headers)
    assert (bad.status_code, bad.get_json()["error"]["code"]) == (400, "invalid_request")


def test_the_connection_shows_products_consent_and_status_detail(client, headers, session, of_connection, stand_in):
    body = client.get(f"{API}/connections/{of_connection.id}/", headers=headers).get_json()
    assert "LOANS" in body["products"] and "IDENTITY" in body["products"]
    consent = body["consent"]
    assert consent["expires_at"] and consent["revoked_at"] is None and consent["granted_at"]
    assert datetime.fromisoformat(consent["expires_at"]) > utcnow() + timedelta(days=300)
    assert "LOANS" in consent["products"] and "CREDIT_OPERATIONS_ALL" in consent["permissions"]
    assert body["status_detail"] is None and body["sync_status"] == "UPDATED"

    stand_in[0].post(f"/sandbox/items/{of_connection.item_id}/consent/revoke")
    check = client.get(f"{API}/connections/{of_connection.id}/check_status/", headers=headers).get_json()
    assert check["status"] == "CONSENT_EXPIRED"
    assert check["connection"]["consent"]["revoked_at"] is not None


def test_status_detail_is_shown_per_product(client, headers, session, connection):
    detail = pf.partial_status_detail(NOW)
    detail["creditCards"]["warnings"][0]["providerMessage"] = "Cartão indisponível"
    connection.status_detail = detail
    session.commit()

    shown = client.get(f"{API}/connections/{connection.id}/", headers=headers).get_json()
    assert shown["consent"] is None
    assert shown["status_detail"]["accounts"] == {
        "updated": True,
        "last_updated_at": detail["accounts"]["lastUpdatedAt"],
        "warnings": [],
    }
    assert shown["status_detail"]["credit_cards"] == {
        "updated": False,
        "last_updated_at": None,
        "warnings": [
            {"code": "001", "message": "Credit cards could not be collected", "provider_message": "Cartão indisponível"}
        ],
    }


def test_a_manual_sync_under_an_ended_consent_answers_with_a_connect_token(
    client, headers, session, of_connection, stand_in, fake_pluggy
):
    stand_in[0].post(f"/sandbox/items/{of_connection.item_id}/consent/expire")
    patches = fake_pluggy.count("PATCH", f"/items/{of_connection.item_id}")

    answer = client.post(f"{API}/connections/{of_connection.id}/sync_transactions/", headers=headers)

    assert answer.status_code == 409
    body = answer.get_json()
    assert body["status"] == "CREDENTIALS_REQUIRED" and body["error"]["code"] == "consent_expired"
    assert body["connect_token"]["item_id"] == of_connection.item_id
    assert body["connection"]["sync_status"] == "CONSENT_EXPIRED"
    assert fake_pluggy.count("PATCH", f"/items/{of_connection.item_id}") == patches  # nothing to update for


def test_a_consent_past_its_expiry_is_consent_expired_without_asking_pluggy(session, connection):
    connection.consent_expires_at = utcnow() + timedelta(days=3)
    assert sync_status(connection) == SyncStatus.UPDATED
    connection.consent_expires_at = utcnow() - timedelta(seconds=1)
    assert sync_status(connection) == SyncStatus.CONSENT_EXPIRED
    connection.item_status = "LOGIN_ERROR"
    assert sync_status(connection) == SyncStatus.CREDENTIALS_REQUIRED


def test_an_item_under_consent_is_known_as_open_finance(session, user, fake_pluggy):
    item = fake_pluggy.add_item(connector=pf.connector_json(pf.CONNECTORS[OPEN_FINANCE_CONNECTOR]))
    connection = Connection(user_id=user.id, item_id=item["id"])
    apply_item(connection, item)
    assert connection.open_finance
    plain = Connection(user_id=user.id, item_id="x")
    apply_item(plain, pf.item(lastUpdatedAt=now_iso()))
    assert not plain.open_finance


@pytest.mark.parametrize(
    "ended",
    [{"consent_revoked_at": NOW}, {"consent_expires_at": NOW}],
    ids=["revoked", "expired"],
)
def test_connections_whose_consent_ended_count_as_waiting_for_their_user(session, user, ended):
    stale, fresh = utcnow() - timedelta(days=3), utcnow() - timedelta(minutes=10)
    for item_id, synced_at, fields in (("ended", stale, ended), ("fresh", fresh, {})):
        connection = Connection(user_id=user.id, item_id=item_id, last_synced_at=synced_at, **fields)
        apply_item(connection, pf.item(id=item_id))
        for name, value in fields.items():
            setattr(connection, name, value)
        session.add(connection)
    session.commit()

    staleness = oldest_connection_staleness(session)

    assert 600 <= staleness[False] < 700
    assert 3 * 86400 <= staleness[True] < 3 * 86400 + 100
