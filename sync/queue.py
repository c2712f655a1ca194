"""The job queue that lives in the database."""
from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from models import Job
from models.base import utcnow


def queue_stats(session: Session, now: datetime | None = None) -> dict:
    """What an operator watches: due, running and dead jobs, and how long the oldest due job waited."""
    now = now or utcnow()
    is_due = (Job.status == "queued") & (Job.run_at <= now)
    due, running, dead, oldest_due = session.execute(
        sa.select(
            sa.func.count().filter(is_due),
            sa.func.count().filter(Job.status == "running"),
            sa.func.count().filter(Job.status == "dead"),
            sa.func.min(Job.run_at).filter(is_due),
        )
    ).one()
    return {
        "due": due,
        "running": running,
        "dead": dead,
        "oldest_due_age_s": round(age_seconds(oldest_due, now), 3),
    }


def age_seconds(moment: datetime | str | None, now: datetime) -> float:
    if moment is None:
        return 0.0
    if isinstance(moment, str):  # SQLite returns aggregates untyped
        moment = datetime.fromisoformat(moment)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=now.tzinfo)
    return max(0.0, (now - moment).total_seconds())
