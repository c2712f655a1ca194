"""What each kind of job the sync layer queues does, and `register`, which hands them to a job
registry. Handlers are idempotent: a job run twice has the effect of once."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from flask import Flask

from config import Settings
from jobqueue import JobRegistry, RetryLater, Worker, describe, maintenance
from models import OPEN_SYNC_STATUSES, Connection, RunStatus, RunTrigger, SyncRun
from models.base import utcnow
from models.connection import DeletedReason
from observability import logs
from pluggy_client import PluggyClient, PluggyError, PluggyNotFound, PluggyRateLimited, timestamp

from . import changes, events, giving_up, listing, removal, runs
from .connections import BankConnectionService
from .item_state import ITEM_BUSY, answers, apply_item
from .job_context import SyncJobContext, bind
from .outbound import delivery, pruning
from .outbound import events as outbound
from .scheduling import JobKind, queue_changes_pruning, queue_events_pruning, queue_fetch, queue_sweep

log = logging.getLogger(__name__)


def job_kinds() -> tuple[str, ...]:
    """Every kind of job a worker of this service runs: the sync layer's and the queue's own."""
    return (*(str(kind) for kind in JobKind), *maintenance.KINDS)


def register(registry: JobRegistry, client: PluggyClient, settings: Settings) -> None:
    """Every kind of job the sync layer queues, run with this client and these settings; the sweep
    queued when a worker starts; a dead job's run and events closed."""
    handlers = {
        JobKind.INITIAL_SYNC: initial_sync,
        JobKind.FETCH_ITEM: fetch_item,
        JobKind.WATCH_ITEM: watch_item,
        JobKind.SWEEP_ITEMS: sweep_items,
        JobKind.PROCESS_EVENTS: events.process_events,
        JobKind.REMOVE_ITEM_DATA: removal.remove_item_data,
        JobKind.PRUNE_CHANGES: changes.prune_changes,
        JobKind.DELIVER_EVENT: delivery.deliver_event,
        JobKind.PRUNE_OUTBOUND_EVENTS: pruning.prune_outbound_events,
    }
    for kind, handler in handlers.items():
        registry.register(kind, bind(handler, client, settings))
    registry.at_start(queue_sweep)
    registry.at_start(queue_changes_pruning)
    registry.at_start(queue_events_pruning)
    registry.when_dead(giving_up.close_what_it_owned)
    registry.when_dead(delivery.job_gave_up)


def job_registry(client: PluggyClient, settings: Settings) -> JobRegistry:
    """The registry a worker of this service runs: the queue's own jobs and the sync layer's."""
    registry = JobRegistry(expected=job_kinds())
    maintenance.register(registry)
    register(registry, client, settings)
    return registry


def live_connection(context: SyncJobContext) -> Connection | None:
    connection = context.session.get(Connection, context.job.payload["connection_id"])
    if connection is None or connection.deleted_at is not None:
        return None
    return connection


def connections(context: SyncJobContext) -> BankConnectionService:
    return BankConnectionService(context.session, context.client, context.settings)


def initial_sync(context: SyncJobContext) -> None:
    """Fetch everything Pluggy has for a newly registered item, once its own first update is over."""
    connection = live_connection(context)
    if connection is None or connection.last_synced_at is not None:
        return  # gone, or already fetched another way (an item/updated webhook came first)
    item = connections(context).refresh_item(connection)
    if item.get("status") in ITEM_BUSY and not waited_too_long(context.job.created_at, context):
        raise RetryLater(context.settings.watch_interval_s, "item still updating")
    run = runs.find_open_run(context.session, connection.id)
    if run is None:
        run = runs.open_run(context.session, connection, RunTrigger.INITIAL)
    elif run.status == "pending":
        raise RetryLater(context.settings.watch_interval_s, "an update of the item is under way")
    # A "running" run here was left by a worker that died: one item's jobs never overlap.
    connections(context).fetch(connection, run, progress=context.progress, checkpoint=context.checkpoint)


def fetch_item(context: SyncJobContext) -> None:
    """Pluggy finished an item update: record the outcome and fetch what changed.
    A re-read fetches what Pluggy has whatever the item's state."""
    connection = live_connection(context)
    if connection is None:
        return
    if context.job.payload.get("reread"):
        reread(context, connection)
        return
    item = context.client.get_item(connection.item_id)
    connections(context).settle(
        connection,
        item,
        trigger=context.job.payload.get("trigger", RunTrigger.WEBHOOK),
        progress=context.progress,
        checkpoint=context.checkpoint,
    )


def reread(context: SyncJobContext, connection: Connection) -> None:
    run = runs.find_open_run(context.session, connection.id) or runs.open_run(
        context.session, connection, RunTrigger.MANUAL
    )
    account_id = context.job.payload.get("account_id")
    only_account = listing.account_by_pluggy_id(context.session, connection, account_id) if account_id else None
    connections(context).fetch(
        connection, run, only_account=only_account, progress=context.progress, checkpoint=context.checkpoint
    )


def watch_item(context: SyncJobContext) -> None:
    """Follow an item we asked Pluggy to update until it settles, then close the run."""
    run = context.session.get(SyncRun, context.job.payload["run_id"])
    if run is None or run.status not in OPEN_SYNC_STATUSES:
        return
    connection = run.connection
    item = context.client.get_item(connection.item_id)
    if not answers(item, run):
        if waited_too_long(run.started_at, context):
            runs.close_run(
                context.session,
                run,
                RunStatus.ERROR,
                error_code="timeout",
                error="Pluggy did not finish the update in time",
            )
            return
        raise RetryLater(context.settings.watch_interval_s, f"item {item.get('status')}")
    connections(context).settle(
        connection, item, trigger=run.trigger, progress=context.progress, checkpoint=context.checkpoint
    )


def sweep_items(context: SyncJobContext) -> None:
    """The safety net for lost webhooks: re-read (GET, never PATCH) items we have not synced for a
    while, at most once per that while each, and fetch those Pluggy updated since our last fetch."""
    session, settings = context.session, context.settings
    now = utcnow()
    stale = now - timedelta(hours=settings.sweep_stale_hours)
    due = session.scalars(
        sa.select(Connection)
        .where(
            Connection.deleted_at.is_(None),
            # A new connection has its first sync under way: it counts from its creation.
            sa.func.coalesce(Connection.last_synced_at, Connection.created_at) < stale,
            sa.or_(Connection.last_checked_at.is_(None), Connection.last_checked_at < stale),
        )
        .order_by(Connection.last_checked_at.is_not(None), Connection.last_checked_at, Connection.id)
        .limit(settings.sweep_batch)
    ).all()
    for connection in due:
        connection.last_checked_at = now
        try:
            item = context.client.get_item(connection.item_id)
        except PluggyNotFound:
            removal.mark_deleted(session, connection, DeletedReason.ITEM_NOT_FOUND, settings, now=now)
        except PluggyRateLimited:
            session.rollback()
            break  # the connections not looked at stay due for the next sweep
        except PluggyError as exc:
            # One item Pluggy fails on must not stop the safety net for every other: it is looked at
            # again in the next window, when it comes last among those due.
            logs.event(
                log, "sweep could not read an item", logging.WARNING, connection_id=connection.id, error=describe(exc)
            )
        else:
            apply_item(connection, item)
            if updated_since_our_fetch(item, connection):
                queue_fetch(session, connection, RunTrigger.RECONCILE)
        session.commit()
    events.queue_stranded(session, now=now, limit=settings.sweep_batch)
    removal.queue_overdue_removals(session, settings, now=now, limit=settings.sweep_batch)
    outbound.record_missing_statuses(session, context.checkpoint)
    queue_sweep(session, after=timedelta(minutes=settings.sweep_interval_minutes))
    session.commit()


def updated_since_our_fetch(item: dict, connection: Connection) -> bool:
    last_updated = timestamp(item.get("lastUpdatedAt"))
    if item.get("status") in ITEM_BUSY or last_updated is None:
        return False
    return connection.last_synced_at is None or last_updated > connection.last_synced_at


def waited_too_long(since: datetime, context: SyncJobContext) -> bool:
    return (utcnow() - since).total_seconds() > context.settings.watch_timeout_s


def sync_worker(app: Flask, client: PluggyClient, **options: Any) -> Worker:
    """A worker of this service (`flask worker`, `--wait`, tests, benchmarks): every kind of job it
    queues, with `app`'s settings; `options` as `Worker` takes them."""
    return Worker(app, job_registry(client, Settings.from_config(app.config)), **options)
