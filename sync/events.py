"""What the worker does with stored webhook events (the receiver in `webhooks/` stores them and
queues a job of kind `webhook_events`).

Every handler re-reads the item from Pluggy instead of trusting a payload or its order, and is
idempotent, so a repeated or reordered delivery changes nothing. One job drains all pending events
of an item: however many item events arrived, the item is read and settled once.
"""

from __future__ import annotations

import logging
import math
from datetime import datetime, timedelta

import sqlalchemy as sa

from jobqueue import LeaseLost, Released, describe, dialect_insert
from models import (
    FETCHED_SYNC_STATUSES,
    LIVE_JOB_STATUSES,
    Account,
    Connection,
    ConnectorStatus,
    EventStatus,
    Job,
    RunStatus,
    RunTrigger,
    SyncRun,
    User,
    WebhookEvent,
)
from models.base import utcnow
from models.connection import DeletedReason
from models.database import DbSession
from observability import logs, metrics
from pluggy_client import PluggyNotFound, timestamp

from . import listing, removal, runs
from .connections import BankConnectionService
from .job_context import SyncJobContext
from .outbound import events as outbound
from .scheduling import JobKind, queue_event_processing
from .tokens import user_id_named_by
from .transactions import Counts, TransactionService

log = logging.getLogger(__name__)

ITEM_EVENTS = {
    "item/created",
    "item/updated",
    "item/error",
    "item/login_error",  # not in Pluggy's spec, accepted as an alias of item/error
    "item/waiting_user_input",
    "item/waiting_user_action",
    "item/login_succeeded",
    "item/deleted",
}
TRANSACTION_EVENTS = {"transactions/created", "transactions/updated", "transactions/deleted"}
HANDLED = ITEM_EVENTS | TRANSACTION_EVENTS | {"connector/status_updated"}
BATCH = 500
# A pending event older than this with no job to handle it is stranded (queue_stranded).
STRANDED_AFTER = timedelta(minutes=10)
MAX_CONNECTOR_KEY = 255  # characters the connector_statuses key column holds


def event_label(event: object) -> str:
    """An event's name as a metric label. Names come from the senders' bodies: any other shares
    one value, so a sender cannot grow the number of series."""
    return event if isinstance(event, str) and event in HANDLED else "other"


def process_events(context: SyncJobContext) -> None:
    """Handle the events the job was queued for, a batch at a time: for an item, every event of it
    pending when the job began (later ones have a job of their own queued)."""
    last_id, after_id = newest_pending_id(context), 0
    while events := pending_events(context, after_id=after_id, up_to=last_id):
        process_batch(context, events)
        after_id = events[-1].id
        context.checkpoint(progressed=True)


def process_batch(context: SyncJobContext, events: list[WebhookEvent]) -> None:
    ids = [e.id for e in events]
    logs.bind(event_ids=[e.event_id for e in events])
    try:
        if "item_id" in context.job.payload:
            ItemEvents(context, events).process()
        else:
            process_single(context, events[0])
    except (LeaseLost, Released):
        # Not a failure of these events: another worker, or this job's next run, handles them.
        context.session.rollback()
        raise
    except Exception as exc:
        context.session.rollback()
        record_failure(context, events, exc)
        raise
    report_outcomes(context.session, ids)


def report_outcomes(session: DbSession, ids: list[int]) -> None:
    """One line naming each event's outcome and the run that wrote its rows, and each event's lag
    from arrival to now."""
    rows = session.execute(
        sa.select(
            WebhookEvent.event_id,
            WebhookEvent.event,
            WebhookEvent.status,
            WebhookEvent.sync_run_id,
            WebhookEvent.received_at,
        ).where(WebhookEvent.id.in_(ids))
    ).all()
    session.commit()
    metrics.observe_webhook_lag(((event_label(row.event), row.received_at) for row in rows), utcnow())
    logs.event(
        log,
        "webhook events handled",
        events=[
            {"event_id": row.event_id, "event": row.event, "status": row.status, "run_id": row.sync_run_id}
            for row in rows
        ],
    )


def pending_events(context: SyncJobContext, *, after_id: int, up_to: int | None) -> list[WebhookEvent]:
    if up_to is None:
        return []
    statement = pending_of_job(context.job.payload, sa.select(WebhookEvent)).where(
        WebhookEvent.id > after_id, WebhookEvent.id <= up_to
    )
    return list(context.session.scalars(statement.order_by(WebhookEvent.id).limit(BATCH)))


def newest_pending_id(context: SyncJobContext) -> int | None:
    return context.session.scalar(pending_of_job(context.job.payload, sa.select(sa.func.max(WebhookEvent.id))))


def pending_of_job(payload: dict, statement: sa.Select) -> sa.Select:
    statement = statement.where(WebhookEvent.status == EventStatus.PENDING)
    if "item_id" in payload:
        return statement.where(WebhookEvent.item_id == payload["item_id"])
    return statement.where(WebhookEvent.id == payload["event_row_id"])


def queue_stranded(session: DbSession, *, now: datetime, limit: int) -> int:
    """Queue the processing of pending events that no queued or running job will handle, stored at
    least STRANDED_AFTER ago (the missed-webhook sweep calls it). Every path that stores or fails an
    event queues or closes its job in the same transaction; this is the net under a path that one day
    does not, so that a stored webhook is never left unhandled. Returns how many were queued."""
    live = sa.select(Job.id).where(Job.kind == JobKind.PROCESS_EVENTS, Job.status.in_(LIVE_JOB_STATUSES))
    of_its_item = live.where(Job.item_id == WebhookEvent.item_id)
    of_itself = live.where(Job.item_id.is_(None), Job.payload["event_row_id"].as_integer() == WebhookEvent.id)
    stranded = session.execute(
        sa.select(WebhookEvent.id, WebhookEvent.item_id)
        .where(
            WebhookEvent.status == EventStatus.PENDING,
            WebhookEvent.received_at < now - STRANDED_AFTER,
            ~sa.case((WebhookEvent.item_id.is_(None), of_itself.exists()), else_=of_its_item.exists()),
        )
        .order_by(WebhookEvent.id)
        .limit(limit)
    ).all()
    for row_id, item_id in stranded:
        queue_event_processing(session, row_id, item_id)  # an item's events join one job
    if stranded:
        logs.event(log, "stranded webhook events queued again", logging.WARNING, events=len(stranded))
    return len(stranded)


def record_failure(context: SyncJobContext, events: list[WebhookEvent], exc: Exception) -> None:
    """Keep the error on each event still pending, and leave it pending: the job's next attempt, or
    the item's next events job, handles it. When the job gives up with no such job left, it fails
    them (sync/giving_up.py)."""
    context.session.execute(
        sa.update(WebhookEvent)
        .where(WebhookEvent.id.in_([e.id for e in events]), WebhookEvent.status == EventStatus.PENDING)
        .values(attempts=WebhookEvent.attempts + 1, last_error=describe(exc))
    )
    context.session.commit()


def mark(
    events: list[WebhookEvent], status: EventStatus, *, run: SyncRun | None = None, note: str | None = None
) -> None:
    for event in events:
        event.status = status
        event.attempts += 1
        event.processed_at = utcnow()
        event.last_error = note
        if run is not None:
            event.sync_run_id = run.id


def process_single(context: SyncJobContext, event: WebhookEvent) -> None:
    """An event about no item: a connector's health, or something this service does not handle."""
    data = event.payload.get("data")
    if not isinstance(data, dict):
        data = {}
    connector_id = connector_key(event.payload.get("id"))
    if event.event == "connector/status_updated" and connector_id is not None and data.get("status"):
        record_connector_status(context.session, connector_id, data)
        mark([event], EventStatus.PROCESSED)
    elif event.event == "connector/status_updated":
        mark([event], EventStatus.IGNORED, note="no connector id or no status")
    else:
        mark([event], EventStatus.IGNORED, note=f"not handled: {event.event}")
    context.session.commit()


def connector_key(value: object) -> str | None:
    """A connector/status_updated payload's `id` as the key it is recorded under, whatever JSON type
    it came as: a whole number in digits (201, 201.0 and "201" are one connector, "201"); any other
    number as Python writes it ("201.5", "-1"); a string as it is ("abc"). None for what names no
    connector: true/false, null, an object or an array, an empty or over-long string."""
    if isinstance(value, bool) or (isinstance(value, float) and not math.isfinite(value)):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, int | float):
        key = str(value)
    elif isinstance(value, str):
        key = value.strip()
    else:
        return None
    if key.isascii() and key.isdigit():
        key = str(int(key))  # "0201" is connector 201, as 0201 would be
    return key if 0 < len(key) <= MAX_CONNECTOR_KEY else None


def record_connector_status(session: DbSession, connector_id: str, data: dict) -> None:
    insert = dialect_insert(session)(ConnectorStatus).values(
        connector_id=connector_id, status=str(data["status"])[:32], payload=data, updated_at=utcnow()
    )
    session.execute(
        insert.on_conflict_do_update(
            index_elements=[ConnectorStatus.connector_id],
            set_={
                "status": insert.excluded.status,
                "payload": insert.excluded.payload,
                "updated_at": insert.excluded.updated_at,
            },
        )
    )


class ItemEvents:
    """The pending events of one item, processed together."""

    def __init__(self, context: SyncJobContext, events: list[WebhookEvent]) -> None:
        self.context = context
        self.session = context.session
        self.item_id = context.job.payload["item_id"]
        self.events = events
        self.connections = BankConnectionService(context.session, context.client, context.settings)

    def of(self, names: set[str]) -> list[WebhookEvent]:
        return [e for e in self.events if e.event in names]

    def process(self) -> None:
        mark(
            [e for e in self.events if e.event not in ITEM_EVENTS | TRANSACTION_EVENTS],
            EventStatus.IGNORED,
            note="not handled for an item",
        )
        connection = self.connections.by_item_id(self.item_id)
        if connection is not None and connection.deleted_at is not None:
            mark(self.of(HANDLED), EventStatus.IGNORED, note="the item was deleted")
        elif self.of({"item/deleted"}):
            self.item_deleted(connection)
        elif connection is None:
            self.unknown_item()
        else:
            self.known_item(connection)
        self.session.commit()

    def item_deleted(self, connection: Connection | None) -> None:
        """Access revoked at the bank or at Pluggy: the connection becomes a tombstone and its copied
        data goes after DELETED_ITEM_RETENTION_DAYS."""
        if connection is not None:
            removal.mark_deleted(self.session, connection, DeletedReason.ITEM_DELETED, self.context.settings)
        mark(self.of({"item/deleted"}), EventStatus.PROCESSED)
        mark(self.of(HANDLED - {"item/deleted"}), EventStatus.IGNORED, note="the item was deleted")

    def unknown_item(self) -> None:
        """An item we have not registered: adopt it if it names one of our users (clientUserId),
        whichever event came first; its first sync then brings everything."""
        try:
            item = self.context.client.get_item(self.item_id)
        except PluggyNotFound:
            mark(self.of(HANDLED), EventStatus.IGNORED, note="Pluggy does not know the item")
            return
        user = user_of(self.session, item.get("clientUserId"))
        if user is None:
            mark(self.of(HANDLED), EventStatus.IGNORED, note="the item belongs to no user of this service")
            return
        self.connections.register(user, self.item_id)
        mark(self.of(HANDLED), EventStatus.PROCESSED, note="registered; first sync queued")

    def known_item(self, connection: Connection) -> None:
        """Read the item and settle it once for the whole batch (fetching when Pluggy has a new
        update), then apply the transaction events into the run of that update."""
        try:
            item = self.context.client.get_item(self.item_id)
        except PluggyNotFound:
            removal.mark_deleted(self.session, connection, DeletedReason.ITEM_NOT_FOUND, self.context.settings)
            mark(self.of(HANDLED), EventStatus.PROCESSED, note="Pluggy no longer knows the item")
            return
        settling_began = utcnow()
        run = self.connections.settle(
            connection,
            item,
            trigger=RunTrigger.WEBHOOK,
            progress=self.context.progress,
            checkpoint=self.context.checkpoint,
        )
        mark(self.of(ITEM_EVENTS), EventStatus.PROCESSED, run=run)
        fetched = run if run is not None and run.status in FETCHED_SYNC_STATUSES else None
        # A run that closed just now fetched after every event of the batch had arrived.
        fetched_now = fetched is not None and fetched.finished_at is not None and fetched.finished_at >= settling_began
        self.transaction_events(connection, fetched, fetched_now=fetched_now)

    def transaction_events(self, connection: Connection, fetched_run: SyncRun | None, *, fetched_now: bool) -> None:
        """Transaction events join the run of the item's update (one update of an item is one run);
        new rows a fetch begun after their event arrived has read already need nothing more."""
        events = self.of(TRANSACTION_EVENTS)
        if fetched_now:
            covered = [e for e in events if e.event == "transactions/created"]
            mark(covered, EventStatus.PROCESSED, run=fetched_run)
            events = [e for e in events if e not in covered]
        if not events:
            return
        run, opened = runs.find_open_run(self.session, connection.id) or fetched_run, False
        if run is None:
            run, opened = runs.open_run(self.session, connection, RunTrigger.WEBHOOK), True
        service = TransactionService(
            self.session, self.context.client, self.context.settings, checkpoint=self.context.checkpoint, run=run
        )
        for event in events:
            counts = self.transaction_event(service, connection, event)
            if counts is None:
                mark([event], EventStatus.IGNORED, note="unknown account")
            else:
                mark([event], EventStatus.PROCESSED, run=run)
                if counts and run.finished_at is not None:
                    # Joined a run already closed (and told): these changes are told on their own.
                    outbound.transactions_changed(self.session, run)
            self.session.commit()
        if opened:
            runs.close_run(self.session, run, RunStatus.SUCCESS)

    def transaction_event(
        self, service: TransactionService, connection: Connection, event: WebhookEvent
    ) -> Counts | None:
        account = self.account(service, connection, event.payload.get("accountId"))
        if account is None:
            return None
        ids = [i for i in event.payload.get("transactionIds") or [] if isinstance(i, str)]
        if event.event == "transactions/created":
            since = moment(event.payload.get("transactionsCreatedAtFrom"))
            if since is None:  # the payload does not say where the new rows start: the usual sync does
                return service.sync_account(account)
            return service.sync_created_since(account, since)
        if event.event == "transactions/updated":
            return service.sync_ids(account, ids)
        return service.tombstone_ids(account, ids)

    def account(self, service: TransactionService, connection: Connection, pluggy_id) -> Account | None:
        """The event's account; one we have not seen yet makes us read the item's accounts first."""
        if not isinstance(pluggy_id, str):
            return None
        for refresh in (False, True):
            if refresh:
                service.refresh_accounts(connection)
            account = listing.account_by_pluggy_id(self.session, connection, pluggy_id)
            if account is not None:
                return account
        return None


def user_of(session: DbSession, client_user_id) -> User | None:
    """Connect tokens carry our user id as clientUserId, so an item names its owner."""
    user_id = user_id_named_by(client_user_id)
    return None if user_id is None else session.get(User, user_id)


def moment(value) -> datetime | None:
    try:
        return timestamp(value) if isinstance(value, str) else None
    except ValueError:
        return None
