"""Pluggy's timestamps (ISO 8601; UTC when no offset is given) as aware datetimes."""

from __future__ import annotations

from datetime import UTC, datetime


def timestamp(value: str | None) -> datetime | None:
    if not value:
        return None
    moment = datetime.fromisoformat(value)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
