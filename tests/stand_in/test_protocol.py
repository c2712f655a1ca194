"""The stand-in at the protocol level, as Pluggy's official SDKs see it: status codes, error bodies
and headers, webhook objects and payloads, /v2/transactions' `next` and the default client id.

Answers are checked against Pluggy's OpenAPI document (tests/oas.py) and, where the live API and the
SDKs' types say more than the document, against what they say (PLUGGY.md "Learned from Pluggy's
official SDKs").
"""

from __future__ import annotations

import uuid
from urllib.parse import parse_qsl

import pytest

from pluggy_client import PluggyClient, PluggyNotFound
from sandbox import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, world_of
from tests.oas import _document, validate_response, validate_schema
from tests.stand_in.helpers import (
    FAST_BACKOFF,
    accounts_of,
    all_transactions,
    api_key,
    create_item,
    settle,
    subscribe,
    synced_item,
)

# What each event's payload must carry beyond `event`, `eventId` and a string `id`: the members of
# the Node SDK's WebhookEventPayload union (types/webhook.d.ts).
PAYLOAD_FIELDS = {
    "item/created": {"itemId"},
    "item/updated": {"itemId"},
    "item/waiting_user_input": {"itemId"},
    "item/waiting_user_action": {"itemId"},
    "item/login_succeeded": {"itemId"},
    "item/deleted": {"itemId"},
    "item/error": {"itemId", "error"},
    "connector/status_updated": {"data"},
    "transactions/created": {"itemId", "accountId", "transactionsCreatedAtFrom", "createdTransactionsLink"},
    "transactions/updated": {"itemId", "clientId", "accountId", "transactionIds"},
    "transactions/deleted": {"itemId", "clientId", "accountId", "transactionIds"},
}


def assert_fits_the_sdk_payload_type(payload: dict) -> None:
    assert isinstance(payload["id"], str) and isinstance(payload["eventId"], str)
    missing = PAYLOAD_FIELDS[payload["event"]] - set(payload)
    assert not missing, (payload["event"], missing)
    if payload["event"] == "item/error":
        assert {"code", "message"} <= set(payload["error"])
    if payload["event"] == "connector/status_updated":
        assert isinstance(payload["data"]["status"], str)


def webhook(client, headers, webhook_id: str) -> dict:
    answer = client.get(f"/webhooks/{webhook_id}", headers=headers)
    validate_response("GET", "/webhooks/{id}", answer.json, 200)
    return answer.json


# Authentication and the client id ------------------------------------------------------------


def test_the_default_client_id_is_a_uuid(app):
    # The Python SDK refuses a client id that is not a UUID before sending anything.
    assert str(uuid.UUID(DEFAULT_CLIENT_ID)) == DEFAULT_CLIENT_ID == world_of(app).client_id


def test_a_bad_key_pair_is_401_client_keys_unauthorized(client):
    refused = client.post("/auth", json={"clientId": str(uuid.uuid4()), "clientSecret": "nope"})
    assert (refused.status_code, refused.json["codeDescription"]) == (401, "CLIENT_KEYS_UNAUTHORIZED")
    validate_response("POST", "/auth", refused.json, 401)


def test_connect_token_takes_every_option_the_sdks_send(client, key):
    options = {
        "webhookUrl": "https://example.com/hook",
        "clientUserId": "user-1",
        "oauthRedirectUri": "https://example.com/back",
        "avoidDuplicates": True,
        "connectorSortAlphabetically": False,
    }
    answer = client.post("/connect_token", json={"options": options}, headers=key)
    validate_response("POST", "/connect_token", answer.json, 200)
    for name in ("avoidDuplicates", "connectorSortAlphabetically"):
        refused = client.post("/connect_token", json={"options": {name: "yes"}}, headers=key)
        assert (refused.status_code, refused.json["codeDescription"]) == (400, "INVALID_PARAMETERS")


# Errors ------------------------------------------------------------------------------------------


def test_unknown_routes_and_wrong_methods_answer_pluggys_error_body(client, key):
    unknown = client.get("/no/such/route", headers=key)
    assert (unknown.status_code, unknown.content_type) == (404, "application/json")
    assert unknown.json == {"code": 404, "message": "Not Found", "codeDescription": "NOT_FOUND"}
    validate_schema("GlobalErrorResponse", unknown.json)

    wrong = client.put("/webhooks", headers=key)
    assert (wrong.status_code, wrong.json["codeDescription"]) == (405, "METHOD_NOT_ALLOWED")
    assert {"GET", "POST"} <= {method.strip() for method in wrong.headers["Allow"].split(",")}
    validate_schema("GlobalErrorResponse", wrong.json)


def test_an_unexpected_exception_is_pluggys_500(sandbox_factory):
    app = sandbox_factory()

    def boom():
        raise RuntimeError("boom")

    app.add_url_rule("/boom", view_func=boom)
    answer = app.test_client().get("/boom")
    assert answer.status_code == 500
    assert answer.json == {"code": 500, "message": "Internal Server Error", "codeDescription": "INTERNAL_SERVER_ERROR"}
    validate_schema("GlobalErrorResponse", answer.json)


def test_the_service_client_reads_a_werkzeug_refusal_as_pluggys(served):
    client = PluggyClient(served, DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET)
    try:
        # "a/b" reaches the stand-in as two path segments: a route it does not have.
        with pytest.raises(PluggyNotFound) as raised:
            client.get_transaction("a/b")
        assert (raised.value.code_description, raised.value.message) == ("NOT_FOUND", "Not Found")
    finally:
        client.close()


@pytest.mark.parametrize(
    ("parameters", "details"),
    [
        ({"user": "u"}, [("001", "password")]),
        ({}, [("001", "user"), ("001", "password")]),
        ({"user": "", "password": "p"}, [("001", "user")]),
        ({"user": 5, "password": "p"}, [("002", "user")]),
        ("user-ok", [("002", "parameters")]),
    ],
    ids=["missing", "empty-object", "empty-value", "not-a-string", "not-an-object"],
)
def test_invalid_item_parameters_are_connector_validation_errors(client, key, parameters, details):
    answer = client.post("/items", json={"connectorId": 0, "parameters": parameters}, headers=key)
    assert (answer.status_code, answer.json["codeDescription"]) == (400, "CONNECTOR_VALIDATION_ERROR")
    assert [(d["code"], d["parameter"]) for d in answer.json["details"]] == details
    validate_response("POST", "/items", answer.json, 400)
    for detail in answer.json["details"]:
        validate_schema("ParameterValidationError", detail)


def test_patch_checks_only_the_parameters_it_sends(client, key):
    item = synced_item(client, key)
    refused = client.patch(f"/items/{item['id']}", json={"parameters": {"password": ""}}, headers=key)
    assert (refused.status_code, refused.json["codeDescription"]) == (400, "CONNECTOR_VALIDATION_ERROR")
    assert refused.json["details"] == [
        {"code": "001", "message": "password parameter is required", "parameter": "password"}
    ]
    validate_schema("GlobalErrorResponse", refused.json)
    # The Node SDK sends the item's id in the body and leaves parameters out when none change.
    answer = client.patch(
        f"/items/{item['id']}", json={"id": item["id"], "parameters": {"user": "user-ok"}}, headers=key
    )
    assert answer.status_code == 200
    settle(client)


# Rate limits ---------------------------------------------------------------------------------


def assert_rate_limit_headers(answer, limit: int, seconds: str) -> None:
    assert answer.status_code == 429
    assert answer.headers["Retry-After"] == answer.headers["RateLimit-Reset"] == seconds
    assert (answer.headers["RateLimit-Limit"], answer.headers["RateLimit-Remaining"]) == (str(limit), "0")
    validate_schema("GlobalErrorResponse", answer.json)


def test_the_patch_limit_answers_every_rate_limit_header(client, key):
    item = synced_item(client, key)
    for _ in range(20):
        assert client.patch(f"/items/{item['id']}", json={}, headers=key).status_code == 200
        settle(client)
    assert_rate_limit_headers(client.patch(f"/items/{item['id']}", json={}, headers=key), 20, "60")


def test_a_scripted_429_answers_every_rate_limit_header(client, key):
    rules = [
        {"method": "GET", "path": "/accounts", "status": 429, "count": 1, "retry_after": 7},
        {"method": "PATCH", "path": "/items/*", "status": 429, "count": 1},
    ]
    client.post("/sandbox/faults", json={"fail": rules})
    assert_rate_limit_headers(client.get("/accounts?itemId=x", headers=key), 360, "7")
    assert_rate_limit_headers(client.patch("/items/x", json={}, headers=key), 20, "60")


# Webhooks: the routes ------------------------------------------------------------------------


def test_every_webhook_answer_carries_headers_and_disabled_at(client, key):
    created = subscribe(client, key, "http://127.0.0.1:1/h", "item/updated")
    assert (created["headers"], created["disabledAt"]) == ({}, None)
    assert webhook(client, key, created["id"]) == created
    listing = client.get("/webhooks", headers=key).json
    validate_response("GET", "/webhooks", listing, 200)
    assert listing["results"] == [created]
    changed = client.patch(f"/webhooks/{created['id']}", json={"headers": {"X-A": "1"}}, headers=key).json
    validate_response("PATCH", "/webhooks/{id}", changed, 200)
    assert (changed["headers"], changed["disabledAt"]) == ({"X-A": "1"}, None)
    deleted = client.delete(f"/webhooks/{created['id']}", headers=key)
    validate_response("DELETE", "/webhooks/{id}", deleted.json, 200)
    assert deleted.json == {"count": 1}


def test_every_documented_event_can_be_subscribed(client, key):
    for number, event in enumerate(_document()["components"]["schemas"]["WebhookEventType"]["enum"]):
        subscribe(client, key, f"http://127.0.0.1:{number + 1}/h", event)
    # Not in WebhookEventType, though the OAS's GET /webhooks example shows it.
    item_all = client.post("/webhooks", json={"event": "item/all", "url": "http://127.0.0.1:1/h"}, headers=key)
    assert (item_all.status_code, item_all.json["event"]) == (200, "item/all")
    refused = client.post("/webhooks", json={"event": "item/everything", "url": "http://x/h"}, headers=key)
    assert (refused.status_code, refused.json["message"]) == (400, "Invalid event type 'item/everything' for webhook")


def test_a_duplicate_subscription_is_refused(client, key):
    first = subscribe(client, key, "http://127.0.0.1:1/h", "item/updated")
    other = subscribe(client, key, "http://127.0.0.1:2/h", "item/updated")
    again = client.post("/webhooks", json={"event": "item/updated", "url": first["url"]}, headers=key)
    assert (again.status_code, again.json["codeDescription"]) == (400, "WEBHOOK_ALREADY_EXISTS")
    validate_response("POST", "/webhooks", again.json, 400)
    moved = client.patch(f"/webhooks/{other['id']}", json={"url": first["url"]}, headers=key)
    assert (moved.status_code, moved.json["codeDescription"]) == (400, "WEBHOOK_ALREADY_EXISTS")
    validate_response("PATCH", "/webhooks/{id}", moved.json, 400)
    assert subscribe(client, key, first["url"], "item/error")["url"] == first["url"]


def test_item_all_receives_every_item_event_and_nothing_else(client, key, receiver):
    client.post("/webhooks", json={"event": "item/all", "url": receiver.url()}, headers=key)
    synced_item(client, key)
    client.post("/sandbox/connectors/0/status", json={"status": "UNSTABLE"})
    settle(client)
    # item/created once the first execution has ended well, in place of item/updated.
    assert receiver.events() == ["item/login_succeeded", "item/created"]


# Webhooks: disabled after failing ------------------------------------------------------------


def test_a_webhook_failing_for_good_n_times_in_a_row_is_disabled(sandbox_factory, receiver):
    client = sandbox_factory(disable_webhook_after=2).test_client()
    key = {"X-API-KEY": api_key(client)}
    receiver.answers["/dead"] = [500] * 8
    dead = subscribe(client, key, receiver.url("/dead"), "item/created")
    for _ in range(2):
        create_item(client, key)
        settle(client)
    assert len(receiver.events("/dead")) == 8  # two deliveries, each tried 1 + len(FAST_BACKOFF) times
    disabled = webhook(client, key, dead["id"])
    assert disabled["disabledAt"] is not None and disabled["updatedAt"] == disabled["disabledAt"]

    create_item(client, key)
    settle(client)
    assert len(receiver.events("/dead")) == 8

    enabled = client.patch(f"/webhooks/{dead['id']}", json={"enabled": True}, headers=key).json
    assert enabled["disabledAt"] is None
    create_item(client, key)
    settle(client)
    assert len(receiver.events("/dead")) == 9


def test_a_delivery_that_gets_through_resets_the_count(sandbox_factory, receiver):
    client = sandbox_factory(disable_webhook_after=2).test_client()
    key = {"X-API-KEY": api_key(client)}
    attempts = 1 + len(FAST_BACKOFF)
    receiver.answers["/flaky"] = [500] * attempts + [200] + [500] * attempts
    flaky = subscribe(client, key, receiver.url("/flaky"), "item/created")
    for _ in range(3):
        create_item(client, key)
        settle(client)
    assert webhook(client, key, flaky["id"])["disabledAt"] is None


def test_a_401_counts_as_a_failed_delivery(sandbox_factory, receiver):
    client = sandbox_factory(disable_webhook_after=1).test_client()
    key = {"X-API-KEY": api_key(client)}
    receiver.answers["/refuses"] = [401]
    refuses = subscribe(client, key, receiver.url("/refuses"), "item/created")
    create_item(client, key)
    settle(client)
    assert len(receiver.events("/refuses")) == 1
    assert webhook(client, key, refuses["id"])["disabledAt"] is not None


# Webhook payloads ----------------------------------------------------------------------------


def test_every_payload_fits_the_sdks_payload_type(sandbox_factory, receiver):
    app = sandbox_factory()
    client = app.test_client()
    key = {"X-API-KEY": api_key(client)}
    subscribe(client, key, receiver.url(), "all")
    item = synced_item(client, key)
    client.patch(f"/items/{item['id']}", json={}, headers=key)
    settle(client)
    client.post(f"/sandbox/items/{item['id']}/restate", json={"delete": 1, "post_pending": True})
    create_item(client, key, parameters={"user": "user-ok", "password": "wrong"})
    create_item(client, key, parameters={"user": "user-ok-app-approval", "password": "password-ok"})
    create_item(client, key, connector=4)
    client.post("/sandbox/connectors/0/status", json={"status": "UNSTABLE"})
    client.delete(f"/items/{item['id']}", headers=key)
    settle(client)

    payloads = [r["json"] for r in receiver.received]
    assert set(PAYLOAD_FIELDS) <= {p["event"] for p in payloads}
    for payload in payloads:
        assert_fits_the_sdk_payload_type(payload)
    changed = [p for p in payloads if p["event"] in ("transactions/updated", "transactions/deleted")]
    assert {p["clientId"] for p in changed} == {world_of(app).client_id}
    status = next(p for p in payloads if p["event"] == "connector/status_updated")
    assert (status["id"], status["data"]) == ("0", {"status": "UNSTABLE"})


# /v2/transactions ----------------------------------------------------------------------------


@pytest.fixture
def account(sandbox_factory):
    client = sandbox_factory(page_size=5).test_client()
    key = {"X-API-KEY": api_key(client)}
    item = synced_item(client, key)
    return client, key, accounts_of(client, key, item["id"])[0]["id"]


def follow_next(client, key, first_query: str) -> tuple[list[dict], list[str]]:
    """Every page, each next page asked for with `next` exactly as given; the rows and the links."""
    rows, links, query = [], [], first_query
    while query is not None:
        page = client.get(f"/v2/transactions{query}", headers=key)
        assert page.status_code == 200, page.json
        validate_response("GET", "/v2/transactions", page.json, 200)
        rows += page.json["results"]
        query = page.json["next"]
        links += [query] if query else []
    return rows, links


def test_next_keeps_every_filter_and_is_ready_to_use(account):
    client, key, account_id = account
    rows = all_transactions(client, key, account_id)
    day_from, day_to = rows[3]["date"][:10], rows[-3]["date"][:10]
    ids = [r["id"] for r in rows[2:30]]
    first = f"?accountId={account_id}&dateFrom={day_from}&dateTo={day_to}&pageSize=4&ids={','.join(ids)}"
    found, links = follow_next(client, key, first)
    assert found == [r for r in rows if r["id"] in ids and day_from <= r["date"][:10] <= day_to]
    assert len(links) >= 2
    for link in links:
        params = dict(parse_qsl(link.lstrip("?")))
        assert params.keys() == {"accountId", "dateFrom", "dateTo", "pageSize", "ids", "after"}
        assert (params["dateFrom"], params["dateTo"], params["pageSize"]) == (day_from, day_to, "4")
        assert params["ids"].split(",") == ids


def test_next_keeps_created_at_from(account):
    client, key, account_id = account
    since = all_transactions(client, key, account_id)[0]["createdAt"]
    found, links = follow_next(client, key, f"?accountId={account_id}&createdAtFrom={since}")
    assert links and all(dict(parse_qsl(link.lstrip("?")))["createdAtFrom"] == since for link in links)
    assert len(found) == len(all_transactions(client, key, account_id))


def test_ids_may_be_comma_separated_repeated_or_both(account):
    client, key, account_id = account
    ids = [r["id"] for r in all_transactions(client, key, account_id)[:6]]
    comma, _ = follow_next(client, key, f"?accountId={account_id}&ids={','.join(ids)}")
    repeated, links = follow_next(client, key, f"?accountId={account_id}" + "".join(f"&ids={i}" for i in ids))
    both, _ = follow_next(
        client, key, f"?accountId={account_id}&ids={','.join(ids[:3])}&ids={ids[3]}&ids={','.join(ids[4:])}"
    )
    assert [r["id"] for r in comma] == [r["id"] for r in repeated] == [r["id"] for r in both] == ids
    assert dict(parse_qsl(links[0].lstrip("?")))["ids"] == ",".join(ids)


def test_over_500_ids_is_ids_parameter_exceeds_max_length(account):
    client, key, account_id = account
    answer = client.get(f"/v2/transactions?accountId={account_id}" + "&ids=a,b" * 251, headers=key)
    assert (answer.status_code, answer.json["codeDescription"]) == (400, "IDS_PARAMETER_EXCEEDS_MAX_LENGTH")
    validate_response("GET", "/v2/transactions", answer.json, 400)
