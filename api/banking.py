"""/api/banking: a user's bank connections and their syncs (docs/API.md "Connections").

Views parse, authorise, call one service and render; `sync/` decides everything else.
"""

from __future__ import annotations

from flask import Blueprint, g, jsonify

from config import ConfigError
from models import db
from pluggy_client import PluggyAuthError, PluggyError, PluggyNotFound, PluggyRateLimited
from sync import listing, removal
from sync.connections import BankConnectionService, ItemOwnedByAnotherUser, MfaNotRequired
from sync.manual_sync import ManualSync
from sync.results import ManualSyncResult, ManualSyncStatus
from sync.runtime import pluggy_client, sync_settings
from web.errors import ApiError, error_response, snake_case

from . import feed, paging, schemas
from .auth import authenticate
from .serializers import (
    account_json,
    bill_json,
    connect_token_json,
    connection_json,
    identity_json,
    investment_json,
    investment_transaction_json,
    loan_json,
    mfa_json,
    result_fields,
    sync_run_json,
    tombstone_json,
    transaction_json,
)
from .validation import parse_body, parse_query, refuse_unread_query, takes_query

bp = Blueprint("banking", __name__, url_prefix="/api/banking")
bp.before_request(authenticate)
bp.before_request(refuse_unread_query)

HTTP_STATUS = {
    ManualSyncStatus.SYNC_STARTED: 202,
    ManualSyncStatus.SUCCESS: 200,
    ManualSyncStatus.ALREADY_SYNCING: 409,
    ManualSyncStatus.MFA_REQUIRED: 409,
    ManualSyncStatus.USER_ACTION_REQUIRED: 409,
    ManualSyncStatus.CREDENTIALS_REQUIRED: 409,
    ManualSyncStatus.RATE_LIMITED: 429,
    ManualSyncStatus.ERROR: 502,
}
MESSAGES = {
    ManualSyncStatus.ALREADY_SYNCING: "A sync of this connection is already in progress.",
    ManualSyncStatus.MFA_REQUIRED: "The bank asks for a one-time code: send it to send_mfa.",
    ManualSyncStatus.USER_ACTION_REQUIRED: "The bank is waiting for the user to act (see user_action).",
    ManualSyncStatus.CREDENTIALS_REQUIRED: "The bank refused the stored credentials: reconnect with the connect_token.",
    ManualSyncStatus.RATE_LIMITED: "Too many syncs for now: try again after retry_after seconds.",
    ManualSyncStatus.ERROR: "Pluggy could not sync this connection.",
}
# An item Pluggy does not know and one registered by another user get this one answer: telling them
# apart would tell that the other user's item exists.
ITEM_NOT_FOUND = (404, "item_not_found", "No such item.")


def connections() -> BankConnectionService:
    return BankConnectionService(db.session, pluggy_client(), sync_settings())


def manual_sync() -> ManualSync:
    return ManualSync(db.session, pluggy_client(), sync_settings())


def owned_connection(connection_id: int):
    connection = listing.user_connection(db.session, g.user, connection_id=connection_id)
    if connection is None:
        raise ApiError(404, "connection_not_found", "No such connection.")
    return connection


def filtered_account(connection, account_id: str | None):
    """The account an `account_id=` filter names, which must be one of the connection's: None without the filter."""
    if account_id is None:
        return None
    account = listing.account_by_pluggy_id(db.session, connection, account_id)
    if account is None:
        raise ApiError(404, "account_not_found", "No such account in this connection.")
    return account


def render_connection(connection):
    return connection_json(connection, listing.open_runs(db.session, [connection]).get(connection.id))


def sync_response(result: ManualSyncResult):
    """docs/API.md's sync table: the status, the connection, the extra fields, and an error when it is one."""
    body = {"status": result.status, "connection": render_connection(result.connection), **result_fields(result)}
    http_status = HTTP_STATUS[result.status]
    if http_status >= 400:
        error = body.get("error") or {"code": result.status, "message": MESSAGES[result.status]}
        # Pluggy's own codes (CONNECTOR_UNDER_MAINTENANCE) take the one shape of every error code here.
        body["error"] = {**error, "code": snake_case(error["code"])}
    response = jsonify(body)
    response.status_code = http_status
    if "retry_after" in body:
        response.headers["Retry-After"] = str(body["retry_after"])
    return response


@bp.errorhandler(ConfigError)
def not_configured(exc: ConfigError):
    return error_response(503, "pluggy_not_configured", str(exc))


@bp.errorhandler(PluggyError)
def pluggy_error(exc: PluggyError):
    """Pluggy's refusals, passed on: its 4xx with its own code; its failures as 502."""
    if isinstance(exc, PluggyNotFound):
        return error_response(*ITEM_NOT_FOUND)
    if isinstance(exc, PluggyRateLimited):
        response = error_response(429, "rate_limited", "Pluggy asks to slow down.", retry_after=exc.retry_after)
        if exc.retry_after:
            response.headers["Retry-After"] = str(int(exc.retry_after))
        return response
    if exc.status is not None and 400 <= exc.status < 500 and not isinstance(exc, PluggyAuthError):
        return error_response(exc.status, snake_case(exc.code_description or "pluggy_refused"), exc.message)
    return error_response(502, "pluggy_unavailable", "Pluggy could not be reached or failed to answer.")


# Connections ----------------------------------------------------------------------------------


@bp.post("/connections/")
def register_connection():
    body = parse_body(schemas.RegisterConnection)
    try:
        connection, created = connections().register(g.user, body.item_id)
    except ItemOwnedByAnotherUser:
        raise ApiError(*ITEM_NOT_FOUND) from None
    return render_connection(connection), 201 if created else 200


@bp.get("/connections/")
@takes_query
def list_connections():
    query = parse_query(schemas.WholeListQuery)
    scope = paging.scope_of(query, g.user.id)
    size = query.page_size if query.paged else None
    window = paging.cursor_window(query.cursor, size, listing.CONNECTIONS, scope)
    page = listing.connections_page(db.session, g.user, window)
    found = [row[0] for row in page.rows]
    open_runs = listing.open_runs(db.session, found)
    return {
        "connections": [connection_json(c, open_runs.get(c.id)) for c in found],
        "next_cursor": paging.next_cursor(page, listing.CONNECTIONS, scope),
    }


@bp.get("/connections/<id:connection_id>/")
def get_connection(connection_id: int):
    tombstone = listing.user_tombstone(db.session, g.user, connection_id)
    if tombstone is not None:
        # The user's own connection, deleted: say when and why rather than pretend it never was.
        raise ApiError(
            410,
            "connection_deleted",
            "This connection was deleted; it is kept only as a record.",
            connection=tombstone_json(tombstone, removal.removal_due(tombstone, sync_settings())),
        )
    return render_connection(owned_connection(connection_id))


@bp.delete("/connections/<id:connection_id>/")
def delete_connection(connection_id: int):
    connections().delete(owned_connection(connection_id))
    return "", 204


# Syncing --------------------------------------------------------------------------------------


@bp.post("/connections/<id:connection_id>/sync_transactions/")
@takes_query
def sync_transactions(connection_id: int):
    connection = owned_connection(connection_id)
    options = parse_body(schemas.SyncOptions, optional=True)
    wait = parse_query(schemas.WaitQuery).wait
    service = manual_sync()
    result = service.sync_transactions(connection, trigger_update=options.trigger_update)
    return sync_response(service.follow(connection, result, wait))


@bp.post("/connections/sync_all/")
def sync_all():
    service = manual_sync()
    results = []
    for connection in listing.user_connections(db.session, g.user):
        result = service.trigger_manual_sync(connection)
        results.append({"connection_id": connection.id, "status": result.status, **result_fields(result)})
    return {"results": results}


@bp.post("/connections/<id:connection_id>/send_mfa/")
def send_mfa(connection_id: int):
    connection = owned_connection(connection_id)
    body = parse_body(schemas.SendMfa)
    if not body.given:
        raise ApiError(400, "mfa_value_required", "Send the code as mfa_value (or parameters).")
    try:
        connections().send_mfa(connection, value=body.mfa_value, parameters=body.parameters)
    except MfaNotRequired:
        raise ApiError(
            409,
            "mfa_not_required",
            "The bank is not waiting for a code.",
            status="MFA_NOT_REQUIRED",
            connection=render_connection(connection),
        ) from None
    return {"status": "MFA_SENT", "connection": render_connection(connection)}


@bp.get("/connections/<id:connection_id>/check_status/")
def check_status(connection_id: int):
    connection = connections().check_status(owned_connection(connection_id))
    shown = render_connection(connection)
    runs = listing.sync_runs(db.session, connection, limit=1)
    return {
        "status": shown["sync_status"],
        "item_status": connection.item_status,
        "execution_status": connection.execution_status,
        "error": shown["error"],
        "mfa": mfa_json(connection.mfa_parameter) if connection.mfa_parameter else None,
        "user_action": connection.user_action,
        "last_updated_at": shown["last_updated_at"],
        "last_synced_at": shown["last_synced_at"],
        "next_auto_sync_at": shown["next_auto_sync_at"],
        "last_sync_run": sync_run_json(runs[0]) if runs else None,
        "connection": shown,
    }


# Reading what is stored -----------------------------------------------------------------------


@bp.get("/connections/<id:connection_id>/accounts/")
@takes_query
def list_accounts(connection_id: int):
    connection = owned_connection(connection_id)
    query = parse_query(schemas.WholeListQuery)
    scope = paging.scope_of(query, connection.id)
    size = query.page_size if query.paged else None
    page = listing.accounts_page(
        db.session, connection, paging.cursor_window(query.cursor, size, listing.ACCOUNTS, scope)
    )
    return {
        "accounts": [account_json(row[0]) for row in page.rows],
        "next_cursor": paging.next_cursor(page, listing.ACCOUNTS, scope),
    }


@bp.get("/connections/<id:connection_id>/transactions/")
@takes_query
def list_transactions(connection_id: int):
    connection = owned_connection(connection_id)
    query = parse_query(schemas.TransactionsQuery)
    account = filtered_account(connection, query.account_id)
    filters = listing.TransactionFilter(
        account=account,
        date_from=query.date_from,
        date_to=query.date_to,
        status=query.status,
        include_deleted=query.include_deleted,
        bill_id=query.bill_id,
    )
    scope = paging.scope_of(query, connection.id)
    page = listing.transactions_page(
        db.session, connection, filters, paging.page_window(query, listing.TRANSACTIONS, scope)
    )
    rows = [transaction_json(t, account_id) for t, account_id in page.rows]
    return paging.page_json("transactions", rows, query, page, listing.TRANSACTIONS, scope)


@bp.get("/connections/<id:connection_id>/bills/")
@takes_query
def list_bills(connection_id: int):
    connection = owned_connection(connection_id)
    query = parse_query(schemas.BillsQuery)
    account = filtered_account(connection, query.account_id)
    scope = paging.scope_of(query, connection.id)
    page = listing.bills_page(
        db.session, connection, account=account, window=paging.page_window(query, listing.BILLS, scope)
    )
    rows = [bill_json(bill, account_id) for bill, account_id in page.rows]
    return paging.page_json("bills", rows, query, page, listing.BILLS, scope)


@bp.get("/connections/<id:connection_id>/bills/<bill_id>/")
def get_bill(connection_id: int, bill_id: str):
    connection = owned_connection(connection_id)
    found = listing.bill_by_pluggy_id(db.session, connection, bill_id)
    if found is None:
        raise ApiError(404, "bill_not_found", "No such bill in this connection.")
    bill, account_id = found
    transactions = listing.bill_transactions(db.session, bill)
    return {**bill_json(bill, account_id), "transactions": [transaction_json(t, account_id) for t in transactions]}


@bp.get("/connections/<id:connection_id>/investments/")
@takes_query
def list_investments(connection_id: int):
    connection = owned_connection(connection_id)
    query = parse_query(schemas.PageQuery)
    scope = paging.scope_of(query, connection.id)
    page = listing.investments_page(db.session, connection, paging.page_window(query, listing.INVESTMENTS, scope))
    rows = [investment_json(row[0]) for row in page.rows]
    return paging.page_json("investments", rows, query, page, listing.INVESTMENTS, scope)


@bp.get("/connections/<id:connection_id>/investments/<investment_id>/transactions/")
@takes_query
def list_investment_transactions(connection_id: int, investment_id: str):
    connection = owned_connection(connection_id)
    query = parse_query(schemas.TombstonedPageQuery)
    investment = None
    if schemas.is_pluggy_id(investment_id):
        investment = listing.live_investment(db.session, connection, investment_id)
    if investment is None:
        raise ApiError(404, "investment_not_found", "No such investment in this connection.")
    scope = paging.scope_of(query, connection.id, investment.id)
    window = paging.page_window(query, listing.INVESTMENT_TRANSACTIONS, scope)
    page = listing.investment_transactions_page(
        db.session, investment, include_deleted=query.include_deleted, window=window
    )
    rows = [investment_transaction_json(row[0], investment.pluggy_id) for row in page.rows]
    return paging.page_json("transactions", rows, query, page, listing.INVESTMENT_TRANSACTIONS, scope)


@bp.get("/connections/<id:connection_id>/identity/")
def get_identity(connection_id: int):
    identity = listing.identity(db.session, owned_connection(connection_id))
    if identity is None:
        raise ApiError(404, "identity_not_found", "Pluggy has given no identity for this connection.")
    return identity_json(identity)


@bp.get("/connections/<id:connection_id>/loans/")
@takes_query
def list_loans(connection_id: int):
    connection = owned_connection(connection_id)
    query = parse_query(schemas.TombstonedPageQuery)
    scope = paging.scope_of(query, connection.id)
    window = paging.page_window(query, listing.LOANS, scope)
    page = listing.loans_page(db.session, connection, include_deleted=query.include_deleted, window=window)
    return paging.page_json("loans", [loan_json(row[0]) for row in page.rows], query, page, listing.LOANS, scope)


@bp.get("/connections/<id:connection_id>/sync_runs/")
@takes_query
def list_sync_runs(connection_id: int):
    connection = owned_connection(connection_id)
    query = parse_query(schemas.SyncRunsQuery)
    scope = paging.scope_of(query, connection.id)
    page = listing.sync_runs_page(
        db.session, connection, paging.cursor_window(query.cursor, query.limit, listing.SYNC_RUNS, scope)
    )
    return {
        "sync_runs": [sync_run_json(row[0]) for row in page.rows],
        "next_cursor": paging.next_cursor(page, listing.SYNC_RUNS, scope),
    }


# Connect tokens -------------------------------------------------------------------------------


@bp.post("/connect_token/")
def connect_token():
    body = parse_body(schemas.ConnectTokenRequest, optional=True)
    connection = None
    if body.item_id is not None:
        connection = listing.user_connection(db.session, g.user, item_id=body.item_id)
        if connection is None:
            raise ApiError(*ITEM_NOT_FOUND)
    return connect_token_json(connections().connect_token(g.user, connection))


# Change feed ----------------------------------------------------------------------------------


@bp.get("/changes/")
@takes_query
def user_changes():
    """What changed in the user's data since the cursor (sync/changes.py)."""
    return feed.changes_page({"user": g.user.id}, user_id=g.user.id, personal=True)
