"""`flask db upgrade` builds exactly the models' schema, on SQLite and on PostgreSQL, and downgrades."""

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from models import WebhookEvent, db


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


def test_every_upgrade_keeps_the_rows_of_the_tables_it_rebuilds(app, runner):
    """SQLite rebuilds a table to alter it (copy, drop, rename): with foreign keys on, the drop would
    cascade into every table that references it (migrations/env.py turns them off meanwhile)."""
    with app.app_context():
        assert runner.invoke(args=["db", "downgrade", "0005"]).exit_code == 0
        try:
            with db.engine.begin() as conn:
                # Only the columns the schema had then.
                conn.execute(sa.text("INSERT INTO users (email, token_version, created_at) VALUES ('m@x', 1, :t)"), T)
                user = conn.execute(sa.text("SELECT id FROM users")).scalar_one()
                conn.execute(
                    sa.text(
                        "INSERT INTO connections (user_id, item_id, created_at, updated_at) VALUES (:u, 'i', :t, :t)"
                    ),
                    {"u": user, **T},
                )
                connection = conn.execute(sa.text("SELECT id FROM connections")).scalar_one()
                conn.execute(
                    sa.text(
                        "INSERT INTO accounts (connection_id, pluggy_id, type, name, raw, created_at, updated_at) "
                        "VALUES (:c, 'a', 'BANK', 'n', '{}', :t, :t)"
                    ),
                    {"c": connection, **T},
                )
                account = conn.execute(sa.text("SELECT id FROM accounts")).scalar_one()
                conn.execute(
                    sa.text(
                        "INSERT INTO transactions (account_id, pluggy_id, date, description, amount, raw, created_at, "
                        "updated_at) VALUES (:a, 't', :t, 'x', 1, '{}', :t, :t)"
                    ),
                    {"a": account, **T},
                )
        finally:
            result = runner.invoke(args=["db", "upgrade"])
            assert result.exit_code == 0, result.output
        with db.engine.connect() as conn:
            counts = {table: conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one() for table in ROWS}
        assert counts == dict.fromkeys(ROWS, 1)


def test_stored_webhook_headers_holding_a_secret_are_redacted_by_the_upgrade(app, runner):
    with app.app_context():
        assert runner.invoke(args=["db", "downgrade", "0020"]).exit_code == 0
        try:
            for number, headers in enumerate(
                [
                    {"X-Original-Uri": "/webhooks/pluggy/the-url-token", "X-Auth-Token": "t", "User-Agent": "Pluggy"},
                    {"Content-Type": "application/json"},
                ]
            ):
                db.session.add(
                    WebhookEvent(event_id=f"evt-{number}", event="item/updated", payload={}, headers=headers)
                )
            db.session.commit()
        finally:
            result = runner.invoke(args=["db", "upgrade"])
            assert result.exit_code == 0, result.output
        stored = db.session.scalars(sa.select(WebhookEvent.headers).order_by(WebhookEvent.id)).all()
    assert stored == [
        {"X-Original-Uri": "[redacted]", "X-Auth-Token": "[redacted]", "User-Agent": "Pluggy"},
        {"Content-Type": "application/json"},
    ]


T = {"t": "2026-01-01 00:00:00"}
ROWS = ("users", "connections", "accounts", "transactions")
