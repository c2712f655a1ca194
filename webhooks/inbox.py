"""The inbox: a delivery is stored and its processing queued in one transaction."""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Mapping

from werkzeug.datastructures import Headers

from jobqueue.queue import INSERTS
from models import EventStatus, WebhookEvent
from models.database import DbSession
from sync.operations.redaction import redacted_headers
from sync.scheduling import queue_event_processing

MAX_EVENT_ID = 128


def store(session: DbSession, raw: bytes, payload: dict, headers: Mapping[str, str] | Headers) -> tuple[bool, str]:
    """Store a delivery and queue its processing, committed. Returns (new, event_id); a delivery
    seen before (same eventId, or same body when Pluggy sent none) is not stored twice."""
    event_id = delivery_id(raw, payload)
    item_id = payload.get("itemId")
    if not isinstance(item_id, str) or not 0 < len(item_id) <= 64:
        item_id = None
    values = {
        "event_id": event_id,
        "event": str(payload["event"])[:64],
        "item_id": item_id,
        "payload": payload,
        "headers": redacted_headers(headers.items()),
        "status": EventStatus.PENDING,
    }
    row_id = session.execute(event_insert(session.get_bind().dialect.name), values).scalar_one_or_none()
    if row_id is None:
        session.rollback()
        return False, event_id
    queue_event_processing(session, row_id, item_id)
    session.commit()
    return True, event_id


@functools.cache
def event_insert(dialect_name: str):
    """The INSERT that stores a delivery unless its event_id is known, built once for every delivery."""
    table = WebhookEvent.__table__
    insert = INSERTS[dialect_name](table).on_conflict_do_nothing(index_elements=[table.c.event_id])
    return insert.returning(table.c.id)


def delivery_id(raw: bytes, payload: dict) -> str:
    event_id = payload.get("eventId")
    if isinstance(event_id, str) and 0 < len(event_id) <= MAX_EVENT_ID:
        return event_id
    # Retries of one notification carry the same body, so its hash serves as the dedupe key.
    return "sha256:" + hashlib.sha256(raw).hexdigest()
