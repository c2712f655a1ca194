"""Sync throughput: a first sync of N transactions over HTTP from the local stand-in, measured
side by side in one run against
- the floor: only downloading and parsing the same pages (no database at all), and
- a naive per-row ORM upsert (select, then insert or update, per transaction).

    python -m bench.sync_throughput [--transactions 100000] [--rounds 3] [--database-url URL] [--json PATH]

Goal: ours at most 1.5x the floor, and at least 10x faster than the naive upsert.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import sqlalchemy as sa

from harness.processes import stand_in
from models import Transaction, User, db
from models.base import utcnow
from sync import runs
from sync.connections import BankConnectionService
from sync.runtime import pluggy_client, sync_settings
from sync.transactions import TransactionService, transaction_row

from .common import create_item, empty_tables, engine_name, service_app, timed, write_json

SINCE = "2000-01-01"  # before the stand-in's oldest row: every pass reads the whole history


def fresh_connection(item_id: str):
    empty_tables()
    user = User(email="bench@example.com")
    db.session.add(user)
    db.session.commit()
    connection, _ = BankConnectionService(db.session, pluggy_client(), sync_settings()).register(user, item_id)
    return connection


def floor(connection) -> int:
    """Download and parse every page, as the fetch does, and keep nothing."""
    client = pluggy_client()
    rows = 0
    for account in client.list_accounts(connection.item_id):
        for page in client.iter_transactions(account["id"], date_from=SINCE):
            rows += len(page)
    return rows


def ours(connection) -> int:
    service = TransactionService(db.session, pluggy_client(), sync_settings())
    run = service.fetch(connection, runs.open_run(db.session, connection, "initial"))
    return run.created


def naive(connection) -> int:
    """What a hand-written sync often does: look each row up, then insert or update it."""
    client = pluggy_client()
    service = TransactionService(db.session, client, sync_settings())
    written = 0
    for account in service.refresh_accounts(connection):
        for page in client.iter_transactions(account.pluggy_id, date_from=SINCE):
            for data in page:
                values = transaction_row(data, account.id, utcnow())
                row = db.session.scalars(
                    sa.select(Transaction).where(Transaction.pluggy_id == data["id"])
                ).one_or_none()
                if row is None:
                    db.session.add(Transaction(**values))
                else:
                    for name, value in values.items():
                        setattr(row, name, value)
                written += 1
            db.session.commit()
    return written


def run(database_url: str, transactions: int = 100_000, rounds: int = 3) -> dict:
    """The floor and ours `rounds` times each, alternating, and their medians (this machine's speed
    drifts); the naive pass, slow enough to average itself, once."""
    with stand_in() as pluggy:
        sandbox = pluggy.url
        item_id = create_item(sandbox, transactions)
        app = service_app(database_url, sandbox)
        with app.app_context():
            seconds = {"floor": [], "ours": [], "naive": []}
            rows = {}
            passes = [("floor", floor), ("ours", ours)] * rounds + [("naive", naive)]
            for name, work in passes:
                connection = fresh_connection(item_id)
                elapsed, rows[name] = timed(lambda work=work, connection=connection: work(connection))
                seconds[name].append(round(elapsed, 3))
            db.engine.dispose()
    median = {name: round(statistics.median(values), 3) for name, values in seconds.items()}
    over_floor = round(median["ours"] / median["floor"], 2)
    naive_over = round(median["naive"] / median["ours"], 1)
    return {
        "benchmark": "sync_throughput",
        "engine": engine_name(database_url),
        "transactions": rows["ours"],
        "seconds": seconds,
        "median_seconds": median,
        "ours_over_floor": over_floor,
        "naive_over_ours": naive_over,
        "naive_over_floor": round(median["naive"] / median["floor"], 1),
        "table": [
            {
                "measure": f"first sync of {rows['ours']:,} transactions, ours / floor",
                "figure": f"{over_floor} ({median['ours']:.1f} s / {median['floor']:.1f} s)",
                "goal": "<= 1.5",
                "met": over_floor <= 1.5,
            },
            {
                "measure": "first sync, naive per-row upsert / ours",
                "figure": f"{naive_over} ({median['naive']:.1f} s / {median['ours']:.1f} s)",
                "goal": ">= 10",
                "met": naive_over >= 10,
            },
        ],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transactions", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3, help="floor and ours passes each (median)")
    parser.add_argument("--database-url", help="default: a fresh SQLite file")
    parser.add_argument("--json", type=Path, help="also write the result here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        url = args.database_url or f"sqlite:///{Path(scratch) / 'bench.db'}"
        result = run(url, args.transactions, args.rounds)
    write_json(result, args.json)


if __name__ == "__main__":
    main()
