"""The console's connections: every user's, filtered by sync_status, connector or a search, and one
connection's record with what hangs off it (accounts, runs, the webhooks about its item).

Every filter is served by an index, newest first (by id, descending): the status by
reported_statuses(sync_status, connection_id), the connector by connections(connector_id, id) or
(connector_name, id), a search by the unique item id or the user's unique email (exact matches: a
prefix of either could not be answered from those indexes on both engines).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from models import Account, Connection, Identity, ReportedStatus, SyncRun, User, WebhookEvent
from models.database import DbSession

from ..item_state import SyncStatus, sync_status
from ..listing import Key, Order, Slice, Window, open_runs, read_window, sync_runs
from ..users import UserError, normalise_email
from ..values import MAX_INTEGER, ascii_digits, has_control_character
from .redaction import redacted

# Newest first. Both orders give the same key (a connection's id) under one name: a cursor is
# bound to its filters by its scope, not by which of them read it.
CONNECTIONS = Order("console_connections", (Connection.id,))
BY_STATUS = Order("console_connections", (ReportedStatus.connection_id,))
RECENT_RUNS = 20
RECENT_EVENTS = 20
MAX_ACCOUNTS = 100
# Beside the names of secrets: in Pluggy's status detail, what holds a value the user typed or a
# session (`data` is an OAuth URL or a QR image).
STATUS_DETAIL_SECRETS = frozenset({"value", "values", "answer", "pin", "session", "data"})
# What a prompt or an action may show of itself: Pluggy's `parameter.data` is an OAuth URL or a QR
# image, its `placeholder` may be an example answer, a user action's `attributes` a URL to open.
PROMPT_FIELDS = ("name", "label", "type", "assistiveText", "optional", "mfa", "expiresAt")
ACTION_FIELDS = ("type", "instructions", "expiresAt")


class FilterError(ValueError):
    """A filter the list cannot take (a sync_status that is not one, a control character)."""


@dataclass(frozen=True)
class ConnectionFilter:
    """What the list is narrowed to."""

    sync_status: SyncStatus | None = None
    connector_id: int | None = None
    connector_name: str | None = None
    item_id: str | None = None
    email: str | None = None
    include_deleted: bool = False
    # The query string that asked for it: what a cursor is bound to, and what the next page repeats.
    query: dict[str, str] = field(default_factory=dict)


def connection_filter(args: Mapping[str, str]) -> ConnectionFilter:
    """The list's filters from a query string: `sync_status`, `connector` (an id, or a name exactly
    as Pluggy spells it), `q` (an item id, or an email: one with an @) and `deleted` (tombstones too)."""
    query = {name: args.get(name, "").strip() for name in ("sync_status", "connector", "q", "deleted")}
    query = {name: value for name, value in query.items() if value}
    if any(has_control_character(value) for value in query.values()):
        raise FilterError("a filter holds a control character")
    status = query.get("sync_status")
    if status is not None and status not in {str(s) for s in SyncStatus}:
        raise FilterError(f"not a sync_status: {status!r}")
    connector = query.get("connector")
    if connector is not None and ascii_digits(connector) and len(connector) > 18:
        raise FilterError("not a connector id")
    q = query.get("q")
    email = item_id = None
    if q is not None and "@" in q:
        try:
            email = normalise_email(q)
        except UserError:
            email = q  # not an address anyone has: matches nothing
    else:
        item_id = q
    return ConnectionFilter(
        sync_status=SyncStatus(status) if status else None,
        connector_id=int(connector) if connector and ascii_digits(connector) else None,
        connector_name=connector if connector and not ascii_digits(connector) else None,
        item_id=item_id,
        email=email,
        include_deleted=query.get("deleted") in ("1", "on", "true"),
        query=query,
    )


@dataclass(frozen=True)
class ConnectionLine:
    """One line of the list: the connection, its user's email, its last reported sync_status."""

    connection: Connection
    email: str
    sync_status: str | None


def list_order(filters: ConnectionFilter) -> Order:
    """The list's order for these filters: newest first, by the connection's id, read from the status
    index when the list is filtered by status (SQLite sorts otherwise: it does not carry an order
    across a join's equality)."""
    return BY_STATUS if filters.sync_status is not None else CONNECTIONS


def list_connections(
    session: DbSession, filters: ConnectionFilter, window: Window
) -> tuple[list[ConnectionLine], Key | None]:
    """A window of the connections that pass the filters, newest first, and the key to go on after."""
    statement: sa.Select
    if filters.sync_status is None:
        statement = (
            sa.select(Connection, User.email, ReportedStatus.sync_status)
            .join(User, User.id == Connection.user_id)
            .outerjoin(ReportedStatus, ReportedStatus.connection_id == Connection.id)
        )
    else:
        statement = (
            sa.select(ReportedStatus, Connection, User.email)
            .join(Connection, Connection.id == ReportedStatus.connection_id)
            .join(User, User.id == Connection.user_id)
            .where(ReportedStatus.sync_status == filters.sync_status)
        )
        if window.after is not None:
            # The same bound on the connection's id: whichever index the planner starts from has it.
            statement = statement.where(Connection.id < window.after[0])
    if filters.connector_id is not None:
        statement = statement.where(Connection.connector_id == filters.connector_id)
    if filters.connector_name is not None:
        statement = statement.where(Connection.connector_name == filters.connector_name)
    if filters.item_id is not None:
        statement = statement.where(Connection.item_id == filters.item_id)
    if filters.email is not None:
        statement = statement.where(User.email == filters.email)
    if not filters.include_deleted:
        statement = statement.where(Connection.deleted_at.is_(None))
    page: Slice = read_window(session, statement, list_order(filters), window)
    return [line(row) for row in page.rows], page.next_key


def line(row: sa.Row) -> ConnectionLine:
    if isinstance(row[0], ReportedStatus):
        reported, connection, email = row
        return ConnectionLine(connection, email, reported.sync_status)
    connection, email, status = row
    return ConnectionLine(connection, email, status)


@dataclass(frozen=True)
class ConnectionRecord:
    """A connection as the console shows it: `sync_status` as the API reports it now, the one last
    reported to the app, and everything secret already taken out of Pluggy's fields."""

    connection: Connection
    email: str
    sync_status: SyncStatus
    reported_status: str | None
    open_run: SyncRun | None
    prompt: dict[str, Any] | None
    user_action: dict[str, Any] | None
    status_detail: Any
    identity: Identity | None
    accounts: list[Account]
    runs: list[SyncRun]
    events: list[WebhookEvent]


def read_connection(session: DbSession, connection_id: int) -> ConnectionRecord | None:
    """A connection, live or a tombstone, with its accounts, recent runs and webhook events."""
    if not 0 < connection_id <= MAX_INTEGER:
        return None  # no row has it, and PostgreSQL would refuse to compare it with an integer column
    connection = session.get(Connection, connection_id)
    if connection is None:
        return None
    open_run = open_runs(session, [connection]).get(connection.id)
    return ConnectionRecord(
        connection=connection,
        email=connection.user.email,
        sync_status=sync_status(connection, open_run),
        reported_status=session.scalar(
            sa.select(ReportedStatus.sync_status).where(ReportedStatus.connection_id == connection.id)
        ),
        open_run=open_run,
        prompt=only(connection.mfa_parameter, PROMPT_FIELDS),
        user_action=only(connection.user_action, ACTION_FIELDS),
        status_detail=redacted(connection.status_detail, also=STATUS_DETAIL_SECRETS),
        identity=session.scalars(sa.select(Identity).where(Identity.connection_id == connection.id)).one_or_none(),
        accounts=list(
            session.scalars(
                sa.select(Account)
                .where(Account.connection_id == connection.id)
                .order_by(Account.id)
                .limit(MAX_ACCOUNTS)
            )
        ),
        runs=sync_runs(session, connection, limit=RECENT_RUNS),
        events=recent_events(session, connection.item_id),
    )


def recent_events(session: DbSession, item_id: str, limit: int = RECENT_EVENTS) -> list[WebhookEvent]:
    """The newest webhooks Pluggy sent about the item (webhook_events' item_id index)."""
    return list(
        session.scalars(
            sa.select(WebhookEvent).where(WebhookEvent.item_id == item_id).order_by(WebhookEvent.id.desc()).limit(limit)
        )
    )


def only(value: dict | None, fields: tuple[str, ...]) -> dict[str, Any] | None:
    """The fields of a Pluggy object a page may show, in that order; None when there is none."""
    if not isinstance(value, dict):
        return None
    return {name: value[name] for name in fields if value.get(name) is not None}
