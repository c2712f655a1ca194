"""The stand-in's product routes (sandbox/product_routes.py): connectors, accounts and their
statements, identity, investments, loans, credit-card bills, categories and a transaction's category.

Every answer is checked against Pluggy's OpenAPI document (tests/oas.py, which reads payeeMCC and
GET /categories as the official SDKs do).
"""

from __future__ import annotations

import random
import re
from collections import Counter
from datetime import date, timedelta

import pytest

from sandbox import data, products, world_of
from tests.oas import validate_response, validate_schema
from tests.stand_in.helpers import FIXED_NOW, GOOD, api_key

# Executions run when the item is next read, at a fixed "now".
STEPPED = {"step_delay": None, "clock": lambda: FIXED_NOW}


@pytest.fixture
def app(sandbox_factory):
    return sandbox_factory(**STEPPED)


def new_item(client, key, products: list[str] | None = None) -> str:
    """An item whose first execution has collected; ``products`` narrows what it offers."""
    answer = client.post("/items", json={"connectorId": 0, "parameters": GOOD}, headers=key)
    assert answer.status_code == 200, answer.json
    item_id = answer.json["id"]
    if products is not None:
        world_of(client.application).record_for(item_id).json["products"] = products
    while client.get(f"/items/{item_id}", headers=key).json["status"] == "UPDATING":
        pass
    return item_id


@pytest.fixture
def item_id(client, key) -> str:
    return new_item(client, key)


def ok(client, key, path: str, **query) -> dict:
    answer = client.get(path, query_string=query, headers=key)
    assert answer.status_code == 200, (path, answer.json)
    return answer.json


def refused(client, key, path: str, status: int, code: str | None = None, method: str = "GET", **kwargs) -> dict:
    answer = client.open(path, method=method, headers=key, **kwargs)
    assert answer.status_code == status, (path, answer.json)
    validate_schema("GlobalErrorResponse", answer.json)
    if code is not None:
        assert answer.json["codeDescription"] == code, answer.json
    return answer.json


def account_of(client, key, item_id: str, kind: str) -> dict:
    return next(a for a in ok(client, key, "/accounts", itemId=item_id)["results"] if a["type"] == kind)


def rows_of(client, key, account_id: str) -> list[dict]:
    return ok(client, key, "/v2/transactions", accountId=account_id, pageSize=500)["results"]


def item_routes(client, key, item_id: str) -> list[str]:
    """One route of each product of the item (list and single), as they stand now."""
    card = account_of(client, key, item_id, "CREDIT")
    investment = ok(client, key, "/investments", itemId=item_id)["results"][0]
    return [
        f"/accounts/{card['id']}",
        f"/identity?itemId={item_id}",
        f"/identity/{ok(client, key, '/identity', itemId=item_id)['id']}",
        f"/investments/{investment['id']}",
        f"/loans/{ok(client, key, '/loans', itemId=item_id)['results'][0]['id']}",
        f"/bills/{ok(client, key, '/bills', accountId=card['id'])['results'][0]['id']}",
    ]


# Authentication -------------------------------------------------------------------------------


CONNECTOR_ROUTES = [("GET", "/connectors"), ("GET", "/connectors/0"), ("POST", "/connectors/0/validate")]
DATA_ROUTES = [
    ("GET", "/accounts/x"),
    ("GET", "/accounts/x/balance"),
    ("GET", "/accounts/x/statements"),
    ("GET", "/identity?itemId=x"),
    ("GET", "/identity/x"),
    ("GET", "/investments?itemId=x"),
    ("GET", "/investments/x"),
    ("GET", "/investments/x/transactions"),
    ("GET", "/loans?itemId=x"),
    ("GET", "/loans/x"),
    ("GET", "/bills?accountId=x"),
    ("GET", "/bills/x"),
    ("GET", "/categories"),
    ("GET", "/categories/x"),
    ("PATCH", "/transactions/x"),
]


def test_product_routes_need_a_key_and_only_the_connector_ones_take_a_connect_token(client, key):
    widget = {"X-API-KEY": client.post("/connect_token", json={}, headers=key).json["accessToken"]}
    for headers in ({}, {"X-API-KEY": "not-a-key"}, widget):
        routes = DATA_ROUTES if headers is widget else CONNECTOR_ROUTES + DATA_ROUTES
        for method, path in routes:
            answer = client.open(path, method=method, headers=headers, json={})
            assert answer.status_code == 403, (method, path)
            validate_schema("NotAuthenticatedResponse", answer.json)
    for method, path in CONNECTOR_ROUTES:
        assert client.open(path, method=method, headers=widget, json=GOOD).status_code == 200, path


# Connectors -----------------------------------------------------------------------------------


def test_connectors_list_sandbox_ones_only_when_asked(client, key):
    assert ok(client, key, "/connectors")["results"] == []
    listed = ok(client, key, "/connectors", sandbox="true")
    validate_response("GET", "/connectors", listed)
    assert [c["id"] for c in listed["results"]] == list(data.CONNECTORS)
    assert listed["total"] == len(data.CONNECTORS) and listed["totalPages"] == 1
    for connector in listed["results"]:
        assert connector["health"]["status"] == "ONLINE"
        assert all(credential["optional"] is False for credential in connector["credentials"])
        assert connector["supportsAutomaticPix"] is False


def test_connector_filters(client, key):
    def ids(**query) -> list[int]:
        return [c["id"] for c in ok(client, key, "/connectors", sandbox="true", **query)["results"]]

    assert ids(name="mfa") == [4, 5]
    assert ids(name="PERSONAL") == [2]
    assert ids(countries="AR,BR") == list(data.CONNECTORS)
    assert ids(countries="MX") == []
    assert ids(types="BUSINESS_BANK") == []
    assert ids(types="PERSONAL_BANK,INVESTMENT") == list(data.CONNECTORS)
    open_finance = [cid for cid, c in data.CONNECTORS.items() if data.connector_json(c)["isOpenFinance"]]
    assert ids(isOpenFinance="true") == open_finance
    assert ids(supportsPaymentInitiation="false") == list(data.CONNECTORS)
    refused(client, key, "/connectors?sandbox=yes", 400, "INVALID_PARAMETERS")


def test_connector_by_id_with_health_and_its_details(client, key, item_id):
    client.post("/sandbox/connectors/4/status", json={"status": "UNSTABLE"})
    connector = ok(client, key, "/connectors/4")
    validate_response("GET", "/connectors/{id}", connector)
    assert (connector["name"], connector["hasMFA"], connector["health"]["status"]) == (
        "Pluggy Bank MFA",
        True,
        "UNSTABLE",
    )
    assert "details" not in connector["health"]
    details = ok(client, key, "/connectors/0", healthDetails="true")["health"]["details"]
    assert details == {"connectionRateLast6Hours": 100.0, "connectionsLast6Hours": 1}
    assert (
        ok(client, key, "/connectors/2", healthDetails="true")["health"]["details"]["connectionRateLast6Hours"] is None
    )
    refused(client, key, "/connectors/99", 404, "CONNECTOR_NOT_FOUND")
    refused(client, key, "/connectors/pluggy", 404, "CONNECTOR_NOT_FOUND")


def test_validate_checks_parameters_against_the_credentials_form(client, key):
    good = client.post("/connectors/0/validate", json=GOOD, headers=key)
    assert good.status_code == 200
    validate_response("POST", "/connectors/{id}/validate", good.json)
    assert good.json == {"parameters": GOOD, "errors": []}

    missing = client.post("/connectors/0/validate", json={"user": "user-ok", "password": ""}, headers=key).json
    assert missing["errors"] == [{"code": "001", "message": "Password is required", "parameter": "password"}]
    assert missing["parameters"] == {"user": "user-ok", "password": ""}
    refused(client, key, "/connectors/0/validate", 400, method="POST", json=["user"])
    refused(client, key, "/connectors/77/validate", 404, "CONNECTOR_NOT_FOUND", method="POST", json=GOOD)


# Accounts -------------------------------------------------------------------------------------


def test_account_by_id_and_its_balance(client, key, item_id):
    for listed in ok(client, key, "/accounts", itemId=item_id)["results"]:
        account = ok(client, key, f"/accounts/{listed['id']}")
        validate_response("GET", "/accounts/{id}", account)
        assert account == listed
        balance = ok(client, key, f"/accounts/{listed['id']}/balance")
        validate_response("GET", "/accounts/{id}/balance", balance)
        assert (balance["balance"], balance["currencyCode"]) == (account["balance"], "BRL")
        assert balance["updateDateTime"] == data.iso(FIXED_NOW)
    refused(client, key, "/accounts/nope", 404, "ACCOUNT_NOT_FOUND")
    refused(client, key, "/accounts/nope/balance", 404, "ACCOUNT_NOT_FOUND")


def test_every_account_lists_a_statement_per_month_of_its_history(client, key, item_id):
    last_month = products.add_months(FIXED_NOW.date().replace(day=1), -1)
    for account in ok(client, key, "/accounts", itemId=item_id)["results"]:
        listed = ok(client, key, f"/accounts/{account['id']}/statements")
        validate_response("GET", "/accounts/{id}/statements", listed)
        months = [statement["monthYear"] for statement in listed["results"]]
        # Oldest first, "MM-YYYY" as in the OpenAPI document's example, ending with the last month.
        expected = [f"{products.add_months(last_month, -n):%m-%Y}" for n in range(products.STATEMENT_MONTHS)]
        assert months == expected[::-1]
        assert (listed["total"], listed["totalPages"]) == (products.STATEMENT_MONTHS, 1)
        assert all(statement["url"].startswith("https://") for statement in listed["results"])
        second = ok(client, key, f"/accounts/{account['id']}/statements", page=2, pageSize=5)
        assert (second["page"], second["totalPages"]) == (2, 3)
        assert second["results"] == listed["results"][5:10]
    refused(client, key, "/accounts/nope/statements", 404, "ACCOUNT_NOT_FOUND")


def test_a_later_collection_keeps_the_statements_ids(client, key, item_id):
    account = account_of(client, key, item_id, "BANK")
    before = ok(client, key, f"/accounts/{account['id']}/statements")["results"]
    assert client.patch(f"/items/{item_id}", json={}, headers=key).status_code == 200
    while client.get(f"/items/{item_id}", headers=key).json["status"] != "UPDATED":
        pass
    assert ok(client, key, f"/accounts/{account['id']}/statements")["results"] == before


# Identity -------------------------------------------------------------------------------------


def test_identity_of_an_item_is_its_accounts_owner(client, key, item_id):
    identity = ok(client, key, "/identity", itemId=item_id)
    validate_response("GET", "/identity", identity)
    assert ok(client, key, f"/identity/{identity['id']}") == identity
    owner = account_of(client, key, item_id, "BANK")
    assert (identity["fullName"], identity["document"]) == (owner["owner"], owner["taxNumber"])
    assert identity["documentType"] == "CPF" and identity["itemId"] == item_id
    assert identity["birthDate"].endswith("T00:00:00.000Z")
    address = identity["addresses"][0]
    assert address["country"] == "Brasil" and address["postalCode"][5] == "-"
    phone = identity["phoneNumbers"][0]
    assert phone["value"].startswith(f"+55 {phone['areaCode']} 9")
    assert {email["type"] for email in identity["emails"]} == {"Personal", "Work"}
    refused(client, key, "/identity", 400, "MISSING_ITEM_ID")
    refused(client, key, "/identity?itemId=nope", 404, "ITEM_NOT_FOUND")
    refused(client, key, "/identity/nope", 404, "IDENTITY_NOT_FOUND")


# Investments ----------------------------------------------------------------------------------


def test_investments_of_several_types_with_a_type_filter(client, key, item_id):
    listed = ok(client, key, "/investments", itemId=item_id)
    validate_response("GET", "/investments", listed)
    investments = listed["results"]
    assert {"FIXED_INCOME", "MUTUAL_FUND", "EQUITY", "SECURITY"} <= {i["type"] for i in investments}
    for investment in investments:
        assert ok(client, key, f"/investments/{investment['id']}") == investment
        validate_response("GET", "/investments/{id}", investment)
        assert investment["balance"] == round(investment["amount"] - investment["taxes"], 2)
        assert investment["amountProfit"] == round(investment["amount"] - investment["amountOriginal"], 2)
    equities = ok(client, key, "/investments", itemId=item_id, type="EQUITY")["results"]
    assert equities == [i for i in investments if i["type"] == "EQUITY"] and equities
    assert all(i["code"] and i["isin"].startswith("BR") for i in equities)
    paged = ok(client, key, "/investments", itemId=item_id, pageSize=3, page=3)
    assert (paged["page"], paged["total"], paged["totalPages"]) == (3, len(investments), 3)
    assert paged["results"] == investments[6:9]
    refused(client, key, "/investments/nope", 404, "INVESTMENT_NOT_FOUND")
    refused(client, key, "/investments", 400, "MISSING_ITEM_ID")


def test_investment_transactions_page_by_page_and_size(client, key, item_id):
    investments = ok(client, key, "/investments", itemId=item_id)["results"]
    investment = max(investments, key=lambda i: len(ok(client, key, f"/investments/{i['id']}/transactions")["results"]))
    path = f"/investments/{investment['id']}/transactions"
    everything = ok(client, key, path, pageSize=500)
    validate_response("GET", "/investments/{id}/transactions", everything)
    movements = everything["results"]
    assert len(movements) >= 5 and movements[0]["type"] == "BUY"
    assert {m["investmentId"] for m in movements} == {investment["id"]}
    pages = [ok(client, key, path, page=n, pageSize=2) for n in range(1, everything["total"] // 2 + 3)]
    assert all(p["totalPages"] == -(-len(movements) // 2) and p["total"] == len(movements) for p in pages)
    assert [m for p in pages for m in p["results"]] == movements
    assert pages[-1]["results"] == []
    bought = sum(m["amount"] for m in movements if m["type"] == "BUY")
    sold = sum(m["amount"] for m in movements if m["type"] == "SELL")
    assert investment["amountOriginal"] <= round(bought, 2) and (
        sold > 0 or investment["amountOriginal"] == round(bought, 2)
    )
    refused(client, key, f"{path}?pageSize=501", 400, "INVALID_PAGE_SIZE")
    refused(client, key, f"{path}?page=0", 400, "INVALID_PAGE")
    refused(client, key, "/investments/nope/transactions", 404, "INVESTMENT_NOT_FOUND")


# Loans ----------------------------------------------------------------------------------------


# The only form the Node SDK turns into a Date (transforms.js); both SDKs' dates are sent so.
SDK_TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z")


def is_sdk_timestamp(value: str) -> bool:
    return SDK_TIMESTAMP.fullmatch(value) is not None


def as_documented(loan: dict) -> dict:
    """The loan with its disbursementDates as the OpenAPI document types them (yyyy-mm-dd): the
    stand-in sends timestamps, as the Node SDK's Date[] needs."""
    return {**loan, "disbursementDates": [day[:10] for day in loan["disbursementDates"]]}


def test_loans_of_an_item(client, key, item_id):
    listed = ok(client, key, "/loans", itemId=item_id)
    validate_response("GET", "/loans", {**listed, "results": [as_documented(loan) for loan in listed["results"]]})
    assert 1 <= listed["total"] <= 2
    for loan in listed["results"]:
        assert ok(client, key, f"/loans/{loan['id']}") == loan
        validate_response("GET", "/loans/{id}", as_documented(loan))
        assert loan["disbursementDates"] and all(map(is_sdk_timestamp, loan["disbursementDates"]))
        installments = loan["installments"]
        assert (
            installments["paidInstallments"] + installments["dueInstallments"]
            == installments["totalNumberOfInstallments"]
        )
        assert len(loan["payments"]["releases"]) == installments["paidInstallments"]
        assert 0 < loan["payments"]["contractOutstandingBalance"] < loan["contractAmount"]
    refused(client, key, "/loans/nope", 404, "LOAN_NOT_FOUND")


def test_a_loan_payment_moves_each_loan_on_by_one_installment(client, key, item_id):
    before = {loan["id"]: loan for loan in ok(client, key, "/loans", itemId=item_id)["results"]}

    paid = client.post(f"/sandbox/items/{item_id}/loans/pay").json["loans"]

    assert {loan["id"] for loan in paid} == set(before)
    for loan in ok(client, key, "/loans", itemId=item_id)["results"]:
        was, now = before[loan["id"]], loan
        assert now["installments"]["paidInstallments"] == was["installments"]["paidInstallments"] + 1
        assert now["installments"]["dueInstallments"] == was["installments"]["dueInstallments"] - 1
        assert len(now["payments"]["releases"]) == len(was["payments"]["releases"]) + 1
        outstanding = now["payments"]["contractOutstandingBalance"]
        assert 0 <= outstanding < was["payments"]["contractOutstandingBalance"]
        validate_response("GET", "/loans/{id}", as_documented(now))


# Credit-card bills ----------------------------------------------------------------------------


def test_card_rows_carry_the_bill_they_fall_in(client, key, item_id):
    card = account_of(client, key, item_id, "CREDIT")
    listed = ok(client, key, "/bills", accountId=card["id"])
    validate_response("GET", "/bills", listed)
    bills = {bill["id"]: bill for bill in listed["results"]}
    assert len(bills) == 12
    closings = sorted(bill["billClosingDate"] for bill in bills.values())
    assert closings[-1] < card["creditData"]["balanceCloseDate"] and closings[-1] < data.iso(FIXED_NOW)
    members: dict[str, list[dict]] = {bill_id: [] for bill_id in bills}
    for row in rows_of(client, key, card["id"]):
        bill_id = (row["creditCardMetadata"] or {}).get("billId")
        if bill_id is None:
            assert row["status"] == "PENDING" or row["date"] > closings[-1]
            continue
        bill = bills[bill_id]
        opened = max([c for c in closings if c < bill["billClosingDate"]], default="")
        assert opened < row["date"] <= bill["billClosingDate"]
        members[bill_id].append(row)
    for bill_id, bill in bills.items():
        validate_response("GET", "/bills/{id}", ok(client, key, f"/bills/{bill_id}"))
        charges = sum(charge["amount"] for charge in bill["financeCharges"])
        purchases = sum(-row["amount"] for row in members[bill_id] if row["amount"] < 0)
        assert bill["totalAmount"] == round(purchases + charges, 2)
        if bill["totalAmount"] and bill["dueDate"] <= data.iso(FIXED_NOW):
            assert [p["amount"] for p in bill["payments"]] == [bill["totalAmount"]]
    refused(client, key, "/bills/nope", 404, "BILL_NOT_FOUND")
    refused(client, key, "/bills?accountId=nope", 404, "ACCOUNT_NOT_FOUND")
    refused(client, key, "/bills", 400, "MISSING_ACCOUNT_ID")


def test_a_bank_account_has_no_bills(client, key, item_id):
    bank = account_of(client, key, item_id, "BANK")
    assert ok(client, key, "/bills", accountId=bank["id"])["results"] == []


# Categories and a transaction's category ------------------------------------------------------


def test_categories_tree_holds_every_category_of_the_rows(client, key, item_id):
    listed = ok(client, key, "/categories")
    validate_response("GET", "/categories", listed)
    tree = {category["id"]: category for category in listed["results"]}
    assert listed["total"] == len(tree)
    for category in tree.values():
        assert (
            category.get("parentId") is None
            or tree[category["parentId"]]["description"] == category["parentDescription"]
        )
    for account in ok(client, key, "/accounts", itemId=item_id)["results"]:
        for row in rows_of(client, key, account["id"]):
            assert tree[row["categoryId"]]["description"] == row["category"]
    children = ok(client, key, "/categories", parentId="05000000")["results"]
    assert "05070000" in {c["id"] for c in children} and {c["parentId"] for c in children} == {"05000000"}
    pix = ok(client, key, "/categories/05070000")
    validate_response("GET", "/categories/{id}", pix)
    assert (pix["description"], pix["parentDescription"]) == ("Transfer - PIX", "Transfers")
    refused(client, key, "/categories/99999999", 404, "CATEGORY_NOT_FOUND")


def test_patch_moves_a_transaction_to_another_category(client, key, item_id):
    row = rows_of(client, key, account_of(client, key, item_id, "BANK")["id"])[0]
    answer = client.patch(f"/transactions/{row['id']}", json={"categoryId": "11010000"}, headers=key)
    assert answer.status_code == 200
    validate_response("PATCH", "/transactions/{id}", answer.json)
    assert (answer.json["categoryId"], answer.json["category"]) == ("11010000", "Eating out")
    assert ok(client, key, f"/transactions/{row['id']}") == answer.json
    assert {k: v for k, v in answer.json.items() if k not in ("category", "categoryId", "updatedAt")} == {
        k: v for k, v in row.items() if k not in ("category", "categoryId", "updatedAt")
    }
    path = f"/transactions/{row['id']}"
    refused(client, key, path, 400, "CATEGORY_NOT_FOUND", method="PATCH", json={"categoryId": "12345678"})
    refused(client, key, path, 400, "INVALID_PARAMETERS", method="PATCH", json={})
    refused(
        client, key, "/transactions/nope", 404, "TRANSACTION_NOT_FOUND", method="PATCH", json={"categoryId": "01000000"}
    )


# Transactions' fields the SDKs read -----------------------------------------------------------


def test_rows_carry_an_integer_mcc_and_their_order_within_the_day(client, key, item_id):
    for account in ok(client, key, "/accounts", itemId=item_id)["results"]:
        rows = rows_of(client, key, account["id"])
        assert all("operationTypeAdditionalInfo" in row for row in rows)
        per_day: dict[str, list[int]] = {}
        for row in rows:
            per_day.setdefault(row["date"], []).append(row["order"])
        assert all(sorted(orders) == list(range(len(orders))) for orders in per_day.values())
        mccs = [(row["creditCardMetadata"] or {}).get("payeeMCC") for row in rows]
        assert all(isinstance(mcc, int) for mcc in mccs if mcc is not None)
        if account["type"] == "CREDIT":
            assert any(mccs)
        boletos = [row for row in rows if (row["paymentData"] or {}).get("paymentMethod") == "BOLETO"]
        for row in boletos:
            metadata = row["paymentData"]["boletoMetadata"]
            assert (len(metadata["barcode"]), len(metadata["digitableLine"])) == (44, 47)
            assert metadata["baseAmount"] == -row["amount"]


# Consent, products offered, deletion ----------------------------------------------------------


def test_withheld_consent_answers_empty_data(app, client, key, item_id):
    card = account_of(client, key, item_id, "CREDIT")
    investment = ok(client, key, "/investments", itemId=item_id)["results"][0]
    singles = item_routes(client, key, item_id)
    world_of(app).record_for(item_id).consent = {"expiresAt": data.iso(FIXED_NOW), "revokedAt": None}

    for path, query in [
        ("/investments", {"itemId": item_id}),
        (f"/investments/{investment['id']}/transactions", {}),
        ("/loans", {"itemId": item_id}),
        ("/bills", {"accountId": card["id"]}),
        (f"/accounts/{card['id']}/statements", {}),
        ("/transactions", {"accountId": card["id"]}),
    ]:
        page = ok(client, key, path, **query)
        assert (page["results"], page["total"], page["totalPages"]) == ([], 0, 1), path
    for path in singles:
        refused(client, key, path, 404)
    refused(client, key, f"/identity?itemId={item_id}", 404, "IDENTITY_NOT_FOUND")
    refused(client, key, f"/accounts/{card['id']}/balance", 403, "BALANCE_CONSENT_ERROR")


def test_only_the_products_an_item_offers_are_served(client, key):
    item_id = new_item(client, key, products=["ACCOUNTS", "CREDIT_CARDS", "TRANSACTIONS", "INVESTMENTS"])
    assert ok(client, key, "/investments", itemId=item_id)["total"] == 7
    assert ok(client, key, "/loans", itemId=item_id)["results"] == []
    refused(client, key, f"/identity?itemId={item_id}", 404, "IDENTITY_NOT_FOUND")
    investment = ok(client, key, "/investments", itemId=item_id)["results"][0]
    assert ok(client, key, f"/investments/{investment['id']}/transactions")["results"] == []

    world_of(client.application).record_for(item_id).json["products"] = ["ACCOUNTS", "TRANSACTIONS"]
    card = account_of(client, key, item_id, "CREDIT")
    assert ok(client, key, "/bills", accountId=card["id"])["results"] == []
    assert ok(client, key, "/investments", itemId=item_id)["results"] == []
    refused(client, key, f"/investments/{investment['id']}", 404, "INVESTMENT_NOT_FOUND")


def test_a_deleted_item_answers_404_on_all_its_routes(app, client, key, item_id):
    card = account_of(client, key, item_id, "CREDIT")
    investment = ok(client, key, "/investments", itemId=item_id)["results"][0]
    routes = item_routes(client, key, item_id)
    row = rows_of(client, key, card["id"])[0]
    assert client.delete(f"/items/{item_id}", headers=key).status_code == 200
    for path in routes + [
        f"/accounts/{card['id']}/balance",
        f"/accounts/{card['id']}/statements",
        f"/investments/{investment['id']}/transactions",
    ]:
        refused(client, key, path, 404)
    for path in ["/investments", "/loans", "/identity"]:
        refused(client, key, f"{path}?itemId={item_id}", 404, "ITEM_NOT_FOUND")
    refused(client, key, f"/bills?accountId={card['id']}", 404, "ACCOUNT_NOT_FOUND")
    refused(client, key, f"/transactions/{row['id']}", 404, method="PATCH", json={"categoryId": "01000000"})
    assert item_id not in client.get("/sandbox/state").json["products"]


# Determinism ----------------------------------------------------------------------------------


def products_of_a_session(app) -> dict:
    client = app.test_client()
    key = {"X-API-KEY": api_key(client)}
    new_item(client, key)
    new_item(client, key)
    return client.get("/sandbox/state").json


def test_same_seed_gives_the_same_products(sandbox_factory):
    one = products_of_a_session(sandbox_factory(seed=11, **STEPPED))
    two = products_of_a_session(sandbox_factory(seed=11, **STEPPED))
    assert one == two
    other = products_of_a_session(sandbox_factory(seed=12, **STEPPED))
    ids = Counter(i["id"] for products in one["products"].values() for i in products["investments"])
    assert ids and ids.keys().isdisjoint(
        i["id"] for products in other["products"].values() for i in products["investments"]
    )
    assert one["products"] != other["products"]


def test_a_row_on_a_closing_day_falls_in_the_bill_that_closes_then():
    rng = random.Random(3)
    card = data.new_credit_card_account(rng, data.new_uuid(rng), FIXED_NOW)
    closing = products.add_months(date.fromisoformat(card["creditData"]["balanceCloseDate"][:10]), -1)
    on_closing, after_closing, pending = (
        data.transaction(accountId=card["id"], date=data.day_timestamp(day), status=status, amount=-10.0)
        for day, status in [(closing, "POSTED"), (closing + timedelta(days=1), "POSTED"), (closing, "PENDING")]
    )
    bills = products.close_bills(rng, card, [on_closing, after_closing, pending], [], FIXED_NOW)
    assert bills[-1]["billClosingDate"] == data.day_timestamp(closing)
    assert on_closing["creditCardMetadata"]["billId"] == bills[-1]["id"]
    assert bills[-1]["totalAmount"] == 10.0 + sum(c["amount"] for c in bills[-1]["financeCharges"])
    assert after_closing["creditCardMetadata"] is None and pending["creditCardMetadata"] is None
    assert products.close_bills(rng, card, [after_closing], bills, FIXED_NOW) == []
    two_months_later = FIXED_NOW + timedelta(days=62)
    next_bills = products.close_bills(rng, card, [after_closing], bills, two_months_later)
    assert len(next_bills) == 2 and next_bills[0]["billClosingDate"] == card["creditData"]["balanceCloseDate"]
    assert after_closing["creditCardMetadata"]["billId"] == next_bills[0]["id"]
