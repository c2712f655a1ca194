"""`flask db upgrade` builds exactly the models' schema, on SQLite and on PostgreSQL, and downgrades."""

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from models import db


def schema_differences() -> list:
    with db.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        return compare_metadata(context, db.metadata)


def table_names() -> set[str]:
    return set(sa.inspect(db.engine).get_table_names())


def test_upgrade_from_empty_matches_the_models_and_downgrade_removes_it(app, runner):
    with app.app_context():
        result = runner.invoke(args=["db", "downgrade", "base"])
        assert result.exit_code == 0, result.output
        assert table_names() <= {"alembic_version"}

        result = runner.invoke(args=["db", "upgrade"])
        assert result.exit_code == 0, result.output
        assert table_names() == set(db.metadata.tables) | {"alembic_version"}
        assert schema_differences() == []


def test_partial_indexes_are_built_with_their_conditions(app):
    with app.app_context():
        indexes = {ix["name"]: ix for ix in sa.inspect(db.engine).get_indexes("jobs")}
    assert indexes["uq_jobs_queued_key"]["unique"]
    assert indexes["uq_jobs_running_item_id"]["unique"]
    where = {name: next(iter(ix.get("dialect_options", {}).values()), "") for name, ix in indexes.items()}
    assert "queued" in str(where["uq_jobs_queued_key"])
    assert "running" in str(where["uq_jobs_running_item_id"])
