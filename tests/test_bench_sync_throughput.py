"""The peers benchmark's machinery on a tiny item, so that it cannot rot: every pass (the floor, ours,
the seed's per-row style, the per-page variant) handles the item's every transaction and the ones
that store leave exactly those in the database; a pass launched in its own process reports its
memory and its rows; pluggy-extract's CLI, pointed at the stand-in, lands the same transactions in
its files. On SQLite and PostgreSQL alike. No timing is asserted."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bench import sync_throughput as bench
from bench.common import create_item, service_app
from harness.processes import stand_in
from models import db

TINY = 360  # transactions: a page of 500 at most per account, and more than one page on none


@pytest.fixture(scope="module")
def item() -> Iterator[tuple[str, str]]:
    """The stand-in's URL and an item of TINY transactions on it."""
    with stand_in() as pluggy:
        yield pluggy.url, create_item(pluggy.url, TINY)


@pytest.fixture
def bench_app(migrated_database: str, item):
    sandbox, _ = item
    app = service_app(migrated_database, sandbox)
    with app.app_context():
        yield app
        db.session.close()
        db.engine.dispose()


def served(item_id: str) -> int:
    bench.register(item_id)
    return bench.floor(bench.connection_of(item_id))


@pytest.mark.parametrize("name", sorted(bench.STORING))
def test_every_storing_pass_stores_the_items_transactions(bench_app, item, name):
    _, item_id = item
    expected = served(item_id)
    assert expected > 0

    bench.register(item_id)
    handled = bench.PASSES[name](bench.connection_of(item_id))

    assert handled == expected
    assert bench.stored_rows() == expected


def test_a_pass_in_its_own_process_reports_its_memory_and_rows(bench_app, item, migrated_database, tmp_path: Path):
    sandbox, item_id = item
    expected = served(item_id)

    measured = bench.database_pass("ours", migrated_database, sandbox, item_id, tmp_path)

    assert measured["rows"] == measured["stored"] == expected
    assert measured["peak_rss_mb"] > 0 and measured["process_seconds"] >= measured["seconds"] > 0


def test_pluggy_extracts_files_hold_the_items_transactions(bench_app, item, tmp_path: Path):
    sandbox, item_id = item
    expected = served(item_id)

    measured = bench.extract_pass(sandbox, item_id, tmp_path)

    assert measured["rows"] == measured["stored"] == expected
    assert measured["peak_rss_mb"] > 0 and measured["start_up_seconds"] > 0


def test_the_rows_row_is_met_only_when_every_pass_holds_the_same_transactions():
    summaries = {name: {"rows": 5, "stored": 5} for name in (*bench.PASSES, "pluggy_extract")}
    assert bench.rows_row(summaries)["met"] is True
    summaries["pluggy_extract"]["stored"] = 4
    assert bench.rows_row(summaries)["met"] is False
