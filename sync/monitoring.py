"""What operators check: the figures behind /metrics and the readiness checks behind /health/ready."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from jobqueue.queue import age_seconds
from models import Connection
from models.base import utcnow
from models.database import DbSession
from pluggy_client import PluggyClient, PluggyError

from .item_state import WAITING_FOR_USER

DEFAULT_MAX_DUE_AGE_S = 300.0
# A failed /auth is not asked again for this long, so probes cannot hammer Pluggy while it is down.
PLUGGY_FAILURE_REMEMBERED_S = 30.0


def oldest_connection_staleness(session: DbSession, now: datetime | None = None) -> dict[bool, float]:
    """Seconds since the least recently synced live connection was synced (or registered, if it
    never was), apart for the connections waiting for their user (True) and the others (False),
    which this service should be keeping fresh; 0 where there is none."""
    now = now or utcnow()
    # Waiting for their user: a code, an action, new credentials, or a renewed Open Finance consent.
    waits = sa.or_(
        Connection.item_status.in_(WAITING_FOR_USER),
        Connection.consent_revoked_at.is_not(None),
        Connection.consent_expires_at <= now,
    )
    connections = (
        sa.select(
            sa.case((waits, True), else_=False).label("waits"),
            sa.func.coalesce(Connection.last_synced_at, Connection.created_at).label("since"),
        )
        .where(Connection.deleted_at.is_(None))
        .subquery()
    )
    rows = session.execute(
        sa.select(connections.c.waits, sa.func.min(connections.c.since)).group_by(connections.c.waits)
    )
    staleness = {False: 0.0, True: 0.0}
    for waits, oldest in rows:
        staleness[bool(waits)] = round(age_seconds(oldest, now), 3)
    return staleness


@dataclass(frozen=True)
class Check:
    ok: bool
    problem: str | None = None


def queue_check(stats: dict, *, max_due_age_s: float, max_dead: int | None) -> Check:
    """Workers keep up (no due job waits longer than allowed) and, if asked, few enough dead jobs."""
    if stats["oldest_due_age_s"] > max_due_age_s:
        return Check(
            False, f"the oldest due job has waited {stats['oldest_due_age_s']:.0f} s (limit {max_due_age_s:g} s)"
        )
    if max_dead is not None and stats["dead"] > max_dead:
        return Check(False, f"{stats['dead']} dead job(s) (limit {max_dead})")
    return Check(True)


class PluggyAccessCheck:
    """Can an API key be had from Pluggy? The client keeps its key until near expiry, so a check is
    usually free; a failure is remembered for a while rather than asked again on every probe."""

    def __init__(self, clock=time.monotonic) -> None:
        self.clock = clock
        self.lock = threading.Lock()
        self.failure: tuple[float, str] | None = None

    def __call__(self, client: PluggyClient) -> Check:
        with self.lock:
            if self.failure is not None and self.clock() < self.failure[0]:
                return Check(False, self.failure[1])
            try:
                client.ensure_api_key()
            except PluggyError as exc:
                problem = f"no API key from Pluggy: {exc}"
                self.failure = (self.clock() + PLUGGY_FAILURE_REMEMBERED_S, problem)
                return Check(False, problem)
            self.failure = None
            return Check(True)
