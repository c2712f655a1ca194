"""The one payload factory (sandbox/data.py) must stay true to Pluggy's OpenAPI document.

Here: its builders, as tests and the sandbox use them, and the rows and accounts it generates from a
seed. What the sandbox's routes answer is checked against the same document in tests/stand_in/.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime

import jsonschema
import pytest

from sandbox import data as pf
from tests.oas import validate_request, validate_response, validate_schema

ITEM_STATES = [
    pf.item(),
    pf.item(status="UPDATING", executionStatus="TRANSACTIONS_IN_PROGRESS", lastUpdatedAt=None),
    pf.item(status="WAITING_USER_INPUT", executionStatus="WAITING_USER_INPUT", parameter=pf.mfa_parameter()),
    pf.item(
        status="WAITING_USER_ACTION",
        executionStatus="WAITING_USER_ACTION",
        userAction={
            "instructions": "Aprove o acesso no app do banco",
            "type": "qr",
            "expiresAt": pf.NEXT_SYNC_AT,
        },
    ),
    pf.item(status="LOGIN_ERROR", executionStatus="INVALID_CREDENTIALS", error=pf.item_error()),
    pf.item(status="OUTDATED", executionStatus="SITE_NOT_AVAILABLE", error=pf.item_error("SITE_NOT_AVAILABLE")),
]


@pytest.mark.parametrize("payload", ITEM_STATES, ids=lambda item: item["status"])
def test_items_fit_the_item_schema(payload: dict) -> None:
    validate_schema("Item", payload)


@pytest.mark.parametrize("payload", [pf.account(), pf.credit_card_account()], ids=["bank", "credit"])
def test_accounts_fit_the_account_schema(payload: dict) -> None:
    validate_schema("Account", payload)


NOW = datetime(2024, 5, 10, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize("make", [pf.new_bank_account, pf.new_credit_card_account], ids=["bank", "credit"])
def test_generated_accounts_and_their_rows_fit_their_schemas(make) -> None:
    rng = random.Random(7)
    account = make(rng, pf.new_uuid(rng), NOW)
    validate_schema("Account", account)
    for row in pf.history(rng, account, 40, NOW) + pf.fresh_rows(rng, account, 5, NOW):
        validate_schema("Transaction", row)


def test_every_mfa_prompt_of_the_sandbox_fits_the_item_schema() -> None:
    for name in ("token", "token2"):
        parameter = pf.mfa_parameter(name, NOW)
        validate_schema("Item", pf.item(status="WAITING_USER_INPUT", parameter=parameter))


def test_accounts_page_fits_the_accounts_list_response() -> None:
    validate_response("GET", "/accounts", pf.page([pf.account(), pf.credit_card_account()]))


def test_transactions_fit_the_transaction_schema() -> None:
    validate_schema("Transaction", pf.transaction())
    validate_schema("Transaction", pf.transaction(amount=1500.0, description="Salário"))


def test_transaction_type_follows_the_sign_of_the_amount() -> None:
    assert pf.transaction()["type"] == "DEBIT"
    assert pf.transaction(amount=10.0)["type"] == "CREDIT"


@pytest.mark.parametrize("after", [None, "eyJpZCI6IjEyMyJ9"])
def test_transactions_pages_fit_the_cursor_page_schema(after: str | None) -> None:
    validate_response("GET", "/v2/transactions", pf.transactions_page([pf.transaction()], after=after))


def test_webhooks_fit_the_webhook_schemas() -> None:
    validate_schema("Webhook", pf.webhook())
    validate_response("POST", "/webhooks", pf.webhook(), status=201)
    hooks = [pf.webhook(), pf.webhook(event="transactions/created")]
    validate_response("GET", "/webhooks", pf.page(hooks))


@pytest.mark.parametrize(
    "body",
    [
        pf.error_body(404, "ITEM_NOT_FOUND", "item not found"),
        pf.error_body(
            409,
            "CLIENT_IS_UPDATING_BEFORE_ALLOWED_FREQUENCY",
            "Client updates on this item are allowed at most every 24 hours",
            {"minUpdateFrequencyAllowedInHours": 24, "lastUpdatedAt": pf.SYNCED_AT},
        ),
        pf.error_body(500, None, "Internal Server Error"),
    ],
    ids=["404", "409", "500"],
)
def test_error_bodies_fit_the_global_error_schema(body: dict) -> None:
    validate_schema("GlobalErrorResponse", body)


def test_small_answers_fit_their_schemas() -> None:
    validate_response("POST", "/auth", pf.auth_response(pf.api_key(exp=1715338542)))
    validate_response("POST", "/connect_token", pf.connect_token_response("connect-token"))
    validate_response("DELETE", "/items/{id}", pf.count_response())
    validate_response("DELETE", "/webhooks/{id}", pf.count_response())


def test_the_validator_rejects_what_pluggy_would_not_send() -> None:
    with pytest.raises(jsonschema.ValidationError):
        validate_schema("Transaction", {**pf.transaction(), "amount": "52.90"})
    with pytest.raises(jsonschema.ValidationError):
        validate_schema("Account", {**pf.account(), "itemId": "not-a-uuid"})
    with pytest.raises(jsonschema.ValidationError):
        validate_schema("Item", {**pf.item(), "status": None})
    with pytest.raises(jsonschema.ValidationError):
        validate_request("POST", "/webhooks", {"event": "item/login_error", "url": "https://x.example"})


def test_the_validator_accepts_unknown_fields() -> None:
    validate_schema("Item", {**pf.item(), "someFieldPluggyAddsLater": {"x": 1}})
