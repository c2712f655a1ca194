"""Paging a list: numbered pages (`page`, OFFSET, with the total) or opaque cursors (`cursor`, keyset).

A cursor is the last row's sort key in the list's order (sync/listing.py `Order`), together with
what the list was asked for (its owner's ids and its filters), signed with SECRET_KEY under a salt
per list: a client cannot forge a position, carry one list's cursor to another list, to another
connection, or to the same list with other filters; each of those is 400 `invalid_cursor`. Like API
tokens, a cursor signed with one of SECRET_KEY_FALLBACKS is still accepted.
"""

from __future__ import annotations

from typing import Any

from flask import current_app
from itsdangerous import BadData, URLSafeSerializer

from sync.changes import START, Position
from sync.listing import Order, Slice, Window
from sync.tokens import accepted_keys
from web.cursors import decode, encode, invalid_cursor
from web.errors import ApiError

from .schemas import PageQuery

FEED_SALT = "pluggy-sync.changes"
NOT_FILTERS = {"page", "page_size", "cursor", "limit"}


def scope_of(query: Any, *owner_ids: int) -> dict:
    """What a cursor is bound to: the ids the list belongs to and the query's filters."""
    return {"of": list(owner_ids), **query.model_dump(mode="json", exclude=NOT_FILTERS)}


def page_window(query: PageQuery, order: Order, scope: dict) -> Window:
    """A list with numbered pages: `page` as before; `cursor` continues after a row (empty: from
    the start) and is not counted."""
    if query.cursor is not None and "page" in query.model_fields_set:
        raise ApiError(400, "invalid_request", "Send either page or cursor, not both.")
    if query.cursor is None:
        return Window(query.page_size, page=query.page)
    return Window(query.page_size, after=decode(order, query.cursor, scope) if query.cursor else None)


def cursor_window(cursor: str | None, size: int | None, order: Order, scope: dict) -> Window:
    """A list paged by cursor only (`size` None: the whole list)."""
    return Window(size, after=decode(order, cursor, scope) if cursor else None)


def next_cursor(found: Slice, order: Order, scope: dict) -> str | None:
    return None if found.next_key is None else encode(order, found.next_key, scope)


def page_json(name: str, rows: list, query: PageQuery, found: Slice, order: Order, scope: dict) -> dict:
    """A page's answer: its rows, `page`/`page_size`/`total` for a numbered page (just `page_size`
    for a cursor's), and `next_cursor` (null on the last page)."""
    body: dict[str, Any] = {name: rows}
    if found.total is not None:
        body.update(page=query.page, page_size=query.page_size, total=found.total)
    else:
        body["page_size"] = query.page_size
    body["next_cursor"] = next_cursor(found, order, scope)
    return body


def feed_position(cursor: str | None, scope: dict) -> Position:
    """Where a change-feed cursor continues (no cursor: from the start). Bound to its feed (one
    user's or the app's) like a list's cursor to its list."""
    if not cursor:
        return START
    try:
        payload = URLSafeSerializer(accepted_keys(current_app.config), salt=FEED_SALT).loads(cursor)
    except BadData:
        raise invalid_cursor() from None
    if not isinstance(payload, dict) or payload.get("s") != scope:
        raise invalid_cursor()
    position = payload.get("p")
    if not (isinstance(position, list) and len(position) == 2 and all(type(n) is int and n >= 0 for n in position)):
        raise invalid_cursor()
    return Position(*position)


def feed_cursor(position: Position, scope: dict) -> str:
    return URLSafeSerializer(current_app.config["SECRET_KEY"], salt=FEED_SALT).dumps(
        {"p": [position.position, position.id], "s": scope}
    )
