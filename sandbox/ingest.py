"""What a sync (or a control route) does to accounts and transactions, and the events it owes.

All functions run under ``World.lock`` and draw from the item's own RNG, so an item's data depends
only on the seed, its creation order and the calls made on it.
"""

from __future__ import annotations

from datetime import timedelta

from . import data, events, products
from .data import Json
from .errors import PluggyApiError
from .state import ItemRecord, World

ACCOUNT_MAKERS = {"BANK": data.new_bank_account, "CREDIT": data.new_credit_card_account}
ACCOUNT_PRODUCTS = {"BANK": "ACCOUNTS", "CREDIT": "CREDIT_CARDS"}


class Changes:
    """Rows created and updated per account during one operation, in account order."""

    def __init__(self) -> None:
        self.created: dict[str, list[str]] = {}
        self.updated: dict[str, list[str]] = {}
        self.deleted: dict[str, list[str]] = {}

    def add(self, kind: dict[str, list[str]], account_id: str, ids: list[str]) -> None:
        if ids:
            kind.setdefault(account_id, []).extend(ids)

    def payloads(self, world: World, record: ItemRecord, created_at: str, triggered_by: str) -> list[Json]:
        rng, item = record.event_rng, record.json
        out = [
            events.transactions_changed(rng, "transactions/deleted", item, aid, ids, triggered_by, world.client_id)
            for aid, ids in self.deleted.items()
        ]
        out += [
            events.transactions_created(rng, item, aid, created_at, world.link_base(), triggered_by)
            for aid in self.created
        ]
        out += [
            events.transactions_changed(rng, "transactions/updated", item, aid, ids, triggered_by, world.client_id)
            for aid, ids in self.updated.items()
        ]
        return out


def collect(world: World, record: ItemRecord, outcome: data.Outcome) -> Changes:
    """A successful execution: missing accounts arrive with history, existing ones move on."""
    now = world.now()
    wanted = ["BANK"] if outcome.execution_status == "PARTIAL_SUCCESS" else ["BANK", "CREDIT"]
    wanted = [kind for kind in wanted if world.offers(record.id, ACCOUNT_PRODUCTS[kind])]
    existing = {world.accounts[aid]["type"]: aid for aid in world.account_ids(record.id)}
    changes = Changes()
    for account_type in wanted:
        if account_type in existing:
            account = world.accounts[existing[account_type]]
            changes.add(changes.updated, account["id"], post_pending(world, account, now, older_than_days=1))
            fresh = data.fresh_rows(record.data_rng, account, _fresh_count(record, outcome), now)
        else:
            account = ACCOUNT_MAKERS[account_type](record.data_rng, record.id, now)
            world.add_account(account)
            count = data.HISTORY_PER_ACCOUNT * outcome.perf
            fresh = data.history(record.data_rng, account, count, now)
        add_rows(world, account, fresh)
        changes.add(changes.created, account["id"], [row["id"] for row in fresh])
    record.next_fresh = None  # asked for one execution only
    world.refresh_balances(world.account_ids(record.id))
    products.collect(world, record)
    return changes


def _fresh_count(record: ItemRecord, outcome: data.Outcome) -> int:
    if record.next_fresh is not None:
        return record.next_fresh
    return record.data_rng.randint(*data.NEW_PER_SYNC) * outcome.perf


def add_rows(world: World, account: Json, rows: list[Json]) -> None:
    earlier = list(world.rows[account["id"]].values())
    data.fill_running_balances(account, rows, earlier)
    data.number_within_day(rows, earlier)
    world.add_rows(rows)


def post_pending(world: World, account: Json, now, older_than_days: int | None) -> list[str]:
    """PENDING rows become POSTED in place (same id); None posts them whatever their age."""
    latest_day = None if older_than_days is None else now.date() - timedelta(days=older_than_days)
    posted = []
    for row in world.sorted_rows(account["id"]):
        if row["status"] != "PENDING":
            continue
        if latest_day is not None and row["date"][:10] >= latest_day.isoformat():
            continue
        row.update(status="POSTED", updatedAt=data.iso(now))
        posted.append(row["id"])
    return posted


def restate(world: World, record: ItemRecord, delete: int, post_all_pending: bool) -> Json:
    """The bank re-reports its latest rows: old ids deleted, new ids created; pending ones post."""
    account_ids = world.account_ids(record.id)
    if not account_ids:
        raise PluggyApiError(409, "item has no accounts yet", "ITEM_HAS_NO_ACCOUNTS")
    now = world.now()
    changes = Changes()
    first = world.accounts[account_ids[0]]
    posted_rows = [r for r in world.rows[first["id"]].values() if r["status"] == "POSTED"]
    latest = sorted(posted_rows, key=data.sort_key, reverse=True)[:delete]
    replacements = [data.restated(record.data_rng, row, now) for row in latest]
    for row in latest:
        world.delete_row(row)
    world.add_rows(replacements)
    changes.add(changes.deleted, first["id"], [row["id"] for row in latest])
    changes.add(changes.created, first["id"], [row["id"] for row in replacements])
    if post_all_pending:
        for account_id in account_ids:
            account = world.accounts[account_id]
            changes.add(changes.updated, account_id, post_pending(world, account, now, None))
    world.refresh_balances(account_ids)
    world.publish(record, changes.payloads(world, record, data.iso(now), "SYNC"))
    return {
        "deleted": _flat(changes.deleted),
        "created": _flat(changes.created),
        "updated": _flat(changes.updated),
    }


def add_transactions(world: World, record: ItemRecord, count: int, account_id: str | None) -> Json:
    account_ids = world.account_ids(record.id)
    if not account_ids:
        raise PluggyApiError(409, "item has no accounts yet", "ITEM_HAS_NO_ACCOUNTS")
    target = account_id or account_ids[0]
    if target not in account_ids:
        raise PluggyApiError(404, "account not found", "ACCOUNT_NOT_FOUND")
    now = world.now()
    account = world.accounts[target]
    rows = data.fresh_rows(record.data_rng, account, count, now)
    add_rows(world, account, rows)
    world.refresh_balances([target])
    changes = Changes()
    changes.add(changes.created, target, [row["id"] for row in rows])
    world.publish(record, changes.payloads(world, record, data.iso(now), "SYNC"))
    return {"created": [row["id"] for row in rows]}


def _flat(by_account: dict[str, list[str]]) -> list[str]:
    return [tid for ids in by_account.values() for tid in ids]
