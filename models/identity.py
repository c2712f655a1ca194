from __future__ import annotations

from datetime import date, datetime
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from .base import Base, JSONType, utcnow

if TYPE_CHECKING:
    from .connection import Connection


class Identity(Base):
    """Who owns an item's accounts, as the institution describes them (Pluggy's /identity): one per
    connection, replaced by each read. Personal data: served to its owner only, never logged."""

    __tablename__ = "identities"

    id: Mapped[int] = mapped_column(primary_key=True)
    connection_id: Mapped[int] = mapped_column(sa.ForeignKey("connections.id", ondelete="CASCADE"), unique=True)
    pluggy_id: Mapped[str | None] = mapped_column(sa.String(64))
    full_name: Mapped[str | None] = mapped_column(sa.String(255))
    social_name: Mapped[str | None] = mapped_column(sa.String(255))
    document: Mapped[str | None] = mapped_column(sa.String(32))  # CPF or CNPJ, as Pluggy writes it
    document_type: Mapped[str | None] = mapped_column(sa.String(16))
    tax_number: Mapped[str | None] = mapped_column(sa.String(32))
    birth_date: Mapped[date | None]
    job_title: Mapped[str | None] = mapped_column(sa.String(255))
    company_name: Mapped[str | None] = mapped_column(sa.String(255))
    emails: Mapped[list | None] = mapped_column(JSONType)
    phone_numbers: Mapped[list | None] = mapped_column(JSONType)
    addresses: Mapped[list | None] = mapped_column(JSONType)
    relations: Mapped[list | None] = mapped_column(JSONType)
    raw: Mapped[dict]

    pluggy_created_at: Mapped[datetime | None]
    pluggy_updated_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    connection: Mapped[Connection] = relationship()

    def __repr__(self) -> str:  # no personal data in a repr: it ends up in logs and tracebacks
        return f"<Identity {self.id} connection={self.connection_id}>"
