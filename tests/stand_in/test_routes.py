"""The local Pluggy stand-in (sandbox/): routes, executions, deliveries, faults, determinism.

Routes go through the Flask test client; deliveries go to a real loopback receiver. Nothing sleeps
on luck: tests wait on POST /sandbox/idle or on the receiver's condition.
"""

from __future__ import annotations

import base64
import json
import signal
import time
from datetime import UTC, datetime, timedelta

import pytest
import requests

from harness.processes import stand_in
from pluggy_client import PluggyClient
from tests.oas import validate_response, validate_schema
from tests.stand_in.helpers import (
    CLIENT_ID,
    CLIENT_SECRET,
    FIXED_NOW,
    GOOD,
    MovableClock,
    Receiver,
    accounts_of,
    all_transactions,
    api_key,
    create_item,
    deliveries,
    settle,
    state,
    subscribe,
    synced_item,
)

# Authentication -----------------------------------------------------------------------------


def test_auth_issues_a_two_hour_jwt_and_refuses_wrong_credentials(client):
    answer = client.post("/auth", json={"clientId": CLIENT_ID, "clientSecret": CLIENT_SECRET})
    validate_response("POST", "/auth", answer.json, 200)
    payload = answer.json["apiKey"].split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    assert 7100 < claims["exp"] - time.time() <= 7200

    refused = client.post("/auth", json={"clientId": CLIENT_ID, "clientSecret": "wrong"})
    assert (refused.status_code, refused.json["codeDescription"]) == (401, "CLIENT_KEYS_UNAUTHORIZED")
    validate_response("POST", "/auth", refused.json, 401)


@pytest.mark.parametrize("headers", [{}, {"X-API-KEY": "not-a-key"}], ids=["missing", "unknown"])
def test_every_api_route_needs_a_key(client, headers):
    for method, path in [
        ("GET", "/items/x"),
        ("GET", "/accounts?itemId=x"),
        ("POST", "/connect_token"),
        ("GET", "/v2/transactions?accountId=x"),
        ("GET", "/transactions?accountId=x"),
        ("GET", "/webhooks"),
    ]:
        answer = client.open(path, method=method, headers=headers, json={})
        assert answer.status_code == 403, path
        validate_schema("NotAuthenticatedResponse", answer.json)
    assert client.get("/health").json == {"status": "ok"}


def test_a_connect_token_opens_only_the_widget_routes_and_its_own_items(client, key):
    token = client.post("/connect_token", json={}, headers=key).json["accessToken"]
    widget = {"X-API-KEY": token}
    mine = create_item(client, widget)
    others = create_item(client, key)
    settle(client)
    assert client.get(f"/items/{mine['id']}", headers=widget).status_code == 200
    assert client.patch(f"/items/{mine['id']}", json={}, headers=widget).status_code == 200
    assert client.get(f"/items/{others['id']}", headers=widget).status_code == 403
    assert client.get(f"/accounts?itemId={mine['id']}", headers=widget).status_code == 403
    assert client.post("/connect_token", json={}, headers=widget).status_code == 403
    settle(client)


# Items and executions -----------------------------------------------------------------------


def test_connect_token_options_apply_to_the_item_and_its_webhooks(client, key, receiver):
    options = {"clientUserId": "user-42", "webhookUrl": receiver.url("/item-hook")}
    answer = client.post("/connect_token", json={"options": options}, headers=key)
    validate_response("POST", "/connect_token", answer.json, 200)
    item = create_item(client, {"X-API-KEY": answer.json["accessToken"]})
    assert (item["status"], item["executionStatus"]) == ("UPDATING", "CREATING")
    assert (item["clientUserId"], item["webhookUrl"]) == ("user-42", options["webhookUrl"])
    settle(client)

    # item/created comes once the item has finished connecting, in place of item/updated.
    assert receiver.events() == [
        "item/login_succeeded",
        "transactions/created",
        "transactions/created",
        "item/created",
    ]
    for request in receiver.received:
        event = request["json"]
        assert event["itemId"] == item["id"] and event["id"] == event["eventId"]
        assert event["triggeredBy"] == "USER"
        assert event.get("clientUserId", "user-42") == "user-42"
    assert len({r["json"]["eventId"] for r in receiver.received}) == 4


def test_connect_token_for_an_unknown_item_is_404(client, key):
    answer = client.post("/connect_token", json={"itemId": "nope"}, headers=key)
    assert answer.status_code == 404
    validate_response("POST", "/connect_token", answer.json, 404)


OUTCOMES = [
    ("user-ok", "password-ok", "UPDATED", "SUCCESS", None),
    ("user-ok-account-error", "password-ok", "UPDATED", "PARTIAL_SUCCESS", None),
    ("user-locked", "password-ok", "LOGIN_ERROR", "ACCOUNT_LOCKED", "ACCOUNT_LOCKED"),
    ("user-error", "password-ok", "OUTDATED", "UNEXPECTED_ERROR", "UNEXPECTED_ERROR"),
    ("user-unavailable", "password-ok", "OUTDATED", "SITE_NOT_AVAILABLE", "SITE_NOT_AVAILABLE"),
    ("user-connection-error", "password-ok", "OUTDATED", "CONNECTION_ERROR", "CONNECTION_ERROR"),
    ("someone-else", "password-ok", "LOGIN_ERROR", "INVALID_CREDENTIALS", "INVALID_CREDENTIALS"),
    ("user-ok", "wrong-password", "LOGIN_ERROR", "INVALID_CREDENTIALS", "INVALID_CREDENTIALS"),
    ("user-ok-perf-x", "password-ok", "LOGIN_ERROR", "INVALID_CREDENTIALS", "INVALID_CREDENTIALS"),
]


@pytest.mark.parametrize(("user", "password", "status", "execution", "error"), OUTCOMES)
def test_each_sandbox_username_ends_as_pluggy_documents(client, key, user, password, status, execution, error):
    item = synced_item(client, key, parameters={"user": user, "password": password})
    validate_response("GET", "/items/{id}", item, 200)
    assert (item["status"], item["executionStatus"]) == (status, execution)
    assert (item["error"] or {}).get("code") == error
    assert item["consecutiveFailedLoginAttempts"] == (1 if status == "LOGIN_ERROR" else 0)
    assert (item["lastUpdatedAt"] is not None) == (status == "UPDATED")
    accounts = accounts_of(client, key, item["id"])
    expected_types = {"SUCCESS": ["BANK", "CREDIT"], "PARTIAL_SUCCESS": ["BANK"]}.get(execution, [])
    assert [a["type"] for a in accounts] == expected_types
    if execution == "PARTIAL_SUCCESS":
        assert item["statusDetail"]["creditCards"]["isUpdated"] is False


def test_perf_users_multiply_the_history(client, key):
    item = synced_item(client, key, parameters={"user": "user-ok-perf-3", "password": "password-ok"})
    for account in accounts_of(client, key, item["id"]):
        assert len(all_transactions(client, key, account["id"])) == 180


def test_first_sync_brings_a_year_of_realistic_rows(client, key):
    item = synced_item(client, key)
    accounts = accounts_of(client, key, item["id"])
    for account in accounts:
        validate_schema("Account", account)
        rows = all_transactions(client, key, account["id"])
        assert len(rows) == 60
        today = datetime.now(UTC).date()
        days = {datetime.fromisoformat(r["date"]).date() for r in rows}
        assert min(days) >= today - timedelta(days=365) and max(days) <= today
        assert {r["currencyCode"] for r in rows} == {"BRL"}
        assert all((r["amount"] < 0) == (r["type"] == "DEBIT") for r in rows)
        assert sum(r["status"] == "PENDING" for r in rows) == 3
        for row in rows[:5]:
            validate_schema("Transaction", row)


def test_mfa_one_step_right_value_finishes_the_sync(client, key):
    item = synced_item(client, key, connector=4)
    assert (item["status"], item["executionStatus"]) == ("WAITING_USER_INPUT", "WAITING_USER_INPUT")
    assert item["parameter"]["name"] == "token" and item["parameter"]["type"] == "number"
    validate_schema("Item", item)
    answer = client.post(f"/items/{item['id']}/mfa", json={"token": "123456"}, headers=key)
    validate_response("POST", "/items/{id}/mfa", answer.json, 200)
    assert answer.json["status"] == "UPDATING" and answer.json["parameter"] is None
    settle(client)
    assert client.get(f"/items/{item['id']}", headers=key).json["status"] == "UPDATED"


def test_mfa_wrong_value_is_a_login_error(client, key, receiver):
    subscribe(client, key, receiver.url(), "item/error")
    item = synced_item(client, key, connector=4)
    answer = client.post(f"/items/{item['id']}/mfa", json={"token": "000000"}, headers=key)
    assert answer.json["status"] == "LOGIN_ERROR"
    assert answer.json["executionStatus"] == answer.json["error"]["code"] == "INVALID_CREDENTIALS_MFA"
    settle(client)
    assert receiver.received[-1]["json"]["error"]["code"] == "INVALID_CREDENTIALS_MFA"


def test_mfa_two_steps_ask_token_then_token2(client, key):
    item = synced_item(client, key, connector=5)
    client.post(f"/items/{item['id']}/mfa", json={"token": "123456"}, headers=key)
    settle(client)
    waiting = client.get(f"/items/{item['id']}", headers=key).json
    assert (waiting["status"], waiting["parameter"]["name"]) == ("WAITING_USER_INPUT", "token2")
    client.post(f"/items/{item['id']}/mfa", json={"token2": "123456"}, headers=key)
    settle(client)
    assert client.get(f"/items/{item['id']}", headers=key).json["executionStatus"] == "SUCCESS"


def test_mfa_two_steps_wrong_second_value(client, key):
    item = synced_item(client, key, connector=5)
    client.post(f"/items/{item['id']}/mfa", json={"token": "123456"}, headers=key)
    settle(client)
    answer = client.post(f"/items/{item['id']}/mfa", json={"token2": "654321"}, headers=key)
    assert answer.json["executionStatus"] == "INVALID_CREDENTIALS_MFA"


def test_mfa_refusals(client, key):
    item = synced_item(client, key, connector=4)
    missing = client.post(f"/items/{item['id']}/mfa", json={"other": "123456"}, headers=key)
    assert (missing.status_code, missing.json["codeDescription"]) == (400, "MISSING_MFA_PARAMETER")
    done = synced_item(client, key)
    refused = client.post(f"/items/{done['id']}/mfa", json={"token": "123456"}, headers=key)
    assert refused.status_code == 400
    assert refused.json["codeDescription"] == "ITEM_IS_NOT_WAITING_USER_INPUT"
    validate_schema("GlobalErrorResponse", refused.json)


def test_an_unanswered_prompt_times_out(sandbox_factory, receiver):
    client = sandbox_factory(mfa_timeout_s=0.05).test_client()
    key = {"X-API-KEY": api_key(client)}
    subscribe(client, key, receiver.url(), "item/error")
    item = create_item(client, key, connector=4)
    assert receiver.wait_for(lambda received: len(received) == 1)
    assert receiver.received[0]["json"]["error"]["code"] == "USER_INPUT_TIMEOUT"
    assert client.get(f"/items/{item['id']}", headers=key).json["status"] == "OUTDATED"


def test_unknown_connector_and_missing_credentials_are_400(client, key):
    unknown = client.post("/items", json={"connectorId": 99, "parameters": GOOD}, headers=key)
    assert unknown.status_code == 400
    missing = client.post("/items", json={"connectorId": 0, "parameters": {"user": "u"}}, headers=key)
    assert (missing.status_code, missing.json["codeDescription"]) == (400, "CONNECTOR_VALIDATION_ERROR")
    assert missing.json["details"] == [
        {"code": "001", "message": "password parameter is required", "parameter": "password"}
    ]
    validate_response("POST", "/items", missing.json, 400)


def test_get_and_delete_item(client, key, receiver):
    subscribe(client, key, receiver.url(), "item/deleted")
    item = synced_item(client, key)
    answer = client.delete(f"/items/{item['id']}", headers=key)
    validate_response("DELETE", "/items/{id}", answer.json, 200)
    assert answer.json == {"count": 1}
    missing = client.get(f"/items/{item['id']}", headers=key)
    assert (missing.status_code, missing.json["codeDescription"]) == (404, "ITEM_NOT_FOUND")
    validate_response("GET", "/items/{id}", missing.json, 404)
    settle(client)
    assert receiver.events() == ["item/deleted"]
    assert state(client)["accounts"] == []


# Updates ------------------------------------------------------------------------------------


def test_patch_resyncs_posts_old_pending_rows_and_adds_new_ones(client, key, receiver):
    item = synced_item(client, key)
    subscribe(client, key, receiver.url())
    before = {t["id"]: t for t in state(client)["transactions"]}
    answer = client.patch(f"/items/{item['id']}", json={}, headers=key)
    validate_response("PATCH", "/items/{id}", answer.json, 200)
    assert answer.json["status"] == "UPDATING"
    settle(client)

    after = {t["id"]: t for t in state(client)["transactions"]}
    new_ids = set(after) - set(before)
    assert new_ids and set(before) <= set(after)
    today = datetime.now(UTC).date().isoformat()
    assert {after[i]["date"][:10] for i in new_ids} == {today}
    posted = {i for i in before if before[i]["status"] == "PENDING" and after[i]["status"] == "POSTED"}
    # Rows pending 0 and 1 days stay pending; the one 3 days old posts, on each account.
    assert len(posted) == 2
    assert receiver.events() == [
        "item/login_succeeded",
        "transactions/created",
        "transactions/created",
        "transactions/updated",
        "transactions/updated",
        "item/updated",
    ]
    updated_ids = {
        i
        for r in receiver.received
        if r["json"]["event"] == "transactions/updated"
        for i in r["json"]["transactionIds"]
    }
    assert updated_ids == posted
    assert all(r["json"]["triggeredBy"] == "CLIENT" for r in receiver.received)


def test_patch_with_new_credentials_fixes_a_login_error(client, key):
    item = synced_item(client, key, parameters={"user": "user-ok", "password": "nope"})
    assert item["status"] == "LOGIN_ERROR"
    fix = {"parameters": GOOD, "clientUserId": "u-7"}
    answer = client.patch(f"/items/{item['id']}", json=fix, headers=key)
    assert answer.json["clientUserId"] == "u-7"
    settle(client)
    fixed = client.get(f"/items/{item['id']}", headers=key).json
    assert (fixed["status"], fixed["error"], fixed["consecutiveFailedLoginAttempts"]) == ("UPDATED", None, 0)


def test_patch_while_updating_is_409(sandbox_factory):
    client = sandbox_factory(step_delay=60).test_client()
    key = {"X-API-KEY": api_key(client)}
    item = create_item(client, key)
    answer = client.patch(f"/items/{item['id']}", json={}, headers=key)
    assert (answer.status_code, answer.json["codeDescription"]) == (409, "ITEM_ALREADY_UPDATING")
    validate_response("PATCH", "/items/{id}", answer.json, 409)


def test_the_21st_patch_in_a_minute_is_429(client, key):
    item = synced_item(client, key)
    for _ in range(20):
        assert client.patch(f"/items/{item['id']}", json={}, headers=key).status_code == 200
        settle(client)
    refused = client.patch(f"/items/{item['id']}", json={}, headers=key)
    assert refused.status_code == 429 and refused.headers["Retry-After"] == "60"
    validate_schema("GlobalErrorResponse", refused.json)


def test_auto_sync_is_triggered_by_sync(client, key, receiver):
    item = synced_item(client, key)
    subscribe(client, key, receiver.url(), "item/updated")
    assert client.post(f"/sandbox/items/{item['id']}/auto_sync").json["status"] == "UPDATING"
    settle(client)
    assert receiver.received[0]["json"]["triggeredBy"] == "SYNC"


# Transactions -------------------------------------------------------------------------------


@pytest.fixture
def clock() -> MovableClock:
    return MovableClock()


@pytest.fixture
def paged(sandbox_factory, clock):
    client = sandbox_factory(page_size=7, clock=clock).test_client()
    key = {"X-API-KEY": api_key(client)}
    item = synced_item(client, key)
    return client, key, accounts_of(client, key, item["id"])[0]["id"]


def test_v2_transactions_pages_through_next_in_date_id_order(paged):
    client, key, account_id = paged
    first = client.get(f"/v2/transactions?accountId={account_id}", headers=key).json
    validate_response("GET", "/v2/transactions", first, 200)
    validate_schema("CursorPageResponseTransactions", first)
    assert len(first["results"]) == 7 and first["next"].startswith(f"?accountId={account_id}&after=")
    rows = all_transactions(client, key, account_id)
    assert [r["id"] for r in rows] == [t["id"] for t in state(client)["transactions"] if t["accountId"] == account_id]
    assert rows == sorted(rows, key=lambda r: (r["date"], r["id"]))
    bigger = client.get(f"/v2/transactions?accountId={account_id}&pageSize=50", headers=key).json
    assert len(bigger["results"]) == 50


def test_v2_transactions_date_filters_are_inclusive_days(paged):
    client, key, account_id = paged
    rows = all_transactions(client, key, account_id)
    day_from, day_to = rows[10]["date"][:10], rows[40]["date"][:10]
    filtered = all_transactions(client, key, account_id, dateFrom=day_from, dateTo=day_to)
    assert filtered == [r for r in rows if day_from <= r["date"][:10] <= day_to]
    assert filtered[0]["date"][:10] == day_from and filtered[-1]["date"][:10] == day_to


def test_v2_transactions_created_at_from_and_ids(paged, clock):
    client, key, account_id = paged
    clock.advance(60)
    item_id = state(client)["items"][0]["id"]
    added = client.post(f"/sandbox/items/{item_id}/add_transactions", json={"count": 3}).json["created"]
    new_row = client.get(f"/transactions/{added[0]}", headers=key).json
    validate_response("GET", "/transactions/{id}", new_row, 200)
    since = all_transactions(client, key, account_id, createdAtFrom=new_row["createdAt"])
    assert {r["id"] for r in since} == set(added)
    some = [r["id"] for r in all_transactions(client, key, account_id)[:4]]
    by_ids = all_transactions(client, key, account_id, ids=",".join(some))
    assert [r["id"] for r in by_ids] == some


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ("createdAtFrom=2024-01-01T00:00:00.000Z&dateFrom=2024-01-01", "INVALID_FILTERS"),
        ("dateFrom=yesterday", "INVALID_DATE"),
        ("createdAtFrom=2024-01-01T00:00:00", "INVALID_DATE"),
        ("after=%25%25", "INVALID_CURSOR"),
        ("pageSize=501", "INVALID_PAGE_SIZE"),
        ("ids=" + ",".join(["x"] * 501), "IDS_PARAMETER_EXCEEDS_MAX_LENGTH"),
        ("ids=x&" * 501, "IDS_PARAMETER_EXCEEDS_MAX_LENGTH"),
    ],
)
def test_v2_transactions_refuses_bad_queries(paged, query, code):
    client, key, account_id = paged
    answer = client.get(f"/v2/transactions?accountId={account_id}&{query}", headers=key)
    assert (answer.status_code, answer.json["codeDescription"]) == (400, code)
    validate_response("GET", "/v2/transactions", answer.json, 400)


def numbered_pages(client, key, account_id: str, **query) -> list[dict]:
    """Every page of GET /transactions, each checked against the OpenAPI document."""
    pages, number = [], 1
    while True:
        answer = client.get(
            "/transactions", query_string={"accountId": account_id, "page": number, **query}, headers=key
        )
        assert answer.status_code == 200, answer.json
        validate_response("GET", "/transactions", answer.json, 200)
        pages.append(answer.json)
        if number >= answer.json["totalPages"]:
            return pages
        number += 1


def test_transactions_by_page_number_hold_the_v2_rows_newest_first(paged):
    client, key, account_id = paged
    rows = all_transactions(client, key, account_id)
    pages = numbered_pages(client, key, account_id)
    assert [page["page"] for page in pages] == list(range(1, len(pages) + 1))
    assert {(page["total"], page["totalPages"]) for page in pages} == {(len(rows), -(-len(rows) // 7))}
    assert [row for page in pages for row in page["results"]] == rows[::-1]
    assert [len(page["results"]) for page in numbered_pages(client, key, account_id, pageSize=50)] == [50, 10]
    beyond = client.get(f"/transactions?accountId={account_id}&page=99", headers=key).json
    assert (beyond["results"], beyond["page"], beyond["total"]) == ([], 99, len(rows))


def test_transactions_by_page_number_filter_as_v2(paged):
    client, key, account_id = paged
    rows = all_transactions(client, key, account_id)
    day_from, day_to = rows[10]["date"][:10], rows[40]["date"][:10]
    between = all_transactions(client, key, account_id, dateFrom=day_from, dateTo=day_to)
    pages = numbered_pages(client, key, account_id, **{"from": day_from, "to": day_to, "pageSize": 500})
    assert pages[0]["results"] == between[::-1]
    # The Python SDK sends timestamps; the day is what counts.
    stamps = {"from": f"{day_from}T00:00:00.000000+0000", "to": f"{day_to}T23:59:59.999999+0000"}
    assert numbered_pages(client, key, account_id, pageSize=500, **stamps)[0]["results"] == between[::-1]
    # With ids, from and to are discarded (OpenAPI document).
    some = [rows[0]["id"], rows[-1]["id"]]
    by_ids = numbered_pages(client, key, account_id, ids=",".join(some), **{"from": day_from, "to": day_to})
    assert [row["id"] for row in by_ids[0]["results"]] == some[::-1]
    for query, code in [
        ("from=yesterday", "INVALID_DATE"),
        ("pageSize=501", "INVALID_PAGE_SIZE"),
        ("page=0", "INVALID_PAGE"),
    ]:
        answer = client.get(f"/transactions?accountId={account_id}&{query}", headers=key)
        assert (answer.status_code, answer.json["codeDescription"]) == (400, code), query
    assert client.get("/transactions", headers=key).json["codeDescription"] == "MISSING_ACCOUNT_ID"


def test_transactions_by_page_number_of_a_card_bill(client, key):
    item = synced_item(client, key)
    card = next(a for a in accounts_of(client, key, item["id"]) if a["type"] == "CREDIT")
    bill = client.get(f"/bills?accountId={card['id']}", headers=key).json["results"][0]
    page = client.get(f"/transactions?accountId={card['id']}&billId={bill['id']}&pageSize=500", headers=key).json
    expected = [
        r
        for r in all_transactions(client, key, card["id"])
        if (r["creditCardMetadata"] or {}).get("billId") == bill["id"]
    ]
    assert page["results"] == expected[::-1]


def test_every_row_carries_the_balance_after_it_pending_ones_too(client, key):
    item = synced_item(client, key)
    for account in accounts_of(client, key, item["id"]):
        rows = all_transactions(client, key, account["id"])
        # A number on every row, as the Node SDK's Transaction declares it.
        assert all(isinstance(row["balance"], float | int) for row in rows), account["type"]
        assert {row["status"] for row in rows} == {"POSTED", "PENDING"}
        assert rows[-1]["balance"] == account["balance"]
    bank = accounts_of(client, key, item["id"])[0]
    rows = all_transactions(client, key, bank["id"])
    for before, row in zip(rows, rows[1:], strict=False):
        assert row["balance"] == round(before["balance"] + row["amount"], 2)
    added = client.post(f"/sandbox/items/{item['id']}/add_transactions", json={"count": 2}).json["created"]
    latest = [client.get(f"/transactions/{row_id}", headers=key).json for row_id in added]
    bank = accounts_of(client, key, item["id"])[0]
    assert max(latest, key=lambda row: (row["date"], row["id"]))["balance"] == bank["balance"]


def test_v2_transactions_needs_an_account_id(client, key):
    assert client.get("/v2/transactions", headers=key).status_code == 400


def test_unknown_transaction_is_404(client, key):
    answer = client.get("/transactions/nope", headers=key)
    assert (answer.status_code, answer.json["codeDescription"]) == (404, "TRANSACTION_NOT_FOUND")
    validate_response("GET", "/transactions/{id}", answer.json, 404)


def test_accounts_filter_by_type_and_page(sandbox_factory):
    client = sandbox_factory(page_size=1).test_client()
    key = {"X-API-KEY": api_key(client)}
    item = synced_item(client, key)
    first = client.get(f"/accounts?itemId={item['id']}", headers=key).json
    validate_response("GET", "/accounts", first, 200)
    assert (first["total"], first["totalPages"], first["results"][0]["type"]) == (2, 2, "BANK")
    second = client.get(f"/accounts?itemId={item['id']}&page=2", headers=key).json
    assert second["results"][0]["type"] == "CREDIT"
    credit = client.get(f"/accounts?itemId={item['id']}&type=CREDIT", headers=key).json
    assert [a["subtype"] for a in credit["results"]] == ["CREDIT_CARD"]


def test_restate_deletes_recreates_and_posts_pending(client, key, receiver):
    item = synced_item(client, key)
    subscribe(client, key, receiver.url())
    bank_id = accounts_of(client, key, item["id"])[0]["id"]
    before = all_transactions(client, key, bank_id)
    restate = {"delete": 2, "post_pending": True}
    answer = client.post(f"/sandbox/items/{item['id']}/restate", json=restate).json
    settle(client)

    latest_posted = sorted((r for r in before if r["status"] == "POSTED"), key=lambda r: (r["date"], r["id"]))[-2:]
    assert set(answer["deleted"]) == {r["id"] for r in latest_posted}
    after = {r["id"]: r for r in all_transactions(client, key, bank_id)}
    assert not set(answer["deleted"]) & set(after)
    descriptions = {after[i]["description"] for i in answer["created"]}
    assert descriptions == {r["description"] + " *" for r in latest_posted}
    assert len(answer["updated"]) == 6  # every PENDING row of both accounts
    assert not [t for t in state(client)["transactions"] if t["status"] == "PENDING"]
    assert set(state(client)["deleted_transaction_ids"]) == set(answer["deleted"])
    assert receiver.events() == [
        "transactions/deleted",
        "transactions/created",
        "transactions/updated",
        "transactions/updated",
    ]
    deleted_event = receiver.received[0]["json"]
    assert deleted_event["accountId"] == bank_id
    assert set(deleted_event["transactionIds"]) == set(answer["deleted"])


def test_add_transactions_delivers_transactions_created(client, key, receiver):
    item = synced_item(client, key)
    subscribe(client, key, receiver.url(), "transactions/created")
    added = client.post(f"/sandbox/items/{item['id']}/add_transactions", json={"count": 2}).json["created"]
    settle(client)
    event = receiver.received[0]["json"]
    assert event["itemId"] == item["id"] and "/v2/transactions?accountId=" in event["createdTransactionsLink"]
    rows = all_transactions(client, key, event["accountId"], createdAtFrom=event["transactionsCreatedAtFrom"])
    assert {r["id"] for r in rows} == set(added)


# Webhooks -----------------------------------------------------------------------------------


def test_webhooks_crud_and_every_answer_carries_headers(client, key):
    created = subscribe(client, key, "http://127.0.0.1:1/hook", "item/updated", {"X-Secret": "s3"})
    assert (created["headers"], created["disabledAt"]) == ({"X-Secret": "s3"}, None)
    listing = client.get("/webhooks", headers=key).json
    validate_response("GET", "/webhooks", listing, 200)
    assert listing["total"] == 1 and listing["results"][0] == created
    assert state(client)["webhooks"][0]["headers"] == {"X-Secret": "s3"}

    changes = {"url": "http://127.0.0.1:2/h", "enabled": False, "headers": None}
    changed = client.patch(f"/webhooks/{created['id']}", json=changes, headers=key)
    validate_response("PATCH", "/webhooks/{id}", changed.json, 200)
    assert changed.json["disabledAt"] is not None and changed.json["url"].endswith(":2/h")
    assert changed.json["headers"] == state(client)["webhooks"][0]["headers"] == {}
    assert client.get(f"/webhooks/{created['id']}", headers=key).json["url"].endswith(":2/h")

    deleted = client.delete(f"/webhooks/{created['id']}", headers=key)
    validate_response("DELETE", "/webhooks/{id}", deleted.json, 200)
    assert client.delete(f"/webhooks/{created['id']}", headers=key).status_code == 404


def test_webhook_refusals(client, key):
    for body in ({"event": "nope", "url": "http://x/h"}, {"event": "all", "url": "ftp://x/h"}):
        assert client.post("/webhooks", json=body, headers=key).status_code == 400
    for port in range(1, 6):
        subscribe(client, key, f"http://127.0.0.1:{port}/h", "item/error")
    sixth = client.post("/webhooks", json={"event": "item/error", "url": "http://127.0.0.1:6/h"}, headers=key)
    assert (sixth.status_code, sixth.json["codeDescription"]) == (400, "WEBHOOK_LIMIT_REACHED")
    validate_response("POST", "/webhooks", sixth.json, 400)


# Deliveries ---------------------------------------------------------------------------------


def test_deliveries_carry_custom_headers_and_reach_the_item_webhook_url(client, key, receiver):
    subscribe(client, key, receiver.url("/registered"), "item/created", {"X-Webhook-Secret": "abc"})
    create_item(client, key, webhookUrl=receiver.url("/item"), clientUserId="c-1")
    settle(client)
    registered = [r for r in receiver.received if r["path"] == "/registered"]
    assert [r["json"]["event"] for r in registered] == ["item/created"]
    assert registered[0]["headers"]["X-Webhook-Secret"] == "abc"
    item_hook = [r for r in receiver.received if r["path"] == "/item"]
    assert item_hook[-1]["json"] == registered[0]["json"]
    assert all("X-Webhook-Secret" not in r["headers"] for r in item_hook)
    assert len(item_hook) == 4 and item_hook[0]["json"]["clientUserId"] == "c-1"
    assert item_hook[0]["json"]["triggeredBy"] == "CLIENT"


def test_disabled_webhooks_receive_nothing(client, key, receiver):
    hook = subscribe(client, key, receiver.url())
    client.patch(f"/webhooks/{hook['id']}", json={"enabled": False}, headers=key)
    synced_item(client, key)
    assert receiver.received == []


def test_failed_deliveries_are_retried_then_dropped(client, key, receiver):
    receiver.answers = {"/flaky": [500, 503], "/dead": [500] * 10, "/refuses": [401]}
    for path in ("/flaky", "/dead", "/refuses"):
        subscribe(client, key, receiver.url(path), "item/created")
    create_item(client, key)
    settle(client)
    attempts = {}
    for entry in deliveries(client):
        attempts.setdefault(entry["url"].rsplit("/", 1)[1], []).append((entry["attempt"], entry["status"]))
    assert attempts["flaky"] == [(1, 500), (2, 503), (3, 200)]
    assert attempts["dead"] == [(1, 500), (2, 500), (3, 500), (4, 500)]
    assert attempts["refuses"] == [(1, 401)]
    assert len({r["json"]["eventId"] for r in receiver.received}) == 1


def test_unreachable_receivers_are_logged_as_errors(client, key):
    subscribe(client, key, "http://127.0.0.1:1/nobody", "item/created")
    create_item(client, key)
    settle(client)
    assert [e["status"] for e in deliveries(client)] == ["error"] * 4


def test_drop_fault_skips_the_next_deliveries(client, key, receiver):
    subscribe(client, key, receiver.url(), "item/created")
    assert client.post("/sandbox/faults", json={"drop": 1}).json["drop"] == 1
    create_item(client, key)
    create_item(client, key)
    settle(client)
    assert [e["status"] for e in deliveries(client)] == ["dropped", 200]
    assert len(receiver.received) == 1
    assert client.get("/sandbox/faults").json["drop"] == 0


def test_duplicate_fault_sends_the_same_event_twice(client, key, receiver):
    subscribe(client, key, receiver.url(), "item/created")
    client.post("/sandbox/faults", json={"duplicate": 1})
    create_item(client, key)
    settle(client)
    assert len(receiver.received) == 2
    assert receiver.received[0]["json"] == receiver.received[1]["json"]


def restate_deliveries(app, receiver: Receiver, reorder: bool) -> list[tuple]:
    client = app.test_client()
    key = {"X-API-KEY": api_key(client)}
    item = synced_item(client, key)
    for path in ("/a", "/b"):
        subscribe(client, key, receiver.url(path))
    client.post("/sandbox/faults", json={"reorder": reorder})
    receiver.received.clear()
    client.post(f"/sandbox/items/{item['id']}/restate", json={"delete": 1, "post_pending": True})
    settle(client)
    return [(r["path"], r["json"]["event"], r["json"]["accountId"]) for r in receiver.received]


def test_reorder_fault_shuffles_a_burst_deterministically(sandbox_factory, receiver):
    in_order = restate_deliveries(sandbox_factory(seed=3), receiver, reorder=False)
    shuffled = [restate_deliveries(sandbox_factory(seed=3), receiver, reorder=True) for _ in range(2)]
    assert len(in_order) == 8 and in_order[0][1] == "transactions/deleted"
    assert sorted(shuffled[0]) == sorted(in_order) and shuffled[0] != in_order
    assert shuffled[0] == shuffled[1]


def test_delay_fault_holds_each_delivery(client, key, receiver):
    subscribe(client, key, receiver.url(), "item/created")
    client.post("/sandbox/faults", json={"delay_s": 0.15})
    started = time.monotonic()
    create_item(client, key)
    create_item(client, key)
    settle(client)
    assert time.monotonic() - started >= 0.3
    assert len(receiver.received) == 2


def test_fail_rules_answer_429_and_500_as_pluggy(client, key):
    item = synced_item(client, key)
    faults = {
        "fail": [
            {"method": "PATCH", "path": f"/items/{item['id']}", "status": 429, "count": 1, "retry_after": 7},
            {"method": "GET", "path": "/items/*", "status": 500, "count": 2},
        ]
    }
    assert client.post("/sandbox/faults", json=faults).json["fail"][0]["count"] == 1
    limited = client.patch(f"/items/{item['id']}", json={}, headers=key)
    assert (limited.status_code, limited.headers["Retry-After"]) == (429, "7")
    validate_schema("GlobalErrorResponse", limited.json)
    assert client.patch(f"/items/{item['id']}", json={}, headers=key).status_code == 200
    for _ in range(2):
        failed = client.get(f"/items/{item['id']}", headers=key)
        assert failed.status_code == 500
        validate_response("GET", "/items/{id}", failed.json, 500)
    assert client.get(f"/items/{item['id']}", headers=key).status_code == 200
    settle(client)


def test_fail_rules_can_play_any_documented_refusal(client, key):
    item = synced_item(client, key)
    refusal = {
        "method": "PATCH",
        "path": "/items/*",
        "status": 409,
        "count": 1,
        "codeDescription": "CLIENT_IS_UPDATING_BEFORE_ALLOWED_FREQUENCY",
        "data": {"minUpdateFrequencyAllowedInHours": 8},
    }
    client.post("/sandbox/faults", json={"fail": [refusal]})
    answer = client.patch(f"/items/{item['id']}", json={}, headers=key)
    assert (answer.status_code, answer.json["codeDescription"]) == (409, refusal["codeDescription"])
    assert answer.json["data"] == refusal["data"]
    validate_response("PATCH", "/items/{id}", answer.json, 409)
    assert client.post("/sandbox/faults", json={"fail": []}).json["fail"] == []


def test_idle_reports_a_timeout(sandbox_factory):
    client = sandbox_factory(step_delay=60).test_client()
    create_item(client, {"X-API-KEY": api_key(client)})
    assert client.post("/sandbox/idle?timeout=0.05").json == {"idle": False}


def test_connector_status_updates_are_delivered(client, key, receiver):
    subscribe(client, key, receiver.url(), "connector/status_updated")
    client.post("/sandbox/connectors/0/status", json={"status": "UNSTABLE"})
    settle(client)
    event = receiver.received[0]["json"]
    assert (event["id"], event["data"]) == ("0", {"status": "UNSTABLE"})


# Determinism --------------------------------------------------------------------------------


def scripted_session(app) -> dict:
    client = app.test_client()
    key = {"X-API-KEY": api_key(client)}
    first = synced_item(client, key)
    synced_item(client, key, connector=4)
    client.patch(f"/items/{first['id']}", json={}, headers=key)
    settle(client)
    client.post(f"/sandbox/items/{first['id']}/restate", json={"delete": 3, "post_pending": True})
    client.post("/webhooks", json={"event": "all", "url": "http://127.0.0.1:1/h"}, headers=key)
    settle(client)
    return state(client)


def test_same_seed_and_calls_give_identical_worlds(sandbox_factory):
    one = scripted_session(sandbox_factory(seed=7, clock=lambda: FIXED_NOW))
    two = scripted_session(sandbox_factory(seed=7, clock=lambda: FIXED_NOW))
    assert one == two
    other = scripted_session(sandbox_factory(seed=8, clock=lambda: FIXED_NOW))
    assert {i["id"] for i in other["items"]}.isdisjoint(i["id"] for i in one["items"])


def test_same_seed_gives_same_ids_with_a_real_clock(sandbox_factory):
    worlds = [scripted_session(sandbox_factory(seed=1)) for _ in range(2)]
    ids = [[t["id"] for t in world["transactions"]] + [i["id"] for i in world["items"]] for world in worlds]
    assert ids[0] == ids[1]


# The service's own client against a served sandbox ------------------------------------------


def test_pluggy_client_works_against_the_sandbox_unchanged(served):
    client = PluggyClient(served, CLIENT_ID, CLIENT_SECRET)
    try:
        token = client.create_connect_token(client_user_id="ana", webhook_url="http://127.0.0.1:1/x")
        created = requests.post(
            f"{served}/items",
            json={"connectorId": 0, "parameters": GOOD},
            headers={"X-API-KEY": token.access_token},
            timeout=5,
        ).json()
        assert requests.post(f"{served}/sandbox/idle?timeout=10", timeout=15).json() == {"idle": True}
        item = client.get_item(created["id"])
        assert (item["status"], item["clientUserId"]) == ("UPDATED", "ana")
        accounts = client.list_accounts(item["id"])
        assert [a["type"] for a in accounts] == ["BANK", "CREDIT"]
        pages = list(client.iter_transactions(accounts[0]["id"]))
        assert [len(page) for page in pages] == [25, 25, 10]

        watermark = datetime.now(UTC)
        client.trigger_item_update(item["id"])
        requests.post(f"{served}/sandbox/idle?timeout=10", timeout=15)
        fresh = [row for page in client.iter_transactions(accounts[0]["id"], created_at_from=watermark) for row in page]
        assert fresh and all(row["date"][:10] == watermark.date().isoformat() for row in fresh)
        webhook = client.create_webhook("item/updated", "http://127.0.0.1:1/h", {"X-Webhook-Secret": "s"})
        assert [w["id"] for w in client.list_webhooks()] == [webhook["id"]]
        client.delete_item(item["id"])
    finally:
        client.close()


def test_python_m_sandbox_serves_until_sigterm():
    with stand_in(stderr=None) as sandbox:  # it said "sandbox listening on <its URL>"
        assert sandbox.url.startswith("http://127.0.0.1:")
        assert requests.get(f"{sandbox.url}/health", timeout=5).json() == {"status": "ok"}
        sandbox.send_signal(signal.SIGTERM)
        assert sandbox.wait(timeout=10) == 0


def test_auto_sync_brings_the_transactions_asked_for_with_a_new_last_updated_at(client, key):
    item = synced_item(client, key)
    accounts = accounts_of(client, key, item["id"])
    before = {account["id"]: len(all_transactions(client, key, account["id"])) for account in accounts}
    client.post(f"/sandbox/items/{item['id']}/auto_sync", json={"transactions": 5})
    settle(client)
    after = {account["id"]: len(all_transactions(client, key, account["id"])) for account in accounts}
    assert after == {account_id: count + 5 for account_id, count in before.items()}
    assert client.get(f"/items/{item['id']}", headers=key).json["lastUpdatedAt"] > item["lastUpdatedAt"]
