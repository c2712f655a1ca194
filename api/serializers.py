"""The JSON shapes of docs/API.md, built from the models."""

from __future__ import annotations

import math
from datetime import date, datetime
from decimal import Decimal

from models import Account, Bill, Connection, Investment, InvestmentTransaction, SyncRun, Transaction
from pluggy_client import ConnectToken
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
    }


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
