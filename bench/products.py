"""Products: an item update re-reading bills, investments and their movements, identity and loans,
with a large product history stored against none, measured in one run.

    python -m bench.products [--movements 100000] [--bills 1000] [--repetitions 5] [--explain]
                             [--database-url URL] [--json PATH]

Method. Two passes, each on emptied tables and with an item of its own in the local stand-in
(`sandbox/`, in a process of its own, its connector offering every product), so that both start
from the same state:
1. The item is registered the way the service does (BankConnectionService.register, which queues
   the first sync) and an in-process Worker drains the queue: accounts, transactions, the card's
   bills, the investments and their movements, identity and loans are stored.
2. Only in the second pass, the history: the stand-in is told the institution reports an older
   history (`/sandbox/items/<id>/products/history`): N movements spread over the item's investments
   (a purchase and its redemption a day, so no position moves) and M older monthly bills of its
   card, made by the stand-in's own generator. The same payloads are written straight into
   `investment_transactions` and `bills` as the service stores them (its own `movement_row` and
   `bill_row`; each movement seen by its investment's last full read), by COPY on PostgreSQL and
   executemany on SQLite; PostgreSQL's statistics are then refreshed (ANALYZE). Pluggy holds what
   the database holds: a service that reads the whole history again pays for it, as it would
   against Pluggy.
3. Each repetition is a real update: a purchase today in the item's first investment
   (`investments/add_movement`: a movement, and the position it moves), each loan's next
   installment paid (`loans/pay`), then an execution by Pluggy's scheduler (`auto_sync`, one new
   transaction per account) that moves the item's `lastUpdatedAt`; an `item/updated` webhook is
   posted to the service's receiver, and the worker drains the queue. Only that drain is measured:
   wall time, Pluggy HTTP calls (a response hook on the client's requests session, also counted per
   route) and SQL statements (the engine's `before_cursor_execute`; an executemany counts once).
   Each update must end in a successful run that stored the new movement.
The figures are the medians of the repetitions; the ratios are with-history / empty.

With `--explain`, or when a ratio misses the goal, one more update runs with the plan of every
distinct statement touching `investment_transactions` or `bills` taken just before it runs
(incremental.PlanRecorder); a plan that scans the whole table is flagged.

What bounds the figures: an investment whose position moved has its movements read again in full
(sync/investments.py: Pluggy's page-numbered `/investments/{id}/transactions` takes no date filter),
so the moved investment's share of the history comes back, 500 a page, is upserted again and has
`last_seen_at` rewritten row by row; and every fetch lists every bill of each card (`/bills?accountId=`
takes no filter, and no page size either: the stand-in answers 20 a page) and upserts them all. Both
grow with the history: the goal cannot be met while the service reads it all again. Pluggy's
cursor-paged `/v2/investments/{id}/transactions` takes `dateFrom` and `createdAtFrom`: reading only
what is new since the last full read (keeping the weekly full read for what must be tombstoned)
would make the movements' part follow the change.

Goal: with 100,000 investment movements and 1,000 bills stored (and held by Pluggy), an update
costs within 1.5x of the same update with none, in time, Pluggy calls and SQL statements.
"""

from __future__ import annotations

import argparse
import re
import statistics
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import requests
import sqlalchemy as sa

from harness.processes import stand_in
from models import Account, Bill, Connection, Investment, InvestmentTransaction, SyncRun, db
from models.base import utcnow
from sync.bills import bill_row
from sync.investments import movement_row

from .common import (
    TIMEOUT,
    WEBHOOK_SECRET,
    create_item,
    engine_name,
    service_app,
    timed,
    write_json,
)
from .incremental import (
    MEASURES,
    Cost,
    PlanRecorder,
    UpdateBench,
    figure,
    ratios,
    run_item_update,
    write_rows,
)

DEFAULT_MOVEMENTS = 100_000
DEFAULT_BILLS = 1_000
REPETITIONS = 5
GOAL_RATIO = 1.5
ITEM_TRANSACTIONS = 120  # the stand-in's smallest item
NEW_PER_ACCOUNT = 1  # transactions each update brings: the products are what is measured
PRODUCTS = {"CREDIT_CARDS", "INVESTMENTS", "INVESTMENTS_TRANSACTIONS", "IDENTITY", "LOANS"}
MOVEMENTS_ROUTE = "/investments/{id}/transactions"
TOUCHES_HISTORY = re.compile(r"\b(investment_transactions|bills)\b", re.IGNORECASE)
SCANS_HISTORY = {
    "postgresql": re.compile(r"Seq Scan on (investment_transactions|bills)\b"),
    "sqlite": re.compile(r"^SCAN (investment_transactions|bills)\b"),
}


@dataclass(frozen=True)
class History:
    movements: int = 0
    bills: int = 0


class ProductsBench(UpdateBench):
    """The incremental benchmark's service and meters, with product updates and history."""

    def measure_pass(self, history: History, repetitions: int) -> tuple[dict, Connection]:
        """A fresh item first-synced, its older history stored (if any), then `repetitions` updates."""
        connection = self.connect(create_item(self.sandbox, ITEM_TRANSACTIONS))
        loading = 0.0
        if history.movements or history.bills:
            loading, _ = timed(lambda: store_history(self.sandbox, connection, history))
        costs = [self.update(connection) for _ in range(repetitions)]
        return summary(costs, history, loading), connection

    def connect(self, item_id: str) -> Connection:
        connection = super().connect(item_id)
        missing = PRODUCTS - set(connection.products or [])
        if missing:
            raise RuntimeError(f"the stand-in's item does not offer {sorted(missing)}")
        return connection

    def update(self, connection: Connection) -> Cost:
        """New product data and an execution at the stand-in, an item/updated; the worker's
        handling is measured."""
        movement = self.control(f"items/{connection.item_id}/investments/add_movement")
        self.control(f"items/{connection.item_id}/loans/pay")
        run_item_update(self.sandbox, connection.item_id, NEW_PER_ACCOUNT)
        self.post_item_updated(connection.item_id)
        with self.meters.measuring() as cost:
            self.drain()
        check_update(connection, movement["id"])
        return cost

    def explain_update(self, connection: Connection) -> list[dict]:
        recorder = PlanRecorder(db.engine, TOUCHES_HISTORY, SCANS_HISTORY)
        with recorder.recording():
            self.update(connection)
        return recorder.report()


def check_update(connection: Connection, movement_id: str) -> None:
    """A successful run that stored the new movement, or the bench measured no real update."""
    run = db.session.scalars(
        sa.select(SyncRun).where(SyncRun.connection_id == connection.id).order_by(SyncRun.id.desc()).limit(1)
    ).one()
    stored = db.session.scalar(
        sa.select(sa.func.count())
        .select_from(InvestmentTransaction)
        .where(InvestmentTransaction.pluggy_id == movement_id, InvestmentTransaction.deleted_at.is_(None))
    )
    if run.status != "success" or not stored:
        raise RuntimeError(f"the update did not store the new movement: run {run.id} {run.status}, error {run.error!r}")


# The stored history ------------------------------------------------------------------------


def store_history(sandbox: str, connection: Connection, history: History) -> None:
    """The stand-in's older history, and the same rows in the database as the service stores them."""
    response = requests.post(
        f"{sandbox}/sandbox/items/{connection.item_id}/products/history",
        json={"investmentTransactions": history.movements, "bills": history.bills},
        timeout=TIMEOUT * 10,
    )
    response.raise_for_status()
    added = response.json()
    movements = movement_rows(connection, added["investmentTransactions"])
    bills = bill_rows(connection, added["bills"])
    db.session.commit()  # the rows go in through a connection of their own
    write_rows(InvestmentTransaction.__table__, movements)
    write_rows(Bill.__table__, bills)


def movement_rows(connection: Connection, payloads: list[dict]) -> Iterator[dict]:
    """Each movement under its investment, seen by the investment's last full read."""
    investments = {
        pluggy_id: (investment_id, read_at)
        for investment_id, pluggy_id, read_at in db.session.execute(
            sa.select(Investment.id, Investment.pluggy_id, Investment.movements_read_at).where(
                Investment.connection_id == connection.id
            )
        )
    }
    now = utcnow()
    for data in payloads:
        investment_id, read_at = investments[data["investmentId"]]
        row = movement_row(data, investment_id, connection.id, now)
        if row is not None:
            yield {**row, "last_seen_at": read_at}


def bill_rows(connection: Connection, payloads: list[dict]) -> Iterator[dict]:
    card = db.session.scalars(
        sa.select(Account).where(Account.connection_id == connection.id, Account.type == "CREDIT")
    ).first()
    if card is None:
        if payloads:
            raise RuntimeError("the item has no card for its bills")
        return
    now = utcnow()
    for data in payloads:
        if (row := bill_row(data, card, now)) is not None:
            yield row


# Results -----------------------------------------------------------------------------------


def summary(costs: list[Cost], history: History, loading_seconds: float) -> dict:
    return {
        "movements": history.movements,
        "bills": history.bills,
        "history_load_seconds": round(loading_seconds, 1),
        **{key: round(statistics.median(getattr(cost, key) for cost in costs), 4) for key, _ in MEASURES},
        "movement_pages": statistics.median(cost.calls_by_route.get(MOVEMENTS_ROUTE, 0) for cost in costs),
        "each": [asdict(cost) for cost in costs],
    }


def table(empty: dict, loaded: dict, ratio: dict) -> list[dict]:
    stored = f"{loaded['movements']:,} movements and {loaded['bills']:,} bills stored vs none"
    rows = [
        {
            "measure": f"{label}: {stored}",
            "figure": f"{figure(key, loaded[key])} vs {figure(key, empty[key])} ({ratio[key]:.2f}x)",
            "goal": f"<= {GOAL_RATIO:g}x",
            "met": ratio[key] <= GOAL_RATIO,
        }
        for key, label in MEASURES
    ]
    rows.append(
        {
            "measure": f"of which pages of the moved investment's movements: {stored}",
            "figure": f"{loaded['movement_pages']:g} vs {empty['movement_pages']:g}",
            "goal": "-",
            "met": None,
        }
    )
    return rows


def run(
    database_url: str,
    movements: int = DEFAULT_MOVEMENTS,
    bills: int = DEFAULT_BILLS,
    repetitions: int = REPETITIONS,
    explain: bool = False,
) -> dict:
    with stand_in() as pluggy:
        app = service_app(database_url, pluggy.url, PLUGGY_WEBHOOK_SECRETS=(WEBHOOK_SECRET,))
        with app.app_context():
            bench = ProductsBench(app, pluggy.url)
            empty, _ = bench.measure_pass(History(), repetitions)
            loaded, connection = bench.measure_pass(History(movements, bills), repetitions)
            ratio = ratios(empty, loaded)
            missed = any(value > GOAL_RATIO for value in ratio.values())
            plans = bench.explain_update(connection) if explain or missed else None
            db.engine.dispose()
    result = {
        "benchmark": "products",
        "engine": engine_name(database_url),
        "movements": movements,
        "bills": bills,
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
    parser.add_argument("--movements", type=int, default=DEFAULT_MOVEMENTS, help="investment movements stored")
    parser.add_argument("--bills", type=int, default=DEFAULT_BILLS, help="bills stored")
    parser.add_argument(
        "--repetitions", type=int, default=REPETITIONS, help="updates measured per pass (the median is reported)"
    )
    parser.add_argument(
        "--explain", action="store_true", help="show the plans of the statements touching the history even when met"
    )
    parser.add_argument("--database-url", help="default: a fresh SQLite file")
    parser.add_argument("--json", type=Path, help="also write the result here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        url = args.database_url or f"sqlite:///{Path(scratch) / 'bench.db'}"
        result = run(url, args.movements, args.bills, args.repetitions, args.explain)
    write_json(result, args.json)


if __name__ == "__main__":
    main()
