"""Users of the service."""

from __future__ import annotations

import re

import sqlalchemy as sa

from models import User
from models.database import DbSession

EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


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


def find_user(session: DbSession, email: str) -> User | None:
    return session.scalars(sa.select(User).where(User.email == normalise_email(email))).one_or_none()


def rotate_token(session: DbSession, user: User) -> None:
    """Revoke every token issued so far: they carry the old version."""
    user.token_version += 1
    session.commit()
