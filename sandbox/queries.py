"""GET /v2/transactions: filters, stable (date, id) order and an opaque keyset cursor; the same rows
and filters for the deprecated, page-numbered GET /transactions."""

from __future__ import annotations

import base64
import binascii
import bisect
import copy
import itertools
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import date, datetime
from urllib.parse import urlencode

from werkzeug.datastructures import MultiDict

from . import data
from .data import Json
from .errors import bad_request
from .state import World

MAX_IDS = 500
MAX_PAGE_SIZE = 500


@dataclass(frozen=True)
class TransactionQuery:
    account_id: str
    date_from: str | None = None  # yyyy-mm-dd
    date_to: str | None = None
    created_at_from: str | None = None  # in data.iso's form, so strings compare as instants
    ids: frozenset[str] | None = None
    bill_id: str | None = None  # GET /transactions only: a card's rows of that bill
    after: tuple[str, str] | None = None
    page_size: int = MAX_PAGE_SIZE
    filters: tuple[tuple[str, str], ...] = ()  # what the caller asked for, repeated in `next`

    def matches(self, row: Json) -> bool:
        if self.date_from and row["date"][:10] < self.date_from:
            return False
        if self.created_at_from and row["createdAt"] < self.created_at_from:
            return False
        if self.bill_id is not None and (row["creditCardMetadata"] or {}).get("billId") != self.bill_id:
            return False
        return self.ids is None or row["id"] in self.ids

    def is_past_the_end(self, row: Json) -> bool:
        return self.date_to is not None and row["date"][:10] > self.date_to


def parse(query: Mapping[str, str] | MultiDict, default_page_size: int) -> TransactionQuery:
    """A query's filters; ``ids`` comes comma-separated (the Node SDK), repeated (the Python SDK's
    ``ids=a&ids=b``) or both."""
    args = MultiDict(query)
    account_id = args.get("accountId")
    if not account_id:
        raise bad_request("accountId is required", "MISSING_ACCOUNT_ID")
    if args.get("createdAtFrom") and args.get("dateFrom"):
        raise bad_request("createdAtFrom cannot be combined with dateFrom", "INVALID_FILTERS")
    created_at_from = _timestamp(args, "createdAtFrom")
    return TransactionQuery(
        account_id=account_id,
        date_from=_day(args, "dateFrom"),
        date_to=_day(args, "dateTo"),
        created_at_from=data.iso(created_at_from) if created_at_from else None,
        ids=_ids(args.getlist("ids")),
        after=_decode_cursor(args.get("after")),
        page_size=_page_size(args.get("pageSize"), default_page_size),
        filters=_filters(args),
    )


# What GET /transactions calls the filters /v2/transactions names dateFrom and dateTo.
NUMBERED_PAGE_NAMES = {"from": "dateFrom", "to": "dateTo"}


def parse_numbered(query: Mapping[str, str] | MultiDict, default_page_size: int) -> TransactionQuery:
    """GET /transactions's filters, read as /v2/transactions's; with ``ids``, ``from`` and ``to``
    are discarded (OpenAPI document), and ``billId`` picks a card bill's rows."""
    args = MultiDict(query)
    translated = MultiDict()
    for name, value in args.items(multi=True):
        if name in NUMBERED_PAGE_NAMES and not args.get("ids"):
            translated.add(NUMBERED_PAGE_NAMES[name], value)
        elif name in ("accountId", "ids", "createdAtFrom", "pageSize"):
            translated.add(name, value)
    return replace(parse(translated, default_page_size), bill_id=args.get("billId") or None)


def selected_rows(world: World, query: TransactionQuery, limit: int | None = None) -> list[Json]:
    """The rows the query selects, in (date, id) order from its cursor on: every one, or the first
    ``limit`` + 1 (the one more tells that a next page exists). Not copies: hold the lock."""
    with world.lock:
        try:
            rows = world.sorted_rows(query.account_id)
        except KeyError:
            raise bad_request("account not found", "ACCOUNT_NOT_FOUND") from None
        if world.withholds_data(world.accounts[query.account_id]["itemId"]):
            return []
        start = 0 if query.after is None else bisect.bisect_right(rows, query.after, key=data.sort_key)
        selected = []
        for row in itertools.islice(rows, start, None):
            if query.is_past_the_end(row) or (limit is not None and len(selected) > limit):
                break
            if query.matches(row):
                selected.append(row)
        return selected


def page(world: World, query: TransactionQuery) -> Json:
    with world.lock:
        selected = selected_rows(world, query, query.page_size)
        results = copy.deepcopy(selected[: query.page_size])
    next_link = None
    if len(selected) > query.page_size:
        cursor = encode_cursor(data.sort_key(results[-1]))
        next_link = "?" + urlencode([("accountId", query.account_id), *query.filters, ("after", cursor)])
    return {"results": results, "next": next_link}


def encode_cursor(key: tuple[str, str]) -> str:
    # The shape of the example in Pluggy's OAS: base64 of "<date>|<id>".
    return base64.b64encode("|".join(key).encode()).decode()


def _decode_cursor(value: str | None) -> tuple[str, str] | None:
    if not value:
        return None
    try:
        day, _, row_id = base64.b64decode(value, validate=True).decode().partition("|")
    except (binascii.Error, UnicodeDecodeError):
        raise bad_request("invalid cursor", "INVALID_CURSOR") from None
    if not row_id:
        raise bad_request("invalid cursor", "INVALID_CURSOR")
    return (day, row_id)


def _day(args: dict[str, str], name: str) -> str | None:
    """yyyy-mm-dd as Pluggy documents it; a full ISO timestamp is read as its day."""
    value = args.get(name)
    if not value:
        return None
    try:
        day = date.fromisoformat(value) if len(value) == 10 else datetime.fromisoformat(value).date()
    except ValueError:
        raise bad_request(f"{name} is not a valid date", "INVALID_DATE") from None
    return day.isoformat()


def _timestamp(args: dict[str, str], name: str) -> datetime | None:
    value = args.get(name)
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise bad_request(f"{name} must be an ISO timestamp with a timezone", "INVALID_DATE")
    return moment


def _ids(values: list[str]) -> frozenset[str] | None:
    if not values:
        return None
    ids = [part.strip() for value in values for part in value.split(",") if part.strip()]
    if len(ids) > MAX_IDS:
        raise bad_request(f"ids parameter exceeds max length of {MAX_IDS}", "IDS_PARAMETER_EXCEEDS_MAX_LENGTH")
    return frozenset(ids)


def _filters(args: MultiDict) -> tuple[tuple[str, str], ...]:
    """The filters as sent, for ``next`` to repeat: a ready-to-use query string (PLUGGY.md)."""
    filters = [(name, args[name]) for name in ("dateFrom", "dateTo", "createdAtFrom", "pageSize") if args.get(name)]
    ids = ",".join(args.getlist("ids"))
    return tuple(filters + ([("ids", ids)] if ids else []))


def _page_size(value: str | None, default: int) -> int:
    if value is None:
        return default
    if not value.isdigit() or not 1 <= int(value) <= MAX_PAGE_SIZE:
        raise bad_request(f"pageSize must be between 1 and {MAX_PAGE_SIZE}", "INVALID_PAGE_SIZE")
    return int(value)
