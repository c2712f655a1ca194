"""What each kind of job does. Handlers are idempotent: a job run twice has the effect of once."""

from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa

from models import Connection, Job, SyncRun
from models.base import utcnow
from pluggy_client import PluggyNotFound

from . import listing, runs
from .connections import ITEM_BUSY, BankConnectionService, answers, apply_item
from .scheduling import (
    FETCH_ITEM,
    INITIAL_SYNC,
    PRUNE_EVERY,
    PRUNE_JOBS,
    SWEEP_ITEMS,
    WATCH_ITEM,
    queue_fetch,
    queue_prune,
    queue_sweep,
)
from .transactions import timestamp
from .worker import JobContext, RetryLater, handles

KEEP_FINISHED_JOBS = timedelta(days=7)


def live_connection(context: JobContext) -> Connection | None:
    connection = context.session.get(Connection, context.job.payload["connection_id"])
    if connection is None or connection.deleted_at is not None:
        return None
    return connection


def connections(context: JobContext) -> BankConnectionService:
    return BankConnectionService(context.session, context.client, context.settings)


@handles(INITIAL_SYNC)
def initial_sync(context: JobContext) -> None:
    """Fetch everything Pluggy has for a newly registered item, once its own first update is over."""
    connection = live_connection(context)
    if connection is None or connection.last_synced_at is not None:
        return  # gone, or already fetched another way (an item/updated webhook came first)
    item = connections(context).refresh_item(connection)
    if item.get("status") in ITEM_BUSY and not waited_too_long(context.job.created_at, context):
        raise RetryLater(context.settings.watch_interval_s, "item still updating")
    run = runs.find_open_run(context.session, connection.id)
    if run is None:
        run = runs.open_run(context.session, connection, "initial")
    elif run.status == "pending":
        raise RetryLater(context.settings.watch_interval_s, "an update of the item is under way")
    # A "running" run here was left by a worker that died: one item's jobs never overlap.
    connections(context).fetch(connection, run, progress=context.progress, checkpoint=context.checkpoint)


@handles(FETCH_ITEM)
def fetch_item(context: JobContext) -> None:
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
        trigger=context.job.payload.get("trigger", "webhook"),
        progress=context.progress,
        checkpoint=context.checkpoint,
    )


def reread(context: JobContext, connection: Connection) -> None:
    run = runs.find_open_run(context.session, connection.id) or runs.open_run(context.session, connection, "manual")
    account_id = context.job.payload.get("account_id")
    only_account = listing.account_by_pluggy_id(context.session, connection, account_id) if account_id else None
    connections(context).fetch(
        connection, run, only_account=only_account, progress=context.progress, checkpoint=context.checkpoint
    )


@handles(WATCH_ITEM)
def watch_item(context: JobContext) -> None:
    """Follow an item we asked Pluggy to update until it settles, then close the run."""
    run = context.session.get(SyncRun, context.job.payload["run_id"])
    if run is None or run.status not in ("pending", "running"):
        return
    connection = run.connection
    item = context.client.get_item(connection.item_id)
    if not answers(item, run):
        if waited_too_long(run.started_at, context):
            runs.close_run(
                context.session, run, "error", error_code="timeout", error="Pluggy did not finish the update in time"
            )
            return
        raise RetryLater(context.settings.watch_interval_s, f"item {item.get('status')}")
    connections(context).settle(
        connection, item, trigger=run.trigger, progress=context.progress, checkpoint=context.checkpoint
    )


@handles(PRUNE_JOBS)
def prune_jobs(context: JobContext) -> None:
    """Delete jobs that finished long ago (dead ones stay until retried), then come back later."""
    context.session.execute(sa.delete(Job).where(Job.status == "done", Job.finished_at < utcnow() - KEEP_FINISHED_JOBS))
    queue_prune(context.session, after=PRUNE_EVERY)
    context.session.commit()


@handles(SWEEP_ITEMS)
def sweep_items(context: JobContext) -> None:
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
            connection.deleted_at = now
        else:
            apply_item(connection, item)
            if updated_since_our_fetch(item, connection):
                queue_fetch(session, connection, "reconcile")
        session.commit()
    queue_sweep(session, after=timedelta(minutes=settings.sweep_interval_minutes))
    session.commit()


def updated_since_our_fetch(item: dict, connection: Connection) -> bool:
    last_updated = timestamp(item.get("lastUpdatedAt"))
    if item.get("status") in ITEM_BUSY or last_updated is None:
        return False
    return connection.last_synced_at is None or last_updated > connection.last_synced_at


def waited_too_long(since: datetime, context: JobContext) -> bool:
    return (utcnow() - since).total_seconds() > context.settings.watch_timeout_s
