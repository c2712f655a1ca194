"""The change feed's answer, the same for a user's feed (/api/banking/changes/) and the app's
(/api/app/changes/): sync/changes.py reads one snapshot of the database, this renders it."""

from __future__ import annotations

from models import ChangeKind, db
from models.database import read_snapshot
from sync import changes, listing
from web.errors import ApiError

from . import paging, schemas
from .serializers import change_json
from .validation import parse_query


def cursor_expired() -> ApiError:
    return ApiError(
        410,
        "cursor_expired",
        "The cursor is older than the changes kept: start again without it and re-read everything.",
    )


def changes_page(scope: dict, *, user_id: int | None = None, personal: bool) -> dict:
    """`{"added", "modified", "removed", "next_cursor", "has_more"}` after the request's cursor."""
    query = parse_query(schemas.ChangesQuery)
    after = paging.feed_position(query.cursor, scope)
    body: dict = {"added": [], "modified": [], "removed": []}
    with read_snapshot(db.engine) as session:
        try:
            page = changes.read_changes(session, after, query.limit, user_id=user_id)
        except changes.CursorExpired:
            raise cursor_expired() from None
        connections = [entry.found for entry in page.entries if entry.kind == ChangeKind.CONNECTION and entry.found]
        open_runs = listing.open_runs(session, connections)
        for entry in page.entries:
            body[entry.state].append(change_json(entry, open_runs, personal=personal))
    body.update(next_cursor=paging.feed_cursor(page.next, scope), has_more=page.has_more)
    return body
