"""The change log's entries unique by (kind, object_id, key): each object's row id first, so that a
page of new rows enters the index at its end (models/change.py says why). Every trigger that writes
the log is created again to write and find entries by it. The tracked tables, their columns and the
rest of the triggers' SQL are 0013's, which this revision loads rather than restates.

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-04
"""

import importlib.util
from pathlib import Path

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def load_0013():
    spec = importlib.util.spec_from_file_location("change_feed_0013", Path(__file__).with_name("0013_change_feed.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


feed = load_0013()

# Each kind's object id, written with `{row}` for the row: its own id, but an identity's (keyed by its
# connection) its connection's.
OBJECT_ID = {"identity": "{row}.connection_id"}
BY_ROW_ID = "{row}.id"


def object_id(tracked, row: str) -> str:
    return OBJECT_ID.get(tracked.kind, BY_ROW_ID).format(row=row)


def record_sql(tracked, *, position: str, now: str, added: str) -> str:
    """0013's upsert of the object's entry, by (kind, object_id, key)."""
    return (
        "INSERT INTO changes (kind, key, object_id, user_id, connection_id, position, added_position, changed_at) "
        f"SELECT '{tracked.kind}', {tracked.key.format(row='NEW')}, {object_id(tracked, 'NEW')}, c.user_id, c.id, "
        f"{position}, {added}, {now} FROM connections c WHERE c.id = {tracked.connection.format(row='NEW')} "
        "ON CONFLICT (kind, object_id, key) DO UPDATE SET position = excluded.position, "
        "changed_at = excluded.changed_at, added_position = COALESCE(changes.added_position, excluded.added_position);"
    )


def bump_sql(tracked, *, position: str, now: str) -> str:
    return (
        f"UPDATE changes SET position = {position}, changed_at = {now} WHERE kind = '{tracked.kind}' "
        f"AND object_id = {object_id(tracked, 'OLD')} AND key = {tracked.key.format(row='OLD')};"
    )


def trigger_ddl(dialect: str, tracked) -> list[str]:
    """0013's triggers of a tracked table, with this revision's record and bump statements."""
    if dialect == "postgresql":
        position, now = feed.POSTGRES_POSITION, "now()"
        function = f"record_change_{tracked.table}"
        return [
            f"""CREATE OR REPLACE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        {bump_sql(tracked, position=position, now=now)}
    ELSIF TG_OP = 'INSERT' THEN
        {record_sql(tracked, position=position, now=now, added=position)}
    ELSE
        {record_sql(tracked, position=position, now=now, added="NULL::bigint")}
    END IF;
    RETURN NULL;
END
$$""",
            f"CREATE TRIGGER changes_{tracked.table}_insert_delete "
            f"AFTER {'INSERT OR DELETE' if tracked.inserts else 'DELETE'} ON {tracked.table} "
            f"FOR EACH ROW EXECUTE FUNCTION {function}()",
            f"CREATE TRIGGER changes_{tracked.table}_update AFTER UPDATE ON {tracked.table} FOR EACH ROW "
            f"WHEN ({feed.changed_condition(tracked, distinct='IS DISTINCT FROM')}) EXECUTE FUNCTION {function}()",
        ]
    position, now, tick, name = feed.SQLITE_POSITION, feed.SQLITE_NOW, feed.SQLITE_TICK, f"changes_{tracked.table}"
    inserts = [
        f"CREATE TRIGGER {name}_insert AFTER INSERT ON {tracked.table} BEGIN {tick} "
        f"{record_sql(tracked, position=position, now=now, added=position)} END"
    ]
    return [
        *(inserts if tracked.inserts else []),
        f"CREATE TRIGGER {name}_update AFTER UPDATE ON {tracked.table} "
        f"WHEN {feed.changed_condition(tracked, distinct='IS NOT')} BEGIN {tick} "
        f"{record_sql(tracked, position=position, now=now, added='NULL')} END",
        f"CREATE TRIGGER {name}_delete AFTER DELETE ON {tracked.table} BEGIN {tick} "
        f"{bump_sql(tracked, position=position, now=now)} END",
    ]


def movements_visibility_ddl(dialect: str) -> list[str]:
    """0013's trigger for an investment tombstoned or back, finding its movements' entries by id."""
    return [
        statement.replace(
            "key IN (SELECT pluggy_id FROM investment_transactions",
            "object_id IN (SELECT id FROM investment_transactions",
        )
        for statement in feed.movements_visibility_ddl(dialect)
    ]


def drop_triggers(dialect: str) -> None:
    # SQLite rebuilds `changes` below, which it refuses while triggers name it.
    for statement in feed.drop_visibility_ddl(dialect):
        op.execute(statement)
    for tracked in feed.TRACKED:
        for statement in feed.drop_trigger_ddl(dialect, tracked):
            op.execute(statement)


def fill_object_ids() -> None:
    """The row id of each entry's object; 0 for objects gone already (nothing finds those by id)."""
    for tracked in feed.TRACKED:
        if tracked.kind in ("connection", "identity"):
            found = "CAST(changes.key AS BIGINT)"
        else:
            found = f"(SELECT t.id FROM {tracked.table} t WHERE t.pluggy_id = changes.key)"
        op.execute(f"UPDATE changes SET object_id = {found} WHERE kind = '{tracked.kind}'")
    op.execute("UPDATE changes SET object_id = 0 WHERE object_id IS NULL")


def upgrade():
    dialect = op.get_bind().dialect.name
    drop_triggers(dialect)
    op.add_column("changes", sa.Column("object_id", sa.BigInteger(), nullable=True))
    fill_object_ids()
    with op.batch_alter_table("changes") as batch:
        batch.alter_column("object_id", existing_type=sa.BigInteger(), nullable=False)
        batch.drop_constraint("uq_changes_kind", type_="unique")
        batch.create_unique_constraint("uq_changes_kind", ["kind", "object_id", "key"])
    for tracked in feed.TRACKED:
        for statement in trigger_ddl(dialect, tracked):
            op.execute(statement)
    for statement in [*feed.visibility_ddl(dialect), *movements_visibility_ddl(dialect)]:
        op.execute(statement)


def downgrade():
    dialect = op.get_bind().dialect.name
    drop_triggers(dialect)
    # Keyed by (kind, key) again: of an object's entries (a row deleted and stored again), the latest.
    op.execute(
        "DELETE FROM changes WHERE EXISTS (SELECT 1 FROM changes later WHERE later.kind = changes.kind "
        "AND later.key = changes.key AND (later.position, later.id) > (changes.position, changes.id))"
    )
    with op.batch_alter_table("changes") as batch:
        batch.drop_constraint("uq_changes_kind", type_="unique")
        batch.create_unique_constraint("uq_changes_kind", ["kind", "key"])
        batch.drop_column("object_id")
    for tracked in feed.TRACKED:
        for statement in feed.trigger_ddl(dialect, tracked):
            op.execute(statement)
    for statement in [*feed.visibility_ddl(dialect), *feed.movements_visibility_ddl(dialect)]:
        op.execute(statement)
