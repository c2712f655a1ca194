"""An in-memory Pluggy for tests: items, accounts and transactions behind Pluggy's routes.

One `handle(method, path, query, body)` serves two adapters: `install(mock)` answers `requests`
calls through `responses` (unit tests), and `serve()` answers real HTTP on 127.0.0.1 (tests that
run separate processes). Payloads come from tests/pluggy_fixtures.py, whose shapes are checked
against Pluggy's OpenAPI document.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import responses
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from tests import pluggy_fixtures as pf

BASE_URL = "https://pluggy.test"
MFA_VALUE = "123456"
Answer = tuple[int, Any, dict[str, str]]


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Gate:
    """Holds matching requests until opened, by a test or by the arrival of enough of them; a test
    may also let a number of them through and hold the next."""

    def __init__(self, opens_at: int | None = None) -> None:
        self.arrivals = 0
        self.held = 0
        self.allowance = 0
        self.is_open = False
        self.opens_at = opens_at
        self.condition = threading.Condition()

    def pass_through(self) -> None:
        with self.condition:
            self.arrivals += 1
            if self.opens_at is not None and self.arrivals >= self.opens_at:
                self.is_open = True
            self.held += 1
            self.condition.notify_all()
            self.condition.wait_for(lambda: self.is_open or self.allowance > 0, timeout=30)
            self.held -= 1
            if not self.is_open and self.allowance > 0:
                self.allowance -= 1
            self.condition.notify_all()

    def wait_for_arrivals(self, count: int, timeout: float = 30) -> bool:
        with self.condition:
            return self.condition.wait_for(lambda: self.arrivals >= count, timeout=timeout)

    def let_through(self, count: int) -> None:
        with self.condition:
            self.allowance += count
            self.condition.notify_all()

    def wait_until_holding(self, count: int, timeout: float = 30) -> bool:
        """True once `count` requests wait at the gate (and every one let through has passed)."""
        with self.condition:
            return self.condition.wait_for(lambda: self.held == count and self.allowance == 0, timeout=timeout)

    def open(self) -> None:
        with self.condition:
            self.is_open = True
            self.condition.notify_all()


class FakePluggy:
    def __init__(self, base_url: str = BASE_URL, *, page_size: int = 500) -> None:
        self.base_url = base_url
        self.page_size = page_size
        self.items: dict[str, dict] = {}
        self.accounts: dict[str, list[dict]] = {}
        self.transactions: dict[str, list[dict]] = {}
        self.calls: list[tuple[str, str, dict, Any]] = []
        self.refusals: dict[tuple[str, str], list[Answer]] = {}
        # What an item becomes once the update started by a PATCH (or an MFA answer) is over.
        self.update_outcome: dict[str, Any] = {"status": "UPDATED", "executionStatus": "SUCCESS"}
        self.pending_outcomes: dict[str, dict] = {}
        self.gates: list[tuple[str, str, Gate]] = []
        self.webhooks: dict[str, dict] = {}
        self.lock = threading.Lock()

    # Arranging -----------------------------------------------------------------------------

    def add_item(self, **fields: Any) -> dict:
        item = pf.item(**fields)
        self.items[item["id"]] = item
        self.accounts.setdefault(item["id"], [])
        return item

    def add_account(self, item_id: str, **fields: Any) -> dict:
        account = pf.account(itemId=item_id, **fields)
        self.accounts[item_id].append(account)
        self.transactions[account["id"]] = []
        return account

    def add_transaction(self, account_id: str, **fields: Any) -> dict:
        fields.setdefault("createdAt", now_iso())
        transaction = pf.transaction(accountId=account_id, **fields)
        self.transactions[account_id].append(transaction)
        return transaction

    def remove_transaction(self, account_id: str, transaction_id: str) -> None:
        self.transactions[account_id] = [t for t in self.transactions[account_id] if t["id"] != transaction_id]

    def refuse_next(
        self,
        method: str,
        path: str,
        status: int,
        code_description: str | None = None,
        data: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        body = pf.error_body(status, code_description, f"refused with {status}", data)
        self.refusals.setdefault((method, path), []).append((status, body, headers or {}))

    def hold(self, method: str, path_pattern: str, *, opens_at: int | None = None) -> Gate:
        """Hold requests matching `method` and `path_pattern` at a gate (over real HTTP only)."""
        gate = Gate(opens_at)
        self.gates.append((method, path_pattern, gate))
        return gate

    def count(self, method: str, path_pattern: str) -> int:
        return sum(1 for m, p, _, _ in self.calls if m == method and re.fullmatch(path_pattern, p))

    def calls_to(self, method: str, path_pattern: str) -> list[tuple[str, str, dict, Any]]:
        return [call for call in self.calls if call[0] == method and re.fullmatch(path_pattern, call[1])]

    # Answering -----------------------------------------------------------------------------

    def handle(self, method: str, path: str, query: dict[str, str], body: Any) -> Answer:
        for gate_method, pattern, gate in self.gates:
            if gate_method == method and re.fullmatch(pattern, path):
                gate.pass_through()
        with self.lock:
            self.calls.append((method, path, query, body))
            refusals = self.refusals.get((method, path))
            if refusals:
                return refusals.pop(0)
            return self.route(method, path, query, body)

    def route(self, method: str, path: str, query: dict[str, str], body: Any) -> Answer:
        if (method, path) == ("POST", "/auth"):
            return 200, pf.auth_response(pf.api_key()), {}
        if (method, path) == ("POST", "/connect_token"):
            return 200, pf.connect_token_response(f"connect-token-{len(self.calls)}"), {}
        if (method, path) == ("GET", "/accounts"):
            return 200, pf.page(self.accounts.get(query.get("itemId"), [])), {}
        if (method, path) == ("GET", "/v2/transactions"):
            return self.transactions_page(query)
        if path.startswith("/webhooks"):
            return self.webhook_route(method, path, body)
        match = re.fullmatch(r"/items/([^/]+)(/mfa)?", path)
        if match and match.group(1) in self.items:
            item = self.items[match.group(1)]
            if match.group(2):
                return self.answer_mfa(item, body)
            if method == "GET":
                return 200, self.read_item(item), {}
            if method == "PATCH":
                return self.start_update(item)
            if method == "DELETE":
                del self.items[item["id"]]
                return 200, pf.count_response(1), {}
        return 404, pf.error_body(404, "ITEM_NOT_FOUND", "not found"), {}

    def webhook_route(self, method: str, path: str, body: Any) -> Answer:
        if (method, path) == ("GET", "/webhooks"):
            shown = [
                {k: v for k, v in w.items() if k != "headers"} for w in self.webhooks.values()
            ]  # as Pluggy: no headers
            return 200, pf.page(shown), {}
        if (method, path) == ("POST", "/webhooks"):
            webhook = pf.webhook(event=body["event"], url=body["url"], headers=body.get("headers"))
            self.webhooks[webhook["id"]] = webhook
            return 201, webhook, {}
        webhook_id = path.rsplit("/", 1)[-1]
        if webhook_id not in self.webhooks:
            return 404, pf.error_body(404, "WEBHOOK_NOT_FOUND", "not found"), {}
        if method == "PATCH":
            self.webhooks[webhook_id].update(body)
            return 200, self.webhooks[webhook_id], {}
        del self.webhooks[webhook_id]
        return 200, pf.count_response(1), {}

    def read_item(self, item: dict) -> dict:
        """The first read after an update began sees it running; the next sees its outcome."""
        snapshot = dict(item)
        outcome = self.pending_outcomes.pop(item["id"], None)
        if outcome is not None:
            item.update(outcome)
        return snapshot

    def start_update(self, item: dict) -> Answer:
        outcome = dict(self.update_outcome)
        if outcome.get("status") == "UPDATED":
            outcome.setdefault("lastUpdatedAt", now_iso())
        item.update(status="UPDATING", executionStatus="TRANSACTIONS_IN_PROGRESS")
        self.pending_outcomes[item["id"]] = outcome
        return 200, dict(item), {}

    def answer_mfa(self, item: dict, body: Any) -> Answer:
        if item["status"] != "WAITING_USER_INPUT":
            return 400, pf.error_body(400, "ITEM_IS_NOT_WAITING_USER_INPUT", "not waiting"), {}
        name = item["parameter"]["name"]
        if (body or {}).get(name) != MFA_VALUE:
            item.update(
                status="LOGIN_ERROR",
                executionStatus="INVALID_CREDENTIALS_MFA",
                parameter=None,
                error=pf.item_error("INVALID_CREDENTIALS_MFA"),
            )
            return 200, dict(item), {}
        item.update(status="UPDATING", executionStatus="LOGIN_MFA_IN_PROGRESS", parameter=None)
        self.pending_outcomes[item["id"]] = {**self.update_outcome, "lastUpdatedAt": now_iso()}
        return 200, dict(item), {}

    def transactions_page(self, query: dict[str, str]) -> Answer:
        rows = sorted(self.transactions.get(query["accountId"], []), key=lambda t: (t["date"], t["id"]))
        if "dateFrom" in query:
            rows = [t for t in rows if t["date"][:10] >= query["dateFrom"]]
        if "dateTo" in query:
            rows = [t for t in rows if t["date"][:10] <= query["dateTo"]]
        if "createdAtFrom" in query:
            since = datetime.fromisoformat(query["createdAtFrom"])
            rows = [t for t in rows if datetime.fromisoformat(t["createdAt"]) >= since]
        if "ids" in query:
            wanted = set(query["ids"].split(","))
            rows = [t for t in rows if t["id"] in wanted]
        start = int(query.get("after") or 0)
        end = start + self.page_size
        following = None
        if end < len(rows):
            following = "?" + urlencode({"accountId": query["accountId"], "after": str(end)})
        return 200, {"results": rows[start:end], "next": following}, {}

    # Adapters ------------------------------------------------------------------------------

    def install(self, mock: responses.RequestsMock) -> None:
        for method in ("GET", "POST", "PATCH", "DELETE"):
            mock.add_callback(method, re.compile(re.escape(self.base_url) + r"/.*"), callback=self.answer_request)

    def answer_request(self, request) -> tuple[int, dict[str, str], str]:
        url = urlsplit(request.url)
        query = {key: values[-1] for key, values in parse_qs(url.query).items()}
        body = json.loads(request.body) if request.body else None
        status, payload, headers = self.handle(request.method, url.path, query, body)
        return status, {"Content-Type": "application/json", **headers}, json.dumps(payload)

    @contextmanager
    def serve(self) -> Iterator[str]:
        """Answer real HTTP on a free loopback port; yields the base URL."""

        @Request.application
        def app(request: Request) -> Response:
            body = request.get_json(silent=True)
            status, payload, headers = self.handle(request.method, request.path, dict(request.args), body)
            return Response(json.dumps(payload), status=status, headers=headers, content_type="application/json")

        server = make_server("127.0.0.1", 0, app, threaded=True)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{server.server_port}"
        finally:
            server.shutdown()
            thread.join()
