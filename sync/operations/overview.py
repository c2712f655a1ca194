"""The overview page's figures."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from jobqueue import queue_stats
from models.base import utcnow
from models.database import DbSession


@dataclass(frozen=True)
class Overview:
    now: datetime
    queue: dict  # jobqueue.queue_stats: due, scheduled, running, dead, oldest_due_age_s


def read_overview(session: DbSession, now: datetime | None = None) -> Overview:
    now = now or utcnow()
    return Overview(now=now, queue=queue_stats(session, now))
