"""Pluggy's transactions as rows of the `transactions` table: what the fetch (transactions.py) and the
bill reader (bills.py) write through the bulk upsert (bulk.py)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from models.base import utcnow
from pluggy_client import timestamp

from . import values


def page_rows(page: list[dict], account_id: int) -> list[dict]:
    """A page as table rows stamped with one time, once each (a page may repeat an id)."""
    now = utcnow()
    return list({row["pluggy_id"]: row for row in (transaction_row(t, account_id, now) for t in page)}.values())


def transaction_row(data: dict, account_id: int, now: datetime) -> dict:
    return {
        "account_id": account_id,
        "pluggy_id": data["id"],
        "date": timestamp(data["date"]),
        "description": data.get("description") or "",
        "description_raw": data.get("descriptionRaw"),
        "amount": money(data["amount"]),
        "amount_in_account_currency": money(data.get("amountInAccountCurrency")),
        "balance": money(data.get("balance")),
        "currency_code": data.get("currencyCode"),
        "type": data.get("type"),
        "status": data.get("status"),
        "category": data.get("category"),
        "category_id": data.get("categoryId"),
        "provider_code": data.get("providerCode"),
        "provider_id": data.get("providerId"),
        "operation_type": data.get("operationType"),
        **card_columns(values.mapping(data.get("creditCardMetadata"))),
        "raw": data,
        "pluggy_created_at": timestamp(data.get("createdAt")),
        "pluggy_updated_at": timestamp(data.get("updatedAt")),
        "deleted_at": None,
        "created_at": now,
        "updated_at": now,
    }


def card_columns(metadata: dict) -> dict:
    """A card row's bill and installment, typed (the migration fills stored rows alike)."""
    return {
        "bill_id": values.identifier(metadata.get("billId")),
        "installment_number": values.whole(metadata.get("installmentNumber")),
        "total_installments": values.whole(metadata.get("totalInstallments")),
    }


def money(value) -> Decimal | None:
    # str() gives the shortest decimal that reads back as the same double: the figure Pluggy sent.
    return None if value is None else Decimal(str(value))
