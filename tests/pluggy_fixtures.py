"""Realistic Pluggy JSON payloads for tests (sandbox connector 0 "Pluggy Bank", BRL).

Every factory takes keyword overrides named like Pluggy's JSON fields (``accountId=...``,
``status=...``); tests/test_pluggy_fixtures.py checks the defaults against Pluggy's OpenAPI document.
"""

from __future__ import annotations

import base64
import json
import secrets
import uuid
from typing import Any
from urllib.parse import urlencode

CREATED_AT = "2024-05-02T13:05:11.402Z"
SYNCED_AT = "2024-05-10T09:15:42.118Z"
NEXT_SYNC_AT = "2024-05-11T09:15:42.118Z"

BANK_PRODUCTS = ["ACCOUNTS", "CREDIT_CARDS", "TRANSACTIONS", "IDENTITY"]


def new_id() -> str:
    return str(uuid.uuid4())


def connector(**overrides: Any) -> dict[str, Any]:
    return {
        "id": 0,
        "name": "Pluggy Bank",
        "institutionUrl": "https://pluggy.ai",
        "imageUrl": "https://cdn.pluggy.ai/assets/connector-icons/sandbox.svg",
        "primaryColor": "ef294b",
        "type": "PERSONAL_BANK",
        "country": "BR",
        "credentials": [
            {"name": "user", "label": "User", "type": "text", "placeholder": "user-ok"},
            {"name": "password", "label": "Password", "type": "password", "placeholder": "password-ok"},
        ],
        "hasMFA": False,
        "oauth": False,
        "health": {"status": "ONLINE", "stage": None},
        "isSandbox": True,
        "isOpenFinance": False,
        "supportsPaymentInitiation": False,
        "products": BANK_PRODUCTS,
        "createdAt": "2020-09-07T23:55:10.355Z",
        "updatedAt": "2024-04-22T18:21:03.909Z",
        **overrides,
    }


def item(**overrides: Any) -> dict[str, Any]:
    """An item that finished syncing (UPDATED / SUCCESS)."""
    return {
        "id": new_id(),
        "connector": connector(),
        "status": "UPDATED",
        "executionStatus": "SUCCESS",
        "error": None,
        "statusDetail": None,
        "parameter": None,
        "userAction": None,
        "clientUserId": None,
        "webhookUrl": None,
        "products": BANK_PRODUCTS,
        "createdAt": CREATED_AT,
        "updatedAt": SYNCED_AT,
        "lastUpdatedAt": SYNCED_AT,
        "nextAutoSyncAt": NEXT_SYNC_AT,
        "consecutiveFailedLoginAttempts": 0,
        "consentExpiresAt": None,
        **overrides,
    }


def mfa_parameter(**overrides: Any) -> dict[str, Any]:
    """The prompt of an item WAITING_USER_INPUT (``item(parameter=mfa_parameter(), ...)``)."""
    return {
        "name": "token",
        "label": "Token",
        "type": "number",
        "placeholder": "123456",
        "assistiveText": "Digite o token de 6 dígitos enviado por SMS",
        "validation": "^\\d{6}$",
        "validationMessage": "O token deve ter 6 dígitos",
        "mfa": True,
        "expiresAt": "2024-05-10T09:20:42.118Z",
        **overrides,
    }


def item_error(code: str = "INVALID_CREDENTIALS", **overrides: Any) -> dict[str, Any]:
    """The ``error`` of a failed item, e.g. ``item(status="LOGIN_ERROR", error=item_error())``."""
    return {"code": code, "message": "Credenciais inválidas", "providerMessage": None, **overrides}


def account(**overrides: Any) -> dict[str, Any]:
    """A BRL checking account."""
    return {
        "id": new_id(),
        "itemId": new_id(),
        "type": "BANK",
        "subtype": "CHECKING_ACCOUNT",
        "number": "0001/12345-0",
        "name": "Conta Corrente",
        "marketingName": "GOLD Conta Corrente",
        "balance": 3210.55,
        "currencyCode": "BRL",
        "owner": "John Doe",
        "taxNumber": "416.799.495-00",
        "bankData": {
            "transferNumber": "0001/12345-0",
            "closingBalance": 3210.55,
            "automaticallyInvestedBalance": 0,
            "overdraftContractedLimit": 1000,
            "overdraftUsedLimit": 0,
            "unarrangedOverdraftAmount": 0,
        },
        "creditData": None,
        "createdAt": CREATED_AT,
        "updatedAt": SYNCED_AT,
        **overrides,
    }


def credit_card_account(**overrides: Any) -> dict[str, Any]:
    return account(
        type="CREDIT",
        subtype="CREDIT_CARD",
        number="xxxx8670",
        name="Mastercard Black",
        marketingName="PLUGGY UNICLASS MASTERCARD BLACK",
        balance=1895.3,
        bankData=None,
        creditData={
            "level": "BLACK",
            "brand": "MASTERCARD",
            "balanceCloseDate": "2024-05-25T00:00:00.000Z",
            "balanceDueDate": "2024-06-03T00:00:00.000Z",
            "availableCreditLimit": 8104.7,
            "creditLimit": 10000,
            "minimumPayment": 284.3,
            "isLimitFlexible": False,
            "status": "ACTIVE",
            "holderType": "MAIN",
        },
        **overrides,
    )


def transaction(**overrides: Any) -> dict[str, Any]:
    """A posted bank transaction; a negative ``amount`` (the default) is a debit."""
    amount = overrides.get("amount", -52.9)
    return {
        "id": new_id(),
        "accountId": new_id(),
        "date": "2024-05-08T00:00:00.000Z",
        "description": "Pix enviado Padaria Pão Quente",
        "descriptionRaw": "PIX ENVIADO PADARIA PAO QUENTE LTDA",
        "currencyCode": "BRL",
        "amount": amount,
        "amountInAccountCurrency": None,
        "balance": 3210.55,
        "type": "DEBIT" if amount < 0 else "CREDIT",
        "status": "POSTED",
        "category": "Transfer - PIX",
        "categoryId": "05070000",
        "providerCode": "123",
        "providerId": "7e0f4c58b9a14a1c",
        "operationType": "PIX",
        "paymentData": {
            "payer": {"name": "John Doe", "documentNumber": {"type": "CPF", "value": "416.799.495-00"}},
            "receiver": {
                "name": "Padaria Pão Quente Ltda",
                "documentNumber": {"type": "CNPJ", "value": "12.345.678/0001-90"},
            },
            "paymentMethod": "PIX",
            "referenceNumber": None,
            "reason": None,
        },
        "creditCardMetadata": None,
        "merchant": None,
        "createdAt": "2024-05-08T10:31:27.645Z",
        "updatedAt": "2024-05-08T10:31:27.645Z",
        **overrides,
    }


def transactions_page(
    transactions: list[dict[str, Any]], *, after: str | None = None, account_id: str | None = None
) -> dict[str, Any]:
    """A ``/v2/transactions`` answer; ``after`` is the cursor put in ``next`` (None: last page)."""
    if after is None:
        return {"results": transactions, "next": None}
    account_id = account_id or (transactions[0]["accountId"] if transactions else new_id())
    return {"results": transactions, "next": "?" + urlencode({"accountId": account_id, "after": after})}


def page(results: list[dict[str, Any]], *, number: int = 1, total_pages: int = 1) -> dict[str, Any]:
    """A numbered page, the shape of ``/accounts`` and ``/webhooks`` answers."""
    return {"page": number, "total": len(results), "totalPages": total_pages, "results": results}


def webhook(**overrides: Any) -> dict[str, Any]:
    return {
        "id": new_id(),
        "event": "item/updated",
        "url": "https://sync.example.com/webhooks/pluggy",
        "disabledAt": None,
        "createdAt": CREATED_AT,
        "updatedAt": CREATED_AT,
        **overrides,
    }


def error_body(
    status: int, code_description: str | None, message: str, data: dict[str, Any] | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {"code": status, "message": message}
    if code_description is not None:
        body["codeDescription"] = code_description
    if data is not None:
        body["data"] = data
    return body


def api_key(exp: float | None = None) -> str:
    """A JWT-shaped API key (unsigned: the client reads ``exp`` without verifying)."""
    claims: dict[str, Any] = {"clientId": "5f9f2a74-7f0e-4b6c-9a43-1b1c1f0d9f10", "iat": 1715331342}
    if exp is not None:
        claims["exp"] = int(exp)
    header = _base64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    payload = _base64url(json.dumps(claims).encode())
    return f"{header}.{payload}.{_base64url(secrets.token_bytes(32))}"


def auth_response(key: str) -> dict[str, Any]:
    return {"apiKey": key}


def connect_token_response(access_token: str) -> dict[str, Any]:
    return {"accessToken": access_token}


def count_response(count: int = 1) -> dict[str, Any]:
    """The answer of DELETE /items/{id} and DELETE /webhooks/{id}."""
    return {"count": count}


def _base64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def webhook_event(event: str, **fields: Any) -> dict[str, Any]:
    """A webhook delivery as Pluggy sends it (PLUGGY.md "Webhooks"); item events carry itemId."""
    event_id = new_id()
    return {"event": event, "eventId": event_id, "id": event_id, "triggeredBy": "SYNC", **fields}
