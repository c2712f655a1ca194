"""The console's overview: its figures against rows put in the tables, its charts as valid SVG with
their labels escaped, and the page itself, empty and full."""

from __future__ import annotations

import itertools
import re
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from console.charts import Series, bar_chart, nice_ceiling, stacked_bar_chart
from models import Connection, ConnectorStatus, ReportedStatus, RunStatus, SyncRun, User, WebhookEvent, db
from models.base import utcnow
from sync.operations.overview import percentile, read_overview

NOW = datetime(2026, 12, 3, 12, 30, 30, tzinfo=UTC)
SVG = "{http://www.w3.org/2000/svg}"
numbers = itertools.count(1)


@pytest.fixture
def session(console_app):
    with console_app.app_context():
        yield db.session


def add_connection(session, *, deleted: bool = False) -> Connection:
    user = User(email=f"user{next(numbers)}@example.com")
    session.add(user)
    session.flush()
    connection = Connection(user_id=user.id, item_id=f"item-{next(numbers)}", item_status="UPDATED")
    if deleted:
        connection.deleted_at = NOW - timedelta(days=1)
    session.add(connection)
    session.commit()
    return connection


def add_event(session, received_at: datetime, processed_at: datetime | None = None, status: str | None = None):
    session.add(
        WebhookEvent(
            event_id=f"evt-{next(numbers)}",
            event="item/updated",
            payload={},
            status=status or ("processed" if processed_at else "pending"),
            received_at=received_at,
            processed_at=processed_at,
        )
    )


def add_run(session, connection: Connection, started_at: datetime, status: RunStatus):
    session.add(SyncRun(connection_id=connection.id, trigger="manual", status=status, started_at=started_at))


# The figures -----------------------------------------------------------------------------------


def test_lag_percentiles_are_those_of_the_events_finished_in_the_last_hour(session):
    for seconds in range(1, 10):  # lags of 1 to 9 s, finished over the last hour
        add_event(session, NOW - timedelta(minutes=seconds * 5, seconds=seconds), NOW - timedelta(minutes=seconds * 5))
    # Received three hours ago, finished ten minutes ago: it counts, with its whole lag.
    add_event(session, NOW - timedelta(hours=3), NOW - timedelta(minutes=10))
    add_event(session, NOW - timedelta(hours=2, seconds=900), NOW - timedelta(hours=2))  # finished before the hour
    add_event(session, NOW - timedelta(minutes=5, seconds=500), NOW - timedelta(minutes=5), status="failed")
    add_event(session, NOW - timedelta(minutes=1))  # still pending
    add_event(session, NOW - timedelta(seconds=30), NOW + timedelta(seconds=5))  # after `now`
    session.commit()

    lag = read_overview(session, NOW).lag

    assert lag.events == 10
    long_one = 3 * 3600 - 600
    assert lag.p50_s == pytest.approx(5.5)  # halfway between the 5th (5 s) and 6th (6 s)
    assert lag.p95_s == pytest.approx(9 + 0.55 * (long_one - 9))  # percentile_cont's interpolation


def test_lag_without_events_is_unknown(session):
    lag = read_overview(session, NOW).lag
    assert (lag.events, lag.p50_s, lag.p95_s) == (0, None, None)


def test_percentiles_interpolate_between_ranks_as_postgresql_does():
    assert percentile([], 0.5) is None
    assert percentile([4.0], 0.95) == 4.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 0.5) == 2.5
    assert percentile([0.0, 10.0], 0.95) == pytest.approx(9.5)


def test_webhooks_are_counted_per_minute_over_the_last_sixty(session):
    for received_at in (
        NOW - timedelta(seconds=20),  # 12:30:10, this minute
        NOW - timedelta(seconds=29),  # 12:30:01
        NOW - timedelta(seconds=31),  # 12:29:59
        datetime(2026, 12, 3, 11, 31, tzinfo=UTC),  # the first minute of the window
        datetime(2026, 12, 3, 11, 30, 59, 999000, tzinfo=UTC),  # just before it
        NOW + timedelta(seconds=10),  # after `now`
    ):
        add_event(session, received_at)
    session.commit()

    per_minute = read_overview(session, NOW).webhooks_per_minute

    assert len(per_minute) == 60
    assert per_minute[0] == (datetime(2026, 12, 3, 11, 31, tzinfo=UTC), 1)
    assert per_minute[-2] == (datetime(2026, 12, 3, 12, 29, tzinfo=UTC), 1)
    assert per_minute[-1] == (datetime(2026, 12, 3, 12, 30, tzinfo=UTC), 2)
    assert sum(count for _, count in per_minute) == 4
    assert [at.minute for at, _ in per_minute[:3]] == [31, 32, 33]


def test_sync_runs_are_counted_by_outcome_and_hour_over_the_last_day(session):
    connection, other = add_connection(session), add_connection(session)
    add_run(session, connection, NOW - timedelta(minutes=10), RunStatus.SUCCESS)
    add_run(session, connection, NOW - timedelta(minutes=20), RunStatus.SUCCESS)
    add_run(session, connection, NOW - timedelta(minutes=25), RunStatus.ERROR)
    add_run(session, other, NOW - timedelta(minutes=1), RunStatus.RUNNING)
    add_run(session, connection, NOW - timedelta(hours=2), RunStatus.CREDENTIALS_REQUIRED)
    add_run(session, connection, datetime(2026, 12, 2, 13, 0, tzinfo=UTC), RunStatus.PARTIAL)  # the first hour
    add_run(session, connection, datetime(2026, 12, 2, 12, 59, 59, tzinfo=UTC), RunStatus.ERROR)  # before it
    add_run(session, connection, NOW - timedelta(hours=30), RunStatus.SUCCESS)
    add_run(session, connection, NOW + timedelta(minutes=1), RunStatus.SUCCESS)  # after `now`
    session.commit()

    figures = read_overview(session, NOW)

    assert figures.runs_by_status == {
        "pending": 0,
        "running": 1,
        "success": 2,
        "partial": 1,
        "mfa_required": 0,
        "credentials_required": 1,
        "user_action_required": 0,
        "error": 1,
    }
    hours = figures.runs_per_hour
    assert len(hours) == 24
    assert hours[0] == (datetime(2026, 12, 2, 13, tzinfo=UTC), {"partial": 1})
    assert hours[-1] == (datetime(2026, 12, 3, 12, tzinfo=UTC), {"success": 2, "error": 1, "running": 1})
    assert hours[-3] == (datetime(2026, 12, 3, 10, tzinfo=UTC), {"credentials_required": 1})
    assert figures.runs_last_day == 6


def test_live_connections_are_counted_by_their_reported_sync_status(session):
    wanted = ["UPDATED", "UPDATED", "CREDENTIALS_REQUIRED", "MFA_REQUIRED", "SOMETHING_NEW"]
    live = [add_connection(session) for _ in wanted]
    gone = add_connection(session, deleted=True)
    session.execute(sa.delete(ReportedStatus))  # the flush watcher's guesses: replaced by ours
    session.execute(
        sa.insert(ReportedStatus),
        [{"connection_id": c.id, "sync_status": s} for c, s in zip(live, wanted, strict=True)]
        + [{"connection_id": gone.id, "sync_status": "CREDENTIALS_REQUIRED"}],
    )
    session.commit()

    counts = read_overview(session, NOW).connections_by_status

    assert counts == {
        "UPDATED": 2,
        "UPDATING": 0,
        "OUTDATED": 0,
        "MFA_REQUIRED": 1,
        "USER_ACTION_REQUIRED": 0,
        "CREDENTIALS_REQUIRED": 1,
        "CONSENT_EXPIRED": 0,
        "ERROR": 0,
        "SOMETHING_NEW": 1,
    }


def test_unhealthy_connectors_are_those_not_online_latest_first(session):
    for connector_id, status, minutes_ago in (("201", "ONLINE", 1), ("7", "UNSTABLE", 30), ("12", "OFFLINE", 5)):
        session.add(
            ConnectorStatus(
                connector_id=connector_id,
                status=status,
                payload={"status": status},
                updated_at=NOW - timedelta(minutes=minutes_ago),
            )
        )
    session.commit()

    unhealthy = read_overview(session, NOW).unhealthy_connectors

    assert [(c.connector_id, c.status, c.reported_at) for c in unhealthy] == [
        ("12", "OFFLINE", NOW - timedelta(minutes=5)),
        ("7", "UNSTABLE", NOW - timedelta(minutes=30)),
    ]


def test_an_unhealthy_connector_says_its_name_and_whom_it_reaches(session, operator):
    session.add(ConnectorStatus(connector_id="12", status="OFFLINE", payload={}, updated_at=NOW))
    session.add(ConnectorStatus(connector_id="not-a-number", status="OFFLINE", payload={}, updated_at=NOW))
    session.add(ConnectorStatus(connector_id="\u00b2", status="OFFLINE", payload={}, updated_at=NOW))  # isdigit()
    for deleted in (False, False, True):
        connection = add_connection(session, deleted=deleted)
        connection.connector_id, connection.connector_name = 12, "Banco Doze"
    session.commit()

    by_id = {c.connector_id: c for c in read_overview(session, NOW).unhealthy_connectors}

    assert (by_id["12"].name, by_id["12"].live_connections) == ("Banco Doze", 2)
    assert (by_id["not-a-number"].name, by_id["not-a-number"].live_connections) == (None, 0)
    assert (by_id["\u00b2"].name, by_id["\u00b2"].live_connections) == (None, 0)
    page = operator.get("/console/").text
    assert 'Banco Doze <span class="muted">(12)</span>' in page
    assert '<a href="/console/connections?connector=12">2</a>' in page


# The charts ------------------------------------------------------------------------------------


def parse(markup: str) -> ET.Element:
    return ET.fromstring(str(markup))


def test_a_bar_chart_is_valid_svg_with_its_text_alternative():
    chart = parse(
        bar_chart(
            [("12:00", 3), ("12:01", 0), ("12:02", 7)],
            chart_id="c",
            title="Webhooks per minute",
            description="10 webhooks",
            unit="webhooks",
        )
    )
    assert chart.tag == f"{SVG}svg" and chart.get("role") == "img"
    assert chart.findtext(f"{SVG}title") == "Webhooks per minute"
    assert chart.findtext(f"{SVG}desc") == "10 webhooks"
    bars = chart.findall(f"{SVG}rect")
    assert [bar.findtext(f"{SVG}title") for bar in bars] == ["12:00: 3 webhooks", "12:02: 7 webhooks"]
    heights = [float(bar.get("height")) for bar in bars]
    assert heights[1] > heights[0] > 0
    assert "style" not in str(ET.tostring(chart))


def test_chart_labels_are_escaped():
    hostile = '<script>alert("x")</script> & co'
    markup = stacked_bar_chart(
        [(hostile, {hostile: 2, "ok": 1})],
        [Series(hostile, "#000"), Series("ok")],
        chart_id="c",
        title=hostile,
        description=hostile,
    )
    assert "<script>" not in markup
    chart = parse(markup)
    texts = [element.text for element in chart.iter() if element.text]
    assert chart.findtext(f"{SVG}title") == hostile and chart.findtext(f"{SVG}desc") == hostile
    assert texts.count(hostile) >= 4  # title, desc, legend, column label (and a bar's tooltip)
    assert f"{hostile}: 2 {hostile}" in texts


def test_a_stacked_chart_stacks_its_series_in_order_and_wraps_its_legend():
    series = [Series(f"outcome_number_{n}", "#123456") for n in range(8)]
    chart = parse(
        stacked_bar_chart(
            [("10:00", {"outcome_number_0": 2, "outcome_number_3": 2}), ("11:00", {})],
            series,
            chart_id="c",
            title="t",
            description="d",
        )
    )
    legend = chart.findall(f"{SVG}g")
    assert len(legend) == 8
    assert len({entry.find(f"{SVG}rect").get("y") for entry in legend}) > 1  # more than one row
    first, second = chart.findall(f"{SVG}rect[@class='mark']")
    assert float(second.get("y")) + float(second.get("height")) == pytest.approx(float(first.get("y")))


def test_an_empty_chart_still_draws():
    chart = parse(bar_chart([], chart_id="c", title="t", description="d", unit="u"))
    assert chart.findall(f"{SVG}rect") == []
    chart = parse(bar_chart([("a", 0)], chart_id="c", title="t", description="d", unit="u"))
    assert chart.findall(f"{SVG}rect") == []


def test_the_y_axis_tops_at_a_round_figure():
    assert [nice_ceiling(n) for n in (0, 1, 3, 7, 10, 11, 240, 5001)] == [1, 1, 5, 10, 10, 20, 500, 10000]


# The page --------------------------------------------------------------------------------------


def charts_of(html: str) -> list[ET.Element]:
    return [ET.fromstring(svg) for svg in re.findall(r"<svg.*?</svg>", html, flags=re.DOTALL)]


def test_the_page_renders_with_empty_tables(operator):
    page = operator.get("/console/")
    assert page.status_code == 200
    for state in ("due", "scheduled", "running", "dead"):
        assert f'data-queue="{state}">0<' in page.text
    assert 'data-lag="p50">–<' in page.text
    charts = charts_of(page.text)
    assert [chart.get("id") for chart in charts] == ["webhooks-per-minute", "runs-per-hour"]
    assert all(chart.findtext(f"{SVG}desc") for chart in charts)
    assert 'href="/console/connections?sync_status=CREDENTIALS_REQUIRED"' in page.text
    assert "Every connector Pluggy reported on is ONLINE" in page.text
    assert "style=" not in page.text


def test_the_page_shows_the_figures(operator, console_app):
    now = utcnow()
    with console_app.app_context():
        session = db.session
        connection = add_connection(session)
        add_run(session, connection, now - timedelta(minutes=3), RunStatus.CREDENTIALS_REQUIRED)
        add_event(session, now - timedelta(seconds=4), now - timedelta(seconds=2))
        session.add(ConnectorStatus(connector_id="612", status="UNSTABLE", payload={}, updated_at=now))
        session.execute(sa.delete(ReportedStatus))
        session.execute(sa.insert(ReportedStatus), [{"connection_id": connection.id, "sync_status": "MFA_REQUIRED"}])
        session.commit()

    page = operator.get("/console/")

    assert 'data-webhooks="received">1<' in page.text
    assert 'data-lag="p50">2 s<' in page.text and 'data-lag="p95">2 s<' in page.text
    assert 'data-runs="credentials_required">1<' in page.text
    assert re.search(r'data-connections="MFA_REQUIRED" href="[^"]+">1<', page.text)
    assert re.search(r"\(612\)</span></td>\s*<td class=\"status-warn\">UNSTABLE</td>", page.text)
    webhooks, runs = charts_of(page.text)
    assert len(webhooks.findall(f"{SVG}rect[@class='mark']")) == 1
    assert runs.find(f"{SVG}rect[@class='mark']").findtext(f"{SVG}title").endswith("1 credentials_required")


# Fast at a million events: every windowed read goes along an index -------------------------------

WINDOWED = re.compile(r"\b(webhook_events|sync_runs)\b")


def test_the_windowed_reads_follow_their_indexes(session):
    """Each statement reading webhook_events or sync_runs is planned (on its connection, with its
    parameters) as a search along an index, never a scan of the table; PostgreSQL is told to avoid
    sequential scans, so that an empty test table's cheap scan does not hide a missing index."""
    plans: dict[str, list[str]] = {}
    postgresql = session.get_bind().dialect.name == "postgresql"

    def explain(_connection, cursor, statement, parameters, _context, _executemany):
        if WINDOWED.search(statement) and statement not in plans:
            explaining = cursor.connection.cursor()
            explaining.execute(("EXPLAIN " if postgresql else "EXPLAIN QUERY PLAN ") + statement, parameters)
            plans[statement] = [str(row[-1]) for row in explaining.fetchall()]
            explaining.close()

    if postgresql:
        session.execute(sa.text("SET LOCAL enable_seqscan = off"))
    sa.event.listen(db.engine, "before_cursor_execute", explain)
    try:
        read_overview(session, NOW)
    finally:
        sa.event.remove(db.engine, "before_cursor_execute", explain)
        session.rollback()

    assert len(plans) == 3  # the lag, webhooks per minute, runs per hour
    for statement, plan in plans.items():
        table = WINDOWED.search(statement).group(1)
        lines = [line for line in plan if table in line]
        if postgresql:
            # An index scan, or a bitmap of the index and the heap pages it names: never a whole table.
            assert any("Index" in line for line in lines) and not any("Seq Scan" in line for line in lines), plan
        else:
            assert lines and all(line.startswith("SEARCH") for line in lines), plan
