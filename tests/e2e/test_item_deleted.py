"""End to end: an item deleted at Pluggy (the user revoked access) reaches the service by webhook,
over real processes; the connection becomes a tombstone and its copied data is removed."""

from __future__ import annotations

import json

import requests

from harness.processes import STAND_IN_CLIENT_ID, STAND_IN_CLIENT_SECRET
from harness.waiting import wait_until
from tests.e2e.test_end_to_end import TIMEOUT, quiet, running


def test_an_item_deleted_at_pluggy_leaves_a_tombstone_and_no_data(app, database_url, tmp_path):
    with running(database_url, tmp_path, DELETED_ITEM_RETENTION_DAYS="0") as stack:
        item_id = stack.connect_item()
        connection_id = stack.api("POST", "/connections/", json={"item_id": item_id}).json()["id"]
        quiet(stack, connection_id)
        assert stack.api("GET", f"/connections/{connection_id}/accounts/").json()["accounts"]
        assert stack.transactions(connection_id)

        # Deleted at Pluggy, not through the service: Pluggy announces it with item/deleted.
        key = requests.post(
            f"{stack.sandbox}/auth",
            json={"clientId": STAND_IN_CLIENT_ID, "clientSecret": STAND_IN_CLIENT_SECRET},
            timeout=TIMEOUT,
        ).json()["apiKey"]
        gone = requests.delete(f"{stack.sandbox}/items/{item_id}", headers={"X-API-KEY": key}, timeout=TIMEOUT)
        assert gone.ok, gone.text

        def removed() -> bool:
            answer = stack.api("GET", f"/connections/{connection_id}/")
            return answer.status_code == 410 and answer.json()["connection"]["data_removed_at"] is not None

        wait_until(removed, what="the deleted item's data removed")
        tombstone = stack.api("GET", f"/connections/{connection_id}/").json()["connection"]
        assert (tombstone["item_id"], tombstone["deleted_reason"]) == (item_id, "item_deleted")
        assert stack.api("GET", "/connections/").json() == {"connections": [], "next_cursor": None}
        lines = [json.loads(line) for line in stack.log_lines("worker") if line.startswith("{")]
        (removal,) = [line for line in lines if line.get("message") == "deleted item's data removed"]
        assert removal["rows"]["accounts"] > 0 and removal["rows"]["transactions"] > 0
        assert removal["item_id"] == item_id
