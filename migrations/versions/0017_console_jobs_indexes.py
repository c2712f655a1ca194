"""The operator console's jobs list filtered by kind: two indexes so that a kind's jobs are read
in the list's order, never by scanning the others (done jobs are most of the table).

- ix_jobs_dead_kind_id and ix_jobs_done_kind_id (kind, id), dead or done jobs only: a kind's dead
  or done jobs, newest first. Partial, not one (kind, status, id): SQLite's planner would count the
  queue's running and dead jobs by scanning that whole covering index rather than their own
  partial indexes. A kind's running jobs are few: the running jobs' index, checked for the kind.
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
DEAD_ONLY = sa.text("status = 'dead'")
DONE_ONLY = sa.text("status = 'done'")


def upgrade():
    for name, where in (("ix_jobs_dead_kind_id", DEAD_ONLY), ("ix_jobs_done_kind_id", DONE_ONLY)):
        op.create_index(name, "jobs", ["kind", "id"], sqlite_where=where, postgresql_where=where)
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
    for name, where in (("ix_jobs_dead_kind_id", DEAD_ONLY), ("ix_jobs_done_kind_id", DONE_ONLY)):
        op.drop_index(name, table_name="jobs", sqlite_where=where, postgresql_where=where)
