"""The console's webhooks pages: the inbox and an event's page, the outbound deliveries and a
manual retry of one; filters, keyset pages, and no secret on any of them."""

from __future__ import annotations

import logging
import re
from datetime import timedelta

import pytest
import sqlalchemy as sa
from conftest import OPERATOR_PASSWORD, TEST_SECRETS, Operator
from flask import current_app

from console.paging import PAGE_SIZE
from models import (
    Connection,
    DeliveryStatus,
    EndpointStatus,
    EventStatus,
    Job,
    OutboundEvent,
    SyncRun,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEvent,
    db,
)
from models.base import utcnow
from observability.logs import FIELDS
from sync.operations.redaction import redacted, redacted_headers
from sync.operations.webhooks import shown_url
from sync.outbound.signing import new_secret, seal
from sync.scheduling import JobKind
from sync.users import create_user

ENDPOINT_SECRET = new_secret()
PREVIOUS_SECRET = new_secret()
URL_TOKEN = "app-token-in-the-query-0123456789"
TEST_WEBHOOK_SECRET = TEST_SECRETS["PLUGGY_WEBHOOK_SECRETS"][0]


def add_event(n: int, *, status=EventStatus.PROCESSED, event="item/updated", item_id="item-a", **extra) -> WebhookEvent:
    values = {
        "payload": {"event": event, "eventId": f"evt-{n}", "itemId": item_id},
        "headers": {"Content-Type": "application/json"},
        "received_at": utcnow() - timedelta(minutes=n),
        **extra,
    }
    row = WebhookEvent(event_id=f"evt-{n}", event=event, item_id=item_id, status=status, **values)
    db.session.add(row)
    return row


def ids_in(html: str, table: str) -> list[int]:
    body = html.split(f'<table id="{table}">', 1)[1].split("</table>", 1)[0]
    # Each row's first cell: its id.
    return [int(n) for n in re.findall(r'<tr>\s*<td class="number">(?:<a href="[^"]+">)?(\d+)', body)]


def next_link(html: str) -> str | None:
    match = re.search(r'<a href="([^"]+)" rel="next">', html)
    return match.group(1).replace("&amp;", "&") if match else None


def every_page(operator: Operator, path: str, table: str) -> list[int]:
    seen: list[int] = []
    while path:
        page = operator.get(path)
        assert page.status_code == 200, page.text
        seen += ids_in(page.text, table)
        path = next_link(page.text)
    return seen


# The inbox ----------------------------------------------------------------------------------------


def test_the_inbox_lists_events_newest_first_with_their_outcome(console_app, operator):
    with console_app.app_context():
        add_event(1, status=EventStatus.PENDING)
        add_event(2, status=EventStatus.FAILED, attempts=3, last_error="the fetch failed: " + "x" * 300)
        db.session.commit()
    page = operator.get("/console/webhooks")
    assert page.status_code == 200
    assert '<table id="webhook-events">' in page.text
    assert ids_in(page.text, "webhook-events") == [2, 1]
    assert "failed" in page.text and "3 attempts" in page.text
    assert "x" * 300 not in page.text and "the fetch failed" in page.text  # shortened
    assert 'href="/console/webhooks/2"' in page.text
    assert "Webhooks" in page.text and 'href="/console/deliveries"' in page.text  # in the navigation


def test_the_inbox_filters_by_status_event_and_item(console_app, operator):
    with console_app.app_context():
        add_event(1, status=EventStatus.PENDING, item_id="item-a")
        add_event(2, status=EventStatus.PROCESSED, event="item/created", item_id="item-b")
        add_event(3, status=EventStatus.FAILED, event="item/error", item_id="item-a")
        add_event(4, status=EventStatus.PROCESSED, item_id=None, event="connector/status_updated")
        db.session.commit()
    listed = lambda query: ids_in(operator.get("/console/webhooks?" + query).text, "webhook-events")  # noqa: E731
    assert listed("status=processed") == [4, 2]
    assert listed("event=item/error") == [3]
    assert listed("item=item-a") == [3, 1]
    assert listed("item=item-a&status=pending") == [1]
    assert listed("item=item") == []  # exact, not a prefix
    assert listed("item=" + "x" * 65) == [] and listed("item=a%00b") == []  # no stored id is like these
    assert listed("status=") == [4, 3, 2, 1]
    refused = operator.get("/console/webhooks?status=lost")
    assert refused.status_code == 400 and "Unknown status" in refused.text


def test_the_inbox_pages_by_keyset_without_repeating_or_missing_a_row(console_app, operator):
    total = PAGE_SIZE * 2 + 7
    with console_app.app_context():
        for n in range(total):
            add_event(n, status=EventStatus.PROCESSED if n % 3 else EventStatus.FAILED)
        db.session.commit()
        failed = sorted(db.session.scalars(sa.select(WebhookEvent.id).where(WebhookEvent.status == "failed")))
    seen = every_page(operator, "/console/webhooks", "webhook-events")
    assert seen == list(range(total, 0, -1))
    assert every_page(operator, "/console/webhooks?status=failed", "webhook-events") == failed[::-1]


def test_an_inbox_cursor_works_only_with_the_filters_it_was_given_for(console_app, operator):
    with console_app.app_context():
        for n in range(PAGE_SIZE + 5):
            add_event(n)
        db.session.commit()
    link = next_link(operator.get("/console/webhooks?status=processed").text)
    assert link and "status=processed" in link
    cursor = re.search(r"after=([^&]+)", link).group(1)
    assert operator.get(link).status_code == 200
    for other in ("status=failed&", "", "status=processed&item=item-a&"):
        refused = operator.get(f"/console/webhooks?{other}after={cursor}")
        assert refused.status_code == 400 and "cursor" in refused.text
    assert operator.get("/console/webhooks?after=forged").status_code == 400
    # A deliveries cursor is not an inbox cursor.
    assert operator.get(f"/console/deliveries?status=processed&after={cursor}").status_code == 400


def test_items_and_runs_link_to_the_connection_page(console_app, operator):
    with console_app.app_context():
        connection_id, run_id = seed_connection_with_run("item-live")
        tombstone_id, _ = seed_connection_with_run("item-gone", deleted=True)
        add_event(1, item_id="item-live", sync_run_id=run_id)
        add_event(2, item_id="item-gone")
        add_event(3, item_id="item-unknown")
        db.session.commit()
    page = operator.get("/console/webhooks").text
    assert f'<a href="/console/connections/{connection_id}">item-live</a>' in page
    assert f'<a href="/console/connections/{connection_id}">run {run_id}</a>' in page
    assert f"/console/connections/{tombstone_id}" not in page
    assert "item-unknown" in page and "item-gone" in page
    event_page = operator.get("/console/webhooks/1").text
    assert f'<a href="/console/connections/{connection_id}">item-live</a>' in event_page


def seed_connection_with_run(item_id: str, deleted: bool = False) -> tuple[int, int]:
    user = create_user(db.session, f"{item_id}@example.com")
    connection = Connection(user_id=user.id, item_id=item_id, deleted_at=utcnow() if deleted else None)
    db.session.add(connection)
    db.session.flush()
    run = SyncRun(connection_id=connection.id, trigger="webhook", status="success")
    db.session.add(run)
    db.session.commit()
    return connection.id, run.id


def test_an_event_page_shows_it_with_its_headers_redacted(console_app, operator):
    with console_app.app_context():
        add_event(
            1,
            status=EventStatus.FAILED,
            attempts=2,
            last_error="Pluggy answered 500",
            processed_at=utcnow(),
            payload={"event": "item/updated", "itemId": "item-a", "data": {"clientSecret": "payload-secret-value"}},
            headers={
                "Content-Type": "application/json",
                "X-Webhook-Secret": "[redacted]",
                "X-Pluggy-Signature": "sha256=signature-value-never-shown",
                "Proxy-Authorization": "Basic proxy-credential-never-shown",
                "X-Auth-Token": "token-never-shown",
                "X-Original-URI": "/webhooks/pluggy/url-token-never-shown",
            },
        )
        db.session.commit()
    page = operator.get("/console/webhooks/1")
    assert page.status_code == 200
    for shown in ("item/updated", "evt-1", "Pluggy answered 500", "application/json", "X-Pluggy-Signature"):
        assert shown in page.text
    assert '<dd id="webhook-status">failed</dd>' in page.text
    for hidden in ("signature-value-never-shown", "proxy-credential-never-shown", "token-never-shown", "url-token"):
        assert hidden not in page.text
    assert "payload-secret-value" not in page.text
    assert operator.get("/console/webhooks/2").status_code == 404
    assert operator.get("/console/webhooks/99999999999999999999").status_code == 404


def test_one_rule_redacts_what_the_intake_stores_and_what_a_page_shows():
    """The intake stores headers through redacted_headers (tests/test_webhooks.py); a page shows
    payloads and older rows' headers through the same rule."""
    assert redacted({"a": [{"api_key": "k"}], "webhook-signature": "v1,x", "ok": 1}) == {
        "a": [{"api_key": "[redacted]"}],
        "webhook-signature": "[redacted]",
        "ok": 1,
    }
    headers = {"Referer": "https://x/webhooks/pluggy/t", "X-Forwarded-Uri": "/w/t", "Authorization": "Bearer x"}
    assert redacted_headers([*headers.items(), ("Accept", "*/*")]) == {
        **dict.fromkeys(headers, "[redacted]"),
        "Accept": "*/*",
    }


# Outbound deliveries ------------------------------------------------------------------------------


def add_endpoint(url: str = f"https://user:pass@app.example/hooks?token={URL_TOKEN}#frag") -> WebhookEndpoint:
    keys = [current_app.config["SECRET_KEY"]]
    endpoint = WebhookEndpoint(
        url=url,
        sealed_secret=seal(ENDPOINT_SECRET, keys),
        sealed_previous_secret=seal(PREVIOUS_SECRET, keys),
        previous_secret_expires_at=utcnow() + timedelta(hours=1),
    )
    db.session.add(endpoint)
    db.session.flush()
    return endpoint


def add_delivery(endpoint: WebhookEndpoint, n: int, status=DeliveryStatus.DELIVERED, **extra) -> WebhookDelivery:
    event = OutboundEvent(
        message_id=f"msg_{n}", type="connection.updates_available", payload={"type": "x", "data": {"n": n}}
    )
    db.session.add(event)
    db.session.flush()
    delivery = WebhookDelivery(event_id=event.id, endpoint_id=endpoint.id, status=status, **extra)
    db.session.add(delivery)
    db.session.flush()
    return delivery


def test_the_deliveries_list_shows_each_delivery_and_filters(console_app, operator):
    with console_app.app_context():
        first, second = add_endpoint(), add_endpoint("https://other.example/events")
        add_delivery(first, 1, DeliveryStatus.DELIVERED, attempts=1, last_status_code=200, delivered_at=utcnow())
        add_delivery(
            first,
            2,
            DeliveryStatus.FAILED_RETRYING,
            attempts=2,
            last_status_code=503,
            last_error="answered 503",
            next_attempt_at=utcnow() + timedelta(minutes=30),
        )
        add_delivery(second, 3, DeliveryStatus.DEAD, attempts=12, last_error="timeout")
        db.session.commit()
        first_id, second_id = first.id, second.id
    page = operator.get("/console/deliveries")
    assert page.status_code == 200
    assert ids_in(page.text, "deliveries") == [3, 2, 1]
    assert "connection.updates_available" in page.text and "answered 503" in page.text
    assert "https://app.example/hooks" in page.text and "https://other.example/events" in page.text
    assert page.text.count('<button type="submit">Retry</button>') == 2  # the failed and the dead one
    listed = lambda query: ids_in(operator.get("/console/deliveries?" + query).text, "deliveries")  # noqa: E731
    assert listed("status=dead") == [3]
    assert listed(f"endpoint={first_id}") == [2, 1]
    assert listed(f"endpoint={second_id}&status=delivered") == []
    assert operator.get("/console/deliveries?status=nope").status_code == 400
    assert operator.get("/console/deliveries?endpoint=abc").status_code == 400


def test_the_deliveries_page_by_keyset_and_a_cursor_keeps_its_filters(console_app, operator):
    with console_app.app_context():
        endpoint = add_endpoint()
        for n in range(PAGE_SIZE + 10):
            add_delivery(endpoint, n, DeliveryStatus.DEAD if n % 2 else DeliveryStatus.DELIVERED)
        db.session.commit()
        dead = sorted(db.session.scalars(sa.select(WebhookDelivery.id).where(WebhookDelivery.status == "dead")))
        endpoint_id = endpoint.id
    assert every_page(operator, "/console/deliveries", "deliveries") == list(range(PAGE_SIZE + 10, 0, -1))
    assert every_page(operator, "/console/deliveries?status=dead", "deliveries") == dead[::-1]
    link = next_link(operator.get(f"/console/deliveries?endpoint={endpoint_id}").text)
    cursor = re.search(r"after=([^&]+)", link).group(1)
    assert operator.get(link).status_code == 200
    assert operator.get(f"/console/deliveries?after={cursor}").status_code == 400
    assert operator.get(f"/console/deliveries?endpoint={endpoint_id + 1}&after={cursor}").status_code == 400


@pytest.mark.parametrize("status", [DeliveryStatus.DEAD, DeliveryStatus.FAILED_RETRYING])
def test_retrying_a_failed_or_dead_delivery_queues_it_and_logs_who(console_app, operator, caplog, status):
    caplog.set_level(logging.INFO, logger="console")
    with console_app.app_context():
        endpoint = add_endpoint()
        endpoint.status = EndpointStatus.DISABLED
        endpoint.disabled_at = utcnow()
        delivery = add_delivery(endpoint, 1, status, attempts=12, last_error="timeout")
        db.session.commit()
        delivery_id, endpoint_id = delivery.id, endpoint.id
    operator.get(f"/console/deliveries?status={status}&endpoint={endpoint_id}")
    response = operator.post(
        f"/console/deliveries/{delivery_id}/retry", {"status": str(status), "endpoint": str(endpoint_id)}
    )
    assert response.status_code == 302
    assert response.headers["Location"] == f"/console/deliveries?status={status}&endpoint={endpoint_id}"
    with console_app.app_context():
        delivery = db.session.get(WebhookDelivery, delivery_id)
        assert delivery.status == DeliveryStatus.PENDING and delivery.next_attempt_at is None
        assert delivery.endpoint.status == EndpointStatus.ACTIVE  # the retry enables it again
        jobs = db.session.scalars(sa.select(Job).where(Job.kind == JobKind.DELIVER_EVENT)).all()
        assert [job.payload for job in jobs] == [{"delivery_id": delivery_id}]
    actions = [getattr(r, FIELDS) for r in caplog.records if r.getMessage() == "console action"]
    assert actions == [
        {
            "action": "retry_delivery",
            "operator_session": operator_session(console_app, operator),
            "delivery_id": delivery_id,
        }
    ]
    assert "queued for another attempt" in operator.get(response.headers["Location"]).text


def operator_session(app, operator: Operator) -> str:
    """The operator's session id, read from their signed session cookie."""
    cookie = operator.client.get_cookie("pluggy_sync_console", path="/console").value
    return app.session_interface.get_signing_serializer(app).loads(cookie)["operator"]


@pytest.mark.parametrize("status", [DeliveryStatus.DELIVERED, DeliveryStatus.PENDING])
def test_a_delivered_or_pending_delivery_is_not_retried(console_app, operator, caplog, status):
    caplog.set_level(logging.INFO, logger="console")
    with console_app.app_context():
        delivery = add_delivery(add_endpoint(), 1, status, attempts=1)
        db.session.commit()
        delivery_id = delivery.id
    operator.get("/console/deliveries")
    response = operator.post(f"/console/deliveries/{delivery_id}/retry")
    assert response.status_code == 302 and response.headers["Location"] == "/console/deliveries"
    page = operator.get("/console/deliveries").text
    assert f"Delivery {delivery_id} is {status}: only a failed or dead delivery is retried." in page
    with console_app.app_context():
        assert db.session.get(WebhookDelivery, delivery_id).status == status
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Job)) == 0
    assert "retry_delivery" not in caplog.text
    assert operator.post("/console/deliveries/999999/retry").status_code == 404


def test_a_retry_needs_its_csrf_token(console_app, operator):
    with console_app.app_context():
        delivery = add_delivery(add_endpoint(), 1, DeliveryStatus.DEAD)
        db.session.commit()
        delivery_id = delivery.id
    assert operator.client.post(f"/console/deliveries/{delivery_id}/retry").status_code == 400
    with console_app.app_context():
        assert db.session.get(WebhookDelivery, delivery_id).status == DeliveryStatus.DEAD


def test_no_page_shows_an_endpoint_secret_or_the_credentials_in_its_url(console_app, operator):
    with console_app.app_context():
        endpoint = add_endpoint()
        delivery = add_delivery(endpoint, 1, DeliveryStatus.DEAD, last_error="answered 500")
        add_event(1, headers={"X-Webhook-Secret": "[redacted]", "Webhook-Signature": "v1,signature-shown-nowhere"})
        db.session.commit()
        sealed = (endpoint.sealed_secret, endpoint.sealed_previous_secret)
        endpoint_id, delivery_id = endpoint.id, delivery.id
    paths = [
        "/console/",
        "/console/webhooks",
        "/console/webhooks/1",
        "/console/deliveries",
        "/console/deliveries?status=dead",
        f"/console/deliveries?endpoint={endpoint_id}",
    ]
    operator.get("/console/deliveries")
    operator.post(f"/console/deliveries/{delivery_id}/retry")
    paths.append("/console/deliveries")  # with the retry's flash
    for path in paths:
        page = operator.get(path)
        assert page.status_code == 200, path
        for secret in (ENDPOINT_SECRET, PREVIOUS_SECRET, *sealed, URL_TOKEN, "user:pass", "signature-shown-nowhere"):
            assert secret not in page.text, (path, secret)
        for secret in (TEST_WEBHOOK_SECRET, TEST_SECRETS["PLUGGY_CLIENT_SECRET"], TEST_SECRETS["SECRET_KEY"]):
            assert secret not in page.text, (path, secret)
        assert OPERATOR_PASSWORD not in page.text


def test_an_endpoint_url_is_shown_without_credentials_query_or_fragment():
    assert shown_url("https://u:p@app.example:8443/hooks/in?token=x#y") == "https://app.example:8443/hooks/in"
    assert shown_url("http://[::1]:9000/h?k=v") == "http://[::1]:9000/h"
    assert shown_url("https://app.example") == "https://app.example"
    assert shown_url("http://[broken/") == "(unreadable URL)"
