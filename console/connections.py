"""The connections: every user's, filtered and searched, and one connection's record."""

from __future__ import annotations

from flask import abort, g, render_template, request

from models import db
from sync.item_state import SyncStatus
from sync.operations.connections import FilterError, connection_filter, list_connections, list_order, read_connection

from .blueprint import bp
from .operators import log_action
from .paging import next_page_url, window


@bp.get("/connections")
def connections():
    try:
        filters = connection_filter(request.args)
    except FilterError as error:
        abort(400, str(error))
    order = list_order(filters)
    lines, next_key = list_connections(db.session, filters, window(order, filters.query))
    return render_template(
        "console/connections.html",
        lines=lines,
        filters=filters,
        statuses=list(SyncStatus),
        next_url=next_page_url("console.connections", order, next_key, filters.query, **filters.query),
    )


@bp.get("/connections/<id:connection_id>")
def connection(connection_id: int):
    record = read_connection(db.session, connection_id)
    if record is None:
        abort(404, "No connection has this id.")
    reveal = request.args.get("reveal") == "identity" and record.identity is not None
    if reveal:
        log_action(g.operator, "reveal_identity", connection_id=connection_id)
    return render_template("console/connection.html", record=record, reveal=reveal)


@bp.app_template_filter("mask_number")
def mask_number(number: str | None) -> str:
    """•••4321: an account number's last four digits, enough to tell the user's accounts apart."""
    if not number:
        return ""
    return f"•••{number[-4:]}" if len(number) > 4 else "•••"
