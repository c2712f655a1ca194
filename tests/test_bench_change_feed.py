"""The change-feed benchmark's machinery on a tiny volume, so that it cannot rot: the seed writes the
feed it says (one change per connection, account and transaction, all the user's), the API's read
from the start returns every seeded change in the bare SELECT's order, and a whole run reports both
reads alike. No timing is asserted."""

from __future__ import annotations

import sqlalchemy as sa

from bench import change_feed
from bench.change_feed import Volume, read_bare, read_through_api, seed, wait_for_horizon
from bench.common import SECRET_KEY
from models import Account, Change, Connection, Transaction, db
from tests.conftest import fresh_app

TINY = Volume(changes=1_203)


def count(model, *conditions) -> int:
    return db.session.scalar(sa.select(sa.func.count()).select_from(model).where(*conditions))


def test_the_seed_writes_one_users_feed_of_the_size_asked_for(migrated_database):
    for app in fresh_app(migrated_database, SECRET_KEY=SECRET_KEY):
        with app.app_context():
            user_id = seed(TINY)
            wait_for_horizon(user_id)
            assert count(Connection) == TINY.connections == 1
            assert count(Account) == TINY.accounts == 2
            assert count(Transaction) == TINY.transactions == 1_200
            assert count(Change) == count(Change, Change.user_id == user_id) == TINY.changes
            assert count(Change, Change.kind == "transaction") == TINY.transactions
            # Written as a sync writes its pages: a batch's transactions of one account share one position.
            positions = db.session.execute(
                sa.select(Transaction.account_id, sa.func.count(sa.distinct(Change.position)))
                .join(Transaction, Transaction.pluggy_id == Change.key)
                .where(Change.kind == "transaction")
                .group_by(Transaction.account_id)
            ).all()
            assert [count for _, count in positions] == [1] * TINY.accounts

        keys, pages = read_through_api(app, user_id)
        assert keys == read_bare(app, user_id)[0]
        assert len(keys) == len(set(keys)) == TINY.changes
        assert pages == 3
        assert keys[0] == ("connection", "1")
        assert read_bare(app, user_id, max_pages=1)[1] == 1


def test_a_run_reads_the_same_rows_both_ways_and_times_both_feeds(migrated_database):
    result = change_feed.run(migrated_database, changes_count=1_203, small_changes=100, reads=2)

    assert result["throughput"]["rows"] == 1_203
    assert result["throughput"]["same_rows"] is True
    assert result["first_page"]["small"]["changes"] == 100
    assert result["first_page"]["large"]["median_ms"] > 0
    assert [row["met"] for row in result["table"]][:2] == [None, True]
