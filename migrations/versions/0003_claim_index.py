"""The claim walks queued jobs in (run_at, id) order: the partial index covers both columns. The
index on status goes: the partial indexes serve the claim, and SQLite (without statistics) would
pick the status index instead and sort every due job.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

QUEUED_ONLY = sa.text("status = 'queued'")


def upgrade():
    op.drop_index("ix_jobs_status", table_name="jobs")
    op.drop_index("ix_jobs_queued_run_at", table_name="jobs", sqlite_where=QUEUED_ONLY, postgresql_where=QUEUED_ONLY)
    op.create_index(
        "ix_jobs_queued_run_at_id", "jobs", ["run_at", "id"], sqlite_where=QUEUED_ONLY, postgresql_where=QUEUED_ONLY
    )


def downgrade():
    op.drop_index("ix_jobs_queued_run_at_id", table_name="jobs", sqlite_where=QUEUED_ONLY, postgresql_where=QUEUED_ONLY)
    op.create_index("ix_jobs_queued_run_at", "jobs", ["run_at"], sqlite_where=QUEUED_ONLY, postgresql_where=QUEUED_ONLY)
    op.create_index("ix_jobs_status", "jobs", ["status"])
