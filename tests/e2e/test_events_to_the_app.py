"""End to end, over the real processes and the stand-in: the app registers a webhook endpoint (a
receiver on loopback that verifies every event with the standardwebhooks package), and the item's
syncs, new transactions at the bank and the connection's deletion reach it as events."""

from __future__ import annotations

import requests

from harness.waiting import wait_until
from sandbox.event_receiver import EventReceiver
from tests.e2e.test_end_to_end import TIMEOUT, quiet, running

APP_KEY = "e2e-app-key-0123456789abcdef0123456789"


def told(receiver: EventReceiver, event_type: str) -> list[dict]:
    return [event["data"] for event in receiver.received if event["type"] == event_type]


def test_syncs_and_a_deletion_reach_the_apps_endpoint_signed(app, database_url, tmp_path):
    receiver = EventReceiver(say=lambda line: None).start()
    try:
        with running(database_url, tmp_path, APP_API_KEY=APP_KEY, ALLOW_PRIVATE_WEBHOOK_URLS="1") as stack:
            registered = requests.post(
                f"{stack.web}/api/app/webhook_endpoints/",
                headers={"Authorization": f"Bearer {APP_KEY}"},
                json={"url": receiver.url},
                timeout=TIMEOUT,
            )
            assert registered.status_code == 201, registered.text
            receiver.secret = registered.json()["secret"]

            item_id = stack.connect_item()
            connection_id = stack.api("POST", "/connections/", json={"item_id": item_id}).json()["id"]
            quiet(stack, connection_id)
            wait_until(lambda: told(receiver, "sync.updates_available"), what="the first sync told")
            first = told(receiver, "sync.updates_available")[0]
            assert (first["connection_id"], first["item_id"]) == (connection_id, item_id)
            assert "transaction" in first["kinds"] and "account" in first["kinds"]
            assert any(change["new_status"] == "UPDATED" for change in told(receiver, "connection.status_changed"))

            # New transactions at the bank: a webhook, a fetch, an event naming them.
            before = len(told(receiver, "sync.updates_available"))
            stack.control(f"items/{item_id}/add_transactions", count=3)
            wait_until(
                lambda: any(
                    "transaction" in update["kinds"] for update in told(receiver, "sync.updates_available")[before:]
                ),
                what="the new transactions told",
            )

            assert stack.api("DELETE", f"/connections/{connection_id}/").status_code == 204
            wait_until(lambda: told(receiver, "connection.deleted"), what="the deletion told")
            (deleted,) = told(receiver, "connection.deleted")
            assert (deleted["connection_id"], deleted["reason"]) == (connection_id, "user_request")
    finally:
        receiver.stop()
