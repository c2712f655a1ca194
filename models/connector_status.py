from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base, utcnow


class ConnectorStatus(Base):
    """A connector's health as Pluggy last announced it (connector/status_updated)."""

    __tablename__ = "connector_statuses"

    # Pluggy's connector id as text: a webhook may spell it as a number or as a string of any kind,
    # and every spelling is recorded (sync/events.connector_key: 201, 201.0 and "201" are "201").
    connector_id: Mapped[str] = mapped_column(sa.String(255), primary_key=True)
    status: Mapped[str] = mapped_column(sa.String(32))
    payload: Mapped[dict]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    def __repr__(self) -> str:
        return f"<ConnectorStatus {self.connector_id} {self.status}>"
