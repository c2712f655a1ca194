"""The JSON shapes of docs/API.md, built from the models."""

from __future__ import annotations

import math
import re
from datetime import datetime
from decimal import Decimal

from models import Account, Connection, Identity, Loan, SyncRun, Transaction
from pluggy_client import ConnectToken
from sync.consents import under_consent
from sync.item_state import sync_status
from sync.results import ManualSyncResult

# Pluggy's optional prompt keys -> ours: every name the API serves is snake_case.
OPTIONAL_MFA_FIELDS = {
    "data": "data",
    "options": "options",
    "placeholder": "placeholder",
    "assistiveText": "assistive_text",
    "validation": "validation",
    "validationMessage": "validation_message",
}


def iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def money(amount: Decimal | None) -> float | None:
    # A float prints as the shortest decimal that reads back the same: "-52.9", never "-52.9000".
    return None if amount is None else float(amount)


def connection_json(connection: Connection, open_run: SyncRun | None = None) -> dict:
    error = None
    if connection.error_code or connection.error_message:
        error = {"code": connection.error_code, "message": connection.error_message}
    return {
        "id": connection.id,
        "item_id": connection.item_id,
        "connector": {"id": connection.connector_id, "name": connection.connector_name},
        "item_status": connection.item_status,
        "execution_status": connection.execution_status,
        "sync_status": sync_status(connection, open_run),
        "error": error,
        "mfa": mfa_json(connection.mfa_parameter) if connection.mfa_parameter else None,
        "last_updated_at": iso(connection.last_updated_at),
        "last_synced_at": iso(connection.last_synced_at),
        "next_auto_sync_at": iso(connection.next_auto_sync_at),
        "created_at": iso(connection.created_at),
        "products": connection.products,
        "consent": consent_json(connection),
        "status_detail": status_detail_json(connection.status_detail),
    }


def consent_json(connection: Connection) -> dict | None:
    """The item's Open Finance consent, as last read (null for an item without one): the app warns
    its user before `expires_at`, and asks for a renewal once it has passed or `revoked_at` is set."""
    if not under_consent(connection):
        return None
    return {
        "expires_at": iso(connection.consent_expires_at),
        "revoked_at": iso(connection.consent_revoked_at),
        "granted_at": iso(connection.consent_granted_at),
        "products": connection.consent_products,
        "permissions": connection.consent_permissions,
    }


def status_detail_json(detail: dict | None) -> dict | None:
    """Pluggy's statusDetail, per product (accounts, credit_cards, transactions, investments,
    identity, loans...): whether its last update collected it, when, and the warnings with the
    institution's own message. Null when Pluggy gave none (everything updated)."""
    if not isinstance(detail, dict):
        return None
    shown = {}
    for product, state in detail.items():
        if not isinstance(state, dict):
            continue
        warnings = [w for w in state.get("warnings") or [] if isinstance(w, dict)]
        shown[snake_name(product)] = {
            "updated": state.get("isUpdated"),
            "last_updated_at": state.get("lastUpdatedAt"),
            "warnings": [
                {"code": w.get("code"), "message": w.get("message"), "provider_message": w.get("providerMessage")}
                for w in warnings
            ],
        }
    return shown


def snake_name(name: str) -> str:
    """creditCards -> credit_cards; names already in snake_case stay as they are."""
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name).lower()


def snake_keys(value):
    """Pluggy's nested objects with every key in snake_case, as every name the API serves is."""
    if isinstance(value, dict):
        return {snake_name(str(key)): snake_keys(item) for key, item in value.items()}
    if isinstance(value, list):
        return [snake_keys(item) for item in value]
    return value


def identity_json(identity: Identity) -> dict:
    return {
        "id": identity.pluggy_id,
        "full_name": identity.full_name,
        "social_name": identity.social_name,
        "document": identity.document,
        "document_type": identity.document_type,
        "tax_number": identity.tax_number,
        "birth_date": identity.birth_date.isoformat() if identity.birth_date else None,
        "job_title": identity.job_title,
        "company_name": identity.company_name,
        "emails": snake_keys(identity.emails or []),
        "phone_numbers": snake_keys(identity.phone_numbers or []),
        "addresses": snake_keys(identity.addresses or []),
        "relations": snake_keys(identity.relations or []),
        "updated_at": iso(identity.pluggy_updated_at),
        "synced_at": iso(identity.updated_at),
    }


def loan_json(loan: Loan) -> dict:
    return {
        "id": loan.pluggy_id,
        "contract_number": loan.contract_number,
        "ipoc_code": loan.ipoc_code,
        "product_name": loan.product_name,
        "type": loan.type,
        "kind": loan.kind,
        "currency_code": loan.currency_code,
        "contract_amount": money(loan.contract_amount),
        "outstanding_balance": money(loan.outstanding_balance),
        "cet": money(loan.cet),
        "installment_periodicity": loan.installment_periodicity,
        "installments": {
            "total": loan.total_installments,
            "paid": loan.paid_installments,
            "due": loan.due_installments,
            "past_due": loan.past_due_installments,
            "remaining": loan.remaining_installments,
        },
        "interest_rates": snake_keys(loan.interest_rates or []),
        "contract_date": iso(loan.contract_date),
        "first_installment_due_date": iso(loan.first_installment_due_date),
        "due_date": iso(loan.due_date),
        "settlement_date": iso(loan.settlement_date),
        "date": iso(loan.pluggy_date),
        "deleted_at": iso(loan.deleted_at),
    }


def sync_run_json(run: SyncRun) -> dict:
    return {
        "id": run.id,
        "trigger": run.trigger,
        "status": run.status,
        "started_at": iso(run.started_at),
        "finished_at": iso(run.finished_at),
        "accounts": run.accounts,
        "created": run.created,
        "updated": run.updated,
        "deleted": run.deleted,
        "error": None if run.error is None else {"code": run.error_code, "message": run.error},
    }


def account_json(account: Account) -> dict:
    return {
        "id": account.pluggy_id,
        "type": account.type,
        "subtype": account.subtype,
        "name": account.name,
        "marketing_name": account.marketing_name,
        "number": account.number,
        "owner": account.owner,
        "balance": money(account.balance),
        "currency_code": account.currency_code,
        "last_synced_at": iso(account.last_synced_at),
    }


def transaction_json(transaction: Transaction, account_pluggy_id: str) -> dict:
    return {
        "id": transaction.pluggy_id,
        "account_id": account_pluggy_id,
        "date": iso(transaction.date),
        "description": transaction.description,
        "description_raw": transaction.description_raw,
        "amount": money(transaction.amount),
        "amount_in_account_currency": money(transaction.amount_in_account_currency),
        "balance": money(transaction.balance),
        "currency_code": transaction.currency_code,
        "type": transaction.type,
        "status": transaction.status,
        "category": transaction.category,
        "category_id": transaction.category_id,
        "operation_type": transaction.operation_type,
        "payment_data": transaction.raw.get("paymentData"),
        "credit_card_metadata": transaction.raw.get("creditCardMetadata"),
        "merchant": transaction.raw.get("merchant"),
        "created_at": iso(transaction.pluggy_created_at),
        "updated_at": iso(transaction.pluggy_updated_at),
        "deleted_at": iso(transaction.deleted_at),
    }


def connect_token_json(token: ConnectToken) -> dict:
    return {"access_token": token.access_token, "item_id": token.item_id, "expires_at": iso(token.expires_at)}


def result_fields(result: ManualSyncResult) -> dict:
    """What a manual sync result adds beside its status (docs/API.md's "extra fields")."""
    fields: dict = {}
    if result.sync_run is not None:
        fields["sync_run_id"] = result.sync_run.id
        if result.sync_run.finished_at is not None:
            fields["sync_run"] = sync_run_json(result.sync_run)
    if result.retry_after is not None:
        fields["retry_after"] = math.ceil(result.retry_after)
    if result.mfa is not None:
        fields["mfa"] = mfa_json(result.mfa)
    if result.user_action is not None:
        fields["user_action"] = result.user_action
    if result.connect_token is not None:
        fields["connect_token"] = connect_token_json(result.connect_token)
    if result.error is not None:
        fields["error"] = result.error
    return fields


def mfa_json(parameter: dict) -> dict:
    """Pluggy's prompt as docs/API.md names it: name, label, type, expires_at, then its optional keys in snake_case."""
    shown = {
        "name": parameter.get("name"),
        "label": parameter.get("label"),
        "type": parameter.get("type"),
        "expires_at": parameter.get("expiresAt"),
    }
    for pluggy_name, name in OPTIONAL_MFA_FIELDS.items():
        if parameter.get(pluggy_name) is not None:
            shown[name] = parameter[pluggy_name]
    return shown
