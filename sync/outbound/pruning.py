"""Forgetting outbound events once every delivery of theirs got through (the `prune_outbound_events`
job): their records stay for a while for the app's and the operator's questions, then go. A pending,
retrying or dead delivery keeps its event, whatever its age (a dead one until it is retried)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import cast

import sqlalchemy as sa
from sqlalchemy.engine import CursorResult

from models import DeliveryStatus, OutboundEvent, WebhookDelivery
from models.base import utcnow
from models.database import DbSession

from ..job_context import SyncJobContext
from ..scheduling import queue_events_pruning

KEEP_DELIVERED_EVENTS = timedelta(days=30)
PRUNE_EVERY = timedelta(hours=6)


def prune_outbound_events(context: SyncJobContext) -> None:
    prune_delivered(context.session, before=utcnow() - KEEP_DELIVERED_EVENTS)
    queue_events_pruning(context.session, after=PRUNE_EVERY)
    context.session.commit()


def prune_delivered(session: DbSession, *, before: datetime) -> int:
    """Delete the events written before `before` that no delivery still waits on (their deliveries
    go with them); answers how many."""
    waiting = sa.exists().where(
        WebhookDelivery.event_id == OutboundEvent.id, WebhookDelivery.status != DeliveryStatus.DELIVERED
    )
    result = session.execute(sa.delete(OutboundEvent).where(OutboundEvent.created_at < before, ~waiting))
    return cast(CursorResult, result).rowcount
