"""Pluggy's webhook subscriptions for this service: one per handled event, with the secret header."""

from __future__ import annotations

from pluggy_client import PluggyClient
from sync.events import HANDLED

# item/login_error is only an alias we accept; Pluggy has no such subscription.
SUBSCRIBED_EVENTS = sorted(HANDLED - {"item/login_error"})


def register(client: PluggyClient, url: str, secret: str) -> list[tuple[str, str]]:
    """Make Pluggy deliver every handled event to `url` with `X-Webhook-Secret: secret`.
    Existing subscriptions are updated in place (their headers set again, so a rotated secret
    reaches them, and enabled again: Pluggy disables one whose deliveries keep failing) and
    duplicates removed, so running it twice leaves the same state.
    Returns (event, what was done) pairs."""
    headers = {"X-Webhook-Secret": secret}
    existing = [w for w in client.list_webhooks() if w.get("url") == url]
    done = []
    for event in SUBSCRIBED_EVENTS:
        mine = [w for w in existing if w.get("event") == event]
        if not mine:
            client.create_webhook(event, url, headers)
            done.append((event, "created"))
            continue
        client.update_webhook(mine[0]["id"], headers=headers, enabled=True)
        for duplicate in mine[1:]:
            client.delete_webhook(duplicate["id"])
        done.append((event, "kept" if len(mine) == 1 else f"kept, {len(mine) - 1} duplicate(s) removed"))
    return done
