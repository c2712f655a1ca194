"""End to end: the sandbox, the web service and the worker as separate processes on loopback.

A user connects items the way the Connect widget does, and every path runs for real: webhooks
delivered over HTTP, the worker fetching, manual syncs through MFA and a login error, a
reconnection in update mode, restatements and deletions. At the end the service's data equals the
sandbox's. One run drops and duplicates webhooks and is healed by redelivery and the sweep.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests

from harness.ports import free_port
from harness.processes import (
    DEVNULL,
    STAND_IN_CLIENT_SECRET,
    Child,
    last_line,
    python_m,
    run,
    service_env,
    start,
    start_stand_in,
    stop,
    wait_until_serving,
)
from harness.waiting import stand_in_idle, wait_until
from tests.conftest import TEST_SECRETS

TIMEOUT = 10
WEBHOOK_SECRET = "e2e-webhook-secret"


class Stack:
    """The three processes and the calls a test makes to them."""

    def __init__(self, database_url: str, logs: Path, **settings: str) -> None:
        self.database_url = database_url
        self.settings = settings
        self.logs = logs
        self.web = f"http://127.0.0.1:{free_port()}"
        self.sandbox = ""
        self.env: dict[str, str] = {}
        self.processes: dict[str, Child] = {}
        self.token = ""

    def start(self) -> None:
        options = ("--seed", "7", "--retry-backoff", "1,2,4,8")
        sandbox = start_stand_in(*options, step_delay=0.05, stderr=self.log_file("sandbox"))
        self.processes["sandbox"], self.sandbox = sandbox, sandbox.url
        self.env = service_env(
            self.database_url,
            TEST_SECRETS["SECRET_KEY"],
            pluggy_url=self.sandbox,
            webhook_secret=WEBHOOK_SECRET,
            PUBLIC_BASE_URL=self.web,
            SYNC_BACKFILL_DAYS="400",  # the sandbox generates a year of history
            **self.settings,
        )
        self.start_web(wait=False)  # the web service and the worker start up side by side
        self.spawn("worker", "flask", "worker", "--poll-interval", "0.1", "--concurrency", "2")
        self.wait_for_web()
        self.flask("webhooks", "register", f"{self.web}/webhooks/pluggy")
        self.token = self.flask("users", "create", "ana@example.com")

    def start_web(self, wait: bool = True) -> None:
        self.spawn("web", "flask", "run", "--no-reload", "--port", self.web.rsplit(":", 1)[1])
        if wait:
            self.wait_for_web()

    def wait_for_web(self) -> None:
        """Until it answers; at once a failure, with its log, if any process of the stack exited."""
        wait_until_serving(f"{self.web}/health", *self.processes.values())

    def stop_web(self) -> None:
        stop(self.processes.pop("web"))

    def spawn(self, name: str, *args: str) -> None:
        # Logs go to files: a pipe nobody reads would fill and stall the process.
        self.processes[name] = start(python_m(*args), env=self.env, stdout=DEVNULL, stderr=self.log_file(name))

    def log_file(self, name: str) -> Path:
        return self.logs / f"{name}.log"

    def log_lines(self, name: str) -> list[str]:
        return self.log_file(name).read_text().splitlines()

    def stop(self) -> None:
        # Newest first, the stand-in last: the worker finishes its job in hand while it still answers.
        stop(*reversed(self.processes.values()))

    def flask(self, *args: str) -> str:
        return last_line(run(python_m("flask", *args), env=self.env, log=self.log_file("cli"))[0])

    # The service's API -------------------------------------------------------------------------

    def api(self, method: str, path: str, **kwargs) -> requests.Response:
        headers = {"Authorization": f"Bearer {self.token}"}
        return requests.request(method, f"{self.web}/api/banking{path}", headers=headers, timeout=90, **kwargs)

    def connection(self, connection_id: int) -> dict:
        return self.api("GET", f"/connections/{connection_id}/").json()

    def runs(self, connection_id: int) -> list[dict]:
        return self.api("GET", f"/connections/{connection_id}/sync_runs/").json()["sync_runs"]

    def transactions(self, connection_id: int) -> dict[str, dict]:
        found, page = {}, 1
        while True:
            body = self.api(
                "GET", f"/connections/{connection_id}/transactions/", params={"page": page, "page_size": 500}
            ).json()
            found.update({t["id"]: t for t in body["transactions"]})
            if page * 500 >= body["total"]:
                return found
            page += 1

    # The Connect widget and the sandbox's controls -------------------------------------------

    def connect_item(self, connector_id: int = 0, user: str = "user-ok", password: str = "password-ok") -> str:
        """What the Connect widget does with a token from the service: create the item at Pluggy."""
        token = self.api("POST", "/connect_token/").json()["access_token"]
        item = requests.post(
            f"{self.sandbox}/items",
            headers={"X-API-KEY": token},
            json={"connectorId": connector_id, "parameters": {"user": user, "password": password}},
            timeout=TIMEOUT,
        )
        assert item.status_code in (200, 201), item.text
        return item.json()["id"]

    def reconnect(self, item_id: str, connect_token: str, user: str, password: str) -> None:
        """The widget in update mode: new credentials for an existing item."""
        response = requests.patch(
            f"{self.sandbox}/items/{item_id}",
            headers={"X-API-KEY": connect_token},
            json={"parameters": {"user": user, "password": password}},
            timeout=TIMEOUT,
        )
        assert response.ok, response.text

    def control(self, path: str, **body) -> dict:
        response = requests.post(f"{self.sandbox}/sandbox/{path}", json=body, timeout=TIMEOUT)
        assert response.ok, response.text
        return response.json()

    def idle(self) -> None:
        stand_in_idle(self.sandbox, timeout=30)

    def sandbox_transactions(self, item_id: str) -> dict[str, dict]:
        state = requests.get(f"{self.sandbox}/sandbox/state", timeout=TIMEOUT).json()
        accounts = {a["id"] for a in state["accounts"] if a["itemId"] == item_id}
        return {t["id"]: t for t in state["transactions"] if t["accountId"] in accounts}


@contextmanager
def running(database_url: str, logs: Path, **settings: str) -> Iterator[Stack]:
    stack = Stack(database_url, logs, **settings)
    try:
        stack.start()
        yield stack
    finally:
        stack.stop()


def quiet(stack: Stack, connection_id: int) -> None:
    """Wait until the sandbox has delivered everything, the service's queue has nothing to do,
    and the connection, synced at least once, has no sync open."""
    stack.idle()

    def settled() -> bool:
        queue = requests.get(f"{stack.web}/health", timeout=TIMEOUT).json()["queue"]
        runs = stack.runs(connection_id)
        return (
            queue["due"] == 0
            and queue["running"] == 0
            and stack.connection(connection_id)["last_synced_at"] is not None
            and all(run["status"] not in ("pending", "running") for run in runs)
        )

    wait_until(settled, what="nothing left to do")


def run_status(stack: Stack, connection_id: int, run_id: int) -> str:
    return next(run["status"] for run in stack.runs(connection_id) if run["id"] == run_id)


def assert_same_data(stack: Stack, connection_id: int, item_id: str) -> None:
    stack.idle()
    ours = stack.transactions(connection_id)
    theirs = stack.sandbox_transactions(item_id)
    missing = [{k: theirs[i][k] for k in ("date", "createdAt", "status")} for i in set(theirs) - set(ours)]
    assert set(ours) == set(theirs), {
        "missing": missing,
        "extra": set(ours) - set(theirs),
        "runs": stack.runs(connection_id),
    }
    for pluggy_id, row in theirs.items():
        assert (ours[pluggy_id]["amount"], ours[pluggy_id]["status"], ours[pluggy_id]["description"]) == (
            row["amount"],
            row["status"],
            row["description"],
        )


@pytest.fixture
def stack(app, database_url, tmp_path):
    """A clean database (the app fixture empties it) and the three processes on it."""
    with running(database_url, tmp_path) as stack:
        yield stack


def test_the_whole_journey(stack):
    # 1. Connect an item; the service learns of it by webhook and by the app registering it.
    item_id = stack.connect_item()
    registered = stack.api("POST", "/connections/", json={"item_id": item_id})
    assert registered.status_code in (200, 201)
    connection_id = registered.json()["id"]
    # The item's creation brings several webhooks; one update of an item is one run all the same.
    quiet(stack, connection_id)
    (first,) = stack.runs(connection_id)  # the first sync, or the webhook that adopted the item first
    assert first["status"] == "success" and first["created"] > 0, first
    assert_same_data(stack, connection_id, item_id)

    # 2. New transactions at the bank reach us by webhook alone.
    stack.control(f"items/{item_id}/add_transactions", count=3)
    wait_until(
        lambda: len(stack.transactions(connection_id)) == len(stack.sandbox_transactions(item_id)), what="new rows"
    )

    # 3. A manual sync, followed until it ends.
    quiet(stack, connection_id)
    synced = stack.api("POST", f"/connections/{connection_id}/sync_transactions/", params={"wait": 30})
    assert (synced.status_code, synced.json()["status"]) == (200, "SUCCESS")
    quiet(stack, connection_id)
    # No echo of it; the item's first run is the first sync's or the webhook's that adopted the item first.
    assert [run["trigger"] for run in stack.runs(connection_id)] == ["manual", first["trigger"]]
    assert_same_data(stack, connection_id, item_id)

    # 4. An item that asks for a one-time code, on its first sync and on a manual one.
    mfa_item = stack.connect_item(connector_id=4)
    mfa_connection = stack.api("POST", "/connections/", json={"item_id": mfa_item}).json()["id"]
    wait_until(lambda: stack.connection(mfa_connection)["sync_status"] == "MFA_REQUIRED", what="MFA asked")
    sent = stack.api("POST", f"/connections/{mfa_connection}/send_mfa/", json={"mfa_value": "123456"})
    assert (sent.status_code, sent.json()["status"]) == (200, "MFA_SENT")
    wait_until(lambda: stack.connection(mfa_connection)["sync_status"] == "UPDATED", what="the MFA item's first fetch")
    quiet(stack, mfa_connection)
    # The update after the code is one run. The first sync found nothing to fetch yet, if it ran before
    # the code was in; after the update's outcome, the item was already fetched and the first sync had
    # nothing to do; in between, its run waited for that outcome and fetched it.
    runs_after_code = [(run["trigger"], run["status"]) for run in stack.runs(mfa_connection)]
    assert runs_after_code in (
        [("webhook", "success"), ("initial", "mfa_required")],
        [("webhook", "success")],
        [("initial", "success")],
    ), runs_after_code
    asked = stack.api("POST", f"/connections/{mfa_connection}/sync_transactions/", params={"wait": 30})
    assert (asked.status_code, asked.json()["status"]) == (409, "MFA_REQUIRED"), (
        asked.json(),
        stack.runs(mfa_connection),
    )
    assert asked.json()["mfa"]["name"] == "token"
    stack.api("POST", f"/connections/{mfa_connection}/send_mfa/", json={"mfa_value": "123456"})
    wait_until(lambda: stack.runs(mfa_connection)[0]["status"] == "success", what="the MFA sync")
    quiet(stack, mfa_connection)  # rows posted by that update may still be on their way by webhook
    assert_same_data(stack, mfa_connection, mfa_item)

    # 5. The bank refuses the stored credentials; the user reconnects in update mode.
    update_token = stack.api("POST", "/connect_token/", json={"item_id": item_id}).json()["access_token"]
    stack.reconnect(item_id, update_token, "user-ok", "wrong-password")
    wait_until(lambda: stack.connection(connection_id)["sync_status"] == "CREDENTIALS_REQUIRED", what="login error")
    quiet(stack, connection_id)
    refused = stack.api("POST", f"/connections/{connection_id}/sync_transactions/")
    assert (refused.status_code, refused.json()["status"]) == (409, "CREDENTIALS_REQUIRED")
    reconnect_token = refused.json()["connect_token"]
    assert reconnect_token["item_id"] == item_id
    stack.reconnect(item_id, reconnect_token["access_token"], "user-ok", "password-ok")
    wait_until(lambda: stack.connection(connection_id)["sync_status"] == "UPDATED", what="reconnected")
    quiet(stack, connection_id)  # the rows of the reconnection's update may still be on their way

    # 6. Restated and posted transactions: old ids tombstoned, new ones live, pending ones posted.
    before = stack.transactions(connection_id)
    restated = stack.control(f"items/{item_id}/restate", delete=2, post_pending=True)
    stack.idle()
    wait_until(
        lambda: set(stack.transactions(connection_id)) == set(stack.sandbox_transactions(item_id)), what="restated"
    )
    gone = set(before) - set(stack.transactions(connection_id))
    assert len(gone) == 2
    deleted = stack.api(
        "GET", f"/connections/{connection_id}/transactions/", params={"include_deleted": "true", "page_size": 500}
    ).json()
    assert gone <= {t["id"] for t in deleted["transactions"] if t["deleted_at"]}
    # Each old row names its replacement and the replacement the old row (sync/restatements.py).
    replacements = dict(zip(restated["deleted"], restated["created"], strict=True))
    assert {t["id"]: t["replaced_by"] for t in deleted["transactions"] if t["id"] in gone} == replacements
    live = stack.transactions(connection_id)
    assert {new: live[new]["replaces"] for new in restated["created"]} == {v: k for k, v in replacements.items()}

    # 7. Status and history, once the restatement's runs are over (its webhooks open more than one).
    quiet(stack, connection_id)
    status = stack.api("GET", f"/connections/{connection_id}/check_status/").json()
    assert (status["status"], status["item_status"]) == ("UPDATED", "UPDATED"), stack.runs(connection_id)
    triggers = {run["trigger"] for run in stack.runs(connection_id)}
    assert {"manual", "webhook"} <= triggers
    assert_same_data(stack, connection_id, item_id)
    assert_same_data(stack, mfa_connection, mfa_item)

    # 8. The logs: JSON lines that never hold a secret, and one webhook followed to what it wrote.
    assert_no_secret_in_logs(stack, [update_token, reconnect_token["access_token"]])
    assert_a_webhook_can_be_followed(stack)


# The sandbox's API keys and connect tokens are JWTs: whichever the service held, none is logged.
JWT = re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.eyJ")
# The sandbox's one-time code, as a number of its own (not a part of a longer one).
MFA_CODE = re.compile(r"(?<![0-9])123456(?![0-9])")


def assert_no_secret_in_logs(stack: Stack, tokens: list[str]) -> None:
    items = requests.get(f"{stack.sandbox}/sandbox/state", timeout=TIMEOUT).json()["items"]
    url_tokens = [item["webhookUrl"].rsplit("/", 1)[1] for item in items if item.get("webhookUrl")]
    assert url_tokens, "the service gave the sandbox signed webhook URLs"
    secrets = [
        TEST_SECRETS["SECRET_KEY"],
        STAND_IN_CLIENT_SECRET,
        WEBHOOK_SECRET,
        stack.token,
        *tokens,
        *url_tokens,
    ]
    lines = {name: stack.log_lines(name) for name in ("web", "worker", "cli")}
    assert len(lines["web"]) > 20 and len(lines["worker"]) > 20
    for name, found in lines.items():
        for line in found:
            json.loads(line)  # JSON when not on a terminal, every line of it
            leaked = [s for s in secrets if s in line]
            assert not leaked and not JWT.search(line) and not MFA_CODE.search(line), (name, line)


def assert_a_webhook_can_be_followed(stack: Stack) -> None:
    """From a delivery's request line, by its event id, to the job that handled it and the run
    that wrote its rows."""
    web = [json.loads(line) for line in stack.log_lines("web")]
    worker = [json.loads(line) for line in stack.log_lines("worker")]
    handled = {
        event["event_id"]: (line["job_id"], event["run_id"])
        for line in worker
        if line["message"] == "webhook events handled"
        for event in line["events"]
        if event["run_id"] is not None
    }
    deliveries = [line for line in web if line["message"] == "request" and line.get("event_id") in handled]
    assert deliveries, "a delivery's request line names an event the worker handled"
    delivery = deliveries[0]
    assert delivery["route"].startswith("/webhooks/pluggy") and delivery["request_id"]
    job_id, run_id = handled[delivery["event_id"]]
    job = [line for line in worker if line["message"] == "job" and line.get("job_id") == job_id]
    assert any(delivery["event_id"] in line.get("event_ids", ()) for line in job)
    closed = [line for line in web + worker if line["message"] == "sync run closed" and line["run_id"] == run_id]
    assert closed and {"created", "updated", "deleted"} <= set(closed[0])


def test_lost_and_repeated_webhooks_are_healed(app, database_url, tmp_path):
    settings = {"SYNC_SWEEP_INTERVAL_MINUTES": "0.01", "SYNC_SWEEP_STALE_HOURS": "0.0005"}
    with running(database_url, tmp_path, **settings) as stack:
        item_id = stack.connect_item()
        connection_id = stack.api("POST", "/connections/", json={"item_id": item_id}).json()["id"]
        quiet(stack, connection_id)

        # Every delivery of the next update is lost: the sweep notices the item moved.
        stack.control("faults", drop=100)
        started = stack.api("POST", f"/connections/{connection_id}/sync_transactions/")
        assert started.status_code == 202
        stack.idle()
        stack.control("faults", drop=0)
        run_id = started.json()["sync_run_id"]
        wait_until(lambda: run_status(stack, connection_id, run_id) == "success", timeout=60, what="the sweep")
        assert_same_data(stack, connection_id, item_id)

        # The service is down while Pluggy delivers: Pluggy's redeliveries reach it once it is back.
        quiet(stack, connection_id)
        stack.stop_web()
        created = stack.control(f"items/{item_id}/add_transactions", count=2)["created"]
        stack.start_web()
        wait_until(lambda: set(created) <= set(stack.transactions(connection_id)), timeout=60, what="the redelivery")
        deliveries = requests.get(f"{stack.sandbox}/sandbox/deliveries", timeout=TIMEOUT).json()["deliveries"]
        assert any(d["status"] == "error" for d in deliveries) and any(d["attempt"] > 1 for d in deliveries)

        # Then deliveries arrive twice and out of order: each is stored and handled once.
        stack.control("faults", duplicate=100, reorder=True)
        stack.control(f"items/{item_id}/add_transactions", count=3)
        quiet(stack, connection_id)
        assert stack.api("POST", f"/connections/{connection_id}/sync_transactions/").status_code == 202
        quiet(stack, connection_id)
        wait_until(
            lambda: set(stack.transactions(connection_id)) == set(stack.sandbox_transactions(item_id)),
            timeout=60,
            what="the duplicates handled",
        )
        assert_same_data(stack, connection_id, item_id)
