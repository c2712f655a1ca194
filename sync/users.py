"""Users of the service: creating them, their API tokens, and erasing one with everything stored
about them. Shared by the command line (`flask users ...`) and the app API (`/api/app/users`)."""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Callable

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from models import Connection, Job, User, WebhookEvent
from models.base import utcnow
from models.connection import DeletedReason
from models.database import DbSession
from observability import logs
from pluggy_client import PluggyClient, PluggyNotFound

from . import removal
from .outbound import events as outbound
from .tokens import issue_api_token

log = logging.getLogger(__name__)

# The `reason` of the `connection.deleted` sent for each live connection of an erased user.
ERASED = "user_erased"
# No spaces or control characters (PostgreSQL refuses NUL outright) in any part.
EMAIL = re.compile(r"^[^@\s\x00-\x1f\x7f]+@[^@\s\x00-\x1f\x7f]+\.[^@\s\x00-\x1f\x7f]+$")


class UserError(ValueError):
    pass


def normalise_email(email: str) -> str:
    email = email.strip().lower()
    if len(email) > 320 or not EMAIL.match(email):
        raise UserError(f"not an e-mail address: {email!r}")
    return email


def create_user(session: DbSession, email: str) -> User:
    email = normalise_email(email)
    if find_user(session, email) is not None:
        raise UserError(f"a user with e-mail {email} already exists")
    user = User(email=email)
    session.add(user)
    session.commit()
    return user


def ensure_user(session: DbSession, email: str) -> tuple[User, bool]:
    """The user with this e-mail, created if there is none; True when created. Two requests creating
    the same user at once both answer with the one row."""
    email = normalise_email(email)
    existing = find_user(session, email)
    if existing is not None:
        return existing, False
    user = User(email=email)
    session.add(user)
    try:
        session.commit()
    except IntegrityError:
        session.rollback()  # created by a concurrent request a moment ago
        concurrent = find_user(session, email)
        if concurrent is None:
            raise  # not that: another constraint refused the row
        return concurrent, False
    return user, True


def find_user(session: DbSession, email: str) -> User | None:
    return session.scalars(sa.select(User).where(User.email == normalise_email(email))).one_or_none()


def api_token(secret_key: str, user: User) -> str:
    """The user's current API token: the same on every call until the token is rotated."""
    return issue_api_token(secret_key, user)


def rotate_token(session: DbSession, user: User) -> None:
    """Revoke every token issued so far: they carry the old version."""
    user.token_version += 1
    session.commit()


def user_connections(session: DbSession, user: User) -> list[Connection]:
    """Every connection of the user, live or tombstone, oldest first."""
    return list(session.scalars(sa.select(Connection).where(Connection.user_id == user.id).order_by(Connection.id)))


def erase_user(session: DbSession, user: User, pluggy: Callable[[], PluggyClient]) -> dict[str, int]:
    """The right to erasure: every item of the user deleted at Pluggy, then every row stored about
    them, the user included. Returns the rows removed per table (those removed directly; what hangs
    off the connections goes with them by ON DELETE CASCADE).

    Pluggy first: an item already gone there (404) is fine; any other failure raises before anything
    is deleted here, so the call can simply be repeated (items deleted by the first try then answer
    404). `pluggy` is called only when the user has items. The local rows go in one transaction:
    the webhook events and jobs of the user's items (found by item id: they hold no foreign key),
    then the connections (accounts, transactions, products and sync runs with them) and the user;
    with them, a `connection.deleted` (reason `user_erased`) for each live connection is queued.
    A job of one of the items still running in a worker finds its rows gone and writes nothing (its
    writes refer to the deleted connection)."""
    connections = user_connections(session, user)
    items = [connection.item_id for connection in connections]
    if items:
        client = pluggy()
        for item_id in items:
            with contextlib.suppress(PluggyNotFound):  # already gone at Pluggy
                client.delete_item(item_id)
    user_id = user.id
    removed: dict[str, int] = {}

    def delete(statement, table: str) -> None:
        result = session.execute(statement.execution_options(synchronize_session=False))
        removed[table] = max(result.rowcount or 0, 0)  # type: ignore[attr-defined]

    now = utcnow()
    for connection in connections:
        # Told only when this erasure makes the tombstone (the row, reason and all, goes below in this
        # transaction): a tombstone's deletion was told when it was made, by a worker too (the
        # `item/deleted` Pluggy sends for the items just deleted).
        if removal.tombstone(session, connection, DeletedReason.USER_REQUEST, now) is not None:
            outbound.connection_deleted(session, connection, ERASED)
    if items:
        delete(sa.delete(WebhookEvent).where(WebhookEvent.item_id.in_(items)), WebhookEvent.__tablename__)
        delete(sa.delete(Job).where(Job.item_id.in_(items)), Job.__tablename__)
    delete(sa.delete(Connection).where(Connection.user_id == user_id), Connection.__tablename__)
    delete(sa.delete(User).where(User.id == user_id), User.__tablename__)
    session.commit()
    logs.event(log, "user erased", user_id=user_id, items=len(items), rows=removed)
    return removed
