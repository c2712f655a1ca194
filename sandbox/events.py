"""Webhook payloads, shaped as PLUGGY.md "Webhooks" describes and as the Node SDK's
``WebhookEventPayload`` union types them: every payload has ``event``, ``eventId`` and a string ``id``."""

from __future__ import annotations

import random
from typing import Any
from urllib.parse import urlencode

from .data import Json, new_uuid


def _base(rng: random.Random, event: str, item: Json, triggered_by: str) -> Json:
    event_id = new_uuid(rng)
    # `id` repeats eventId: Pluggy keeps it only for old receivers.
    return {
        "event": event,
        "eventId": event_id,
        "id": event_id,
        "itemId": item["id"],
        "triggeredBy": triggered_by,
    }


def item_event(rng: random.Random, event: str, item: Json, triggered_by: str, **extra: Any) -> Json:
    return {**_base(rng, event, item, triggered_by), "clientUserId": item.get("clientUserId"), **extra}


def transactions_created(
    rng: random.Random, item: Json, account_id: str, created_at_from: str, base_url: str, triggered_by: str
) -> Json:
    link = f"{base_url.rstrip('/')}/v2/transactions?" + urlencode(
        {"accountId": account_id, "createdAtFrom": created_at_from}
    )
    return {
        **_base(rng, "transactions/created", item, triggered_by),
        "accountId": account_id,
        "transactionsCreatedAtFrom": created_at_from,
        "createdTransactionsLink": link,
    }


def transactions_changed(
    rng: random.Random, event: str, item: Json, account_id: str, ids: list[str], triggered_by: str, client_id: str
) -> Json:
    """transactions/updated or transactions/deleted; unlike the others they name the client."""
    return {
        **_base(rng, event, item, triggered_by),
        "clientId": client_id,
        "accountId": account_id,
        "transactionIds": ids,
    }


def connector_status(rng: random.Random, connector_id: int, status: str) -> Json:
    # Pluggy's `id` here is the connector's id, not the event's; a string, as the SDK types every
    # payload's `id` (PLUGGY.md: its JSON type is not settled, receivers accept both).
    return {
        "event": "connector/status_updated",
        "eventId": new_uuid(rng),
        "id": str(connector_id),
        "data": {"status": status},
    }
