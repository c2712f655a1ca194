"""The stand-in's item lifecycle: every status Pluggy's types name, the webhooks each one sends,
Open Finance logins by OAuth under a consent, and the products an item serves.

Executions run step by step here (``step_delay=None`` and ``execution.advance``) wherever a test
looks at a passing state, so nothing depends on timing.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from sandbox import data as pf
from sandbox import execution, world_of
from tests.oas import validate_response, validate_schema
from tests.stand_in.helpers import (
    GOOD,
    Receiver,
    accounts_of,
    all_transactions,
    api_key,
    create_item,
    settle,
    subscribe,
    synced_item,
)

OPEN_FINANCE = pf.OPEN_FINANCE_CONNECTOR
CPF = {"cpf": "416.799.495-00"}
ITEM_EVENT_FIELDS = {"event", "eventId", "id", "itemId", "triggeredBy", "clientUserId"}


@pytest.fixture
def stepped(sandbox_factory):
    """A stand-in whose executions move only when the test says so."""
    return sandbox_factory(step_delay=None, deliver=False)


def step_through(app, item_id: str) -> list[tuple[str, str]]:
    """Run the item's execution one step at a time: the (status, executionStatus) after each."""
    world = world_of(app)
    seen = []
    with world.lock:
        record = world.record_for(item_id)
        keep_going = True
        while keep_going:
            keep_going = execution.advance(world, record)
            seen.append((record.json["status"], record.json["executionStatus"]))
            validate_schema("Item", record.json)
    return seen


def held_events(app) -> list[dict]:
    return [delivery.payload for delivery in world_of(app).deliverer.held]


def assert_item_event_shapes(payloads: list[dict]) -> None:
    """As the SDK's WebhookEventPayload types item events; item/error adds error {code, message}."""
    for payload in payloads:
        if not payload["event"].startswith("item/"):
            continue
        expected = ITEM_EVENT_FIELDS | ({"error"} if payload["event"] == "item/error" else set())
        assert set(payload) == expected, payload
        assert payload["id"] == payload["eventId"]
        assert payload["triggeredBy"] in ("CLIENT", "USER", "SYNC", "INTERNAL")
        if payload["event"] == "item/error":
            assert set(payload["error"]) == {"code", "message"}


def subscribed_client(app, receiver: Receiver | str):
    """A client of the stand-in, with every event going to ``receiver`` (a URL: held undelivered)."""
    client = app.test_client()
    key = {"X-API-KEY": api_key(client)}
    subscribe(client, key, receiver if isinstance(receiver, str) else receiver.url())
    return client, key


# Steps and item/created ---------------------------------------------------------------------


def test_an_execution_logs_in_collects_merges_then_is_updated(stepped):
    client, key = subscribed_client(stepped, "http://127.0.0.1:1/held")
    item = create_item(client, key)
    assert step_through(stepped, item["id"]) == [
        ("UPDATING", "LOGIN_IN_PROGRESS"),
        ("UPDATING", "ACCOUNTS_IN_PROGRESS"),
        ("MERGING", "TRANSACTIONS_IN_PROGRESS"),
        ("UPDATED", "SUCCESS"),
    ]
    assert [p["event"] for p in held_events(stepped)] == [
        "item/login_succeeded",
        "transactions/created",
        "transactions/created",
        "item/created",
    ]
    assert_item_event_shapes(held_events(stepped))


def test_mfa_is_asked_after_the_login_started(stepped):
    client, key = subscribed_client(stepped, "http://127.0.0.1:1/held")
    item = create_item(client, key, connector=4)
    assert step_through(stepped, item["id"]) == [
        ("UPDATING", "LOGIN_IN_PROGRESS"),
        ("WAITING_USER_INPUT", "WAITING_USER_INPUT"),
    ]
    waiting = client.get(f"/items/{item['id']}", headers=key).json
    validate_response("GET", "/items/{id}", waiting, 200)
    assert waiting["parameter"]["optional"] is False and waiting["parameter"]["mfa"] is True
    assert [p["event"] for p in held_events(stepped)] == ["item/waiting_user_input"]
    client.post(f"/items/{item['id']}/mfa", json={"token": pf.MFA_VALUE}, headers=key)
    assert step_through(stepped, item["id"])[0] == ("UPDATING", "ACCOUNTS_IN_PROGRESS")
    assert held_events(stepped)[-1]["event"] == "item/created"


def test_item_created_is_sent_once_and_later_executions_end_with_item_updated(app, receiver):
    client, key = subscribed_client(app, receiver)
    item = synced_item(client, key)
    client.patch(f"/items/{item['id']}", json={}, headers=key)
    settle(client)
    finished = [e for e in receiver.events() if e in ("item/created", "item/updated")]
    assert finished == ["item/created", "item/updated"]


def test_a_failed_first_login_sends_item_error_only_and_a_later_success_item_created(app, receiver):
    client, key = subscribed_client(app, receiver)
    item = synced_item(client, key, parameters={"user": "user-ok", "password": "wrong"})
    assert receiver.events() == ["item/error"]
    assert receiver.received[0]["json"]["error"]["code"] == "INVALID_CREDENTIALS"
    client.patch(f"/items/{item['id']}", json={"parameters": GOOD}, headers=key)
    settle(client)
    assert receiver.events()[-1] == "item/created"
    assert_item_event_shapes([r["json"] for r in receiver.received])


def test_outdated_is_an_execution_that_fails_after_its_login(app, receiver):
    client, key = subscribed_client(app, receiver)
    item = synced_item(client, key, parameters={"user": "user-error", "password": "password-ok"})
    assert (item["status"], item["executionStatus"]) == ("OUTDATED", "UNEXPECTED_ERROR")
    assert item["error"]["code"] == "UNEXPECTED_ERROR" and item["consecutiveFailedLoginAttempts"] == 0
    validate_response("GET", "/items/{id}", item, 200)
    assert receiver.events() == ["item/login_succeeded", "item/error"]
    assert receiver.received[-1]["json"]["error"] == {
        "code": "UNEXPECTED_ERROR",
        "message": pf.ERROR_MESSAGES["UNEXPECTED_ERROR"],
    }


@pytest.mark.parametrize("steps", [1, 3], ids=["updating", "merging"])
def test_patch_is_refused_while_the_item_is_updating_or_merging(stepped, steps):
    client = stepped.test_client()
    key = {"X-API-KEY": api_key(client)}
    item = create_item(client, key)
    world = world_of(stepped)
    with world.lock:
        for _ in range(steps):
            execution.advance(world, world.record_for(item["id"]))
        status = world.record_for(item["id"]).json["status"]
    assert status == ("UPDATING" if steps == 1 else "MERGING")
    refused = client.patch(f"/items/{item['id']}", json={}, headers=key)
    assert (refused.status_code, refused.json["codeDescription"]) == (409, "ITEM_ALREADY_UPDATING")
    validate_schema("GlobalErrorResponse", refused.json)


# Waiting for the user's action ----------------------------------------------------------------

APPROVAL = {"user": "user-ok-app-approval", "password": "password-ok"}


def test_an_approval_in_the_banks_app_waits_for_the_user_then_resumes(app, receiver):
    client, key = subscribed_client(app, receiver)
    item = synced_item(client, key, parameters=APPROVAL)
    assert (item["status"], item["executionStatus"]) == ("WAITING_USER_ACTION", "WAITING_USER_ACTION")
    validate_response("GET", "/items/{id}", item, 200)
    assert item["userAction"]["type"] == "authorize-access" and item["userAction"]["instructions"]
    assert item["userAction"]["expiresAt"] > item["updatedAt"]
    assert receiver.events() == ["item/waiting_user_action"]

    resumed = client.post(f"/sandbox/items/{item['id']}/authorize", json={})
    assert (resumed.json["status"], resumed.json["userAction"]) == ("UPDATING", None)
    settle(client)
    assert client.get(f"/items/{item['id']}", headers=key).json["status"] == "UPDATED"
    assert receiver.events()[1] == "item/login_succeeded" and receiver.events()[-1] == "item/created"
    assert_item_event_shapes([r["json"] for r in receiver.received])


def test_a_refused_approval_is_user_authorization_not_granted(client, key):
    item = synced_item(client, key, parameters=APPROVAL)
    refused = client.post(f"/sandbox/items/{item['id']}/authorize", json={"grant": False}).json
    assert (refused["status"], refused["executionStatus"]) == ("LOGIN_ERROR", "USER_AUTHORIZATION_NOT_GRANTED")
    assert refused["error"]["code"] == "USER_AUTHORIZATION_NOT_GRANTED"
    again = client.post(f"/sandbox/items/{item['id']}/authorize", json={})
    assert again.status_code == 400


def test_an_approval_never_given_ends_as_user_authorization_pending(sandbox_factory, receiver):
    client = sandbox_factory(mfa_timeout_s=0.05).test_client()
    key = {"X-API-KEY": api_key(client)}
    subscribe(client, key, receiver.url(), "item/error")
    item = create_item(client, key, parameters=APPROVAL)
    assert receiver.wait_for(lambda received: len(received) == 1)
    assert receiver.received[0]["json"]["error"]["code"] == "USER_AUTHORIZATION_PENDING"
    ended = client.get(f"/items/{item['id']}", headers=key).json
    assert (ended["status"], ended["executionStatus"]) == ("LOGIN_ERROR", "USER_AUTHORIZATION_PENDING")
    assert ended["userAction"] is None


def test_user_authorization_pending_user_fails_its_login(client, key):
    user = {"user": "user-authorization-pending", "password": "password-ok"}
    item = synced_item(client, key, parameters=user)
    assert (item["status"], item["executionStatus"]) == ("LOGIN_ERROR", "USER_AUTHORIZATION_PENDING")
    validate_response("GET", "/items/{id}", item, 200)


# Open Finance ---------------------------------------------------------------------------------


def widget_token(client, key, **options) -> dict[str, str]:
    answer = client.post("/connect_token", json={"options": options}, headers=key)
    assert answer.status_code == 200, answer.json
    return {"X-API-KEY": answer.json["accessToken"]}


def waiting_for_oauth(client, headers, **fields) -> dict:
    item = create_item(client, headers, connector=OPEN_FINANCE, parameters=CPF, **fields)
    settle(client)
    waiting = client.get(f"/items/{item['id']}", headers=headers).json
    assert (waiting["status"], waiting["executionStatus"]) == ("WAITING_USER_INPUT", "WAITING_USER_INPUT")
    return waiting


def test_the_open_finance_connector_logs_in_by_cpf_and_oauth(client, key):
    connector = pf.connector_json(pf.CONNECTORS[OPEN_FINANCE])
    validate_schema("Connector", connector)
    assert (connector["isOpenFinance"], connector["oauth"]) == (True, True)
    assert [c["name"] for c in connector["credentials"]] == ["cpf"]
    assert all(c["optional"] is False for c in connector["credentials"])
    missing = client.post("/items", json={"connectorId": OPEN_FINANCE, "parameters": GOOD}, headers=key)
    assert missing.status_code == 400 and missing.json["details"][0]["parameter"] == "cpf"


def test_oauth_flow_redirects_to_the_token_redirect_uri_then_collects_under_a_consent(client, key, receiver):
    subscribe(client, key, receiver.url())
    widget = widget_token(client, key, oauthRedirectUri="https://app.example/back")
    waiting = waiting_for_oauth(client, widget)
    validate_response("GET", "/items/{id}", waiting, 200)
    oauth_url = waiting["parameter"]["data"]
    assert oauth_url.endswith(f"/sandbox/oauth/{waiting['id']}") and waiting["consentExpiresAt"] is None
    assert receiver.events() == ["item/waiting_user_input"]
    refused = client.post(f"/items/{waiting['id']}/mfa", json={"oauthCode": "x"}, headers=widget)
    assert refused.status_code == 400

    redirected = client.get(urlsplit(oauth_url).path)
    assert (redirected.status_code, redirected.headers["Location"]) == (302, "https://app.example/back")
    settle(client)
    item = client.get(f"/items/{waiting['id']}", headers=key).json
    validate_response("GET", "/items/{id}", item, 200)
    assert (item["status"], item["parameter"]) == ("UPDATED", None)
    assert [a["type"] for a in accounts_of(client, key, item["id"])] == ["BANK", "CREDIT"]
    assert receiver.events()[-1] == "item/created"

    consents = client.get(f"/consents?itemId={item['id']}", headers=key)
    validate_response("GET", "/consents", consents.json, 200)
    [consent] = consents.json["results"]
    assert consent["itemId"] == item["id"] and consent["expiresAt"] == item["consentExpiresAt"]
    assert consent["products"] == item["products"] and consent["revokedAt"] is None
    assert client.get(f"/consents/{consent['id']}", headers=key).json == consent
    assert client.get("/consents/nope", headers=key).status_code == 404


def test_a_live_consent_lets_the_item_refresh_without_its_user(client, key):
    item = waiting_for_oauth(client, key)
    client.post(f"/sandbox/items/{item['id']}/authorize", json={})
    settle(client)
    client.patch(f"/items/{item['id']}", json={}, headers=key)
    settle(client)
    assert client.get(f"/items/{item['id']}", headers=key).json["status"] == "UPDATED"


def test_a_refused_oauth_authorization_is_a_login_error(client, key):
    item = waiting_for_oauth(client, key)
    refused = client.post(f"/sandbox/items/{item['id']}/authorize", json={"grant": False}).json
    assert (refused["status"], refused["executionStatus"]) == ("LOGIN_ERROR", "USER_AUTHORIZATION_NOT_GRANTED")
    assert client.get(f"/consents?itemId={item['id']}", headers=key).json["results"] == []


@pytest.mark.parametrize("how", ["expire", "revoke"])
def test_an_ended_consent_empties_the_data_routes_until_the_user_authorizes_again(client, key, how):
    item = waiting_for_oauth(client, key)
    client.post(f"/sandbox/items/{item['id']}/authorize", json={})
    settle(client)
    [bank, _card] = accounts_of(client, key, item["id"])
    assert all_transactions(client, key, bank["id"])

    ended = client.post(f"/sandbox/items/{item['id']}/consent/{how}").json
    assert ended["revokedAt" if how == "revoke" else "expiresAt"] is not None
    validate_schema("Consent", ended)
    empty = client.get(f"/accounts?itemId={item['id']}", headers=key).json
    validate_response("GET", "/accounts", empty, 200)
    assert empty["results"] == [] and empty["total"] == 0
    assert client.get("/v2/transactions", query_string={"accountId": bank["id"]}, headers=key).json == {
        "results": [],
        "next": None,
    }

    client.patch(f"/items/{item['id']}", json={}, headers=key)
    settle(client)
    again = client.get(f"/items/{item['id']}", headers=key).json
    assert again["status"] == "WAITING_USER_INPUT" and again["parameter"]["name"] == "oauthCode"
    client.post(f"/sandbox/items/{item['id']}/authorize", json={})
    settle(client)
    assert all_transactions(client, key, bank["id"])


def test_consent_routes_need_an_item_with_a_consent(client, key):
    item = synced_item(client, key)
    assert client.get(f"/consents?itemId={item['id']}", headers=key).json["results"] == []
    assert client.get("/consents", headers=key).status_code == 400
    assert client.post(f"/sandbox/items/{item['id']}/consent/expire").status_code == 404


# Products ---------------------------------------------------------------------------------------


def test_an_item_serves_its_connectors_products_unless_asked_for_fewer(client, key):
    assert synced_item(client, key)["products"] == pf.PRODUCTS
    widget = widget_token(client, key, products=["ACCOUNTS", "TRANSACTIONS", "BROKERAGE_NOTE"])
    limited = synced_item(client, widget)
    assert limited["products"] == ["ACCOUNTS", "TRANSACTIONS"]  # the connector has no BROKERAGE_NOTE
    assert [a["type"] for a in accounts_of(client, key, limited["id"])] == ["BANK"]
    # The item's own products win over the token's (ItemOptions.products in the Python SDK).
    own = synced_item(client, widget, products=["CREDIT_CARDS", "TRANSACTIONS"])
    assert own["products"] == ["CREDIT_CARDS", "TRANSACTIONS"]
    assert [a["type"] for a in accounts_of(client, key, own["id"])] == ["CREDIT"]
    world = world_of(client.application)
    assert world.offers(own["id"], "CREDIT_CARDS") and not world.offers(own["id"], "ACCOUNTS")


def test_products_can_change_with_an_update(client, key):
    item = synced_item(client, key)
    answer = client.patch(f"/items/{item['id']}", json={"products": ["ACCOUNTS"]}, headers=key)
    assert answer.json["products"] == ["ACCOUNTS"]
    settle(client)


@pytest.mark.parametrize("products", ["ACCOUNTS", ["ACCOUNTS", "NOPE"]])
def test_unknown_products_are_400(client, key, products):
    body = {"connectorId": 0, "parameters": GOOD, "products": products}
    assert client.post("/items", json=body, headers=key).status_code == 400
    token = client.post("/connect_token", json={"options": {"products": products}}, headers=key)
    assert token.status_code == 400
