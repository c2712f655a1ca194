"""The products benchmark's machinery on a tiny volume, so that it cannot rot: the older history goes
into the stand-in and into the tables alike (an update re-reads it and tombstones nothing), and a
measured update stores its new movement and counts what it sent. No timing is asserted."""

from __future__ import annotations

import sqlalchemy as sa

from bench.common import WEBHOOK_SECRET, create_item, service_app
from bench.products import (
    ITEM_TRANSACTIONS,
    MOVEMENTS_ROUTE,
    History,
    ProductsBench,
    ratios,
    store_history,
    summary,
    table,
)
from harness.processes import stand_in
from models import Bill, InvestmentTransaction, db

MOVEMENTS, BILLS = 41, 6


def count(model, *conditions) -> int:
    return db.session.scalar(sa.select(sa.func.count()).select_from(model).where(*conditions))


def test_the_history_is_stored_as_the_stand_in_holds_it_and_an_update_is_measured(migrated_database):
    with stand_in() as pluggy:
        app = service_app(migrated_database, pluggy.url, PLUGGY_WEBHOOK_SECRETS=(WEBHOOK_SECRET,))
        with app.app_context():
            bench = ProductsBench(app, pluggy.url)
            connection = bench.connect(create_item(pluggy.url, ITEM_TRANSACTIONS))
            movements, bills = count(InvestmentTransaction), count(Bill)
            assert movements > 0 and bills > 0  # the first sync read the products

            store_history(pluggy.url, connection, History(MOVEMENTS, BILLS))
            assert count(InvestmentTransaction) == movements + MOVEMENTS
            assert count(Bill) == bills + BILLS

            cost = bench.update(connection)  # fails unless the run succeeded with the new movement
            live = InvestmentTransaction.deleted_at.is_(None)
            assert count(InvestmentTransaction, live) == count(InvestmentTransaction) == movements + MOVEMENTS + 1
            assert count(Bill) >= bills + BILLS
            assert cost.calls_by_route[MOVEMENTS_ROUTE] == 1 and cost.calls_by_route["/bills"] >= 1
            assert cost.pluggy_calls == sum(cost.calls_by_route.values())
            assert cost.statements > 0 and cost.seconds > 0
            db.engine.dispose()

    figures = summary([cost], History(MOVEMENTS, BILLS), 0.0)
    rows = table(figures, figures, ratios(figures, figures))
    assert [row["met"] for row in rows] == [True, True, True, None]
    assert rows[0]["measure"].endswith(f"{MOVEMENTS} movements and {BILLS} bills stored vs none")
