"""The change feed: the change log, its clock, and the triggers that write it (models/change.py).

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-03
"""

from dataclasses import dataclass

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


@dataclass(frozen=True)
class Tracked:
    """One table whose rows the feed follows. `key` and `connection` are SQL over the row, written
    with `{row}` for it; `columns` are the ones whose change is a change. `inserts` False: the
    table's writers record its new rows themselves, a page at a time (models/change.py)."""

    kind: str
    table: str
    key: str
    connection: str
    columns: tuple[str, ...]
    inserts: bool = True


POSTGRES_POSITION = "pg_current_xact_id()::text::bigint"
SQLITE_POSITION = "(SELECT value FROM change_clock WHERE id = 1)"
# An upsert, not an UPDATE: were the clock's row ever gone, a write would otherwise fail on a NULL position.
SQLITE_TICK = (
    "INSERT INTO change_clock (id, value, pruned_before) VALUES (1, 1, 0) "
    "ON CONFLICT (id) DO UPDATE SET value = change_clock.value + 1;"
)
# As SQLAlchemy writes a timestamp on SQLite (six decimals), so that the two compare as text.
SQLITE_NOW = "strftime('%Y-%m-%d %H:%M:%f000', 'now')"


def trigger_ddl(dialect: str, tracked: Tracked) -> list[str]:
    """The statements that create a tracked table's triggers on `dialect` ("postgresql" or "sqlite")."""
    if dialect == "postgresql":
        return postgres_triggers(tracked)
    return sqlite_triggers(tracked)


def drop_trigger_ddl(dialect: str, tracked: Tracked) -> list[str]:
    if dialect == "postgresql":
        return [f"DROP FUNCTION IF EXISTS record_change_{tracked.table}() CASCADE"]
    return [f"DROP TRIGGER IF EXISTS changes_{tracked.table}_{op}" for op in ("insert", "update", "delete")]


def record_sql(tracked: Tracked, *, position: str, now: str, added: str) -> str:
    """Upsert the object's change row at `position`; `added` is SQL for its added_position, written
    only by the row's first write: an object deleted and created again keeps its first one."""
    row = "NEW"
    return (
        "INSERT INTO changes (kind, key, user_id, connection_id, position, added_position, changed_at) "
        f"SELECT '{tracked.kind}', {tracked.key.format(row=row)}, c.user_id, c.id, {position}, {added}, {now} "
        f"FROM connections c WHERE c.id = {tracked.connection.format(row=row)} "
        "ON CONFLICT (kind, key) DO UPDATE SET position = excluded.position, changed_at = excluded.changed_at, "
        "added_position = COALESCE(changes.added_position, excluded.added_position);"
    )


def bump_sql(tracked: Tracked, *, position: str, now: str) -> str:
    """Move a deleted object's change row (its connection may be gone already: a cascade)."""
    return (
        f"UPDATE changes SET position = {position}, changed_at = {now} "
        f"WHERE kind = '{tracked.kind}' AND key = {tracked.key.format(row='OLD')};"
    )


def changed_condition(tracked: Tracked, *, distinct: str) -> str:
    return " OR ".join(f"OLD.{column} {distinct} NEW.{column}" for column in tracked.columns)


def postgres_triggers(tracked: Tracked) -> list[str]:
    position, now = POSTGRES_POSITION, "now()"
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
        f"WHEN ({changed_condition(tracked, distinct='IS DISTINCT FROM')}) EXECUTE FUNCTION {function}()",
    ]


def sqlite_triggers(tracked: Tracked) -> list[str]:
    position, now = SQLITE_POSITION, SQLITE_NOW
    name = f"changes_{tracked.table}"
    inserts = [
        f"CREATE TRIGGER {name}_insert AFTER INSERT ON {tracked.table} BEGIN {SQLITE_TICK} "
        f"{record_sql(tracked, position=position, now=now, added=position)} END"
    ]
    return [
        *(inserts if tracked.inserts else []),
        f"CREATE TRIGGER {name}_update AFTER UPDATE ON {tracked.table} "
        f"WHEN {changed_condition(tracked, distinct='IS NOT')} BEGIN {SQLITE_TICK} "
        f"{record_sql(tracked, position=position, now=now, added='NULL')} END",
        f"CREATE TRIGGER {name}_delete AFTER DELETE ON {tracked.table} BEGIN {SQLITE_TICK} "
        f"{bump_sql(tracked, position=position, now=now)} END",
    ]


def visibility_ddl(dialect: str) -> list[str]:
    """A connection deleted (or brought back) changes whether everything under it is served: every
    change row of the connection moves, so readers look at each again."""
    condition = "(OLD.deleted_at IS NULL) <> (NEW.deleted_at IS NULL)"
    if dialect == "postgresql":
        return [
            f"""CREATE OR REPLACE FUNCTION record_connection_visibility() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE changes SET position = {POSTGRES_POSITION}, changed_at = now()
    WHERE connection_id = NEW.id AND kind <> 'connection';
    RETURN NULL;
END
$$""",
            "CREATE TRIGGER changes_connections_visibility AFTER UPDATE ON connections FOR EACH ROW "
            f"WHEN ({condition}) EXECUTE FUNCTION record_connection_visibility()",
        ]
    return [
        f"CREATE TRIGGER changes_connections_visibility AFTER UPDATE ON connections WHEN {condition} "
        f"BEGIN {SQLITE_TICK} UPDATE changes SET position = {SQLITE_POSITION}, changed_at = {SQLITE_NOW} "
        "WHERE connection_id = NEW.id AND kind <> 'connection'; END"
    ]


def movements_visibility_ddl(dialect: str) -> list[str]:
    """The same for an investment tombstoned (or back): whether its movements are served."""
    condition = "(OLD.deleted_at IS NULL) <> (NEW.deleted_at IS NULL)"
    movements = (
        "kind = 'investment_transaction' AND key IN "
        "(SELECT pluggy_id FROM investment_transactions WHERE investment_id = NEW.id)"
    )
    if dialect == "postgresql":
        return [
            f"""CREATE OR REPLACE FUNCTION record_investment_visibility() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE changes SET position = {POSTGRES_POSITION}, changed_at = now() WHERE {movements};
    RETURN NULL;
END
$$""",
            "CREATE TRIGGER changes_investments_visibility AFTER UPDATE ON investments FOR EACH ROW "
            f"WHEN ({condition}) EXECUTE FUNCTION record_investment_visibility()",
        ]
    return [
        f"CREATE TRIGGER changes_investments_visibility AFTER UPDATE ON investments WHEN {condition} "
        f"BEGIN {SQLITE_TICK} UPDATE changes SET position = {SQLITE_POSITION}, changed_at = {SQLITE_NOW} "
        f"WHERE {movements}; END"
    ]


def drop_visibility_ddl(dialect: str) -> list[str]:
    if dialect == "postgresql":
        return [
            "DROP FUNCTION IF EXISTS record_connection_visibility() CASCADE",
            "DROP FUNCTION IF EXISTS record_investment_visibility() CASCADE",
        ]
    return [
        "DROP TRIGGER IF EXISTS changes_connections_visibility",
        "DROP TRIGGER IF EXISTS changes_investments_visibility",
    ]


BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
BY_CONNECTION = "{row}.connection_id"

# What each tracked table had at this revision, minus bookkeeping (models/change.UNWATCHED_COLUMNS:
# timestamps of our own, how far and when our reads got).
TRACKED = (
    Tracked(
        "connection",
        "connections",
        key="CAST({row}.id AS TEXT)",
        connection="{row}.id",
        columns=(
            "user_id", "item_id", "connector_id", "connector_name", "client_user_id", "item_status",
            "execution_status", "status_detail", "products", "error_code", "error_message", "mfa_parameter",
            "user_action", "last_updated_at", "next_auto_sync_at", "consent_expires_at", "open_finance",
            "consent_id", "consent_granted_at", "consent_revoked_at", "consent_products", "consent_permissions",
            "deleted_at", "deleted_reason", "data_removed_at",
        ),
    ),
    Tracked(
        "account",
        "accounts",
        key="{row}.pluggy_id",
        connection=BY_CONNECTION,
        columns=(
            "connection_id", "pluggy_id", "type", "subtype", "name", "marketing_name", "number", "owner",
            "balance", "currency_code", "raw", "credit_limit", "available_credit_limit", "minimum_payment",
            "balance_close_date", "balance_due_date", "credit_brand", "credit_level", "credit_status",
            "transfer_number", "closing_balance", "automatically_invested_balance", "overdraft_contracted_limit",
            "overdraft_used_limit",
        ),
    ),
    Tracked(
        "transaction",
        "transactions",
        key="{row}.pluggy_id",
        connection="(SELECT connection_id FROM accounts WHERE accounts.id = {row}.account_id)",
        columns=(
            "account_id", "pluggy_id", "date", "description", "description_raw", "amount",
            "amount_in_account_currency", "balance", "currency_code", "type", "status", "category", "category_id",
            "provider_code", "provider_id", "operation_type", "bill_id", "installment_number", "total_installments",
            "raw", "replaces_id", "replaced_by_id", "pluggy_created_at", "pluggy_updated_at", "deleted_at",
        ),
        inserts=False,
    ),
    Tracked(
        "bill",
        "bills",
        key="{row}.pluggy_id",
        connection=BY_CONNECTION,
        columns=(
            "connection_id", "account_id", "pluggy_id", "due_date", "closing_date", "total_amount",
            "currency_code", "minimum_payment_amount", "allows_installments", "finance_charges",
            "finance_charges_total", "payments", "payments_total", "raw", "pluggy_created_at", "pluggy_updated_at",
        ),
    ),
    Tracked(
        "investment",
        "investments",
        key="{row}.pluggy_id",
        connection=BY_CONNECTION,
        columns=(
            "connection_id", "pluggy_id", "type", "subtype", "name", "code", "isin", "number", "issuer",
            "issuer_cnpj", "owner", "currency_code", "status", "balance", "amount", "amount_original",
            "amount_profit", "amount_withdrawal", "taxes", "taxes2", "quantity", "value", "rate", "rate_type",
            "fixed_annual_rate", "last_month_rate", "annual_rate", "last_twelve_months_rate", "date", "due_date",
            "issue_date", "purchase_date", "raw", "movements_read_at", "deleted_at",
        ),
    ),
    Tracked(
        "investment_transaction",
        "investment_transactions",
        key="{row}.pluggy_id",
        connection=BY_CONNECTION,
        columns=(
            "investment_id", "connection_id", "pluggy_id", "type", "movement_type", "description", "quantity",
            "value", "amount", "net_amount", "date", "trade_date", "raw", "deleted_at",
        ),
    ),
    Tracked(
        "identity",
        "identities",
        key="CAST({row}.connection_id AS TEXT)",
        connection=BY_CONNECTION,
        columns=(
            "connection_id", "pluggy_id", "full_name", "social_name", "document", "document_type", "tax_number",
            "birth_date", "job_title", "company_name", "emails", "phone_numbers", "addresses", "relations", "raw",
            "pluggy_created_at", "pluggy_updated_at",
        ),
    ),
    Tracked(
        "loan",
        "loans",
        key="{row}.pluggy_id",
        connection=BY_CONNECTION,
        columns=(
            "connection_id", "pluggy_id", "contract_number", "ipoc_code", "product_name", "type", "kind",
            "currency_code", "contract_amount", "outstanding_balance", "cet", "installment_periodicity",
            "total_installments", "paid_installments", "due_installments", "past_due_installments",
            "remaining_installments", "interest_rates", "contract_date", "first_installment_due_date", "due_date",
            "settlement_date", "raw", "pluggy_date", "deleted_at",
        ),
    ),
)  # fmt: skip


def upgrade():
    op.create_table(
        "changes",
        sa.Column("id", BIG_ID, primary_key=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("connection_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.BigInteger(), nullable=False),
        sa.Column("added_position", sa.BigInteger(), nullable=True),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "kind IN ({})".format(", ".join(f"'{tracked.kind}'" for tracked in TRACKED)), name=op.f("ck_changes_kind")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_changes")),
        sa.UniqueConstraint("kind", "key", name=op.f("uq_changes_kind")),
    )
    op.create_index("ix_changes_position_id", "changes", ["position", "id"])
    op.create_index("ix_changes_user_id_position_id", "changes", ["user_id", "position", "id"])
    op.create_index("ix_changes_connection_id", "changes", ["connection_id"])
    op.create_table(
        "change_clock",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("value", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("pruned_before", sa.BigInteger(), server_default="0", nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_change_clock")),
    )
    op.execute("INSERT INTO change_clock (id, value, pruned_before) VALUES (1, 1, 0)")
    dialect = op.get_bind().dialect.name
    for tracked in TRACKED:
        backfill(dialect, tracked)
        for statement in trigger_ddl(dialect, tracked):
            op.execute(statement)
    for statement in [*visibility_ddl(dialect), *movements_visibility_ddl(dialect)]:
        op.execute(statement)


def backfill(dialect: str, tracked: Tracked) -> None:
    """What exists already is where a reader without a cursor starts: every row, at position 1
    (SQLite's clock) or this transaction's id."""
    position = "pg_current_xact_id()::text::bigint" if dialect == "postgresql" else "1"
    now = "now()" if dialect == "postgresql" else SQLITE_NOW
    op.execute(
        "INSERT INTO changes (kind, key, user_id, connection_id, position, added_position, changed_at) "
        f"SELECT '{tracked.kind}', {tracked.key.format(row='t')}, c.user_id, c.id, {position}, {position}, {now} "
        f"FROM {tracked.table} t JOIN connections c ON c.id = {tracked.connection.format(row='t')}"
    )


def downgrade():
    dialect = op.get_bind().dialect.name
    for statement in drop_visibility_ddl(dialect):
        op.execute(statement)
    for tracked in TRACKED:
        for statement in drop_trigger_ddl(dialect, tracked):
            op.execute(statement)
    op.drop_table("change_clock")
    op.drop_index("ix_changes_connection_id", table_name="changes")
    op.drop_index("ix_changes_user_id_position_id", table_name="changes")
    op.drop_index("ix_changes_position_id", table_name="changes")
    op.drop_table("changes")
