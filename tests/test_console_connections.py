"""The console's connections: the list's filters, search and keyset pages, and a connection's record
with nothing secret on it."""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import sqlalchemy as sa

import console.paging as page
from models import Account, Connection, Identity, ReportedStatus, SyncRun, User, WebhookEvent, db
from sync.item_state import SyncStatus
from sync.listing import Window
from sync.operations.connections import connection_filter, list_connections

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def add_user(email: str) -> User:
    user = User(email=email)
    db.session.add(user)
    db.session.commit()
    return user


def add_connection(user: User, item_id: str, *, status: str = "UPDATED", connector=(201, "Pluggy Bank"), **fields):
    """A connection whose item is in `status` (the flush records its sync_status, as in production)."""
    connection = Connection(
        user_id=user.id,
        item_id=item_id,
        connector_id=connector[0],
        connector_name=connector[1],
        item_status=status,
        execution_status="SUCCESS" if status == "UPDATED" else "ERROR",
        **fields,
    )
    db.session.add(connection)
    db.session.commit()
    return connection


@pytest.fixture
def people(console_app):
    """Ana with two connections (one needing new credentials), Bruno with one at another bank, and a
    tombstone of Ana's."""
    with console_app.app_context():
        ana, bruno = add_user("ana.souza@example.com"), add_user("bruno@example.org")
        ids = {
            "ana-ok": add_connection(ana, "item-ana-ok", last_synced_at=T0).id,
            "ana-login": add_connection(
                ana, "item-ana-login", status="LOGIN_ERROR", error_code="INVALID_CREDENTIALS"
            ).id,
            "bruno": add_connection(bruno, "item-bruno", connector=(612, "Banco Inter")).id,
            "gone": add_connection(ana, "item-gone", deleted_at=T0, deleted_reason="item_deleted").id,
        }
    return ids


def item_ids(html: str) -> list[str]:
    """The item ids of the list's rows, in order (each row's first cell is the link)."""
    table = html.split('<table id="connections">', 1)[1].split("</table>", 1)[0]
    return re.findall(r'<tr[^>]*>\s*<td><a href="/console/connections/\d+">([^<]+)</a></td>', table)


def next_link(html: str) -> str | None:
    match = re.search(r'<a href="([^"]+)" rel="next">', html)
    return match.group(1).replace("&amp;", "&") if match else None


# The list -------------------------------------------------------------------------------------


def test_the_list_shows_live_connections_newest_first_with_masked_emails(operator, people):
    response = operator.get("/console/connections")
    assert response.status_code == 200
    assert item_ids(response.text) == ["item-bruno", "item-ana-login", "item-ana-ok"]
    assert f'<a href="/console/connections/{people["bruno"]}">item-bruno</a>' in response.text
    assert "a•••@example.com" in response.text and "b•••@example.org" in response.text
    assert "ana.souza@example.com" not in response.text and "bruno@example.org" not in response.text
    assert "CREDENTIALS_REQUIRED" in response.text and "INVALID_CREDENTIALS" in response.text


def test_the_filter_form_has_the_agreed_fields(operator, people):
    html = operator.get("/console/connections").text
    form = html.split('class="filters"', 1)[1].split("</form>", 1)[0]
    assert '<select name="sync_status">' in form
    assert 'name="connector"' in form and 'name="q"' in form
    assert all(f'<option value="{status}"' in form for status in ("UPDATED", "CREDENTIALS_REQUIRED", "ERROR"))


def test_filter_by_sync_status(operator, people):
    html = operator.get("/console/connections?sync_status=CREDENTIALS_REQUIRED").text
    assert item_ids(html) == ["item-ana-login"]
    assert '<option value="CREDENTIALS_REQUIRED" selected>' in html
    assert item_ids(operator.get("/console/connections?sync_status=UPDATED").text) == ["item-bruno", "item-ana-ok"]
    assert item_ids(operator.get("/console/connections?sync_status=MFA_REQUIRED").text) == []


def test_an_unknown_sync_status_is_refused(operator, people):
    response = operator.get("/console/connections?sync_status=SIDEWAYS")
    assert response.status_code == 400 and "not a sync_status" in response.text


def test_filter_by_connector_id_or_name(operator, people):
    assert item_ids(operator.get("/console/connections?connector=612").text) == ["item-bruno"]
    assert item_ids(operator.get("/console/connections?connector=Pluggy+Bank").text) == [
        "item-ana-login",
        "item-ana-ok",
    ]
    assert item_ids(operator.get("/console/connections?connector=201&sync_status=UPDATED").text) == ["item-ana-ok"]
    assert item_ids(operator.get("/console/connections?connector=999").text) == []
    # Digits to str.isdigit() but not to int(): a name no connector has.
    assert item_ids(operator.get("/console/connections?connector=%C2%B2").text) == []


def test_search_by_item_id_or_email(operator, people):
    assert item_ids(operator.get("/console/connections?q=item-bruno").text) == ["item-bruno"]
    assert item_ids(operator.get("/console/connections?q=+Ana.Souza@Example.com+").text) == [
        "item-ana-login",
        "item-ana-ok",
    ]
    # Exact matches only: a prefix is not served by the indexes, so it finds nothing.
    assert item_ids(operator.get("/console/connections?q=item-").text) == []
    assert item_ids(operator.get("/console/connections?q=ana@").text) == []


def test_a_control_character_in_a_filter_is_refused(operator, people):
    assert operator.get("/console/connections?q=item%00x").status_code == 400


def test_tombstones_are_listed_only_when_asked(operator, people):
    html = operator.get("/console/connections?deleted=1").text
    assert item_ids(html) == ["item-gone", "item-bruno", "item-ana-login", "item-ana-ok"]
    rows = html.split('<table id="connections">')[1].split("<tr")
    [gone] = [row for row in rows if ">item-gone<" in row]
    assert gone.startswith(' class="deleted">') and "deleted " in gone
    assert sum(row.startswith(' class="deleted"') for row in rows) == 1
    assert "item-gone" not in operator.get("/console/connections?q=item-gone").text.split('id="connections"')[1]
    assert item_ids(operator.get("/console/connections?q=item-gone&deleted=1").text) == ["item-gone"]


# Keyset pages ---------------------------------------------------------------------------------


@pytest.fixture
def many(console_app, monkeypatch):
    """Twenty-three connections, every third one waiting for credentials; pages of five."""
    monkeypatch.setattr(page, "PAGE_SIZE", 5)
    with console_app.app_context():
        user = add_user("many@example.com")
        for n in range(23):
            add_connection(user, f"item-{n:02}", status="LOGIN_ERROR" if n % 3 == 0 else "UPDATED")


def walk(operator, path: str) -> list[list[str]]:
    pages = []
    while path:
        response = operator.get(path)
        assert response.status_code == 200
        pages.append(item_ids(response.text))
        path = next_link(response.text)
    return pages


def test_pages_cover_every_connection_once_in_order(operator, many):
    pages = walk(operator, "/console/connections")
    assert [len(p) for p in pages] == [5, 5, 5, 5, 3]
    assert sum(pages, []) == [f"item-{n:02}" for n in reversed(range(23))]


def test_pages_keep_their_filters(operator, many):
    pages = walk(operator, "/console/connections?sync_status=CREDENTIALS_REQUIRED")
    assert [len(p) for p in pages] == [5, 3]
    assert sum(pages, []) == [f"item-{n:02}" for n in reversed(range(0, 23, 3))]
    pages = walk(operator, "/console/connections?sync_status=UPDATED&connector=201")
    assert sum(pages, []) == [f"item-{n:02}" for n in reversed(range(23)) if n % 3]


def test_a_row_added_meanwhile_neither_shifts_nor_repeats_the_next_page(console_app, operator, many):
    first = operator.get("/console/connections")
    with console_app.app_context():
        add_connection(db.session.scalars(sa.select(User)).one(), "item-new")
    second = operator.get(next_link(first.text))
    assert item_ids(second.text) == ["item-17", "item-16", "item-15", "item-14", "item-13"]


def test_a_cursor_is_refused_with_other_filters_or_forged(operator, many):
    cursor = next_link(operator.get("/console/connections?sync_status=UPDATED").text).split("after=")[1]
    assert operator.get(f"/console/connections?sync_status=UPDATED&after={cursor}").status_code == 200
    for other in ("", "sync_status=ERROR&", "sync_status=UPDATED&connector=201&", "sync_status=UPDATED&deleted=1&"):
        response = operator.get(f"/console/connections?{other}after={cursor}")
        assert response.status_code == 400, other
        assert "cursor" in response.text
    assert operator.get("/console/connections?after=forged").status_code == 400


# Each filter's window, the index that must serve it on (PostgreSQL, SQLite), and whether that index
# also gives the order. A search finds one connection or one user's few: sorting those is free.
PLANS = (
    ({}, ("pk_connections", "INTEGER PRIMARY KEY (rowid<?)"), True),
    ({"sync_status": "UPDATED"}, ("ix_reported_statuses_sync_status_connection_id",) * 2, True),
    ({"connector": "201"}, ("ix_connections_connector_id_id",) * 2, True),
    ({"connector": "Pluggy Bank"}, ("ix_connections_connector_name_id",) * 2, True),
    ({"q": "item-bruno"}, ("uq_connections_item_id", "sqlite_autoindex_connections_1"), False),
    ({"q": "bruno@example.org"}, ("ix_connections_user_id_id",) * 2, False),
)


@pytest.fixture
def crowd(console_app, people):
    """Four hundred more connections over forty other connectors and every status, with PostgreSQL's
    statistics of them: among four rows its planner would rightly take any index, not the one that
    serves the filter at scale."""
    statuses = list(SyncStatus)
    with console_app.app_context():
        first = db.session.scalar(sa.select(sa.func.max(User.id))) + 1
        db.session.execute(sa.insert(User), [{"id": first + n, "email": f"crowd{n}@example.com"} for n in range(400)])
        db.session.execute(
            sa.insert(Connection),
            [
                {
                    "user_id": first + n,
                    "item_id": f"item-crowd-{n}",
                    "connector_id": 1000 + n % 40,
                    "connector_name": f"Banco {n % 40}",
                }
                for n in range(400)
            ],
        )
        crowd_ids = db.session.scalars(sa.select(Connection.id).where(Connection.item_id.like("item-crowd-%"))).all()
        db.session.execute(
            sa.insert(ReportedStatus),
            [
                {"connection_id": id_, "sync_status": str(statuses[n % len(statuses)])}
                for n, id_ in enumerate(crowd_ids)
            ],
        )
        db.session.commit()
        if db.session.get_bind().dialect.name == "postgresql":
            db.session.execute(sa.text("ANALYZE users, connections, reported_statuses"))
            db.session.commit()


@pytest.mark.parametrize(("args", "indexes", "ordered"), PLANS, ids=[str(args) for args, _, _ in PLANS])
def test_each_filter_reads_its_window_from_its_index(console_app, people, crowd, args, indexes, ordered):
    """The plan of each filter's window after a cursor: its index answers the filter and the keyset
    bound, and gives the order (no sort step) where a filter can match many rows. On PostgreSQL the
    planner would rather scan and sort four rows: scans, bitmaps (and sorts, where the index must
    give the order) are priced out, so what is left in the plan is what an index can do."""
    with console_app.app_context():
        dialect = db.session.get_bind().dialect.name
        plan = window_plan(db.session, dialect, connection_filter(args), sorts=not ordered)
    index = indexes[0] if dialect == "postgresql" else indexes[1]
    assert index in plan, plan
    assert "Seq Scan" not in plan and "SCAN " not in plan, plan
    if ordered:
        assert "Sort" not in plan and "TEMP B-TREE" not in plan, plan


def window_plan(session, dialect: str, filters, *, sorts: bool) -> str:
    captured: list[str] = []

    def explain(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith("SELECT") and "connections" in statement:
            prefix = "EXPLAIN QUERY PLAN " if dialect == "sqlite" else "EXPLAIN "
            rows = conn.exec_driver_sql(prefix + statement, parameters).all()
            captured.append("\n".join(str(row[-1]) for row in rows))

    if dialect == "postgresql":
        for kind in ("seqscan", "bitmapscan") if sorts else ("seqscan", "bitmapscan", "sort"):
            session.execute(sa.text(f"SET LOCAL enable_{kind} = off"))
    engine = session.get_bind()
    sa.event.listen(engine, "before_cursor_execute", explain)
    try:
        list_connections(session, filters, Window(50, after=(10**6,)))
    finally:
        sa.event.remove(engine, "before_cursor_execute", explain)
        session.rollback()
    return captured[0]


# A connection's record ------------------------------------------------------------------------

SECRET = "s3cr3t-0tp-774411"


@pytest.fixture
def record(console_app, people):
    """Ana's connection waiting for credentials, with an account, runs, webhooks and an identity,
    and secrets where Pluggy's objects may carry them."""
    with console_app.app_context():
        connection = db.session.get(Connection, people["ana-login"])
        connection.mfa_parameter = {
            "name": "token",
            "label": "Token do app",
            "type": "number",
            "placeholder": SECRET,
            "data": f"https://bank.example/oauth?code={SECRET}",
            "value": SECRET,
            "expiresAt": "2026-11-01T12:05:00Z",
        }
        connection.user_action = {
            "type": "authorize-access",
            "instructions": "Aprove no app",
            "attributes": {"url": SECRET},
        }
        connection.status_detail = {
            "accounts": {"isUpdated": False, "token": SECRET, "warnings": [{"password": SECRET}]}
        }
        connection.open_finance = True
        connection.consent_id = "consent-42"
        connection.consent_expires_at = T0 + timedelta(days=365)
        connection.consent_permissions = ["ACCOUNTS_READ"]
        connection.products = ["ACCOUNTS", "IDENTITY"]
        db.session.add(
            Account(
                connection_id=connection.id,
                pluggy_id="acc-1",
                type="BANK",
                name="Conta Corrente",
                number="0001/12345-6",
                balance=Decimal("1234.5"),
                currency_code="BRL",
                raw={},
            )
        )
        db.session.add(Identity(connection_id=connection.id, document="123.456.789-09", full_name="Ana Souza", raw={}))
        for n, status in enumerate(("success", "credentials_required")):
            db.session.add(
                SyncRun(
                    connection_id=connection.id,
                    trigger="webhook",
                    status=status,
                    started_at=T0 + timedelta(hours=n),
                    finished_at=T0 + timedelta(hours=n, seconds=30),
                    created=7 + n,
                    updated=3,
                    deleted=1,
                    error_code="INVALID_CREDENTIALS" if n else None,
                )
            )
        for n in range(3):
            db.session.add(
                WebhookEvent(
                    event_id=f"evt-{n}",
                    event="item/updated" if n < 2 else "item/error",
                    item_id="item-ana-login",
                    payload={"id": "item-ana-login"},
                    headers={},
                    status="processed",
                    received_at=T0 + timedelta(minutes=n),
                )
            )
        db.session.add(WebhookEvent(event_id="evt-other", event="item/created", item_id="item-bruno", payload={}))
        db.session.commit()
        return connection.id


def test_the_record_shows_the_connection_with_its_user_in_clear(operator, record):
    response = operator.get(f"/console/connections/{record}")
    assert response.status_code == 200
    html = response.text
    assert '<dl class="record">' in html
    assert '<dt>Sync status</dt><dd id="sync-status">CREDENTIALS_REQUIRED</dd>' in html
    assert "ana.souza@example.com" in html
    assert "Pluggy Bank" in html and "LOGIN_ERROR" in html and "INVALID_CREDENTIALS" in html
    assert "ACCOUNTS, IDENTITY" in html


def test_the_record_has_accounts_consent_runs_and_webhooks(operator, record):
    html = operator.get(f"/console/connections/{record}").text
    accounts = html.split('id="accounts"')[1].split("</table>")[0]
    assert "Conta Corrente" in accounts and "1,234.50 BRL" in accounts
    assert "•••45-6" in accounts and "12345" not in accounts
    consent = html.split('id="consent"')[1].split("</dl>")[0]
    assert "consent-42" in consent and "ACCOUNTS_READ" in consent and "2027-11-01" in consent
    runs = html.split('id="sync-runs"')[1].split("</table>")[0]
    assert runs.index("credentials_required") < runs.index("success")  # newest first
    assert '<td class="number">8</td>' in runs and "30 s" in runs
    events = html.split('id="item-webhook-events"')[1].split("</table>")[0]
    assert events.index("item/error") < events.index("item/updated")
    assert "item/created" not in events  # another item's


def test_the_mfa_prompt_is_shown_without_anything_secret(operator, record):
    html = operator.get(f"/console/connections/{record}").text
    prompt = html.split('id="mfa-prompt"')[1].split("</dl>")[0]
    assert "Token do app" in prompt and "token" in prompt
    assert "authorize-access" in html and "Aprove no app" in html
    assert "isUpdated" in html and "[redacted]" in html
    assert SECRET not in html
    assert "bank.example" not in html


def test_the_identity_is_masked_until_shown_and_showing_it_is_logged(operator, record, caplog):
    caplog.set_level(logging.INFO, logger="console")
    html = operator.get(f"/console/connections/{record}").text
    assert "•••.456.789-••" in html
    assert "123.456.789-09" not in html and "Ana Souza" not in html
    assert "console action" not in caplog.text
    shown = operator.get(f"/console/connections/{record}?reveal=identity").text
    assert "123.456.789-09" in shown and "Ana Souza" in shown
    [action] = [r.fields for r in caplog.records if r.getMessage() == "console action"]
    assert action["action"] == "reveal_identity" and action["connection_id"] == record
    assert action["operator_session"]


def test_a_tombstone_has_a_record_too(operator, people):
    html = operator.get(f"/console/connections/{people['gone']}").text
    assert "item_deleted" in html and "No account stored." in html


def test_an_unknown_connection_is_404(operator, people):
    for unknown in ("999999", str(2**40)):
        response = operator.get(f"/console/connections/{unknown}")
        assert response.status_code == 404
        assert "No connection has this id." in response.text
    assert operator.get("/console/connections/item-bruno").status_code == 404


def test_webhook_events_link_to_their_inbox_page(operator, record):
    html = operator.get(f"/console/connections/{record}").text
    events = html.split('id="item-webhook-events"')[1].split("</table>")[0]
    links = re.findall(r'<a href="(/console/webhooks/\d+)">\d+</a>', events)
    assert len(links) == 3
    assert all(operator.get(link).status_code == 200 for link in links)


def test_the_pages_need_a_signed_in_operator(console_app, people):
    for path in ("/console/connections", f"/console/connections/{people['bruno']}"):
        assert console_app.test_client().get(path).status_code == 302
