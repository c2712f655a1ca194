"""End to end, over the real processes and the stand-in: every product Pluggy collects arrives on
the first sync, follows an update, stays in place when an Open Finance consent ends, and is served
to its owner only."""

from __future__ import annotations

import requests

from harness.waiting import wait_until
from tests.e2e.test_end_to_end import TIMEOUT, Stack, quiet, running

CPF = "416.799.495-00"


def products_at_pluggy(stack: Stack, item_id: str) -> dict:
    return requests.get(f"{stack.sandbox}/sandbox/state", timeout=TIMEOUT).json()["products"][item_id]


def listed(stack: Stack, path: str, key: str) -> list[dict]:
    answer = stack.api("GET", path, params={"page_size": 500})
    assert answer.status_code == 200, answer.text
    return answer.json()[key]


def ids(rows: list[dict]) -> set[str]:
    return {row["id"] for row in rows}


def live_movements(stack: Stack, connection_id: int, investment_id: str) -> set[str]:
    path = f"/connections/{connection_id}/investments/{investment_id}/transactions/"
    return ids(listed(stack, path, "transactions"))


def test_every_product_arrives_follows_an_update_and_is_its_owners_only(app, database_url, tmp_path):
    with running(database_url, tmp_path) as stack:
        item_id = stack.connect_item()
        connection_id = stack.api("POST", "/connections/", json={"item_id": item_id}).json()["id"]
        quiet(stack, connection_id)
        pluggy = products_at_pluggy(stack, item_id)
        base = f"/connections/{connection_id}"

        # The first sync brings each product as Pluggy has it.
        bills = listed(stack, f"{base}/bills/", "bills")
        assert ids(bills) == {bill["id"] for bill in pluggy["bills"]} != set()
        bill = stack.api("GET", f"{base}/bills/{bills[0]['id']}/").json()
        assert bill["transactions"] and {t["bill_id"] for t in bill["transactions"]} == {bill["id"]}
        assert ids(listed(stack, f"{base}/transactions/?bill_id={bill['id']}", "transactions")) == ids(
            bill["transactions"]
        )
        investments = listed(stack, f"{base}/investments/", "investments")
        assert ids(investments) == {investment["id"] for investment in pluggy["investments"]} != set()
        investment = investments[0]["id"]
        assert live_movements(stack, connection_id, investment) == ids(pluggy["investmentTransactions"][investment])
        assert stack.api("GET", f"{base}/identity/").json()["document"] == pluggy["identity"]["document"]
        assert ids(listed(stack, f"{base}/loans/", "loans")) == {loan["id"] for loan in pluggy["loans"]} != set()
        cards = [a for a in listed(stack, f"{base}/accounts/", "accounts") if a["type"] == "CREDIT"]
        assert cards and cards[0]["credit_data"]["credit_limit"] is not None

        # An update: a movement restated at the institution, a purchase that moves the position,
        # and an installment paid on every loan.
        restated = stack.control(f"items/{item_id}/investments/restate", investmentId=investment)
        bought = stack.control(f"items/{item_id}/investments/add_movement", investmentId=investment)
        paid = {
            loan["id"]: loan["payments"]["contractOutstandingBalance"]
            for loan in stack.control(f"items/{item_id}/loans/pay")["loans"]
        }
        stack.control(f"items/{item_id}/auto_sync")
        expected = live_movements(stack, connection_id, investment) - set(restated["deleted"])
        expected |= {restated["created"][0]["id"], bought["id"]}
        wait_until(lambda: live_movements(stack, connection_id, investment) == expected, what="the update")
        assert restated["deleted"][0] not in live_movements(stack, connection_id, investment)
        quiet(stack, connection_id)
        loans = {loan["id"]: loan for loan in listed(stack, f"{base}/loans/", "loans")}
        assert {pluggy_id: float(loans[pluggy_id]["outstanding_balance"]) for pluggy_id in paid} == paid

        # Another user sees none of it: every new route answers 404.
        other = {"Authorization": f"Bearer {stack.flask('users', 'create', 'bia@example.com')}"}
        for path in (
            f"{base}/bills/",
            f"{base}/bills/{bill['id']}/",
            f"{base}/investments/",
            f"{base}/investments/{investment}/transactions/",
            f"{base}/identity/",
            f"{base}/loans/",
        ):
            answer = requests.get(f"{stack.web}/api/banking{path}", headers=other, timeout=TIMEOUT)
            assert answer.status_code == 404, (path, answer.status_code)


def test_an_ended_consent_leaves_every_row_in_place(app, database_url, tmp_path):
    with running(database_url, tmp_path) as stack:
        token = stack.api("POST", "/connect_token/").json()["access_token"]
        item = requests.post(
            f"{stack.sandbox}/items",
            headers={"X-API-KEY": token},
            json={"connectorId": 600, "parameters": {"cpf": CPF}},
            timeout=TIMEOUT,
        ).json()
        wait_until(lambda: item_status(stack, item["id"]) == "WAITING_USER_INPUT", what="the OAuth step")
        stack.control(f"items/{item['id']}/authorize")  # the user authorizes at the institution
        connection_id = stack.api("POST", "/connections/", json={"item_id": item["id"]}).json()["id"]
        quiet(stack, connection_id)
        connection = stack.connection(connection_id)
        assert connection["consent"]["expires_at"] and connection["sync_status"] == "UPDATED"
        before = stored(stack, connection_id)
        assert all(before.values()), before

        # Revoked at the bank: Pluggy's data routes answer empty from now on. A sync that reads
        # without asking Pluggy to update finds the consent ended, and changes nothing.
        stack.control(f"items/{item['id']}/consent/revoke")
        sync = {"trigger_update": False}
        started = stack.api("POST", f"/connections/{connection_id}/sync_transactions/", json=sync).json()
        assert started["status"] == "SYNC_STARTED", started
        quiet(stack, connection_id)
        run = next(run for run in stack.runs(connection_id) if run["id"] == started["sync_run_id"])
        assert (run["status"], run["error"]["code"]) == ("credentials_required", "consent_expired"), run
        assert stack.connection(connection_id)["sync_status"] == "CONSENT_EXPIRED"
        # From then on a sync asks the user to renew it, with an update-mode connect token.
        refused = stack.api("POST", f"/connections/{connection_id}/sync_transactions/", json=sync).json()
        assert refused["status"] == "CREDENTIALS_REQUIRED", refused
        assert refused["connect_token"]["item_id"] == item["id"]
        assert stored(stack, connection_id) == before
        assert stack.connection(connection_id)["consent"]["revoked_at"] is not None


def item_status(stack: Stack, item_id: str) -> str:
    state = requests.get(f"{stack.sandbox}/sandbox/state", timeout=TIMEOUT).json()
    return next(item["status"] for item in state["items"] if item["id"] == item_id)


def stored(stack: Stack, connection_id: int) -> dict:
    base = f"/connections/{connection_id}"
    return {
        "accounts": ids(listed(stack, f"{base}/accounts/", "accounts")),
        "transactions": set(stack.transactions(connection_id)),
        "investments": ids(listed(stack, f"{base}/investments/", "investments")),
        "loans": ids(listed(stack, f"{base}/loans/", "loans")),
        "identity": stack.api("GET", f"{base}/identity/").json().get("document"),
    }
