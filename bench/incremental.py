"""Incremental cost: an item update bringing 100 new transactions, on an empty database and on one
holding a long history for the same accounts, measured in one run.

    python -m bench.incremental [--history N] [--repetitions 7] [--explain] [--database-url URL] [--json PATH]

Method. Two passes, each on emptied tables and with an item of its own in the local stand-in
(`sandbox/`, in a process of its own), so that both start from the same state:
1. The item is registered the way the service does (BankConnectionService.register, which queues
   the first sync) and an in-process Worker drains the queue: accounts and watermarks exist.
2. Only in the second pass, the history: N transactions for the same accounts written straight
   into `transactions` (COPY on PostgreSQL, executemany on SQLite), dated before the re-read
   window (`SYNC_LOOKBACK_DAYS`) as old history is, with payloads made by the stand-in's own
   generator, so they are shaped like Pluggy's. PostgreSQL's statistics are then refreshed (ANALYZE),
   as autovacuum would soon do on a live database.
3. Each repetition: the stand-in runs an execution of the item as Pluggy's scheduler does
   (`auto_sync`), finding 100 new transactions (50 on each of its two accounts) and moving the
   item's `lastUpdatedAt`; an `item/updated` webhook is posted to the service's receiver (as Pluggy
   would), and the worker drains the queue: the `webhook_events` job reads the item, sees an update
   it has not fetched, and fetches. Only that drain is measured:
   wall time, Pluggy HTTP calls (a response hook on the client's requests session; the read-ahead
   thread's calls included) and SQL statements (the engine's `before_cursor_execute`; an
   executemany counts once; on PostgreSQL the staging table's CREATE and COPY, sent through the
   driver's own cursor, are not seen, two per page written).
The figures are the medians of the repetitions; the ratios are with-history / empty. The stand-in
compresses time (every row is "created" within the hour), so each update re-reads the rows of the
previous ones through the watermark's overlap; both passes do the same number of repetitions, so
this weighs on both alike.

With `--explain`, or when a ratio misses the goal, one more update runs with the plan of every
distinct statement that touches `transactions` taken just before it runs, on the same connection
and in the same transaction (so the staging table holds the page): EXPLAIN on PostgreSQL, EXPLAIN
QUERY PLAN on SQLite (which shows nothing for an INSERT ... VALUES: its conflict check is a probe of
the unique index). A plan that scans the whole table (Seq Scan / SCAN) is flagged.

Goal: with 100,000 transactions stored (1,000,000 on PostgreSQL), an update bringing 100
new ones costs within 2x of the same update on an empty database, in time, Pluggy calls and SQL
statements: cost follows the change, not the history.
"""

from __future__ import annotations

import argparse
import itertools
import random
import re
import statistics
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import orjson
import requests
import sqlalchemy as sa
from flask import Flask
from psycopg.types.json import Jsonb
from sqlalchemy.engine.interfaces import ExecuteStyle

from harness.processes import stand_in
from harness.waiting import stand_in_idle
from models import Account, Connection, SyncRun, Transaction, User, db
from models.base import utcnow
from pluggy_client import PluggyClient
from sandbox.data import new_transaction
from sandbox.events import item_event
from sync.connections import BankConnectionService
from sync.jobs import sync_worker
from sync.runtime import sync_settings
from sync.transactions import transaction_row

from .common import (
    CLIENT_ID,
    CLIENT_SECRET,
    TIMEOUT,
    WEBHOOK_SECRET,
    create_item,
    empty_tables,
    engine_name,
    service_app,
    timed,
    write_json,
)

DEFAULT_HISTORY = {"sqlite": 100_000, "postgresql": 1_000_000}
NEW_PER_UPDATE = 100
REPETITIONS = 7
GOAL_RATIO = 2.0
ITEM_TRANSACTIONS = 120  # the stand-in's smallest item: its own rows are re-read on every update
ITEM_ACCOUNTS = 2  # a bank account and a card: common.create_item
HISTORY_YEARS = 5
HISTORY_BATCH = 10_000
WORKER_ID = "bench-incremental"
A_PLUGGY_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
SEED = 7
TOUCHES_TRANSACTIONS = re.compile(r"\btransactions\b", re.IGNORECASE)  # not incoming_transactions
PLACEHOLDER_RUN = re.compile(r"\?(, \?){3,}")  # an IN list of hundreds of ? reads as one
SCANS_WHOLE_TABLE = {
    "postgresql": re.compile(r"Seq Scan on transactions\b"),
    "sqlite": re.compile(r"^SCAN transactions\b"),
}


@dataclass
class Cost:
    seconds: float = 0.0
    pluggy_calls: int = 0
    statements: int = 0
    created: int = 0
    calls_by_route: dict[str, int] = field(default_factory=dict)


class Meters:
    """Counts what the service sends out while it works: Pluggy requests (by route) and SQL
    statements."""

    def __init__(self, engine: sa.Engine, session: requests.Session) -> None:
        self.lock = threading.Lock()  # the fetch's read-ahead thread calls Pluggy too
        self.routes: Counter[str] = Counter()
        self.statements = 0
        session.hooks["response"].append(self.count_pluggy_call)
        sa.event.listen(engine, "before_cursor_execute", self.count_statement)

    def count_pluggy_call(self, response, *args, **kwargs) -> None:
        route = A_PLUGGY_ID.sub("{id}", urlsplit(response.url).path)
        with self.lock:
            self.routes[route] += 1

    def count_statement(self, *args) -> None:
        with self.lock:
            self.statements += 1

    @contextmanager
    def measuring(self) -> Iterator[Cost]:
        cost = Cost()
        routes, statements = self.routes.copy(), self.statements
        started = time.perf_counter()
        yield cost
        cost.seconds = round(time.perf_counter() - started, 4)
        cost.calls_by_route = dict(sorted((self.routes - routes).items()))
        cost.pluggy_calls = sum(cost.calls_by_route.values())
        cost.statements = self.statements - statements


class PlanRecorder:
    """While recording, the plan of each distinct statement touching `transactions` (or what
    `touches` matches), taken just before it runs: on its connection, in its transaction, with its
    parameters; `whole_table` tells, per dialect, a plan line that scans the history."""

    def __init__(
        self,
        engine: sa.Engine,
        touches: re.Pattern = TOUCHES_TRANSACTIONS,
        whole_table: dict[str, re.Pattern] = SCANS_WHOLE_TABLE,
    ) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name
        self.touches = touches
        self.whole_table = whole_table[self.dialect]
        self.plans: dict[str, list[str]] = {}

    @contextmanager
    def recording(self) -> Iterator[None]:
        sa.event.listen(self.engine, "before_cursor_execute", self.explain)
        try:
            yield
        finally:
            sa.event.remove(self.engine, "before_cursor_execute", self.explain)

    def explain(self, _connection, cursor, statement, parameters, context, executemany) -> None:
        if not self.touches.search(statement) or statement in self.plans:
            return
        prefix = "EXPLAIN " if self.dialect == "postgresql" else "EXPLAIN QUERY PLAN "
        explaining = cursor.connection.cursor()  # the statement's own cursor is about to be used
        # An executemany sends a list of rows; SQLAlchemy's own multi-row VALUES, one flat batch.
        one_row = executemany and context.execute_style is not ExecuteStyle.INSERTMANYVALUES
        explaining.execute(prefix + statement, parameters[0] if one_row else parameters)
        # PostgreSQL answers one line per row; SQLite (id, parent, notused, detail).
        self.plans[statement] = [row[-1] for row in explaining.fetchall()]
        explaining.close()

    def report(self) -> list[dict]:
        whole_table = self.whole_table
        # IN lists of other lengths are other statements with the same plan: one of them is shown.
        shown = {
            squeezed(statement): {
                "statement": squeezed(statement),
                "plan": plan,
                "scans_history": any(whole_table.search(line.strip()) for line in plan),
            }
            for statement, plan in self.plans.items()
        }
        return list(shown.values())


class UpdateBench:
    """The service (its app, a Pluggy client, a worker) against the stand-in, its work measured."""

    def __init__(self, app: Flask, sandbox: str) -> None:
        self.sandbox = sandbox
        session = requests.Session()
        self.meters = Meters(db.engine, session)
        self.client = PluggyClient(sandbox, CLIENT_ID, CLIENT_SECRET, session=session)
        self.worker = sync_worker(app, self.client)
        self.receiver = app.test_client()
        self.rng = random.Random(SEED)

    def measure_pass(self, history: int, repetitions: int) -> tuple[dict, Connection]:
        """A fresh item first-synced, `history` old rows stored, then `repetitions` updates."""
        connection = self.connect(create_item(self.sandbox, ITEM_TRANSACTIONS))
        loading = 0.0
        if history:
            loading, _ = timed(lambda: store_history(connection, history, sync_settings().lookback_days))
        costs = [self.update(connection) for _ in range(repetitions)]
        return summary(costs, history, loading), connection

    def connect(self, item_id: str) -> Connection:
        """On emptied tables, the item registered as the service does, and its first sync run."""
        db.session.close()  # TRUNCATE waits for every open transaction, this session's included
        empty_tables()
        user = User(email="bench@example.com")
        db.session.add(user)
        db.session.commit()
        connection, _ = BankConnectionService(db.session, self.client, sync_settings()).register(user, item_id)
        self.drain()
        return connection

    def update(self, connection: Connection) -> Cost:
        """The stand-in updates the item, bringing 100 transactions, and says so; the worker's
        handling is measured."""
        run_item_update(self.sandbox, connection.item_id, NEW_PER_UPDATE // ITEM_ACCOUNTS)
        self.post_item_updated(connection.item_id)
        with self.meters.measuring() as cost:
            self.drain()
        cost.created = created_by_latest_run(connection)
        return cost

    def explain_update(self, connection: Connection) -> list[dict]:
        recorder = PlanRecorder(db.engine)
        with recorder.recording():
            self.update(connection)
        return recorder.report()

    def control(self, path: str, **body) -> dict:
        response = requests.post(f"{self.sandbox}/sandbox/{path}", json=body, timeout=TIMEOUT)
        response.raise_for_status()
        return response.json()

    def post_item_updated(self, item_id: str) -> None:
        payload = item_event(self.rng, "item/updated", {"id": item_id}, "SYNC")
        response = self.receiver.post("/webhooks/pluggy", json=payload, headers={"X-Webhook-Secret": WEBHOOK_SECRET})
        if response.status_code != 200:
            body = response.get_data(as_text=True)
            raise RuntimeError(f"the receiver refused the webhook: {response.status_code} {body}")

    def drain(self) -> None:
        while self.worker.run_one(db.session, WORKER_ID):
            pass


def run_item_update(sandbox: str, item_id: str, per_account: int) -> None:
    """An execution by Pluggy's own scheduler: new data comes only with one, which moves the item's
    `lastUpdatedAt` (the service fetches an update it has not fetched yet, not a repeated one)."""
    requests.post(
        f"{sandbox}/sandbox/items/{item_id}/auto_sync", json={"transactions": per_account}, timeout=TIMEOUT
    ).raise_for_status()
    stand_in_idle(sandbox)


def created_by_latest_run(connection: Connection) -> int:
    """The rows the last run created; anything but a successful run with all 100 is a failed bench."""
    run = db.session.scalars(
        sa.select(SyncRun).where(SyncRun.connection_id == connection.id).order_by(SyncRun.id.desc()).limit(1)
    ).one()
    if run.status != "success" or run.created != NEW_PER_UPDATE:
        raise RuntimeError(
            f"the update did not bring {NEW_PER_UPDATE} new rows: run {run.id} {run.status}, "
            f"{run.created} created, error {run.error!r}"
        )
    return run.created


# The stored history ------------------------------------------------------------------------


def store_history(connection: Connection, count: int, lookback_days: int) -> None:
    accounts = [
        (account.id, account.raw)
        for account in db.session.scalars(
            sa.select(Account).where(Account.connection_id == connection.id).order_by(Account.id)
        )
    ]
    db.session.commit()  # the rows go in through a connection of their own
    write_rows(Transaction.__table__, history_rows(accounts, count, lookback_days, random.Random(SEED)))


def history_rows(
    accounts: list[tuple[int, dict]], count: int, lookback_days: int, rng: random.Random
) -> Iterator[dict]:
    """`count` transactions spread over the accounts (id, Pluggy's payload), dated before the
    re-read window, as the service would have stored them from Pluggy-shaped payloads."""
    today, now = utcnow().date(), utcnow()
    for index in range(count):
        account_id, account = accounts[index % len(accounts)]
        day = today - timedelta(days=rng.randint(lookback_days + 1, HISTORY_YEARS * 365))
        midnight = datetime(day.year, day.month, day.day, tzinfo=UTC)
        ingested = midnight + timedelta(seconds=rng.randrange(86_400))
        yield transaction_row(new_transaction(rng, account, day, "POSTED", ingested), account_id, now)


def write_rows(table: sa.Table, rows: Iterator[dict]) -> None:
    """Rows straight into a table, set-based: COPY on PostgreSQL, executemany on SQLite."""
    first = next(rows, None)
    if first is None:
        return
    if db.engine.dialect.name == "postgresql":
        copy_rows(table, itertools.chain([first], rows))
    else:
        insert_rows(table, itertools.chain([first], rows))


def copy_rows(table: sa.Table, rows: Iterator[dict]) -> None:
    first = next(rows)
    names = list(first)
    with db.engine.begin() as connection:
        cursor = connection.connection.driver_connection.cursor()
        with cursor.copy(f"COPY {table.name} ({', '.join(names)}) FROM STDIN") as copy:
            for row in itertools.chain([first], rows):
                copy.write_row([as_copied(value) for value in row.values()])
        # A live database's statistics follow its size (autovacuum); a fresh bulk load's do not yet.
        connection.execute(sa.text(f"ANALYZE {table.name}"))


def as_copied(value):
    return Jsonb(value, dumps=json_text) if isinstance(value, dict | list) else value


def insert_rows(table: sa.Table, rows: Iterator[dict]) -> None:
    with db.engine.begin() as connection:
        for batch in batches(rows, HISTORY_BATCH):
            connection.execute(sa.insert(table), batch)


def batches(rows: Iterator[dict], size: int) -> Iterator[list[dict]]:
    while batch := list(itertools.islice(rows, size)):
        yield batch


def json_text(value) -> str:
    return orjson.dumps(value).decode()


# Results -----------------------------------------------------------------------------------

MEASURES = (
    ("seconds", "update time"),
    ("pluggy_calls", "Pluggy calls per update"),
    ("statements", "SQL statements per update"),
)


def summary(costs: list[Cost], history: int, loading_seconds: float) -> dict:
    return {
        "history": history,
        "history_load_seconds": round(loading_seconds, 1),
        **{key: round(statistics.median(getattr(cost, key) for cost in costs), 4) for key, _ in MEASURES},
        "each": [asdict(cost) for cost in costs],
    }


def ratios(empty: dict, loaded: dict) -> dict:
    return {key: round(loaded[key] / empty[key], 2) for key, _ in MEASURES}


def table(empty: dict, loaded: dict, ratio: dict) -> list[dict]:
    return [
        {
            "measure": f"{label}, {NEW_PER_UPDATE} new: {loaded['history']:,} stored vs none",
            "figure": f"{figure(key, loaded[key])} vs {figure(key, empty[key])} ({ratio[key]:.2f}x)",
            "goal": f"<= {GOAL_RATIO:g}x",
            "met": ratio[key] <= GOAL_RATIO,
        }
        for key, label in MEASURES
    ]


def figure(key: str, value: float) -> str:
    return f"{value:.3f} s" if key == "seconds" else f"{value:g}"


def squeezed(statement: str, limit: int = 400) -> str:
    text = PLACEHOLDER_RUN.sub("?, ..., ?", " ".join(statement.split()))
    return text if len(text) <= limit else text[:limit] + " ..."


def run(database_url: str, history: int | None = None, repetitions: int = REPETITIONS, explain: bool = False) -> dict:
    engine = engine_name(database_url)
    history = DEFAULT_HISTORY.get(engine, DEFAULT_HISTORY["sqlite"]) if history is None else history
    with stand_in() as pluggy:
        sandbox = pluggy.url
        app = service_app(database_url, sandbox, PLUGGY_WEBHOOK_SECRETS=(WEBHOOK_SECRET,))
        with app.app_context():
            bench = UpdateBench(app, sandbox)
            empty, _ = bench.measure_pass(0, repetitions)
            loaded, connection = bench.measure_pass(history, repetitions)
            ratio = ratios(empty, loaded)
            missed = any(value > GOAL_RATIO for value in ratio.values())
            plans = bench.explain_update(connection) if explain or missed else None
            db.engine.dispose()
    result = {
        "benchmark": "incremental",
        "engine": engine,
        "history": history,
        "new_per_update": NEW_PER_UPDATE,
        "repetitions": repetitions,
        "results": {"empty": empty, "with_history": loaded, "ratios": ratio},
        "goals": {"ratio_at_most": GOAL_RATIO},
        "table": table(empty, loaded, ratio),
    }
    if plans is not None:
        result["plans"] = plans
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--history", type=int, help="rows stored before the updates (default: 100,000; 1,000,000 on PostgreSQL)"
    )
    parser.add_argument(
        "--repetitions", type=int, default=REPETITIONS, help="updates measured per pass (the median is reported)"
    )
    parser.add_argument(
        "--explain", action="store_true", help="show the plans of the statements touching transactions even when met"
    )
    parser.add_argument("--database-url", help="default: a fresh SQLite file")
    parser.add_argument("--json", type=Path, help="also write the result here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        url = args.database_url or f"sqlite:///{Path(scratch) / 'bench.db'}"
        result = run(url, args.history, args.repetitions, args.explain)
    write_json(result, args.json)


if __name__ == "__main__":
    main()
