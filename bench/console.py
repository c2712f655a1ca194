"""The operator console at scale: every console page rendered with 100,000 connections and
1,000,000 webhook events stored, beside the same pages on a database a hundredth of that size, in
one run.

    python -m bench.console [--database-url URL] [--connections 100000] [--events 1000000]
                            [--renders 50] [--json PATH]

Method: two databases of the same schema, the large one and the small one (SQLite: two files;
PostgreSQL: the given database, and a schema of its own in it for the small one). Each is seeded
set-based (`seed`: rows made in Python and written in batches, executemany on SQLite, COPY on
PostgreSQL; no ORM per row): users and their connections with the `sync_status` each was last
reported with (4% CREDENTIALS_REQUIRED), two accounts for every other connection, two sync runs and
two jobs per connection (the newest 3% queued, 1% of the others dead, the rest done), the webhook
events over the last 30 days (varied events and outcomes, 2% failed, item ids of the connections),
a few thousand outbound deliveries, and the connectors' statuses. PostgreSQL is then vacuumed and
analyzed (this machine runs it with autovacuum off; a production server's autovacuum would have
done both); SQLite is not analyzed, as the service never does.

Each page that exists in the app (`PAGES`, whose paths are matched against the app's URL map; the
others are listed as not registered) is fetched by a signed-in Flask test client: twice untimed on
each database, then `--renders` times on each, alternating the two so that the machine's drift
falls on both alike. A "second page" follows the next link of its first page. Every answer must be
a 200: a page that answers anything else, or a list with no next link to follow, is reported as
failed (a row of the table that is not met) and left out. Reported per page: p50 / p99 of the
render time on each database, their ratio at p50 (what the stored volume costs) and the SQL
statements of one render on each (a count that grows with the volume would be a query per row).

Goal: p99 under 200 ms on the large database for every page.
"""

from __future__ import annotations

import argparse
import html
import random
import re
import statistics
import tempfile
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from urllib.parse import quote, urljoin, urlsplit

import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.exceptions import MethodNotAllowed, NotFound

from models import (
    Account,
    Connection,
    ConnectorStatus,
    Job,
    OutboundEvent,
    ReportedStatus,
    SyncRun,
    User,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEvent,
    db,
)
from models.base import dump_json, utcnow
from sync.item_state import SyncStatus
from sync.scheduling import JobKind

from .common import SECRET_KEY, empty_tables, engine_name, percentile_ms, service_app, timed, write_json

GOAL_P99_MS = 200.0
OPERATOR_PASSWORD = "bench-operator-password"
SMALL_SCHEMA = "bench_console_small"
BATCH = 20_000
HISTORY = timedelta(days=30)
# Every list fills its first page (and has a second) on the small database too.
AT_LEAST = 120

# (sync_status, Pluggy's item status behind it, weight)
SYNC_MIX = (
    (SyncStatus.UPDATED, "UPDATED", 83),
    (SyncStatus.UPDATING, "UPDATING", 3),
    (SyncStatus.OUTDATED, "OUTDATED", 3),
    (SyncStatus.CREDENTIALS_REQUIRED, "LOGIN_ERROR", 4),
    (SyncStatus.MFA_REQUIRED, "WAITING_USER_INPUT", 2),
    (SyncStatus.USER_ACTION_REQUIRED, "WAITING_USER_ACTION", 1),
    (SyncStatus.CONSENT_EXPIRED, "UPDATED", 1),
    (SyncStatus.ERROR, "OUTDATED", 3),
)
EVENT_MIX = (
    ("item/updated", 60),
    ("transactions/created", 14),
    ("transactions/updated", 5),
    ("transactions/deleted", 2),
    ("item/created", 3),
    ("item/error", 4),
    ("item/login_error", 3),
    ("item/waiting_user_input", 2),
    ("item/deleted", 1),
    ("connector/status_updated", 6),
)
EVENT_OUTCOMES = (("processed", 91), ("ignored", 5), ("failed", 2), ("pending", 2))
RUN_OUTCOMES = (
    ("success", 84),
    ("partial", 3),
    ("error", 4),
    ("credentials_required", 4),
    ("mfa_required", 3),
    ("user_action_required", 2),
)
RUN_TRIGGERS = (("webhook", 70), ("reconcile", 15), ("manual", 10), ("cli", 5))
JOB_KINDS = (
    (JobKind.PROCESS_EVENTS, 55),
    (JobKind.FETCH_ITEM, 25),
    (JobKind.WATCH_ITEM, 10),
    (JobKind.INITIAL_SYNC, 5),
    (JobKind.DELIVER_EVENT, 5),
)
DEAD_KIND = JobKind.FETCH_ITEM
JOB_OUTCOMES = (("done", 99), ("dead", 1))
# The newest jobs are still queued, a backlog of a bank's bad morning (half due, half scheduled),
# and a few of them running: live jobs are recent, as in a queue that keeps up otherwise.
QUEUED_SHARE = 0.03
RUNNING = 4
DELIVERY_OUTCOMES = (("delivered", 90), ("dead", 4), ("failed_retrying", 3), ("pending", 3))
CONNECTORS = 20


@dataclass(frozen=True)
class Volume:
    """How much a database holds; the rest follows from the connections and the events."""

    connections: int
    events: int

    @property
    def runs(self) -> int:
        return 2 * self.connections

    @property
    def jobs(self) -> int:
        return max(AT_LEAST, 2 * self.connections)

    @property
    def deliveries(self) -> int:
        return max(AT_LEAST, self.events // 200)

    def describe(self) -> str:
        return f"{self.connections:,} connections, {self.events:,} events"


LARGE = Volume(connections=100_000, events=1_000_000)


def small_of(volume: Volume) -> Volume:
    """A hundredth: few enough rows that nothing is costly to read, enough that most filtered lists
    fill their first page as on the large database (an empty one would render lists without rows)."""
    return Volume(connections=max(AT_LEAST, volume.connections // 100), events=max(AT_LEAST, volume.events // 100))


@dataclass(frozen=True)
class Page:
    """A console page to render: its path (fields of `Targets` in braces), or the next page of another."""

    name: str
    path: str = ""
    follows: str = ""  # the name of the page whose next link leads here

    @property
    def route(self) -> str:
        return self.path.split("?")[0]


PAGES = (
    Page("/console/", "/console/"),
    Page("/console/connections", "/console/connections"),
    Page(
        "/console/connections?sync_status=CREDENTIALS_REQUIRED", "/console/connections?sync_status=CREDENTIALS_REQUIRED"
    ),
    Page("/console/connections?q=<email>", "/console/connections?q={email}"),
    Page("/console/connections?q=<item id>", "/console/connections?q={item_id}"),
    Page("/console/connections, second page", follows="/console/connections"),
    Page("/console/connections/<id>", "/console/connections/{connection_id}"),
    Page("/console/jobs?state=dead", "/console/jobs?state=dead"),
    Page("/console/jobs?state=done", "/console/jobs?state=done"),
    Page("/console/jobs?kind=<kind>", "/console/jobs?kind={kind}"),
    Page("/console/jobs/<id>", "/console/jobs/{job_id}"),
    Page("/console/webhooks", "/console/webhooks"),
    Page("/console/webhooks?status=failed", "/console/webhooks?status=failed"),
    Page("/console/webhooks?item=<item id>", "/console/webhooks?item={item_id}"),
    Page("/console/webhooks, second page", follows="/console/webhooks"),
    Page("/console/webhooks/<id>", "/console/webhooks/{event_id}"),
    Page("/console/deliveries", "/console/deliveries"),
)


@dataclass
class Targets:
    """The records the pages open: a connection stuck in CREDENTIALS_REQUIRED with accounts, runs
    and events, its user, a dead job and a failed event."""

    connection_id: int = 0
    item_id: str = ""
    email: str = ""
    job_id: int = 0
    kind: str = DEAD_KIND.value
    event_id: int = 0

    def fill(self, path: str) -> str:
        return path.format(
            connection_id=self.connection_id,
            item_id=quote(self.item_id),
            email=quote(self.email),
            job_id=self.job_id,
            kind=quote(self.kind),
            event_id=self.event_id,
        )


# The seed.


def weighted(rng: random.Random, mix: tuple, count: int) -> list:
    """`count` values drawn from (value, ..., weight) tuples, each the first element."""
    return rng.choices([entry[0] for entry in mix], weights=[entry[-1] for entry in mix], k=count)


def item_status_of(sync_status: str) -> str:
    return next(item for status, item, _ in SYNC_MIX if status == sync_status)


def seed(volume: Volume, now: datetime | None = None) -> Targets:
    """Empty the tables and write `volume`'s rows; answers the records the pages open."""
    now = now or utcnow()
    rng = random.Random(18)
    empty_tables()
    with db.engine.connect() as connection:
        item_ids = [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(volume.connections)]
        statuses = weighted(rng, SYNC_MIX, volume.connections)
        statuses[1] = SyncStatus.CREDENTIALS_REQUIRED  # however small the volume, one stuck with accounts
        write(connection, User, users(volume, now))
        write(connection, Connection, connections(rng, item_ids, statuses, now))
        write(connection, ReportedStatus, reported_statuses(statuses))
        write(connection, Account, accounts(item_ids, now))
        write(connection, SyncRun, sync_runs(rng, volume, now))
        write(connection, WebhookEvent, webhook_events(rng, volume, item_ids, now))
        write(connection, Job, jobs(rng, volume, item_ids, now))
        write(connection, WebhookEndpoint, endpoints(now))
        write(connection, OutboundEvent, outbound_events(rng, volume, now))
        write(connection, WebhookDelivery, deliveries(rng, volume, now))
        write(connection, ConnectorStatus, connector_statuses(now))
        targets = targets_of(connection, statuses, item_ids)
        connection.commit()
    if db.engine.dialect.name == "postgresql":
        # What autovacuum would have done by now (it is off on this machine): statistics for the
        # planner, and the visibility map that lets an index-only scan skip the table.
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.exec_driver_sql("VACUUM ANALYZE")
    return targets


def targets_of(connection: sa.Connection, statuses: list[SyncStatus], item_ids: list[str]) -> Targets:
    # An even connection has accounts; the one with the most events among the first stuck ones.
    stuck = [n for n, status in enumerate(statuses, 1) if status == SyncStatus.CREDENTIALS_REQUIRED and n % 2 == 0]
    candidates = [item_ids[n - 1] for n in stuck[:50]]
    events = WebhookEvent.__table__
    busiest = (
        connection.execute(
            sa.select(events.c.item_id)
            .where(events.c.item_id.in_(candidates))
            .group_by(events.c.item_id)
            .order_by(sa.func.count().desc(), events.c.item_id)
            .limit(1)
        ).scalar()
        or candidates[0]
    )
    number = item_ids.index(busiest) + 1
    jobs = Job.__table__
    return Targets(
        connection_id=number,
        item_id=busiest,
        email=email_of(number),
        job_id=connection.execute(sa.select(sa.func.min(jobs.c.id)).where(jobs.c.status == "dead")).scalar() or 1,
        event_id=connection.execute(sa.select(sa.func.max(events.c.id)).where(events.c.status == "failed")).scalar()
        or 1,
    )


def email_of(number: int) -> str:
    return f"bench-user-{number:06d}@example.com"


def users(volume: Volume, now: datetime) -> Iterator[dict]:
    for n in range(1, volume.connections + 1):
        yield {"id": n, "email": email_of(n), "token_version": 1, "created_at": now - timedelta(days=400, minutes=-n)}


def connections(rng: random.Random, item_ids: list[str], statuses: list[SyncStatus], now: datetime) -> Iterator[dict]:
    for n, (item_id, status) in enumerate(zip(item_ids, statuses, strict=True), 1):
        connector = 200 + n % CONNECTORS
        failing = status not in (SyncStatus.UPDATED, SyncStatus.UPDATING, SyncStatus.CONSENT_EXPIRED)
        synced = now - timedelta(seconds=rng.uniform(60, 86_400))
        yield {
            "id": n,
            "user_id": n,
            "item_id": item_id,
            "connector_id": connector,
            "connector_name": f"Bench Bank {connector}",
            "client_user_id": f"bench-{n}",
            "item_status": item_status_of(status),
            "execution_status": "ERROR" if failing else "SUCCESS",
            "products": ["ACCOUNTS", "TRANSACTIONS"],
            "error_code": status.value if failing else None,
            "error_message": "The bank refused the credentials" if failing else None,
            "last_updated_at": synced,
            "next_auto_sync_at": synced + timedelta(hours=8),
            "open_finance": status == SyncStatus.CONSENT_EXPIRED,
            "consent_expires_at": now - timedelta(days=1) if status == SyncStatus.CONSENT_EXPIRED else None,
            "last_synced_at": synced,
            "created_at": now - timedelta(days=400, minutes=-n),
            "updated_at": synced,
        }


def reported_statuses(statuses: list[SyncStatus]) -> Iterator[dict]:
    for n, status in enumerate(statuses, 1):
        yield {"connection_id": n, "sync_status": status.value}


def accounts(item_ids: list[str], now: datetime) -> Iterator[dict]:
    for n in range(2, len(item_ids) + 1, 2):
        for kind, name in (("BANK", "Conta Corrente"), ("CREDIT", "Cartão Platinum")):
            yield {
                "connection_id": n,
                "pluggy_id": f"{item_ids[n - 1][:28]}-{kind.lower()}",
                "type": kind,
                "subtype": "CHECKING_ACCOUNT" if kind == "BANK" else "CREDIT_CARD",
                "name": name,
                "number": f"{n:08d}",
                "balance": 1234.5,
                "currency_code": "BRL",
                "raw": {"id": n, "type": kind, "name": name},
                "created_at": now - timedelta(days=300),
                "updated_at": now - timedelta(hours=n % 24),
            }


def sync_runs(rng: random.Random, volume: Volume, now: datetime) -> Iterator[dict]:
    outcomes = weighted(rng, RUN_OUTCOMES, volume.runs)
    triggers = weighted(rng, RUN_TRIGGERS, volume.runs)
    for n in range(1, volume.runs + 1):
        started = now - HISTORY * rng.random()
        failed = outcomes[n - 1] not in ("success", "partial")
        yield {
            "id": n,
            "connection_id": (n + 1) // 2,  # runs 2c-1 and 2c are connection c's
            "trigger": triggers[n - 1],
            "status": outcomes[n - 1],
            "started_at": started,
            "finished_at": started + timedelta(seconds=rng.uniform(0.5, 40)),
            "accounts": 0 if failed else 2,
            "created": 0 if failed else rng.randint(0, 60),
            "updated": 0 if failed else rng.randint(0, 5),
            "error_code": outcomes[n - 1].upper() if failed else None,
            "error": "Pluggy: the item needs the user" if failed else None,
        }


def webhook_events(rng: random.Random, volume: Volume, item_ids: list[str], now: datetime) -> Iterator[dict]:
    """The inbox over the last 30 days, oldest first as received: ids grow with `received_at`."""
    kinds = weighted(rng, EVENT_MIX, volume.events)
    outcomes = weighted(rng, EVENT_OUTCOMES, volume.events)
    headers = {"content-type": "application/json", "x-webhook-secret": "[redacted]", "user-agent": "Pluggy"}
    for n in range(1, volume.events + 1):
        event, outcome = kinds[n - 1], outcomes[n - 1]
        connection = rng.randint(1, volume.connections)
        item_id = None if event.startswith("connector/") else item_ids[connection - 1]
        received = now - HISTORY * (1 - n / volume.events)
        if outcome == "pending" and received < now - timedelta(hours=1):
            outcome = "processed"  # what is pending is recent
        payload = {"event": event, "eventId": f"evt-{n:08d}", "id": f"evt-{n:08d}", "triggeredBy": "SYNC"}
        payload |= {"itemId": item_id} if item_id else {"data": {"id": 200 + n % CONNECTORS, "status": "ONLINE"}}
        done = outcome in ("processed", "ignored")
        yield {
            "id": n,
            "event_id": f"evt-{n:08d}",
            "event": event,
            "item_id": item_id,
            "payload": payload,
            "headers": headers,
            "status": outcome,
            "attempts": 8 if outcome == "failed" else int(done),
            "last_error": "PluggyError: 503 Service Unavailable" if outcome == "failed" else None,
            "sync_run_id": 2 * connection if outcome == "processed" and event == "item/updated" else None,
            "received_at": received,
            "processed_at": received + timedelta(seconds=rng.uniform(0.05, 3)) if done else None,
        }


def jobs(rng: random.Random, volume: Volume, item_ids: list[str], now: datetime) -> Iterator[dict]:
    kinds = weighted(rng, JOB_KINDS, volume.jobs)
    outcomes = weighted(rng, JOB_OUTCOMES, volume.jobs)
    live = max(RUNNING + 2, int(volume.jobs * QUEUED_SHARE))
    outcomes[-live:] = ["running"] * RUNNING + ["queued"] * (live - RUNNING)
    for n in range(1, volume.jobs + 1):
        kind, outcome = kinds[n - 1], outcomes[n - 1]
        if outcome == "dead":
            kind = DEAD_KIND  # a kind to retry all of
        item_id = item_ids[rng.randrange(len(item_ids))]
        created = now - HISTORY * (1 - n / volume.jobs)
        run_at = now + timedelta(minutes=rng.uniform(-30, 30)) if outcome == "queued" else created
        yield {
            "id": n,
            "kind": kind,
            "payload": {"item_id": item_id},
            "status": outcome,
            "item_id": None if outcome == "running" else item_id,  # one running job per item
            "attempts": 8 if outcome == "dead" else int(outcome != "queued"),
            "max_attempts": 8,
            "run_at": run_at,
            "locked_by": "bench-worker" if outcome == "running" else None,
            "locked_until": now + timedelta(minutes=5) if outcome == "running" else None,
            "last_error": "PluggyError: 500 on GET /items" if outcome == "dead" else None,
            "created_at": created,
            "finished_at": created + timedelta(seconds=rng.uniform(0.1, 20)) if outcome in ("done", "dead") else None,
        }


def endpoints(now: datetime) -> Iterator[dict]:
    for n in (1, 2):
        yield {
            "id": n,
            "url": f"https://app.example.com/hooks/{n}",
            "sealed_secret": "bench-sealed",
            "status": "active",
            "created_at": now - HISTORY,
        }


def outbound_events(rng: random.Random, volume: Volume, now: datetime) -> Iterator[dict]:
    for n in range(1, volume.deliveries + 1):
        created = now - HISTORY * (1 - n / volume.deliveries)
        data = {"connection_id": rng.randint(1, volume.connections), "sync_status": "CREDENTIALS_REQUIRED"}
        yield {
            "id": n,
            "message_id": f"msg_{n:010d}",
            "type": "connection.status_changed",
            "payload": {"type": "connection.status_changed", "timestamp": created.isoformat(), "data": data},
            "created_at": created,
        }


def deliveries(rng: random.Random, volume: Volume, now: datetime) -> Iterator[dict]:
    outcomes = weighted(rng, DELIVERY_OUTCOMES, volume.deliveries)
    for n in range(1, volume.deliveries + 1):
        outcome = outcomes[n - 1]
        created = now - HISTORY * (1 - n / volume.deliveries)
        failing = outcome in ("dead", "failed_retrying")
        yield {
            "id": n,
            "event_id": n,
            "endpoint_id": 1 + n % 2,
            "status": outcome,
            "attempts": 0 if outcome == "pending" else 1 + 5 * failing,
            "last_status_code": 500 if failing else (None if outcome == "pending" else 200),
            "last_error": "HTTP 500" if failing else None,
            "next_attempt_at": now + timedelta(minutes=5) if outcome == "failed_retrying" else None,
            "delivered_at": created + timedelta(seconds=1) if outcome == "delivered" else None,
            "created_at": created,
        }


def connector_statuses(now: datetime) -> Iterator[dict]:
    for n in range(CONNECTORS):
        status = "UNSTABLE" if n % 7 == 3 else "ONLINE"
        yield {"connector_id": str(200 + n), "status": status, "payload": {"status": status}, "updated_at": now}


def write(connection: sa.Connection, model: type, rows: Iterable[dict]) -> None:
    """Write rows of one table in batches, each committed (SQLite's WAL is checkpointed as it goes
    instead of growing by gigabytes): COPY on PostgreSQL, one executemany per batch on SQLite."""
    table = model.__table__
    started = time.perf_counter()
    batch: list[dict] = []
    for row in rows:
        batch.append(row)
        if len(batch) == BATCH:
            write_batch(connection, table, batch)
            connection.commit()
            batch = []
    if batch:
        write_batch(connection, table, batch)
    if connection.dialect.name == "postgresql" and "id" in table.c:
        # Ids were given: the sequence (if the table has one) goes on after them, as it would have.
        connection.exec_driver_sql(
            f"SELECT setval(pg_get_serial_sequence('{table.name}', 'id'), "
            f"(SELECT coalesce(max(id), 1) FROM {table.name}))"
        )
    connection.commit()
    print(f"  {table.name}: {time.perf_counter() - started:.1f} s", flush=True)


def write_batch(connection: sa.Connection, table: sa.Table, rows: list[dict]) -> None:
    names = list(rows[0])
    driver = connection.connection.driver_connection
    assert driver is not None, "a connection in use is never detached from its driver's"
    cursor = driver.cursor()
    try:
        if connection.dialect.name == "postgresql":
            json_columns = {name for name in names if isinstance(table.c[name].type, sa.JSON)}
            with cursor.copy(f"COPY {table.name} ({', '.join(names)}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(
                        [
                            dump_json(row[name]) if name in json_columns and row[name] is not None else row[name]
                            for name in names
                        ]
                    )
        else:
            dialect = connection.dialect
            processors = [(name, table.c[name].type.dialect_impl(dialect).bind_processor(dialect)) for name in names]
            cursor.executemany(
                f"INSERT INTO {table.name} ({', '.join(names)}) VALUES ({', '.join('?' for _ in names)})",
                [[process(row[name]) if process else row[name] for name, process in processors] for row in rows],
            )
    finally:
        cursor.close()


# The renders.


def signed_in(app: Flask) -> FlaskClient:
    client = app.test_client()
    form = client.get("/console/login").text
    match = re.search(r'name="csrf_token" value="([^"]+)"', form)
    assert match, "the login page has no CSRF token"
    answer = client.post("/console/login", data={"csrf_token": match.group(1), "password": OPERATOR_PASSWORD})
    assert answer.status_code == 302, f"sign-in answered {answer.status_code}"
    return client


def registered(app: Flask, route: str) -> bool:
    try:
        app.url_map.bind("localhost").match(route, method="GET")
    except (NotFound, MethodNotAllowed):
        return False
    return True


def next_link(path: str, page_html: str) -> str | None:
    """The path of a list page's next page: its link with an `after` cursor."""
    match = re.search(r'href="([^"]*[?&](?:amp;)?after=[^"]*)"', page_html)
    if not match:
        return None
    target = urlsplit(urljoin(f"http://localhost{path}", html.unescape(match.group(1))))
    return f"{target.path}?{target.query}"


class PageFailed(Exception):
    """A page did not render (not a 200, or no next link to follow): reported, not measured."""


@dataclass
class Database:
    """One of the two databases: its app, a signed-in client, what it holds, and each page's path
    and render times there."""

    label: str
    app: Flask
    volume: Volume
    targets: Targets = field(default_factory=Targets)
    seed_s: float = 0.0
    seed_cpu_s: float = 0.0  # this process's CPU time (a PostgreSQL server's is not in it)
    client: FlaskClient | None = None
    paths: dict[str, str] = field(default_factory=dict)
    seconds: dict[str, list[float]] = field(default_factory=dict)
    statements: dict[str, int] = field(default_factory=dict)
    statement_count: int = 0

    def prepare(self) -> None:
        with self.app.app_context():
            cpu = time.process_time()
            self.seed_s, self.targets = timed(lambda: seed(self.volume))
            self.seed_cpu_s = time.process_time() - cpu
            sa.event.listen(db.engine, "before_cursor_execute", self.count_statement)
        self.client = signed_in(self.app)

    def count_statement(self, *_args) -> None:
        self.statement_count += 1

    def fetch(self, page: Page) -> tuple[float, str]:
        """Render the page once: seconds taken and the HTML; anything but a 200 stops the benchmark."""
        assert self.client is not None
        path = self.path_of(page)
        started = time.perf_counter()
        response = self.client.get(path)
        elapsed = time.perf_counter() - started
        if response.status_code != 200:
            raise PageFailed(f"{path} answered {response.status_code} on the {self.label} database")
        return elapsed, response.text

    def path_of(self, page: Page) -> str:
        if page.name not in self.paths:
            if page.follows:
                first = next(p for p in PAGES if p.name == page.follows)
                link = next_link(self.path_of(first), self.fetch(first)[1])
                if link is None:
                    raise PageFailed(f"{page.follows} has no next link on the {self.label} database")
                self.paths[page.name] = link
            else:
                self.paths[page.name] = self.targets.fill(page.path)
        return self.paths[page.name]

    def warm_up(self, page: Page) -> None:
        self.fetch(page)
        before = self.statement_count
        self.fetch(page)
        self.statements[page.name] = self.statement_count - before

    def render(self, page: Page) -> None:
        self.seconds.setdefault(page.name, []).append(self.fetch(page)[0])

    def figures(self, page: Page) -> dict:
        ordered = sorted(self.seconds[page.name])
        return {
            "path": self.paths[page.name],
            "p50_ms": percentile_ms(ordered, 0.5),
            "p99_ms": percentile_ms(ordered, 0.99),
            "mean_ms": round(statistics.fmean(ordered) * 1000, 2),
            "statements": self.statements[page.name],
        }


def small_database_url(database_url: str, scratch: Path) -> str:
    """Where the small database lives: a file beside the large one on SQLite, a schema of its own in
    the same database on PostgreSQL."""
    url = sa.make_url(database_url)
    if url.get_backend_name() == "sqlite":
        return f"sqlite:///{scratch / 'bench-console-small.db'}"
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        connection.exec_driver_sql(f"DROP SCHEMA IF EXISTS {SMALL_SCHEMA} CASCADE")
        connection.exec_driver_sql(f"CREATE SCHEMA {SMALL_SCHEMA}")
    engine.dispose()
    return url.update_query_dict({"options": f"-csearch_path={SMALL_SCHEMA}"}).render_as_string(hide_password=False)


def drop_small_schema(database_url: str) -> None:
    url = sa.make_url(database_url)
    if url.get_backend_name() != "postgresql":
        return
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        connection.exec_driver_sql(f"DROP SCHEMA IF EXISTS {SMALL_SCHEMA} CASCADE")
    engine.dispose()


def console_app(database_url: str) -> Flask:
    return service_app(database_url, SECRET_KEY=SECRET_KEY, OPERATOR_PASSWORD=OPERATOR_PASSWORD)


def measure(large: Database, small: Database, renders: int) -> tuple[list[Page], list[str], dict[str, str]]:
    """Render every page that exists, alternating the databases; answers the pages measured, the
    routes not registered and why each page that failed to render did."""
    pages = [page for page in PAGES if registered(large.app, route_of(page))]
    missing = sorted({pattern_of(page) for page in PAGES} - {pattern_of(page) for page in pages})
    failed = {}
    for page in pages:
        try:
            for database in (small, large):
                database.warm_up(page)
        except PageFailed as error:
            print(f"not measured: {error}", flush=True)
            failed[page.name] = str(error)
            continue
        for _ in range(renders):
            for database in (small, large):
                database.render(page)
    return [page for page in pages if page.name not in failed], missing, failed


def pattern_of(page: Page) -> str:
    """A page's route as its name writes it: "/console/jobs/<id>"."""
    return page.name.split("?")[0].split(",")[0]


def route_of(page: Page) -> str:
    """The path a page's URL is matched by (placeholders as a plausible value)."""
    if page.follows:
        return route_of(next(p for p in PAGES if p.name == page.follows))
    return Targets(connection_id=1, job_id=1, event_id=1).fill(page.route)


def run(database_url: str, volume: Volume = LARGE, renders: int = 50, small_volume: Volume | None = None) -> dict:
    small_volume = small_volume or small_of(volume)
    with tempfile.TemporaryDirectory() as scratch:
        large = Database("large", console_app(database_url), volume)
        small = Database("small", console_app(small_database_url(database_url, Path(scratch))), small_volume)
        try:
            for database in (small, large):
                print(f"seeding the {database.label} database: {database.volume.describe()}", flush=True)
                database.prepare()
                print(f"  {database.seed_s:.1f} s ({database.seed_cpu_s:.1f} s of this process's CPU)", flush=True)
            pages, missing, failed = measure(large, small, renders)
            for missing_route in missing:
                print(f"not registered, not measured: {missing_route}", flush=True)
        finally:
            for app in (large.app, small.app):
                with app.app_context():
                    db.session.remove()
                    db.engine.dispose()
            drop_small_schema(database_url)
    return report(database_url, large, small, pages, missing, failed, renders)


def report(
    database_url: str,
    large: Database,
    small: Database,
    pages: list[Page],
    missing: list[str],
    failed: dict[str, str],
    renders: int,
) -> dict:
    figures = {page.name: {"large": large.figures(page), "small": small.figures(page)} for page in pages}
    rows = [
        {
            "measure": f"seeding {large.volume.describe()} (with runs, jobs, accounts, deliveries)",
            "figure": f"{large.seed_s:.0f} s ({large.seed_cpu_s:.0f} s of the benchmark's CPU)",
            "goal": "a few minutes",
            "met": None,
        }
    ]
    for page in pages:
        big, little = figures[page.name]["large"], figures[page.name]["small"]
        ratio = round(big["p50_ms"] / little["p50_ms"], 2)
        figures[page.name]["large_over_small_p50"] = ratio
        rows.append(
            {
                "measure": f"{page.name}, p50 / p99: {large.volume.connections:,} vs "
                f"{small.volume.connections:,} connections",
                "figure": f"{big['p50_ms']} / {big['p99_ms']} ms vs {little['p50_ms']} / {little['p99_ms']} ms "
                f"({ratio:.2f}x at p50); {big['statements']} vs {little['statements']} statements",
                "goal": f"p99 < {GOAL_P99_MS:g} ms",
                "met": big["p99_ms"] < GOAL_P99_MS,
            }
        )
    for name, reason in failed.items():
        rows.append({"measure": f"{name}: not rendered", "figure": reason, "goal": "200", "met": False})
    if missing:
        rows.append(
            {"measure": "pages not in this app, not measured", "figure": ", ".join(missing), "goal": "-", "met": None}
        )
    return {
        "benchmark": "console",
        "engine": engine_name(database_url),
        "renders": renders,
        "large": {
            "volume": large.volume.__dict__
            | {"runs": large.volume.runs, "jobs": large.volume.jobs, "deliveries": large.volume.deliveries},
            "seed_s": round(large.seed_s, 1),
            "seed_cpu_s": round(large.seed_cpu_s, 1),
        },
        "small": {"volume": small.volume.__dict__, "seed_s": round(small.seed_s, 1)},
        "pages": figures,
        "not_registered": missing,
        "failed": failed,
        "table": rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", help="default: a fresh SQLite file")
    parser.add_argument("--connections", type=int, default=LARGE.connections)
    parser.add_argument("--events", type=int, default=LARGE.events)
    parser.add_argument("--renders", type=int, default=50)
    parser.add_argument("--json", type=Path, help="also write the result here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        url = args.database_url or f"sqlite:///{Path(scratch) / 'bench.db'}"
        write_json(run(url, Volume(args.connections, args.events), args.renders), args.json)


if __name__ == "__main__":
    main()
