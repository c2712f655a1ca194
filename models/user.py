from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from .base import Base, utcnow

if TYPE_CHECKING:
    from .connection import Connection


class User(Base):
    """Someone whose bank connections this service keeps; authenticates with a signed API token."""

    __tablename__ = "users"
    # SQLite would otherwise give a deleted user's id to the next one, whom the old tokens would name.
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(sa.String(320), unique=True)
    # Bumping the version revokes every token issued before.
    token_version: Mapped[int] = mapped_column(default=1, server_default="1")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    connections: Mapped[list[Connection]] = relationship(back_populates="user", passive_deletes=True)

    def __repr__(self) -> str:
        return f"<User {self.id} {self.email}>"
