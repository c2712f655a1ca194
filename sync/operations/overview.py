"""The overview page's figures: the queue, the webhooks of the last hour, the sync runs of the last
day, the live connections by `sync_status` and the connectors Pluggy reports unhealthy.

Every figure is read along an index and within its window, however many rows the tables hold:
webhooks by `received_at` (per minute) and `processed_at` (lag), runs by `started_at`; the counting
and the bucketing are done by the database. Only the connections' count reads a whole table
(`reported_statuses`, one short row per connection, joined to the live connections).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from jobqueue import queue_stats
from models import Connection, ConnectorStatus, EventStatus, ReportedStatus, RunStatus, SyncRun, WebhookEvent
from models.base import UTCDateTime, utcnow
from models.database import DbSession

from ..item_state import SyncStatus
from ..values import MAX_INTEGER, ascii_digits

LAG_WINDOW = timedelta(hours=1)
MINUTES = 60  # webhooks received per minute: this minute and the 59 before
HOURS = 24  # sync runs per hour: this hour and the 23 before
# Events the worker finished with: the ones `observability.metrics.observe_webhook_lag` times. A
# failed event's processed_at is when it was given up on, not when its data arrived.
HANDLED_EVENT_STATUSES = (EventStatus.PROCESSED, EventStatus.IGNORED)
# Pluggy's connector health is ONLINE, UNSTABLE or OFFLINE; anything but ONLINE is worth a look.
CONNECTOR_ONLINE = "ONLINE"
# SQLite's spelling of PostgreSQL's date_trunc, as text its DateTime type reads back.
SQLITE_TRUNCATED = {"minute": "%Y-%m-%d %H:%M:00", "hour": "%Y-%m-%d %H:00:00"}


@dataclass(frozen=True)
class WebhookLag:
    """From a webhook's arrival to the worker finishing with it, over the events finished in the
    last hour (`processed_at - received_at`, the lag `/metrics` observes). None without events."""

    events: int
    p50_s: float | None
    p95_s: float | None


@dataclass(frozen=True)
class UnhealthyConnector:
    connector_id: str
    status: str
    reported_at: datetime
    name: str | None  # as a connection of ours names it; None when no connection uses it
    live_connections: int


@dataclass(frozen=True)
class Overview:
    now: datetime
    queue: dict  # jobqueue.queue_stats: due, scheduled, running, dead, oldest_due_age_s
    lag: WebhookLag
    webhooks_per_minute: list[tuple[datetime, int]]  # every minute of the window, oldest first
    runs_per_hour: list[tuple[datetime, dict[str, int]]]  # every hour of the window: runs by status
    runs_by_status: dict[str, int]  # the same runs, by status (every RunStatus, zeros included)
    connections_by_status: dict[str, int]  # live connections by sync_status (every SyncStatus)
    unhealthy_connectors: list[UnhealthyConnector]

    @property
    def webhooks_last_hour(self) -> int:
        return sum(count for _, count in self.webhooks_per_minute)

    @property
    def runs_last_day(self) -> int:
        return sum(self.runs_by_status.values())


def read_overview(session: DbSession, now: datetime | None = None) -> Overview:
    now = now or utcnow()
    runs_per_hour = sync_runs_per_hour(session, now)
    tombstones = read_tombstones(session)
    return Overview(
        now=now,
        queue=queue_stats(session, now),
        lag=webhook_lag(session, now),
        webhooks_per_minute=webhooks_per_minute(session, now),
        runs_per_hour=runs_per_hour,
        runs_by_status=total_by_status(runs_per_hour),
        connections_by_status=connections_by_status(session, tombstones),
        unhealthy_connectors=unhealthy_connectors(session, tombstones),
    )


def webhook_lag(session: DbSession, now: datetime) -> WebhookLag:
    """p50 and p95 of the lag of the events finished in the last hour, found along the
    `processed_at` index. PostgreSQL computes them itself (`percentile_cont`), so no row leaves the
    database; elsewhere (SQLite, a development database) the hour's timestamps are read and
    interpolated the same way, a set bounded by the window. There the status is checked on the
    hour's rows, not in SQL: SQLite's planner would otherwise read the whole `(status, id)` index
    (every event ever processed) instead of the hour's `processed_at` range."""
    window = (WebhookEvent.processed_at >= now - LAG_WINDOW, WebhookEvent.processed_at <= now)
    if session.get_bind().dialect.name == "postgresql":
        lag = sa.extract("epoch", WebhookEvent.processed_at - WebhookEvent.received_at)
        events, p50, p95 = session.execute(
            sa.select(
                sa.func.count(),
                sa.func.percentile_cont(0.5).within_group(lag),
                sa.func.percentile_cont(0.95).within_group(lag),
            ).where(*window, WebhookEvent.status.in_(HANDLED_EVENT_STATUSES))
        ).one()
        return WebhookLag(events, none_or_float(p50), none_or_float(p95))
    rows = session.execute(
        sa.select(WebhookEvent.received_at, WebhookEvent.processed_at, WebhookEvent.status).where(*window)
    )
    lags = sorted(
        max(0.0, (processed - received).total_seconds())
        for received, processed, status in rows
        if processed and status in HANDLED_EVENT_STATUSES
    )
    return WebhookLag(len(lags), percentile(lags, 0.5), percentile(lags, 0.95))


def percentile(ordered: list[float], fraction: float) -> float | None:
    """The value at `fraction` of sorted values, interpolated between the two nearest ranks: what
    PostgreSQL's percentile_cont gives."""
    if not ordered:
        return None
    position = fraction * (len(ordered) - 1)
    lower = int(position)
    upper = min(lower + 1, len(ordered) - 1)
    return ordered[lower] + (ordered[upper] - ordered[lower]) * (position - lower)


def none_or_float(value) -> float | None:
    return None if value is None else float(value)


def webhooks_per_minute(session: DbSession, now: datetime) -> list[tuple[datetime, int]]:
    """Webhooks received in each minute of the window (this minute and the 59 before), counted by
    the database along the `received_at` index; minutes without any count 0."""
    first = truncate(now, "minute") - timedelta(minutes=MINUTES - 1)
    minute = truncated(session, WebhookEvent.received_at, "minute")
    counts = dict(
        session.execute(
            sa.select(minute, sa.func.count())
            .where(WebhookEvent.received_at >= first, WebhookEvent.received_at <= now)
            .group_by(minute)
        ).all()
    )
    return [(at, counts.get(at, 0)) for at in steps(first, timedelta(minutes=1), MINUTES)]


def sync_runs_per_hour(session: DbSession, now: datetime) -> list[tuple[datetime, dict[str, int]]]:
    """Sync runs started in each hour of the window (this hour and the 23 before), by their status
    now (an open run counts as pending or running), read from the `started_at, status` index."""
    first = truncate(now, "hour") - timedelta(hours=HOURS - 1)
    hour = truncated(session, SyncRun.started_at, "hour")
    counts: dict[datetime, dict[str, int]] = {}
    for at, status, number in session.execute(
        sa.select(hour, SyncRun.status, sa.func.count())
        .where(SyncRun.started_at >= first, SyncRun.started_at <= now)
        .group_by(hour, SyncRun.status)
    ):
        counts.setdefault(at, {})[status] = number
    return [(at, counts.get(at, {})) for at in steps(first, timedelta(hours=1), HOURS)]


def total_by_status(runs_per_hour: list[tuple[datetime, dict[str, int]]]) -> dict[str, int]:
    totals: Counter[str] = Counter()
    for _, by_status in runs_per_hour:
        totals.update(by_status)
    return every_value(tuple(RunStatus), totals)


@dataclass(frozen=True)
class Tombstones:
    """What the counts of every connection must leave out: the tombstones, by their last reported
    sync_status and by connector."""

    by_status: Counter[str]
    by_connector: Counter[int]


def read_tombstones(session: DbSession) -> Tombstones:
    """Read along the tombstones' partial index, each with its reported status by primary key. The
    counts of every connection are then read from indexes alone and these taken off: excluding
    tombstones row by row instead costs a probe per connection (SQLite, without statistics, drives
    such a join from the 100,000 statuses rather than from the few tombstones)."""
    reported = sa.select(ReportedStatus.sync_status).where(ReportedStatus.connection_id == Connection.id)
    rows = session.execute(
        sa.select(Connection.connector_id, reported.scalar_subquery()).where(Connection.deleted_at.is_not(None))
    ).all()
    return Tombstones(
        by_status=Counter(status for _, status in rows if status is not None),
        by_connector=Counter(connector for connector, _ in rows if connector is not None),
    )


def connections_by_status(session: DbSession, tombstones: Tombstones) -> dict[str, int]:
    """Live connections by the `sync_status` last reported for them (`reported_statuses`, counted
    along its (sync_status, connection_id) index alone; tombstones keep theirs, so they are taken off)."""
    every = session.execute(
        sa.select(ReportedStatus.sync_status, sa.func.count()).group_by(ReportedStatus.sync_status)
    ).all()
    live = {status: count - tombstones.by_status[status] for status, count in every}
    return every_value(tuple(SyncStatus), {status: count for status, count in live.items() if count})


def unhealthy_connectors(session: DbSession, tombstones: Tombstones) -> list[UnhealthyConnector]:
    """Connectors whose last reported health is not ONLINE, the most recently reported first (one
    row per connector Pluggy ever reported on: a small table)."""
    rows = session.execute(
        sa.select(ConnectorStatus.connector_id, ConnectorStatus.status, ConnectorStatus.updated_at)
        .where(ConnectorStatus.status != CONNECTOR_ONLINE)
        .order_by(ConnectorStatus.updated_at.desc(), ConnectorStatus.connector_id)
    )
    return [UnhealthyConnector(*row, *connector_use(session, row.connector_id, tombstones)) for row in rows]


def connector_use(session: DbSession, connector_id: str, tombstones: Tombstones) -> tuple[str | None, int]:
    """The connector's name and how many live connections use it: who a bank's outage reaches. Its
    connections are counted along ix_connections_connector_id_id alone; one connector at a time,
    the unhealthy ones are few."""
    if not ascii_digits(connector_id) or int(connector_id) > MAX_INTEGER:
        return None, 0  # not an id any connection can have
    of_connector = Connection.connector_id == int(connector_id)
    name = session.scalars(sa.select(Connection.connector_name).where(of_connector).limit(1)).first()
    every = session.scalar(sa.select(sa.func.count()).where(of_connector)) or 0
    return name, every - tombstones.by_connector[int(connector_id)]


def every_value(known: tuple[str, ...], counts: dict[str, int]) -> dict[str, int]:
    """Counts for each known value in its order, zeros included, then any value we do not know."""
    return {**{str(value): counts.get(value, 0) for value in known}, **counts}


def truncated(session: DbSession, column, unit: str) -> sa.ColumnElement[datetime]:
    """`column` cut down to its UTC minute or hour, in SQL."""
    if session.get_bind().dialect.name == "postgresql":
        return sa.func.date_trunc(unit, column, "UTC", type_=UTCDateTime())
    return sa.func.strftime(SQLITE_TRUNCATED[unit], column, type_=UTCDateTime())


def truncate(moment: datetime, unit: str) -> datetime:
    moment = moment.astimezone(UTC)
    if unit == "hour":
        return moment.replace(minute=0, second=0, microsecond=0)
    return moment.replace(second=0, microsecond=0)


def steps(first: datetime, step: timedelta, count: int) -> list[datetime]:
    return [first + step * n for n in range(count)]
