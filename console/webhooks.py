"""The webhooks pages: Pluggy's webhooks as they came in (the inbox, one event's page) and the
outbound deliveries to the app's endpoints, with a manual retry of a failed or dead one."""

from __future__ import annotations

from enum import StrEnum
from typing import TypeVar

from flask import abort, flash, g, redirect, render_template, request, url_for

from models import DeliveryStatus, EventStatus, db
from sync.operations import webhooks
from sync.outbound.endpoints import DeliveryNotRetryable

from .blueprint import bp
from .operators import log_action
from .paging import list_url, next_page_url, window

E = TypeVar("E", bound=StrEnum)


@bp.app_template_global()
def connection_url(connection_id: int | None) -> str | None:
    """The console page of a connection; None when the row names none (an unknown item)."""
    if connection_id is None:
        return None
    return url_for("console.connection", connection_id=connection_id)


def choice(name: str, vocabulary: type[E]) -> E | None:
    """A filter that must be one of a status vocabulary (empty: no filter)."""
    value = request.args.get(name, "")
    if not value:
        return None
    try:
        return vocabulary(value)
    except ValueError:
        abort(400, f"Unknown {name} {value[:40]!r}: one of {', '.join(vocabulary)}.")


def text(name: str) -> str | None:
    return request.args.get(name, "").strip() or None


@bp.get("/webhooks", endpoint="webhooks")
def webhooks_inbox():
    filters = webhooks.InboxFilter(status=choice("status", EventStatus), event=text("event"), item_id=text("item"))
    if (filters.event and not webhooks.plausible_event_name(filters.event)) or (
        filters.item_id and not webhooks.plausible_item_id(filters.item_id)
    ):
        page = webhooks.InboxPage([], None)  # no stored event has such a name or item id
    else:
        page = webhooks.inbox_page(db.session, filters, window(webhooks.WEBHOOK_EVENTS, filters.scope()))
    return render_template(
        "console/webhooks.html",
        page=page,
        filters=filters,
        statuses=list(EventStatus),
        next_url=next_page_url(
            "console.webhooks",
            webhooks.WEBHOOK_EVENTS,
            page.next_key,
            filters.scope(),
            status=filters.status,
            event=filters.event,
            item=filters.item_id,
        ),
    )


@bp.get("/webhooks/<id:event_id>")
def webhook_event(event_id: int):
    record = webhooks.event_record(db.session, event_id)
    if record is None:
        abort(404, "No such webhook event.")
    return render_template("console/webhook_event.html", record=record)


@bp.get("/deliveries")
def deliveries():
    filters = webhooks.DeliveryFilter(status=choice("status", DeliveryStatus), endpoint_id=endpoint_filter())
    page = webhooks.deliveries_page(db.session, filters, window(webhooks.DELIVERIES, filters.scope()))
    return render_template(
        "console/deliveries.html",
        page=page,
        filters=filters,
        statuses=list(DeliveryStatus),
        next_url=next_page_url(
            "console.deliveries",
            webhooks.DELIVERIES,
            page.next_key,
            filters.scope(),
            status=filters.status,
            endpoint=filters.endpoint_id,
        ),
    )


def endpoint_filter() -> int | None:
    value = request.args.get("endpoint", "").strip()
    if not value:
        return None
    if not value.isascii() or not value.isdigit() or len(value) > 9:
        abort(400, f"The endpoint filter is an endpoint's id (a number), not {value[:20]!r}.")
    return int(value)


@bp.post("/deliveries/<id:delivery_id>/retry")
def retry_delivery(delivery_id: int):
    try:
        webhooks.retry(db.session, delivery_id)
    except webhooks.DeliveryNotFound:
        abort(404, "No such delivery.")
    except DeliveryNotRetryable as refused:
        flash(f"Delivery {delivery_id} is {refused.status}: only a failed or dead delivery is retried.", "error")
    else:
        log_action(g.operator, "retry_delivery", delivery_id=delivery_id)
        flash(f"Delivery {delivery_id} is queued for another attempt.")
    return redirect(back_to_deliveries())


def back_to_deliveries() -> str:
    """The list the form was on, with its filters (read back as filters, so nothing else rides along)."""
    status = request.form.get("status", "")
    endpoint = request.form.get("endpoint", "")
    return list_url(
        "console.deliveries",
        status=status if status in set(DeliveryStatus) else None,
        endpoint=endpoint if endpoint.isascii() and endpoint.isdigit() and len(endpoint) <= 9 else None,
    )
