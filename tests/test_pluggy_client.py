"""PluggyClient against a mocked Pluggy (responses): requests sent, answers parsed, paging, errors."""

from __future__ import annotations

import json
import logging
import pickle
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import pytest
import requests
import responses
from responses import matchers
from responses.registries import OrderedRegistry

from observability.logs import JsonFormatter
from pluggy_client import (
    ConnectToken,
    PluggyAuthError,
    PluggyClient,
    PluggyError,
    PluggyNotFound,
    PluggyRateLimited,
    PluggyUnavailable,
)
from sandbox import data as pf
from tests.oas import validate_request

BASE_URL = "https://api.pluggy.test"
CLIENT_ID = "5f9f2a74-7f0e-4b6c-9a43-1b1c1f0d9f10"
CLIENT_SECRET = "client-secret-3c1e9f0a"
START = datetime(2024, 5, 10, 12, 0, tzinfo=UTC).timestamp()
API_KEY = pf.api_key(exp=START + 2 * 3600)
ITEM_ID = "0b8e43f4-1c3a-4f6e-9b0c-4f2d9f6c8a11"
ACCOUNT_ID = "3f7a9c2e-5b1d-4e8a-a6c4-7d2e1f0b9c33"
SERVER_ERROR = pf.error_body(500, None, "Internal Server Error")


class FakeClock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta.total_seconds()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def api_client(clock: FakeClock) -> Iterator[PluggyClient]:
    pluggy = PluggyClient(BASE_URL, CLIENT_ID, CLIENT_SECRET, clock=clock)
    yield pluggy
    pluggy.close()


@pytest.fixture
def pluggy() -> Iterator[responses.RequestsMock]:
    """Pluggy mocked; every registered answer is served once, in registration order, and must be used."""
    with responses.RequestsMock(assert_all_requests_are_fired=True, registry=OrderedRegistry) as mock:
        yield mock


def expect_auth(pluggy: responses.RequestsMock, api_key: str = API_KEY) -> None:
    pluggy.post(
        f"{BASE_URL}/auth",
        json=pf.auth_response(api_key),
        match=[matchers.json_params_matcher({"clientId": CLIENT_ID, "clientSecret": CLIENT_SECRET})],
    )


def with_key(api_key: str = API_KEY) -> Callable[..., Any]:
    return matchers.header_matcher({"X-API-KEY": api_key})


# --- items ---------------------------------------------------------------------------------------


def test_get_item_authenticates_and_returns_pluggys_json(api_client, pluggy):
    item = pf.item(id=ITEM_ID, someFutureField={"kept": True})
    expect_auth(pluggy)
    pluggy.get(f"{BASE_URL}/items/{ITEM_ID}", json=item, match=[with_key()])

    assert api_client.get_item(ITEM_ID) == item


@pytest.mark.parametrize(
    "body",
    [
        '{"id": "i", "description": "Caf\\u00e9 \\ud83d\\ude00", "amount": -12.30}',
        '{"id": "i", "description": "half a pair: \\ud800", "order": 123456789012345678901234567890}',
    ],
)
def test_an_answer_is_read_as_json_reads_it(api_client, pluggy, body):
    """orjson reads answers, and json what orjson refuses (a lone surrogate, an integer beyond 64 bits)."""
    expect_auth(pluggy)
    pluggy.get(f"{BASE_URL}/items/{ITEM_ID}", body=body, content_type="application/json")
    assert api_client.get_item(ITEM_ID) == json.loads(body)


def test_an_answer_that_is_not_json_is_a_pluggy_error(api_client, pluggy):
    expect_auth(pluggy)
    pluggy.get(f"{BASE_URL}/items/{ITEM_ID}", body="<html>gateway</html>", content_type="text/html")
    with pytest.raises(PluggyError, match="not JSON"):
        api_client.get_item(ITEM_ID)


def test_path_segments_are_url_quoted(api_client, pluggy):
    expect_auth(pluggy)
    pluggy.get(f"{BASE_URL}/items/a%2Fb%3Fc", json=pf.item())

    api_client.get_item("a/b?c")


def test_update_item_sends_only_what_is_given(api_client, pluggy):
    body = {
        "parameters": {"user": "user-ok", "password": "password-ok"},
        "webhookUrl": "https://sync.example.com/hooks/items",
        "clientUserId": "user-42",
    }
    validate_request("PATCH", "/items/{id}", body)
    expect_auth(pluggy)
    pluggy.patch(
        f"{BASE_URL}/items/{ITEM_ID}",
        json=pf.item(id=ITEM_ID, status="UPDATING"),
        match=[with_key(), matchers.json_params_matcher(body)],
    )

    item = api_client.update_item(ITEM_ID, body["parameters"], webhook_url=body["webhookUrl"], client_user_id="user-42")

    assert item["status"] == "UPDATING"


@pytest.mark.parametrize("call", [lambda c: c.update_item(ITEM_ID), lambda c: c.trigger_item_update(ITEM_ID)])
def test_refreshing_an_item_sends_an_empty_body(api_client, pluggy, call):
    expect_auth(pluggy)
    pluggy.patch(
        f"{BASE_URL}/items/{ITEM_ID}",
        json=pf.item(id=ITEM_ID, status="UPDATING"),
        match=[with_key(), matchers.json_params_matcher({})],
    )

    call(api_client)

    assert pluggy.calls[-1].request.body == b"{}"


def test_send_mfa_posts_the_flat_values_and_returns_the_item(api_client, pluggy):
    expect_auth(pluggy)
    pluggy.post(
        f"{BASE_URL}/items/{ITEM_ID}/mfa",
        json=pf.item(id=ITEM_ID, status="UPDATING", executionStatus="LOGIN_MFA_IN_PROGRESS"),
        match=[with_key(), matchers.json_params_matcher({"token": "123456"})],
    )

    item = api_client.send_mfa(ITEM_ID, {"token": "123456"})

    assert item["executionStatus"] == "LOGIN_MFA_IN_PROGRESS"


def test_delete_item_returns_the_count(api_client, pluggy):
    expect_auth(pluggy)
    pluggy.delete(f"{BASE_URL}/items/{ITEM_ID}", json=pf.count_response(), match=[with_key()])

    assert api_client.delete_item(ITEM_ID) == {"count": 1}


# --- accounts ------------------------------------------------------------------------------------


def test_list_accounts_filters_by_item_and_type(api_client, pluggy):
    accounts = [pf.credit_card_account(itemId=ITEM_ID)]
    expect_auth(pluggy)
    pluggy.get(
        f"{BASE_URL}/accounts",
        json=pf.page(accounts),
        match=[with_key(), matchers.query_param_matcher({"itemId": ITEM_ID, "type": "CREDIT"})],
    )

    assert api_client.list_accounts(ITEM_ID, type="CREDIT") == accounts


def test_list_accounts_follows_every_page(api_client, pluggy):
    first, second = pf.account(itemId=ITEM_ID), pf.credit_card_account(itemId=ITEM_ID)
    expect_auth(pluggy)
    pluggy.get(
        f"{BASE_URL}/accounts",
        json=pf.page([first], total_pages=2),
        match=[matchers.query_param_matcher({"itemId": ITEM_ID})],
    )
    pluggy.get(
        f"{BASE_URL}/accounts",
        json=pf.page([second], number=2, total_pages=2),
        match=[matchers.query_param_matcher({"itemId": ITEM_ID, "page": "2"})],
    )

    assert api_client.list_accounts(ITEM_ID) == [first, second]


# --- transactions --------------------------------------------------------------------------------


def expect_transactions(pluggy, query: dict, page: dict) -> None:
    pluggy.get(
        f"{BASE_URL}/v2/transactions",
        json=page,
        match=[with_key(), matchers.query_param_matcher(query)],
    )


def test_iter_transactions_sends_the_filters_in_pluggys_formats(api_client, pluggy):
    rows = [pf.transaction(accountId=ACCOUNT_ID)]
    expect_auth(pluggy)
    expect_transactions(
        pluggy,
        {"accountId": ACCOUNT_ID, "dateFrom": "2024-05-01", "dateTo": "2024-05-10"},
        pf.transactions_page(rows),
    )
    expect_transactions(
        pluggy,
        {"accountId": ACCOUNT_ID, "createdAtFrom": "2024-05-10T12:30:00.250Z"},
        pf.transactions_page(rows),
    )

    by_date = list(api_client.iter_transactions(ACCOUNT_ID, date_from=date(2024, 5, 1), date_to="2024-05-10"))
    brasilia = timezone(timedelta(hours=-3))
    by_creation = list(
        api_client.iter_transactions(
            ACCOUNT_ID, created_at_from=datetime(2024, 5, 10, 9, 30, 0, 250_000, tzinfo=brasilia)
        )
    )

    assert by_date == by_creation == [rows]


def test_created_at_from_strings_are_normalised_to_utc(api_client, pluggy):
    expect_auth(pluggy)
    expect_transactions(
        pluggy,
        {"accountId": ACCOUNT_ID, "createdAtFrom": "2024-05-10T12:00:00.000Z"},
        pf.transactions_page([]),
    )

    list(api_client.iter_transactions(ACCOUNT_ID, created_at_from="2024-05-10T09:00:00-03:00"))


def test_iter_transactions_follows_the_cursor_repeating_the_filters(api_client, pluggy):
    first, second = [pf.transaction(accountId=ACCOUNT_ID)], [pf.transaction(accountId=ACCOUNT_ID)]
    query = {"accountId": ACCOUNT_ID, "dateFrom": "2024-05-01"}
    expect_auth(pluggy)
    expect_transactions(pluggy, query, pf.transactions_page(first, after="cursor+/=1"))
    expect_transactions(pluggy, {**query, "after": "cursor+/=1"}, pf.transactions_page(second))

    assert list(api_client.iter_transactions(ACCOUNT_ID, date_from="2024-05-01")) == [first, second]


def test_iter_transactions_fetches_a_page_only_when_asked(api_client, pluggy):
    expect_auth(pluggy)
    first_page = pf.transactions_page([pf.transaction()], after="c1")
    expect_transactions(pluggy, {"accountId": ACCOUNT_ID}, first_page)
    expect_transactions(pluggy, {"accountId": ACCOUNT_ID, "after": "c1"}, pf.transactions_page([]))

    pages = api_client.iter_transactions(ACCOUNT_ID)
    assert len(pluggy.calls) == 0
    next(pages)
    assert len(pluggy.calls) == 2  # /auth and the first page
    next(pages)
    assert len(pluggy.calls) == 3
    assert list(pages) == []


def test_more_than_500_ids_are_split_into_chunks(api_client, pluggy):
    ids = [pf.new_id() for _ in range(1001)]
    expect_auth(pluggy)
    for chunk in (ids[:500], ids[500:1000], ids[1000:]):
        query = {"accountId": ACCOUNT_ID, "ids": ",".join(chunk)}
        expect_transactions(pluggy, query, pf.transactions_page([]))

    assert list(api_client.iter_transactions(ACCOUNT_ID, ids=ids)) == [[], [], []]


def test_an_empty_id_list_asks_pluggy_nothing(api_client, pluggy):
    assert list(api_client.iter_transactions(ACCOUNT_ID, ids=[])) == []


@pytest.mark.parametrize(
    "filters",
    [
        {"created_at_from": "2024-05-10T12:00:00Z", "date_from": "2024-05-01"},
        {"created_at_from": datetime(2024, 5, 10, 12, 0)},
        {"date_from": "10/05/2024"},
    ],
    ids=["created_at_from with date_from", "naive created_at_from", "unreadable date"],
)
def test_bad_filters_raise_before_any_request(api_client, pluggy, filters):
    with pytest.raises(ValueError):
        api_client.iter_transactions(ACCOUNT_ID, **filters)


def test_a_next_link_without_cursor_is_an_error(api_client, pluggy):
    expect_auth(pluggy)
    expect_transactions(pluggy, {"accountId": ACCOUNT_ID}, {"results": [], "next": "?accountId=x"})

    with pytest.raises(PluggyError, match="cursor"):
        list(api_client.iter_transactions(ACCOUNT_ID))


def test_get_transaction(api_client, pluggy):
    transaction = pf.transaction()
    expect_auth(pluggy)
    pluggy.get(f"{BASE_URL}/transactions/{transaction['id']}", json=transaction, match=[with_key()])

    assert api_client.get_transaction(transaction["id"]) == transaction


# --- connect tokens ------------------------------------------------------------------------------


def test_connect_token_nests_the_given_options(api_client, pluggy):
    body = {"itemId": ITEM_ID, "options": {"clientUserId": "user-42", "avoidDuplicates": True}}
    validate_request("POST", "/connect_token", body)
    expect_auth(pluggy)
    pluggy.post(
        f"{BASE_URL}/connect_token",
        json=pf.connect_token_response("ct-secret-1"),
        match=[with_key(), matchers.json_params_matcher(body)],
    )

    token = api_client.create_connect_token(ITEM_ID, client_user_id="user-42", avoid_duplicates=True)

    assert token == ConnectToken("ct-secret-1", ITEM_ID, datetime(2024, 5, 10, 12, 30, tzinfo=UTC))
    assert token.expires_at.tzinfo is not None
    assert "ct-secret-1" not in repr(token)


def test_connect_token_without_arguments_sends_an_empty_body(api_client, pluggy):
    expect_auth(pluggy)
    pluggy.post(
        f"{BASE_URL}/connect_token",
        json=pf.connect_token_response("ct-secret-1"),
        match=[matchers.json_params_matcher({})],
    )

    assert api_client.create_connect_token().item_id is None


def test_connect_tokens_are_reused_for_25_minutes_per_argument_set(api_client, pluggy, clock):
    expect_auth(pluggy)
    for token in ("ct-1", "ct-2", "ct-3"):
        pluggy.post(f"{BASE_URL}/connect_token", json=pf.connect_token_response(token))

    first = api_client.create_connect_token(ITEM_ID)
    clock.advance(timedelta(minutes=24, seconds=59))
    assert api_client.create_connect_token(ITEM_ID) is first
    assert api_client.create_connect_token(ITEM_ID, client_user_id="user-42").access_token == "ct-2"
    clock.advance(timedelta(seconds=1))
    assert api_client.create_connect_token(ITEM_ID).access_token == "ct-3"


# --- webhooks ------------------------------------------------------------------------------------


def test_create_webhook(api_client, pluggy):
    body = {
        "event": "transactions/created",
        "url": "https://sync.example.com/hooks",
        "headers": {"X-Token": "hook-secret"},
    }
    validate_request("POST", "/webhooks", body)
    created = pf.webhook(event=body["event"], url=body["url"])
    expect_auth(pluggy)
    pluggy.post(
        f"{BASE_URL}/webhooks",
        status=201,
        json=created,
        match=[with_key(), matchers.json_params_matcher(body)],
    )

    assert api_client.create_webhook(body["event"], body["url"], body["headers"]) == created


def test_create_webhook_without_headers_leaves_them_out(api_client, pluggy):
    expect_auth(pluggy)
    pluggy.post(
        f"{BASE_URL}/webhooks",
        status=201,
        json=pf.webhook(),
        match=[matchers.json_params_matcher({"event": "item/updated", "url": "https://sync.example.com/hooks"})],
    )

    api_client.create_webhook("item/updated", "https://sync.example.com/hooks")


def test_list_webhooks_returns_the_results(api_client, pluggy):
    hooks = [pf.webhook(), pf.webhook(event="item/error")]
    expect_auth(pluggy)
    pluggy.get(f"{BASE_URL}/webhooks", json=pf.page(hooks), match=[with_key()])

    assert api_client.list_webhooks() == hooks


def test_list_webhooks_accepts_no_content(api_client, pluggy):
    expect_auth(pluggy)
    pluggy.get(f"{BASE_URL}/webhooks", status=204)

    assert api_client.list_webhooks() == []


def test_update_webhook_patches_the_given_fields(api_client, pluggy):
    hook = pf.webhook()
    fields = {"url": "https://sync.example.com/v2/hooks", "enabled": False, "headers": None}
    validate_request("PATCH", "/webhooks/{id}", fields)
    expect_auth(pluggy)
    pluggy.patch(
        f"{BASE_URL}/webhooks/{hook['id']}",
        json=hook,
        match=[with_key(), matchers.json_params_matcher(fields)],
    )

    assert api_client.update_webhook(hook["id"], **fields) == hook


def test_update_webhook_rejects_unknown_fields(api_client, pluggy):
    with pytest.raises(TypeError, match="colour"):
        api_client.update_webhook("hook-1", url="https://sync.example.com/hooks", colour="blue")


def test_delete_webhook(api_client, pluggy):
    expect_auth(pluggy)
    pluggy.delete(f"{BASE_URL}/webhooks/hook%2F1", json=pf.count_response(), match=[with_key()])

    assert api_client.delete_webhook("hook/1") == {"count": 1}


# --- API key -------------------------------------------------------------------------------------


def test_the_api_key_is_fetched_once_and_reused(api_client, pluggy):
    expect_auth(pluggy)
    pluggy.get(f"{BASE_URL}/items/{ITEM_ID}", json=pf.item(), match=[with_key()])
    pluggy.get(f"{BASE_URL}/items/{ITEM_ID}", json=pf.item(), match=[with_key()])

    api_client.get_item(ITEM_ID)
    api_client.get_item(ITEM_ID)


@pytest.mark.parametrize(
    ("api_key", "lifetime"),
    [(API_KEY, timedelta(hours=2)), ("opaque-key-without-exp", timedelta(hours=2))],
    ids=["jwt exp", "not a jwt"],
)
def test_the_api_key_is_renewed_5_minutes_before_it_expires(api_client, pluggy, clock, api_key, lifetime):
    renewed = pf.api_key(exp=START + 4 * 3600)
    expect_auth(pluggy, api_key)
    pluggy.get(f"{BASE_URL}/items/{ITEM_ID}", json=pf.item(), match=[with_key(api_key)])
    pluggy.get(f"{BASE_URL}/items/{ITEM_ID}", json=pf.item(), match=[with_key(api_key)])
    expect_auth(pluggy, renewed)
    pluggy.get(f"{BASE_URL}/items/{ITEM_ID}", json=pf.item(), match=[with_key(renewed)])

    api_client.get_item(ITEM_ID)
    clock.advance(lifetime - timedelta(minutes=5, seconds=1))
    api_client.get_item(ITEM_ID)
    clock.advance(timedelta(seconds=1))
    api_client.get_item(ITEM_ID)


@pytest.mark.parametrize("refusal", [401, 403])
def test_a_refused_key_is_renewed_and_the_call_retried_once(api_client, pluggy, refusal):
    renewed = pf.api_key(exp=START + 4 * 3600)
    expect_auth(pluggy)
    refused = pf.error_body(refusal, None, "Unauthorized")
    pluggy.patch(f"{BASE_URL}/items/{ITEM_ID}", status=refusal, json=refused)
    expect_auth(pluggy, renewed)
    pluggy.patch(
        f"{BASE_URL}/items/{ITEM_ID}",
        json=pf.item(status="UPDATING"),
        match=[with_key(renewed), matchers.json_params_matcher({})],
    )

    assert api_client.trigger_item_update(ITEM_ID)["status"] == "UPDATING"


def test_a_second_refusal_raises_auth_error(api_client, pluggy):
    expect_auth(pluggy)
    pluggy.get(f"{BASE_URL}/items/{ITEM_ID}", status=401, json=pf.error_body(401, None, "Unauthorized"))
    expect_auth(pluggy)
    pluggy.get(f"{BASE_URL}/items/{ITEM_ID}", status=401, json=pf.error_body(401, None, "Unauthorized"))

    with pytest.raises(PluggyAuthError) as raised:
        api_client.get_item(ITEM_ID)

    assert raised.value.status == 401


def test_refused_client_credentials_raise_auth_error(api_client, pluggy):
    pluggy.post(
        f"{BASE_URL}/auth",
        status=401,
        json=pf.error_body(401, "CLIENT_KEYS_UNAUTHORIZED", "Client keys are invalid"),
    )

    with pytest.raises(PluggyAuthError) as raised:
        api_client.get_item(ITEM_ID)

    assert raised.value.code_description == "CLIENT_KEYS_UNAUTHORIZED"


def test_concurrent_first_calls_fetch_the_key_once(api_client, pluggy):
    threads_count = 8
    expect_auth(pluggy)
    for _ in range(threads_count):
        pluggy.get(f"{BASE_URL}/items/{ITEM_ID}", json=pf.item(), match=[with_key()])
    start_together = threading.Barrier(threads_count)
    failures: list[BaseException] = []

    def fetch_item() -> None:
        start_together.wait()
        try:
            api_client.get_item(ITEM_ID)
        except BaseException as exc:  # reported to the main thread below
            failures.append(exc)

    threads = [threading.Thread(target=fetch_item) for _ in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert failures == []
    assert [call.request.url for call in pluggy.calls].count(f"{BASE_URL}/auth") == 1


# --- errors --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "code_description", "data", "error_class"),
    [
        (400, "CONNECTOR_REQUIRED_PARAMETER_VALIDATION_ERROR", {"parameter": "token"}, PluggyError),
        (404, "ITEM_NOT_FOUND", None, PluggyNotFound),
        (
            409,
            "CLIENT_IS_UPDATING_BEFORE_ALLOWED_FREQUENCY",
            {"minUpdateFrequencyAllowedInHours": 24, "lastUpdatedAt": "2024-05-10T09:15:42.118Z"},
            PluggyError,
        ),
        (502, None, None, PluggyUnavailable),
    ],
)
def test_error_answers_become_typed_errors(api_client, pluggy, status, code_description, data, error_class):
    body = pf.error_body(status, code_description, "Pluggy refused", data)
    expect_auth(pluggy)
    pluggy.patch(f"{BASE_URL}/items/{ITEM_ID}", status=status, json=body)

    with pytest.raises(PluggyError) as raised:
        api_client.trigger_item_update(ITEM_ID)

    error = raised.value
    assert type(error) is error_class
    assert (error.status, error.code_description, error.message, error.data) == (
        status,
        code_description,
        "Pluggy refused",
        data,
    )


def test_error_text_names_status_and_code_description(api_client, pluggy):
    body = pf.error_body(
        409,
        "CLIENT_IS_UPDATING_BEFORE_ALLOWED_FREQUENCY",
        "Client updates on this item are allowed at most every 24 hours",
        {"minUpdateFrequencyAllowedInHours": 24},
    )
    expect_auth(pluggy)
    pluggy.patch(f"{BASE_URL}/items/{ITEM_ID}", status=409, json=body)

    with pytest.raises(PluggyError) as raised:
        api_client.trigger_item_update(ITEM_ID)

    assert str(raised.value) == (
        "Pluggy 409 CLIENT_IS_UPDATING_BEFORE_ALLOWED_FREQUENCY: "
        "Client updates on this item are allowed at most every 24 hours"
    )


@pytest.mark.parametrize("status", [401, 403])
def test_refusals_raise_auth_errors(api_client, pluggy, status):
    for _ in range(2):
        expect_auth(pluggy)
        pluggy.get(f"{BASE_URL}/accounts", status=status, json=pf.error_body(status, None, "Forbidden"))

    with pytest.raises(PluggyAuthError):
        api_client.list_accounts(ITEM_ID)


def test_a_non_json_error_body_still_gives_a_clear_error(api_client, pluggy):
    expect_auth(pluggy)
    pluggy.post(
        f"{BASE_URL}/items/{ITEM_ID}/mfa",
        status=502,
        body="<html><body>Bad gateway</body></html>",
        content_type="text/html",
    )

    with pytest.raises(PluggyUnavailable) as raised:
        api_client.send_mfa(ITEM_ID, {"token": "123456"})

    assert str(raised.value) == "Pluggy 502: Bad Gateway"
    assert raised.value.code_description is None


def test_a_non_json_success_body_is_an_error(api_client, pluggy):
    expect_auth(pluggy)
    pluggy.get(f"{BASE_URL}/items/{ITEM_ID}", body="OK", content_type="text/plain")

    with pytest.raises(PluggyError, match="not JSON"):
        api_client.get_item(ITEM_ID)


def test_no_answer_raises_unavailable_without_status(api_client, pluggy):
    expect_auth(pluggy)
    pluggy.get(f"{BASE_URL}/items/{ITEM_ID}", body=requests.ConnectionError("connection reset"))

    with pytest.raises(PluggyUnavailable) as raised:
        api_client.get_item(ITEM_ID)

    assert raised.value.status is None
    assert str(raised.value) == f"Pluggy (no answer): GET /items/{ITEM_ID} got no answer (ConnectionError)"


def test_errors_survive_pickling():
    error = PluggyRateLimited(429, "TOO_MANY_REQUESTS", "slow down", {"limit": 20}, retry_after=60.0)

    copy = pickle.loads(pickle.dumps(error))

    assert (copy.status, copy.code_description, copy.message, copy.data, copy.retry_after) == (
        429,
        "TOO_MANY_REQUESTS",
        "slow down",
        {"limit": 20},
        60.0,
    )


# --- retries as urllib3 runs them (responses replays the adapter's Retry without sleeping) -----


def test_a_long_rate_limit_is_raised_at_once(api_client, pluggy):
    expect_auth(pluggy)
    pluggy.patch(
        f"{BASE_URL}/items/{ITEM_ID}",
        status=429,
        headers={"Retry-After": "60"},
        json=pf.error_body(429, None, "Too Many Requests"),
    )

    with pytest.raises(PluggyRateLimited) as raised:
        api_client.trigger_item_update(ITEM_ID)

    assert raised.value.retry_after == 60
    assert len(pluggy.calls) == 2  # /auth and the single PATCH


def test_a_rate_limit_without_retry_after_is_raised_at_once(api_client, pluggy):
    expect_auth(pluggy)
    limited = pf.error_body(429, None, "Too Many Requests")
    pluggy.get(f"{BASE_URL}/items/{ITEM_ID}", status=429, json=limited)

    with pytest.raises(PluggyRateLimited) as raised:
        api_client.get_item(ITEM_ID)

    assert raised.value.retry_after is None


def test_a_short_rate_limit_is_retried_even_for_patch(api_client, pluggy):
    expect_auth(pluggy)
    pluggy.patch(f"{BASE_URL}/items/{ITEM_ID}", status=429, headers={"Retry-After": "1"})
    pluggy.patch(f"{BASE_URL}/items/{ITEM_ID}", json=pf.item(status="UPDATING"))

    assert api_client.trigger_item_update(ITEM_ID)["status"] == "UPDATING"


def test_server_errors_on_get_are_retried_three_times(api_client, pluggy):
    expect_auth(pluggy)
    for _ in range(4):
        pluggy.get(f"{BASE_URL}/items/{ITEM_ID}", status=500, json=SERVER_ERROR)

    with pytest.raises(PluggyUnavailable) as raised:
        api_client.get_item(ITEM_ID)

    assert raised.value.status == 500
    assert len(pluggy.calls) == 5  # /auth and four GETs


def test_server_errors_on_patch_are_not_retried(api_client, pluggy):
    expect_auth(pluggy)
    pluggy.patch(f"{BASE_URL}/items/{ITEM_ID}", status=500, json=SERVER_ERROR)

    with pytest.raises(PluggyUnavailable):
        api_client.trigger_item_update(ITEM_ID)

    assert len(pluggy.calls) == 2


def test_a_server_error_then_success_on_get_succeeds(api_client, pluggy):
    expect_auth(pluggy)
    pluggy.get(f"{BASE_URL}/items/{ITEM_ID}", status=503)
    pluggy.get(f"{BASE_URL}/items/{ITEM_ID}", json=pf.item(id=ITEM_ID))

    assert api_client.get_item(ITEM_ID)["id"] == ITEM_ID


# --- secrets -------------------------------------------------------------------------------------


def test_repr_shows_only_base_url_and_client_id(api_client):
    assert repr(api_client) == f"PluggyClient(base_url='{BASE_URL}', client_id='{CLIENT_ID}')"


def test_no_secret_reaches_logs_or_errors(api_client, pluggy, caplog):
    credentials = {"user": "user-ok", "password": "password-sup3r-secret"}
    mfa_code = "864209"
    hook_secret = "hook-header-secret"
    caplog.set_level(logging.DEBUG)
    expect_auth(pluggy)
    pluggy.post(f"{BASE_URL}/connect_token", json=pf.connect_token_response("ct-secret-token"))
    pluggy.patch(
        f"{BASE_URL}/items/{ITEM_ID}",
        status=400,
        json=pf.error_body(400, "INVALID_PARAMETERS", f"password {credentials['password']} rejected"),
    )
    pluggy.post(
        f"{BASE_URL}/items/{ITEM_ID}/mfa",
        status=400,
        json=pf.error_body(400, "INVALID_CREDENTIALS_MFA", f"token {mfa_code} is wrong", {"value": mfa_code}),
    )
    pluggy.post(
        f"{BASE_URL}/webhooks",
        status=400,
        json=pf.error_body(400, None, f"bad headers {{'X-Token': '{hook_secret}'}}"),
    )
    pluggy.get(
        f"{BASE_URL}/items/{ITEM_ID}",
        status=400,
        json=pf.error_body(400, None, f"key {API_KEY} and secret {CLIENT_SECRET} echoed"),
    )

    token = api_client.create_connect_token(ITEM_ID)
    errors = []
    for call in (
        lambda: api_client.update_item(ITEM_ID, credentials),
        lambda: api_client.send_mfa(ITEM_ID, {"token": mfa_code}),
        lambda: api_client.create_webhook("item/updated", "https://sync.example.com/hooks", {"X-Token": hook_secret}),
        lambda: api_client.get_item(ITEM_ID),
    ):
        with pytest.raises(PluggyError) as raised:
            call()
        errors.append(raised.value)

    logged = "\n".join(JsonFormatter().format(record) for record in caplog.records)
    visible = [logged, repr(api_client), repr(token), str(token)]
    visible += [text for error in errors for text in (str(error), repr(error))]
    secrets = [CLIENT_SECRET, API_KEY, "ct-secret-token", credentials["password"], mfa_code, hook_secret]
    leaks = [secret for secret in secrets if any(secret in text for text in visible)]
    assert leaks == []
    assert '"method":"PATCH","path":"/items/' in logged  # the call lines are there, just without secrets
