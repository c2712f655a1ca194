"""The change feed read from the start: 1,000,000 changes of one user through the API against a bare
indexed SELECT of the same rows on the same engine, and the time to the first page with the feed at
1,000 changes against 1,000,000, in one run.

    python -m bench.change_feed [--database-url URL] [--changes 1000000] [--small-changes 1000]
                                [--first-pages 30] [--json PATH]

The seed (`seed`): one user's connections (one per 100,000 changes), a checking account and a credit
card on each, and transactions for the rest of the changes (Pluggy's own shapes, from the stand-in's
generator: Pix, boletos with their metadata, card purchases with installments and merchants, about
1 kB of raw JSON each). Rows are made in Python and written set-based in batches of 5,000, each
batch committed (COPY on PostgreSQL, executemany on SQLite). The change log is written as the
service writes it: the triggers of connections and accounts write their rows, and each batch of
transactions is entered by the writer's own statement (`record_new_transactions`, one INSERT ...
SELECT a batch, at one position: the batch's transaction id on PostgreSQL, one tick of the clock on
SQLite), exactly as a sync's page is. PostgreSQL is then vacuumed and analyzed (autovacuum is off
on this machine; a production server's would have done it).

The PostgreSQL feed reads only below the oldest transaction still running on the server (its
xmin, models/change.py): a writing transaction open anywhere on the server, in another database too,
holds it back. Before reading, the benchmark waits until the horizon is past the last seeded position
and reports the wait.

Throughput: the whole feed read through the API from the start, a Flask test client in this process
with the user's real API token (the app's own auth, its validation, snapshot, loaders, serialisers
and JSON), following `next_cursor` with the largest page the API allows (500) until `has_more` is
false; no HTTP server (the other benchmarks measure the web tier). The floor: the same rows read by
bare indexed keyset SELECTs on the same engine, in pages of 500 on one read snapshot each as the
API's: the page of change rows (every column, by (user, position, id), the index the feed uses), then
for each kind on the page its objects' columns by key in one IN query (transactions with their
account's Pluggy id), as the feed reads them; Core rows, no ORM objects, no serialisation. Each read
is preceded by an untimed read of its first 10 pages (the code's first calls; the rows are in the
caches already, just written by the seed). Both
must yield the same (kind, id) sequence, checked and reported. Reported: rows/s of each and their
ratio. Goal: the API at least 0.5x the bare rows/s (the issue's).

The first page: `GET /api/banking/changes/?limit=500` without a cursor on two databases side by
side, the large one (the throughput's) and a small one of `--small-changes` (SQLite: a file beside
the large one; PostgreSQL: a schema of its own in the same database), alternating the two so that the
machine's drift falls on both alike, after two untimed reads of each. Reported: median and p99 on
each and the ratio of the medians. Goal: the median at 1,000,000 within 2x of the median at 1,000:
the first page reads the same 500 rows through the (user, position, id) index whatever follows them,
so only the index's depth grows (a level or two); anything above 1x is the noise of a shared machine,
while a read that scanned the feed would be a hundred times slower, not two.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from harness.waiting import wait_until
from models import Account, Change, Connection, Transaction, User, db
from models.base import utcnow
from models.change import record_new_transactions
from models.database import read_snapshot
from sandbox import data as pf
from sync import changes
from sync.tokens import issue_api_token

from .common import SECRET_KEY, empty_tables, engine_name, percentile_ms, service_app, timed, write_json
from .console import write, write_batch

FEED = "/api/banking/changes/"
PAGE = 500  # the largest page the API allows (api/schemas.py ChangesQuery)
LARGE_CHANGES = 1_000_000
SMALL_CHANGES = 1_000
CHANGES_PER_CONNECTION = 100_000
BATCH = 5_000
SMALL_SCHEMA = "bench_change_feed_small"
GOAL_RATIO = 0.5
GOAL_FIRST_PAGE_RATIO = 2.0
HORIZON_WAIT_S = 300
WARM_UP_PAGES = 10
EMAIL = "bench-feed@example.com"


@dataclass(frozen=True)
class Volume:
    """A user's feed of `changes` entries: connections, two accounts each, transactions for the rest."""

    changes: int

    @property
    def connections(self) -> int:
        return max(1, self.changes // CHANGES_PER_CONNECTION)

    @property
    def accounts(self) -> int:
        return 2 * self.connections

    @property
    def transactions(self) -> int:
        return self.changes - self.connections - self.accounts


# The seed.


def seed(volume: Volume, now: datetime | None = None) -> int:
    """Empty the tables and write one user's feed of `volume.changes` entries; answers the user's id."""
    now = now or utcnow()
    rng = random.Random(19)
    empty_tables()
    with db.engine.connect() as connection:
        write(connection, User, [{"id": 1, "email": EMAIL, "token_version": 1, "created_at": now}])
        write(connection, Connection, connections(volume, now))
        cards = pf_accounts(rng, volume, now)
        write(connection, Account, (row for row, _ in cards))
        write_transactions(connection, transactions(rng, volume, [raw for _, raw in cards], now))
    if db.engine.dialect.name == "postgresql":
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.exec_driver_sql("VACUUM ANALYZE")
    return 1


def connections(volume: Volume, now: datetime) -> Iterator[dict]:
    for n in range(1, volume.connections + 1):
        yield {
            "id": n,
            "user_id": 1,
            "item_id": f"00000000-0000-4000-8000-{n:012d}",
            "connector_id": 200 + n,
            "connector_name": f"Bench Bank {n}",
            "client_user_id": "bench-feed",
            "item_status": "UPDATED",
            "execution_status": "SUCCESS",
            "products": ["ACCOUNTS", "TRANSACTIONS"],
            "last_updated_at": now,
            "last_synced_at": now,
            "created_at": now - timedelta(days=400),
            "updated_at": now,
        }


def pf_accounts(rng: random.Random, volume: Volume, now: datetime) -> list[tuple[dict, dict]]:
    """(row, Pluggy's JSON) of a checking account and a credit card on each connection."""
    made = []
    for n in range(1, volume.accounts + 1):
        connection_id = (n + 1) // 2
        make = pf.new_bank_account if n % 2 else pf.new_credit_card_account
        raw = make(rng, f"00000000-0000-4000-8000-{connection_id:012d}", now)
        row = {
            "id": n,
            "connection_id": connection_id,
            "pluggy_id": raw["id"],
            "type": raw["type"],
            "subtype": raw["subtype"],
            "name": raw["name"],
            "number": raw["number"],
            "owner": raw["owner"],
            "balance": Decimal(str(raw["balance"])),
            "currency_code": "BRL",
            "raw": raw,
            "created_at": now,
            "updated_at": now,
        }
        made.append((row, raw))
    return made


def transactions(rng: random.Random, volume: Volume, accounts: list[dict], now: datetime) -> Iterator[dict]:
    """The transactions, spread over the accounts round-robin, over about a year."""
    today = now.date()
    for n in range(volume.transactions):
        account_number = n % len(accounts)
        account = accounts[account_number]
        raw = pf.new_transaction(rng, account, today - timedelta(days=rng.randint(0, 365)), "POSTED", now)
        yield transaction_row(account_number + 1, raw, now)


def transaction_row(account_id: int, raw: dict, now: datetime) -> dict:
    metadata = raw.get("creditCardMetadata") or {}
    return {
        "account_id": account_id,
        "pluggy_id": raw["id"],
        "date": datetime.combine(date.fromisoformat(raw["date"][:10]), datetime.min.time(), tzinfo=UTC),
        "description": raw["description"],
        "description_raw": raw["descriptionRaw"],
        "amount": Decimal(str(raw["amount"])),
        "currency_code": raw["currencyCode"],
        "type": raw["type"],
        "status": raw["status"],
        "category": raw["category"],
        "category_id": raw["categoryId"],
        "provider_code": raw["providerCode"],
        "installment_number": metadata.get("installmentNumber"),
        "total_installments": metadata.get("totalInstallments"),
        "raw": raw,
        "pluggy_created_at": now,
        "pluggy_updated_at": now,
        "created_at": now,
        "updated_at": now,
    }


def write_transactions(connection: sa.Connection, rows: Iterator[dict]) -> None:
    """Each batch written and entered into the feed in one transaction, as a sync writes a page."""
    started = time.perf_counter()
    batch: list[dict] = []
    for row in rows:
        batch.append(row)
        if len(batch) == BATCH:
            write_page(connection, batch)
            batch = []
    if batch:
        write_page(connection, batch)
    print(f"  transactions and their changes: {time.perf_counter() - started:.1f} s", flush=True)


def write_page(connection: sa.Connection, rows: list[dict]) -> None:
    write_batch(connection, Transaction.__table__, rows)
    written = connection.execute(
        sa.select(Transaction.account_id, Transaction.id, Transaction.pluggy_id).where(
            Transaction.pluggy_id.in_([row["pluggy_id"] for row in rows])
        )
    )
    by_account: dict[int, list[tuple[int, str]]] = {}
    for account_id, row_id, pluggy_id in written:
        by_account.setdefault(account_id, []).append((row_id, pluggy_id))
    for account_id, new_rows in by_account.items():
        record_new_transactions(connection, account_id, new_rows)
    connection.commit()


def last_position(user_id: int) -> int:
    with db.engine.connect() as connection:
        return connection.scalar(sa.select(sa.func.max(Change.position)).where(Change.user_id == user_id)) or 0


def wait_for_horizon(user_id: int) -> float:
    """Seconds until every seeded position is below the feed's horizon (PostgreSQL; 0 on SQLite)."""
    highest = last_position(user_id)

    def settled() -> bool:
        with read_snapshot(db.engine) as session:
            horizon = changes.settled_below(session)
        return horizon is None or horizon > highest

    waited, _ = timed(lambda: wait_until(settled, HORIZON_WAIT_S, interval=0.5, what="the feed's horizon"))
    return waited


# The reads.

Key = tuple[str, str]


def api_client(app: Flask, user_id: int) -> tuple[FlaskClient, dict[str, str]]:
    with app.app_context():
        user = db.session.get(User, user_id)
        assert user is not None
        token = issue_api_token(app.config["SECRET_KEY"], user)
    return app.test_client(), {"Authorization": f"Bearer {token}"}


def read_through_api(app: Flask, user_id: int, max_pages: int | None = None) -> tuple[list[Key], int]:
    """Every entry of the user's feed from the start, in order (the first `max_pages` pages only, if
    given), and the pages read."""
    client, headers = api_client(app, user_id)
    keys: list[Key] = []
    cursor, pages = "", 0
    while True:
        answer = client.get(FEED, query_string={"cursor": cursor, "limit": PAGE}, headers=headers)
        assert answer.status_code == 200, f"the feed answered {answer.status_code}: {answer.text[:300]}"
        body = answer.get_json()
        pages += 1
        page = body["added"] + body["modified"] + body["removed"]
        keys.extend((entry["kind"], str(entry["id"])) for entry in page)
        cursor = body["next_cursor"]
        if not body["has_more"] or pages == max_pages:
            return keys, pages


def read_bare(app: Flask, user_id: int, max_pages: int | None = None) -> tuple[list[Key], int]:
    """The same rows by bare keyset SELECTs: each page's change rows, then its objects by kind (the
    first `max_pages` pages only, if given)."""
    keys: list[Key] = []
    after, pages = (0, 0), 0
    with app.app_context():
        while True:
            with read_snapshot(db.engine) as session:
                rows = session.execute(change_page(user_id, after)).all()
                page = rows[:PAGE]
                bare_objects(session, page)
            pages += 1
            keys.extend((row.kind, row.key) for row in page)
            if len(rows) <= PAGE or pages == max_pages:
                return keys, pages
            after = (page[-1].position, page[-1].id)


def change_page(user_id: int, after: tuple[int, int]) -> sa.Select:
    table = Change.__table__
    return (
        sa.select(table)
        .where(table.c.user_id == user_id, sa.tuple_(table.c.position, table.c.id) > sa.tuple_(*after))
        .order_by(table.c.position, table.c.id)
        .limit(PAGE + 1)
    )


def bare_objects(session: sa.orm.Session, page: Sequence[sa.Row]) -> list[sa.Row]:
    wanted: dict[str, list[str]] = {}
    for row in page:
        wanted.setdefault(row.kind, []).append(row.key)
    found: list[sa.Row] = []
    for kind, keys in wanted.items():
        model, key = changes.KEYS[changes.ChangeKind(kind)]
        statement = sa.select(model.__table__).where(key.in_(keys))
        if model is Transaction:
            statement = sa.select(Transaction.__table__, Account.pluggy_id).join(Account).where(key.in_(keys))
        found.extend(session.execute(statement))
    return found


# The first page on two databases.


@dataclass
class Feed:
    """One of the two databases: its app, what it holds, and the first page's read times there."""

    label: str
    app: Flask
    volume: Volume
    user_id: int = 0
    seed_s: float = 0.0
    horizon_wait_s: float = 0.0
    client: FlaskClient | None = None
    headers: dict[str, str] = field(default_factory=dict)
    seconds: list[float] = field(default_factory=list)

    def prepare(self) -> None:
        print(f"seeding the {self.label} feed: {self.volume.changes:,} changes", flush=True)
        with self.app.app_context():
            self.seed_s, self.user_id = timed(lambda: seed(self.volume))
            self.horizon_wait_s = wait_for_horizon(self.user_id)
        print(f"  {self.seed_s:.1f} s; waited {self.horizon_wait_s:.1f} s for the horizon", flush=True)
        self.client, self.headers = api_client(self.app, self.user_id)

    def first_page(self) -> float:
        assert self.client is not None
        started = time.perf_counter()
        answer = self.client.get(FEED, query_string={"limit": PAGE}, headers=self.headers)
        elapsed = time.perf_counter() - started
        assert answer.status_code == 200, f"the {self.label} feed answered {answer.status_code}"
        assert len(answer.get_json()["added"]) == min(PAGE, self.volume.changes)
        return elapsed

    def figures(self) -> dict:
        ordered = sorted(self.seconds)
        return {
            "changes": self.volume.changes,
            "median_ms": round(statistics.median(ordered) * 1000, 2),
            "p99_ms": percentile_ms(ordered, 0.99),
        }


def first_pages(large: Feed, small: Feed, reads: int) -> None:
    for _ in range(2):
        for feed in (small, large):
            feed.first_page()
    for _ in range(reads):
        for feed in (small, large):
            feed.seconds.append(feed.first_page())


def small_database_url(database_url: str, scratch: Path) -> str:
    """A file beside the large one on SQLite, a schema of its own in the same database on PostgreSQL."""
    url = sa.make_url(database_url)
    if url.get_backend_name() == "sqlite":
        return f"sqlite:///{scratch / 'bench-change-feed-small.db'}"
    recreate_small_schema(database_url, create=True)
    return url.update_query_dict({"options": f"-csearch_path={SMALL_SCHEMA}"}).render_as_string(hide_password=False)


def recreate_small_schema(database_url: str, *, create: bool) -> None:
    if engine_name(database_url) != "postgresql":
        return
    engine = sa.create_engine(database_url)
    with engine.begin() as connection:
        connection.exec_driver_sql(f"DROP SCHEMA IF EXISTS {SMALL_SCHEMA} CASCADE")
        if create:
            connection.exec_driver_sql(f"CREATE SCHEMA {SMALL_SCHEMA}")
    engine.dispose()


# The run.


@dataclass
class Throughput:
    api_s: float
    bare_s: float
    rows: int
    pages: int
    same_rows: bool

    def figures(self) -> dict:
        return {
            "rows": self.rows,
            "pages": self.pages,
            "api_s": round(self.api_s, 2),
            "bare_s": round(self.bare_s, 2),
            "api_rows_per_s": round(self.rows / self.api_s),
            "bare_rows_per_s": round(self.rows / self.bare_s),
            "api_over_bare": round(self.bare_s / self.api_s, 3),
            "same_rows": self.same_rows,
        }


def throughput(app: Flask, user_id: int) -> Throughput:
    print("reading the feed: bare (a warm-up of a few pages, then all of it), then through the API", flush=True)
    read_bare(app, user_id, max_pages=WARM_UP_PAGES)
    read_through_api(app, user_id, max_pages=WARM_UP_PAGES)
    bare_s, (bare_keys, _) = timed(lambda: read_bare(app, user_id))
    api_s, (api_keys, pages) = timed(lambda: read_through_api(app, user_id))
    return Throughput(api_s, bare_s, len(api_keys), pages, api_keys == bare_keys)


def run(
    database_url: str, changes_count: int = LARGE_CHANGES, small_changes: int = SMALL_CHANGES, reads: int = 30
) -> dict:
    with tempfile.TemporaryDirectory() as scratch:
        large = Feed("large", service_app(database_url, SECRET_KEY=SECRET_KEY), Volume(changes_count))
        small_url = small_database_url(database_url, Path(scratch))
        small = Feed("small", service_app(small_url, SECRET_KEY=SECRET_KEY), Volume(small_changes))
        try:
            for feed in (small, large):
                feed.prepare()
            read = throughput(large.app, large.user_id)
            print(f"  {read.figures()}", flush=True)
            first_pages(large, small, reads)
        finally:
            for feed in (large, small):
                with feed.app.app_context():
                    db.session.remove()
                    db.engine.dispose()
            recreate_small_schema(database_url, create=False)
    return report(database_url, large, small, read, reads)


def report(database_url: str, large: Feed, small: Feed, read: Throughput, reads: int) -> dict:
    through = read.figures()
    big, little = large.figures(), small.figures()
    first_ratio = round(big["median_ms"] / little["median_ms"], 2)
    return {
        "benchmark": "change_feed",
        "engine": engine_name(database_url),
        "page": PAGE,
        "seed_s": round(large.seed_s, 1),
        "horizon_wait_s": round(large.horizon_wait_s, 1),
        "throughput": through,
        "first_page": {"large": big, "small": little, "reads": reads, "large_over_small_median": first_ratio},
        "table": [
            {
                "measure": f"seeding {large.volume.changes:,} changes (connections, accounts, transactions)",
                "figure": f"{large.seed_s:.0f} s",
                "goal": "-",
                "met": None,
            },
            {
                "measure": "the API read the same rows as the bare SELECT, in the same order",
                "figure": f"{read.rows:,} rows in {read.pages:,} pages: {'same' if read.same_rows else 'DIFFERENT'}",
                "goal": "same",
                "met": read.same_rows,
            },
            {
                "measure": f"feed from the start through the API vs bare keyset SELECT, pages of {PAGE}",
                "figure": f"{through['api_rows_per_s']:,} vs {through['bare_rows_per_s']:,} rows/s "
                f"({through['api_over_bare']:.2f}x)",
                "goal": f">= {GOAL_RATIO}x",
                "met": through["api_over_bare"] >= GOAL_RATIO,
            },
            {
                "measure": f"first page, median / p99: {large.volume.changes:,} vs {small.volume.changes:,} changes",
                "figure": f"{big['median_ms']} / {big['p99_ms']} ms vs {little['median_ms']} / {little['p99_ms']} ms "
                f"({first_ratio:.2f}x)",
                "goal": f"<= {GOAL_FIRST_PAGE_RATIO:g}x",
                "met": first_ratio <= GOAL_FIRST_PAGE_RATIO,
            },
        ],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", help="default: a fresh SQLite file")
    parser.add_argument("--changes", type=int, default=LARGE_CHANGES)
    parser.add_argument("--small-changes", type=int, default=SMALL_CHANGES)
    parser.add_argument("--first-pages", type=int, default=30, help="timed first-page reads on each database")
    parser.add_argument("--json", type=Path, help="also write the result here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        url = args.database_url or f"sqlite:///{Path(scratch) / 'bench.db'}"
        write_json(run(url, args.changes, args.small_changes, args.first_pages), args.json)


if __name__ == "__main__":
    main()
