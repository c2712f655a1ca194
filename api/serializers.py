"""The JSON shapes of docs/API.md, built from the models.

Each serialiser reads its object's attributes only, so that it takes the model or a Core row of the
model's table (with the same names: the change feed reads rows, sync/changes.py), one shape for both."""

from __future__ import annotations

import math
import re
from datetime import date, datetime
from decimal import Decimal

from models import (
    Account,
    Bill,
    ChangeKind,
    Connection,
    Identity,
    Investment,
    InvestmentTransaction,
    Loan,
    SyncRun,
    Transaction,
    User,
    WebhookDelivery,
    WebhookEndpoint,
)
from pluggy_client import ConnectToken
from sync.changes import Entry, EntryState
from sync.consents import under_consent
from sync.item_state import sync_status
from sync.outbound.endpoints import rotation_ends_at
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


def day(value: date | None) -> str | None:
    return None if value is None else value.isoformat()


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


def tombstone_json(connection: Connection, data_removal_due_at: datetime | None) -> dict:
    """A deleted connection: which it was, when and why it was deleted, and when its copied data was
    (or will be) removed."""
    return {
        "id": connection.id,
        "item_id": connection.item_id,
        "connector": {"id": connection.connector_id, "name": connection.connector_name},
        "deleted_at": iso(connection.deleted_at),
        "deleted_reason": connection.deleted_reason,
        "data_removed_at": iso(connection.data_removed_at),
        "data_removal_due_at": None if connection.data_removed_at else iso(data_removal_due_at),
        "created_at": iso(connection.created_at),
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
        "credit_data": credit_data_json(account),
        "bank_data": bank_data_json(account),
    }


def credit_data_json(account: Account) -> dict | None:
    """A card's creditData (null when Pluggy sent none), from the typed columns."""
    if not isinstance(account.raw.get("creditData"), dict):
        return None
    return {
        "credit_limit": money(account.credit_limit),
        "available_credit_limit": money(account.available_credit_limit),
        "minimum_payment": money(account.minimum_payment),
        "balance_close_date": day(account.balance_close_date),
        "balance_due_date": day(account.balance_due_date),
        "brand": account.credit_brand,
        "level": account.credit_level,
        "status": account.credit_status,
    }


def bank_data_json(account: Account) -> dict | None:
    """A bank account's bankData (null when Pluggy sent none), from the typed columns."""
    if not isinstance(account.raw.get("bankData"), dict):
        return None
    return {
        "transfer_number": account.transfer_number,
        "closing_balance": money(account.closing_balance),
        "automatically_invested_balance": money(account.automatically_invested_balance),
        "overdraft_contracted_limit": money(account.overdraft_contracted_limit),
        "overdraft_used_limit": money(account.overdraft_used_limit),
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
        "bill_id": transaction.bill_id,
        "installment_number": transaction.installment_number,
        "total_installments": transaction.total_installments,
        "created_at": iso(transaction.pluggy_created_at),
        "updated_at": iso(transaction.pluggy_updated_at),
        "deleted_at": iso(transaction.deleted_at),
        **restatement_json(transaction),
    }


def restatement_json(transaction: Transaction) -> dict:
    """The Pluggy ids of the row this one replaced and of the row that replaced it (sync/restatements.py)."""
    return {"replaces": transaction.replaces_pluggy_id, "replaced_by": transaction.replaced_by_pluggy_id}


def investment_json(investment: Investment) -> dict:
    return {
        "id": investment.pluggy_id,
        "type": investment.type,
        "subtype": investment.subtype,
        "name": investment.name,
        "code": investment.code,
        "isin": investment.isin,
        "number": investment.number,
        "issuer": investment.issuer,
        "issuer_cnpj": investment.issuer_cnpj,
        "owner": investment.owner,
        "institution": investment.raw.get("institution"),
        "currency_code": investment.currency_code,
        "status": investment.status,
        "balance": money(investment.balance),
        "amount": money(investment.amount),
        "amount_original": money(investment.amount_original),
        "amount_profit": money(investment.amount_profit),
        "amount_withdrawal": money(investment.amount_withdrawal),
        "taxes": money(investment.taxes),
        "taxes2": money(investment.taxes2),
        "quantity": money(investment.quantity),
        "value": money(investment.value),
        "rate": money(investment.rate),
        "rate_type": investment.rate_type,
        "fixed_annual_rate": money(investment.fixed_annual_rate),
        "last_month_rate": money(investment.last_month_rate),
        "annual_rate": money(investment.annual_rate),
        "last_twelve_months_rate": money(investment.last_twelve_months_rate),
        "date": iso(investment.date),
        "due_date": iso(investment.due_date),
        "issue_date": iso(investment.issue_date),
        "purchase_date": iso(investment.purchase_date),
        "metadata": investment.raw.get("metadata"),
        "movements_read_at": iso(investment.movements_read_at),
    }


def investment_transaction_json(movement: InvestmentTransaction, investment_pluggy_id: str) -> dict:
    return {
        "id": movement.pluggy_id,
        "investment_id": investment_pluggy_id,
        "type": movement.type,
        "movement_type": movement.movement_type,
        "description": movement.description,
        "quantity": money(movement.quantity),
        "value": money(movement.value),
        "amount": money(movement.amount),
        "net_amount": money(movement.net_amount),
        "date": iso(movement.date),
        "trade_date": iso(movement.trade_date),
        "brokerage_number": movement.raw.get("brokerageNumber"),
        "agreed_rate": movement.raw.get("agreedRate"),
        "expenses": movement.raw.get("expenses"),
        "deleted_at": iso(movement.deleted_at),
    }


def bill_json(bill: Bill, account_pluggy_id: str) -> dict:
    return {
        "id": bill.pluggy_id,
        "account_id": account_pluggy_id,
        "due_date": day(bill.due_date),
        "closing_date": day(bill.closing_date),
        "total_amount": money(bill.total_amount),
        "currency_code": bill.currency_code,
        "minimum_payment_amount": money(bill.minimum_payment_amount),
        "allows_installments": bill.allows_installments,
        "finance_charges": [finance_charge_json(charge) for charge in bill.finance_charges],
        "finance_charges_total": money(bill.finance_charges_total),
        "payments": [bill_payment_json(payment) for payment in bill.payments],
        "payments_total": money(bill.payments_total),
        "created_at": iso(bill.pluggy_created_at),
        "updated_at": iso(bill.pluggy_updated_at),
        "last_seen_at": iso(bill.last_seen_at),
    }


def number(value) -> float | int | None:
    """A figure of a raw payload as sent, or null when it is not one."""
    return value if isinstance(value, int | float) and not isinstance(value, bool) else None


def finance_charge_json(charge: dict) -> dict:
    return {
        "id": charge.get("id"),
        "type": charge.get("type"),
        "amount": number(charge.get("amount")),
        "currency_code": charge.get("currencyCode"),
        "additional_info": charge.get("additionalInfo"),
    }


def bill_payment_json(payment: dict) -> dict:
    return {
        "id": payment.get("id"),
        "value_type": payment.get("valueType"),
        "payment_date": payment.get("paymentDate"),
        "payment_mode": payment.get("paymentMode"),
        "amount": number(payment.get("amount")),
        "currency_code": payment.get("currencyCode"),
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


def app_user_json(user: User, connections: list[Connection], open_runs: dict[int, SyncRun]) -> dict:
    """A user as the app API shows it: who, since when, and their live connections in brief."""
    return {
        "id": user.id,
        "email": user.email,
        "created_at": iso(user.created_at),
        "connections": [
            {
                "id": connection.id,
                "item_id": connection.item_id,
                "sync_status": sync_status(connection, open_runs.get(connection.id)),
                "last_synced_at": iso(connection.last_synced_at),
            }
            for connection in connections
            if connection.deleted_at is None
        ],
    }


def change_json(entry: Entry, open_runs: dict[int, SyncRun], *, personal: bool) -> dict:
    """One change-feed entry: its kind and id, and unless removed its connection and the object as
    the API serves it. Without `personal` (the app's feed, not the owner's) nothing carries personal
    data: an identity is summed up, and an account's or investment's owner and a transaction's
    payment data (names and CPFs of payer and receiver) are null. Its owner's feed, or its own
    route, has them."""
    kind = entry.kind
    shown_id: str | int = int(entry.key) if kind in (ChangeKind.CONNECTION, ChangeKind.IDENTITY) else entry.key
    if entry.state == EntryState.REMOVED:
        return {"kind": kind, "id": shown_id}
    return {
        "kind": kind,
        "id": shown_id,
        "connection_id": entry.connection_id,
        "data": entry_data(entry, open_runs, personal),
    }


# What each kind shows of a person (its owner, a payment's payer and receiver), left out of the app's feed.
PERSONAL_FIELDS = {
    ChangeKind.ACCOUNT: ("owner",),
    ChangeKind.INVESTMENT: ("owner",),
    ChangeKind.TRANSACTION: ("payment_data",),
}


def entry_data(entry: Entry, open_runs: dict[int, SyncRun], personal: bool) -> dict:
    data = served_data(entry, open_runs, personal)
    if not personal:
        data.update(dict.fromkeys(PERSONAL_FIELDS.get(entry.kind, ())))
    return data


def served_data(entry: Entry, open_runs: dict[int, SyncRun], personal: bool) -> dict:
    found, parent = entry.found, entry.parent_id or ""
    match entry.kind:
        case ChangeKind.CONNECTION:
            return connection_json(found, open_runs.get(found.id))
        case ChangeKind.ACCOUNT:
            return account_json(found)
        case ChangeKind.TRANSACTION:
            return transaction_json(found, parent)
        case ChangeKind.BILL:
            return bill_json(found, parent)
        case ChangeKind.INVESTMENT:
            return investment_json(found)
        case ChangeKind.INVESTMENT_TRANSACTION:
            return investment_transaction_json(found, parent)
        case ChangeKind.IDENTITY:
            return identity_json(found) if personal else identity_summary_json(found)
        case ChangeKind.LOAN:
            return loan_json(found)


def identity_summary_json(identity: Identity) -> dict:
    return {
        "id": identity.pluggy_id,
        "updated_at": iso(identity.pluggy_updated_at),
        "synced_at": iso(identity.updated_at),
    }


def webhook_endpoint_json(endpoint: WebhookEndpoint) -> dict:
    """An endpoint of the app's, never with its secret (shown once, by the call that made it)."""
    return {
        "id": endpoint.id,
        "url": endpoint.url,
        "events": endpoint.event_types,
        "status": endpoint.status,
        "created_at": iso(endpoint.created_at),
        "disabled_at": iso(endpoint.disabled_at),
        "last_delivered_at": iso(endpoint.last_delivered_at),
        "previous_secret_expires_at": iso(rotation_ends_at(endpoint)),
    }


def webhook_delivery_json(delivery: WebhookDelivery) -> dict:
    event = delivery.event
    return {
        "id": delivery.id,
        "endpoint_id": delivery.endpoint_id,
        "message_id": event.message_id,
        "event_type": event.type,
        "payload": event.payload,
        "status": delivery.status,
        "attempts": delivery.attempts,
        "last_status_code": delivery.last_status_code,
        "last_error": delivery.last_error,
        "next_attempt_at": iso(delivery.next_attempt_at),
        "delivered_at": iso(delivery.delivered_at),
        "created_at": iso(delivery.created_at),
    }
