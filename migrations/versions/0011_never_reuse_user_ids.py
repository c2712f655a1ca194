"""SQLite never hands out the id of a deleted user or connection again (AUTOINCREMENT).

An API token names its user by id: once a user is erased, a new user given the same id would be
let in by the erased user's token. PostgreSQL's sequences never go back; SQLite, without
AUTOINCREMENT, reuses the highest id after its row is deleted. Connections likewise, for the jobs
that name one by id. The tables are rebuilt on SQLite only (migrations/env.py turns foreign keys
off meanwhile); elsewhere this does nothing.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03
"""

from alembic import op

# revision identifiers, used by Alembic.
revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

TABLES = ("users", "connections")


def rebuild(autoincrement: bool) -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    for table in TABLES:
        with op.batch_alter_table(table, recreate="always", table_kwargs={"sqlite_autoincrement": autoincrement}):
            pass


def upgrade():
    rebuild(True)


def downgrade():
    rebuild(False)
