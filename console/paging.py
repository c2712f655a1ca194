"""Keyset pages of the console's lists: where a page starts (`?after=`, a signed cursor bound to the
list's filters, web/cursors.py) and the link to the next one."""

from __future__ import annotations

from urllib.parse import urlencode

from flask import request, url_for

from sync.listing import Key, Order, Window
from web.cursors import decode, encode

from .blueprint import bp

PAGE_SIZE = 50


def window(order: Order, scope: dict) -> Window:
    """The page asked for: after the cursor given, or the first."""
    cursor = request.args.get("after")
    return Window(PAGE_SIZE, after=decode(order, cursor, scope) if cursor else None)


def next_page_url(view: str, order: Order, next_key: Key | None, scope: dict, **filters) -> str | None:
    if next_key is None:
        return None
    return list_url(view, **filters, after=encode(order, next_key, scope))


@bp.app_template_global()
def list_url(view: str, **query) -> str:
    """A list's URL with its non-empty filters (built by hand: url_for's own first parameter is
    named `endpoint`, the name of a filter of the deliveries)."""
    given = {name: value for name, value in query.items() if value not in (None, "")}
    return url_for(view) + ("?" + urlencode(given) if given else "")


@bp.app_template_global()
def first_page_url() -> str | None:
    """Back to the first page of the list shown, with the same filters; None on the first page."""
    if "after" not in request.args:
        return None
    return list_url(request.endpoint or "", **{name: value for name, value in request.args.items() if name != "after"})
