"""The operator console's jobs list filtered by kind: two indexes so that a kind's jobs are read
in the list's order, never by scanning the others (done jobs are most of the table).

- ix_jobs_kind_status_id (kind, status, id): a kind's running, dead or done jobs, newest first.
- ix_jobs_queued_kind_run_at_id (kind, run_at, id), queued jobs only: a kind's due or scheduled
  jobs in the order a worker takes them; an entry lives only while its job waits.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

QUEUED_ONLY = sa.text("status = 'queued'")


def upgrade():
    op.create_index("ix_jobs_kind_status_id", "jobs", ["kind", "status", "id"])
    op.create_index(
        "ix_jobs_queued_kind_run_at_id",
        "jobs",
        ["kind", "run_at", "id"],
        sqlite_where=QUEUED_ONLY,
        postgresql_where=QUEUED_ONLY,
    )


def downgrade():
    op.drop_index(
        "ix_jobs_queued_kind_run_at_id", table_name="jobs", sqlite_where=QUEUED_ONLY, postgresql_where=QUEUED_ONLY
    )
    op.drop_index("ix_jobs_kind_status_id", table_name="jobs")
