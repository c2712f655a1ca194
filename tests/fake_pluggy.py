"""Pluggy for tests: the project's stand-in (sandbox/), driven in process or served on loopback.

The sandbox is the one implementation of Pluggy's routes, payloads and item states; `FakePluggy`
makes one whose executions run when the item is next read (so the first read after a PATCH sees
UPDATING and the next one the outcome; see sandbox/execution.py) and whose webhooks are held in
`deliveries` instead of sent. Around it, only what tests need:

- arranging Pluggy's state directly: `add_item`, `add_account`, `add_transaction`,
  `remove_transaction`, `set_item`, `remove_item`, `set_credentials`, `set_connector`, `add_webhook`;
- instruments: every call recorded (`calls`, `count`, `calls_to`), the next call refused with
  Pluggy's error answer (`refuse_next`, or `refuse_when` for calls a predicate picks) or answered
  with anything at all (`answer_next`), calls held at a `Gate` (`hold`). (The sandbox's own fail
  rules, for `make run` and the end-to-end tests, always name a codeDescription; tests also need
  Pluggy's bare 500s and answers no Pluggy should give, so these live here.)

`install(mock)` hands every `requests` call to the base URL, through `responses`, to the sandbox's
WSGI app, synchronously; `serve()` serves the same app over HTTP on 127.0.0.1 for tests that run
separate processes.
"""

from __future__ import annotations

import bisect
import copy
import io
import json
import re
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

import responses
from werkzeug.serving import make_server
from werkzeug.test import Client
from werkzeug.wrappers import Request, Response

from sandbox import create_sandbox, execution, products, queries, world_of
from sandbox import data as pf
from sandbox import products as sandbox_products
from tests.conftest import TEST_SECRETS

BASE_URL = "https://pluggy.test"
MFA_VALUE = pf.MFA_VALUE
MFA_CONNECTOR = 4  # "Pluggy Bank MFA": every update asks for a token
OPEN_FINANCE_CONNECTOR = pf.OPEN_FINANCE_CONNECTOR  # logs in by OAuth, under a consent
CREDENTIALS = {"user": pf.GOOD_USER, "password": pf.GOOD_PASSWORD}
Call = tuple[str, str, dict[str, str], Any]  # method, path, query, JSON body


def now_iso() -> str:
    return pf.iso(datetime.now(UTC))


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


@dataclass
class Scripted:
    """An answer a test put in Pluggy's mouth, for matching calls whose query `when` accepts."""

    method: str
    path: str  # a regular expression, matched whole
    status: int
    body: Any
    headers: dict[str, str]
    times: int | None = 1  # None: every time
    when: Callable[[dict[str, str]], bool] | None = None


class FakePluggy:
    def __init__(
        self,
        base_url: str = BASE_URL,
        *,
        page_size: int = 500,
        client_id: str = TEST_SECRETS["PLUGGY_CLIENT_ID"],
        client_secret: str = TEST_SECRETS["PLUGGY_CLIENT_SECRET"],
    ) -> None:
        self.app = create_sandbox(
            client_id=client_id,
            client_secret=client_secret,
            step_delay=None,
            page_size=page_size,
            base_url=base_url,
            deliver=False,
        )
        self.world = world_of(self.app)
        self.calls: list[Call] = []
        self.scripted: list[Scripted] = []
        self.gates: list[tuple[str, str, Gate]] = []
        self.lock = threading.Lock()

    def close(self) -> None:
        self.world.close()

    @property
    def base_url(self) -> str:
        return self.world.base_url

    @base_url.setter
    def base_url(self, url: str) -> None:
        self.world.base_url = url

    @property
    def page_size(self) -> int:
        return self.world.page_size

    @page_size.setter
    def page_size(self, size: int) -> None:
        self.world.page_size = size

    # Pluggy's state, read -------------------------------------------------------------------

    # Read-only views: Pluggy's state changes only through the methods below, never by writing here.

    @property
    def items(self) -> Mapping[str, dict]:
        """Item id -> the item as Pluggy has it (change it with `set_item`)."""
        with self.world.lock:
            return MappingProxyType({item_id: record.json for item_id, record in self.world.items.items()})

    @property
    def accounts(self) -> Mapping[str, tuple[dict, ...]]:
        """Item id -> its accounts."""
        with self.world.lock:
            found: dict[str, list[dict]] = {item_id: [] for item_id in self.world.items}
            for account in self.world.accounts.values():
                found.setdefault(account["itemId"], []).append(account)
            return MappingProxyType({item_id: tuple(accounts) for item_id, accounts in found.items()})

    @property
    def transactions(self) -> Mapping[str, tuple[dict, ...]]:
        """Account id -> its transactions, in Pluggy's (date, id) order."""
        with self.world.lock:
            rows = {account_id: tuple(self.world.sorted_rows(account_id)) for account_id in self.world.accounts}
            return MappingProxyType(rows)

    @property
    def webhooks(self) -> Mapping[str, dict]:
        """Webhook id -> the subscription, with its headers."""
        return MappingProxyType({webhook["id"]: webhook for webhook in self.world.snapshot()["webhooks"]})

    @property
    def deliveries(self) -> list[dict]:
        """The webhook payloads Pluggy would have delivered by now, oldest first."""
        return [delivery.payload for delivery in self.world.deliverer.held]

    # Pluggy's state, arranged ---------------------------------------------------------------

    def add_item(self, **fields: Any) -> dict:
        """An item (UPDATED by default) whose data is what the test adds, logging in as `user-ok`."""
        return self.world.arrange_item(pf.item(**fields), CREDENTIALS).json

    def add_account(self, item_id: str, **fields: Any) -> dict:
        account = pf.account(itemId=item_id, **fields)
        with self.world.lock:
            self.world.record_for(item_id)
            self.world.add_account(account)
        return account

    def add_transaction(self, account_id: str, **fields: Any) -> dict:
        fields.setdefault("createdAt", now_iso())
        transaction = pf.transaction(**{**fields, "accountId": account_id})
        self.world.add_account_rows(account_id, [transaction])
        return transaction

    def add_bill(self, account_id: str, **fields: Any) -> dict:
        """A bill of a card account, listed by `/bills?accountId=` (its rows name it in their
        creditCardMetadata.billId: give it to `add_transaction`)."""
        bill = {
            "id": pf.new_id(),
            "accountId": account_id,
            "dueDate": "2026-06-03T00:00:00.000Z",
            "billClosingDate": "2026-05-25T00:00:00.000Z",
            "totalAmount": 1895.3,
            "totalAmountCurrencyCode": "BRL",
            "minimumPaymentAmount": 284.3,
            "allowsInstallments": True,
            "financeCharges": [],
            "payments": [],
            "createdAt": now_iso(),
            "updatedAt": now_iso(),
            **fields,
        }
        with self.world.lock:
            item_id = self.world.accounts[account_id]["itemId"]
            self.world.products.setdefault(item_id, products.empty_products())["bills"].append(bill)
        return bill

    def remove_bills(self, account_id: str) -> None:
        """The card's bills are no longer listed (a shorter history window, say)."""
        with self.world.lock:
            for stored in self.world.products.values():
                stored["bills"] = [bill for bill in stored["bills"] if bill["accountId"] != account_id]

    def remove_transaction(self, account_id: str, transaction_id: str) -> None:
        with self.world.lock:
            self.world.delete_row(self.world.rows[account_id][transaction_id])

    def add_investments(self, item_id: str) -> list[dict]:
        """The stand-in's usual investments, with their movements, for an arranged item (one whose
        first execution collected nothing); answers them."""
        with self.world.lock:
            record = self.world.record_for(item_id)
            stored = self.world.products.setdefault(item_id, sandbox_products.empty_products())
            for investment, movements in sandbox_products.new_investments(record.data_rng, item_id, self.world.now()):
                stored["investments"].append(investment)
                stored["investmentTransactions"][investment["id"]] = movements
            return copy.deepcopy(stored["investments"])

    def investment_transactions(self, investment_id: str) -> list[dict]:
        """An investment's movements as Pluggy has them now."""
        with self.world.lock:
            for stored in self.world.products.values():
                if investment_id in stored["investmentTransactions"]:
                    return copy.deepcopy(stored["investmentTransactions"][investment_id])
        raise KeyError(investment_id)

    def add_investment_movement(self, item_id: str, investment_id: str) -> dict:
        """A purchase today: a new movement, and the investment's quantity and amounts moved."""
        with self.world.lock:
            record = self.world.record_for(item_id)
            return sandbox_products.add_investment_movement(self.world, record, investment_id)

    def restate_investment_movement(self, item_id: str, investment_id: str) -> dict:
        """The investment's newest movement deleted and created again under a new id."""
        with self.world.lock:
            record = self.world.record_for(item_id)
            return sandbox_products.restate_investment_movement(self.world, record, investment_id)

    def remove_investment(self, item_id: str, investment_id: str) -> None:
        with self.world.lock:
            stored = self.world.products[item_id]
            stored["investments"] = [i for i in stored["investments"] if i["id"] != investment_id]
            del stored["investmentTransactions"][investment_id]

    def set_item(self, item_id: str, **fields: Any) -> dict:
        """The item now shows `fields` (an update in progress ends without a word)."""
        return self.world.set_item_state(item_id, **fields)

    def finish_update(self, item_id: str) -> dict:
        """Let the item's update run to its end (or its next prompt) now, as a read of it would."""
        with self.world.lock:
            record = self.world.record_for(item_id)
            execution.catch_up(self.world, record)
            return record.json

    def remove_item(self, item_id: str) -> None:
        """Gone from Pluggy (deleted by the user elsewhere): every route of it answers 404."""
        self.world.delete_item(item_id)

    def set_credentials(self, item_id: str, **parameters: str) -> None:
        """What the item logs in with from its next update on (PLUGGY.md "Sandbox behaviour": e.g.
        user `user-locked` ends ACCOUNT_LOCKED, `user-unavailable` SITE_NOT_AVAILABLE)."""
        with self.world.lock:
            self.world.record_for(item_id).parameters.update(parameters)

    def authorize(self, item_id: str, *, grant: bool = True) -> dict:
        """The item's user approves (or refuses) at the bank what the item waits for: an approval
        in the bank's app (user `user-ok-app-approval`) or an Open Finance OAuth login."""
        with self.world.lock:
            record = self.world.record_for(item_id)
            execution.authorize(self.world, record, grant)
            return record.json

    def end_consent(self, item_id: str, how: str = "revoke") -> None:
        """The item's Open Finance consent is revoked (or expires): its data routes answer empty."""
        self.world.end_consent(item_id, how)

    def set_connector(self, item_id: str, connector_id: int) -> None:
        """Move the item to another sandbox connector (MFA_CONNECTOR asks for a token each update;
        OPEN_FINANCE_CONNECTOR's items hold a consent, given now)."""
        with self.world.lock:
            record = self.world.record_for(item_id)
            record.json["connector"] = pf.connector_json(pf.CONNECTORS[connector_id])
            if record.connector.open_finance and record.consent is None:
                self.world.grant_consent(record)

    def add_webhook(self, event: str, url: str, headers: dict[str, str] | None = None, *, enabled: bool = True) -> dict:
        webhook = self.world.add_webhook(event, url, headers, unique=False)
        if not enabled:
            webhook = self.world.change_webhook(webhook["id"], {"enabled": False})
        return webhook

    def snapshot(self) -> Any:
        with self.world.lock:
            world = self.world
            return copy.deepcopy((world.items, world.accounts, world.rows, world.webhooks))

    def restore(self, saved: Any) -> None:
        """Pluggy's state back to `saved`, its PATCH rate limit unspent; no scripted answer or
        recorded call left."""
        items, accounts, rows, webhooks = copy.deepcopy(saved)
        with self.world.lock:
            self.world.items, self.world.accounts, self.world.rows = items, accounts, rows
            self.world.webhooks = webhooks
            self.world._sorted_rows.clear()
            self.world._patch_times.clear()  # a new minute for Pluggy's 20 PATCHes
        with self.lock:
            self.scripted.clear()
            self.calls.clear()

    # Instruments ----------------------------------------------------------------------------

    def refuse_next(
        self,
        method: str,
        path: str,
        status: int,
        code_description: str | None = None,
        data: Any = None,
        headers: dict[str, str] | None = None,
        message: str | None = None,
    ) -> None:
        """The next call to exactly `path` gets Pluggy's error answer."""
        body = pf.error_body(status, code_description, message or f"refused with {status}", data)
        self.answer_next(method, path, status, body, headers)

    def answer_next(
        self,
        method: str,
        path: str,
        status: int,
        body: Any,
        headers: dict[str, str] | None = None,
        *,
        when: Callable[[dict[str, str]], bool] | None = None,
        times: int | None = 1,
    ) -> None:
        """The next call to exactly `path` (whose query `when` accepts) gets this answer, whatever it
        is; `times=None` answers every such call so."""
        with self.lock:
            self.scripted.append(Scripted(method, re.escape(path), status, body, headers or {}, times, when))

    def refuse_when(
        self, method: str, path: str, when: Callable[[dict[str, str]], bool], status: int, code: str
    ) -> None:
        """Every call to `path` whose query `when` accepts is refused with Pluggy's error answer."""
        body = pf.error_body(status, code, f"refused with {status}")
        self.answer_next(method, path, status, body, when=when, times=None)

    def rows_before(self, query: dict[str, str]) -> int:
        """How many of the account's rows come before the page a /v2/transactions `query` asks for."""
        parsed = queries.parse(query, self.page_size)
        if parsed.after is None:
            return 0
        with self.world.lock:
            return bisect.bisect_right(self.world.sorted_rows(parsed.account_id), parsed.after, key=pf.sort_key)

    def hold(self, method: str, path_pattern: str, *, opens_at: int | None = None) -> Gate:
        """Hold requests matching `method` and `path_pattern` at a gate (over real HTTP only)."""
        gate = Gate(opens_at)
        self.gates.append((method, path_pattern, gate))
        return gate

    def count(self, method: str, path_pattern: str) -> int:
        return len(self.calls_to(method, path_pattern))

    def calls_to(self, method: str, path_pattern: str) -> list[Call]:
        with self.lock:
            return [call for call in self.calls if call[0] == method and re.fullmatch(path_pattern, call[1])]

    # Adapters -------------------------------------------------------------------------------

    def wsgi(self, environ: dict, start_response: Callable) -> Any:
        """The sandbox app behind the instruments."""
        request = Request(environ)
        raw = request.get_data()
        environ["wsgi.input"] = io.BytesIO(raw)
        environ["CONTENT_LENGTH"] = str(len(raw))
        method, path, query = request.method, request.path, request.args.to_dict()
        for gate_method, pattern, gate in self.gates:
            if gate_method == method and re.fullmatch(pattern, path):
                gate.pass_through()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw
        with self.lock:
            self.calls.append((method, path, query, body))
            scripted = self._take_scripted(method, path, query)
        if scripted is not None:
            answer = Response(json.dumps(scripted.body), status=scripted.status, headers=scripted.headers)
            answer.content_type = "application/json"
            return answer(environ, start_response)
        return self.app(environ, start_response)

    def _take_scripted(self, method: str, path: str, query: dict[str, str]) -> Scripted | None:
        for scripted in self.scripted:
            matches = scripted.method == method and re.fullmatch(scripted.path, path)
            if matches and (scripted.when is None or scripted.when(query)):
                if scripted.times is not None:
                    scripted.times -= 1
                    if scripted.times == 0:
                        self.scripted.remove(scripted)
                return scripted
        return None

    def install(self, mock: responses.RequestsMock) -> None:
        for method in ("GET", "POST", "PATCH", "DELETE"):
            mock.add_callback(method, re.compile(re.escape(self.base_url) + r"/.*"), callback=self.answer_request)

    def answer_request(self, request) -> tuple[int, dict[str, str], bytes]:
        url = urlsplit(request.url)
        body = request.body.encode() if isinstance(request.body, str) else request.body
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("content-length", "host")}
        answer = Client(self.wsgi).open(
            url.path, method=request.method, query_string=url.query, data=body, headers=headers
        )
        kept = {k: v for k, v in answer.headers.items() if k.lower() != "content-length"}
        return answer.status_code, kept, answer.get_data()

    @contextmanager
    def serve(self) -> Iterator[str]:
        """Answer real HTTP on a free loopback port; yields the base URL."""
        server = make_server("127.0.0.1", 0, self.wsgi, threaded=True)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{server.server_port}"
        finally:
            server.shutdown()
            thread.join()
