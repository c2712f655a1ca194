"""Redact what stored webhook headers still hold of a secret. The intake used to redact four headers
by name; it now redacts every header named like a secret and every header a proxy may copy the
request's URL into (a URL-token address carries its token there: sync/operations/redaction.py).
Rows stored before are rewritten by the same rule, restated here as it stands at this revision.

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-04
"""

import re

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

# revision identifiers, used by Alembic.
revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None

REDACTED = "[redacted]"
SECRET_NAME = re.compile(
    r"secret|signature|authori[sz]ation|token|passw(or)?d|cookie|api[-_]?key|credential|mfa|otp|cpf", re.IGNORECASE
)
URL_HEADER = re.compile(r"ur[il]|referr?er", re.IGNORECASE)
BATCH = 1000

events = sa.table(
    "webhook_events",
    sa.column("id", sa.Integer),
    sa.column("headers", sa.JSON().with_variant(postgresql.JSONB(), "postgresql")),
)


def redacted(headers: dict) -> dict:
    return {
        name: REDACTED if SECRET_NAME.search(name) or URL_HEADER.search(name) else value
        for name, value in headers.items()
    }


def upgrade():
    connection = op.get_bind()
    after = 0
    while True:
        rows = connection.execute(
            sa.select(events.c.id, events.c.headers).where(events.c.id > after).order_by(events.c.id).limit(BATCH)
        ).all()
        if not rows:
            return
        changed = [
            {"row_id": row_id, "headers": redacted(headers)}
            for row_id, headers in rows
            if isinstance(headers, dict) and redacted(headers) != headers
        ]
        if changed:
            connection.execute(
                events.update().where(events.c.id == sa.bindparam("row_id")).values(headers=sa.bindparam("headers")),
                changed,
            )
        after = rows[-1][0]


def downgrade():
    pass  # what was redacted is gone
