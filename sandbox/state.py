"""The sandbox's in-memory world. Every read and write holds ``World.lock``."""

from __future__ import annotations

import copy
import fnmatch
import random
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from . import data, events
from .data import Json
from .delivery import Deliverer, Delivery
from .errors import FORBIDDEN, PATCH_ITEMS_LIMIT, RATE_LIMIT_WINDOW_S, PluggyApiError, not_found, rate_limited

API_KEY_LIFETIME = timedelta(hours=2)
CONNECT_TOKEN_LIFETIME = timedelta(minutes=30)
WEBHOOKS_PER_EVENT = 5
# Pluggy disables a subscription after repeated failed deliveries without saying after how many:
# here, after this many deliveries in a row were given up for good (every retry failed).
DISABLE_WEBHOOK_AFTER = 10
Clock = Callable[[], datetime]
# An item put in a waiting status waits for the answer that status asks for.
PROMPT_STAGES = {"WAITING_USER_INPUT": "waiting", "WAITING_USER_ACTION": "authorizing"}


@dataclass
class Token:
    kind: str  # "api" or "connect"
    expires_at: datetime
    item_id: str | None = None
    options: Json = field(default_factory=dict)
    created_items: set[str] = field(default_factory=set)

    @property
    def triggered_by(self) -> str:
        return "USER" if self.kind == "connect" else "CLIENT"

    def may_act_on(self, item_id: str) -> bool:
        return self.kind == "api" or item_id == self.item_id or item_id in self.created_items


@dataclass
class ItemRecord:
    json: Json
    parameters: Json
    data_rng: random.Random
    event_rng: random.Random
    generation: int = 0
    stage: str = "idle"  # login | collect | merge | waiting (an MFA code) | authorizing | idle
    mfa_answered: int = 0
    triggered_by: str = "CLIENT"
    mfa_timer: threading.Timer | None = None
    arranged: bool = False  # its accounts and rows are put in by the caller, never generated
    consent: Json | None = None  # the Open Finance consent (GET /consents), None for other connectors
    announced: bool = False  # item/created went out (its first execution ended well)
    authorized: bool = False  # the user approved this execution's access (app approval or OAuth)
    oauth_redirect_uri: str | None = None  # where the OAuth URL sends the user back to
    # New transactions per existing account the next execution finds (None: a few, at random).
    next_fresh: int | None = None

    @property
    def connector(self) -> data.Connector:
        return data.CONNECTORS[self.json["connector"]["id"]]

    @property
    def id(self) -> str:
        return self.json["id"]


@dataclass
class FailRule:
    method: str
    path: str
    status: int
    count: int
    retry_after: int | None = None
    code_description: str | None = None
    data: Json | None = None

    def as_json(self) -> Json:
        return {
            "method": self.method,
            "path": self.path,
            "status": self.status,
            "count": self.count,
            "retry_after": self.retry_after,
            "codeDescription": self.code_description,
            "data": self.data,
        }


class World:
    def __init__(
        self,
        *,
        seed: int,
        client_id: str,
        client_secret: str,
        step_delay: float | None,
        page_size: int,
        clock: Clock,
        retry_backoff: tuple[float, ...],
        mfa_timeout_s: float,
        base_url: str | None,
        deliver: bool = True,
        disable_webhook_after: int = DISABLE_WEBHOOK_AFTER,
    ) -> None:
        self.seed = seed
        self.client_id = client_id
        self.client_secret = client_secret
        self.step_delay = step_delay
        self.page_size = page_size
        self.clock = clock
        self.mfa_timeout_s = mfa_timeout_s
        self.base_url = base_url
        self.lock = threading.RLock()
        self.executions_changed = threading.Condition(self.lock)
        self.running_executions = 0
        self.stopping = threading.Event()
        self.disable_webhook_after = disable_webhook_after
        self.deliverer = Deliverer(
            random.Random(f"{seed}:deliveries"), retry_backoff, sending=deliver, on_outcome=self.delivery_settled
        )
        self._ids = random.Random(f"{seed}:world")
        self._connector_events = random.Random(f"{seed}:connectors")
        self._tokens: dict[str, Token] = {}
        self.items: dict[str, ItemRecord] = {}
        self._items_created = 0
        self.accounts: dict[str, Json] = {}
        self.rows: dict[str, dict[str, Json]] = {}  # account id -> transaction id -> row
        self._sorted_rows: dict[str, list[Json]] = {}  # cache, dropped whenever rows come or go
        self.deleted_transaction_ids: list[str] = []
        self.products: dict[str, Json] = {}  # item id -> its identity, investments, loans, bills
        self.webhooks: dict[str, Json] = {}
        self._failed_in_a_row: dict[str, int] = {}  # webhook id -> deliveries given up since the last success
        self.connector_health: dict[int, str] = dict.fromkeys(data.CONNECTORS, "ONLINE")
        self._patch_times: deque[float] = deque()
        self._fail_rules: list[FailRule] = []

    def now(self) -> datetime:
        return self.clock().astimezone(UTC)

    def close(self) -> None:
        self.stopping.set()
        with self.lock:
            for record in self.items.values():
                cancel_timer(record)
        self.deliverer.close()

    # Authentication ----------------------------------------------------------------------

    def issue_api_key(self, client_id: Any, client_secret: Any) -> str:
        valid_id = secrets.compare_digest(str(client_id).encode(), self.client_id.encode())
        valid_secret = secrets.compare_digest(str(client_secret).encode(), self.client_secret.encode())
        if not (valid_id and valid_secret):
            raise PluggyApiError(401, "Client keys are invalid", "CLIENT_KEYS_UNAUTHORIZED")
        return self._issue(Token("api", self.now() + API_KEY_LIFETIME))

    def issue_connect_token(self, item_id: str | None, options: Json) -> str:
        with self.lock:
            if item_id is not None and item_id not in self.items:
                raise not_found("item")
        return self._issue(Token("connect", self.now() + CONNECT_TOKEN_LIFETIME, item_id, options))

    def _issue(self, token: Token) -> str:
        claims = {
            "clientId": self.client_id,
            "iat": int(self.now().timestamp()),
            "exp": int(token.expires_at.timestamp()),
            "jti": secrets.token_hex(8),
        }
        if token.item_id:
            claims["itemId"] = token.item_id
        key = data.api_key(claims=claims)
        with self.lock:
            now = self.now()
            self._tokens = {k: t for k, t in self._tokens.items() if t.expires_at > now}
            self._tokens[key] = token
        return key

    def issued_keys(self, kind: str) -> list[str]:
        """The unexpired API keys ("api") or connect tokens ("connect") handed out, oldest first."""
        with self.lock:
            return [key for key, token in self._tokens.items() if token.kind == kind]

    def authenticate(self, key: str | None, allow_connect: bool) -> Token:
        with self.lock:
            token = self._tokens.get(key or "")
        usable = token is not None and token.expires_at > self.now()
        if not usable or (token.kind == "connect" and not allow_connect):
            raise PluggyApiError(403, FORBIDDEN)
        return token

    # Items -------------------------------------------------------------------------------

    def new_item(self, connector: data.Connector, parameters: Json, token: Token, body: Json) -> ItemRecord:
        """A new item, not yet running; the caller starts its first execution."""
        index = self._items_created
        self._items_created += 1
        now = data.iso(self.now())
        # The connect token's options win: the widget's request comes from the end user's browser.
        options = {**_item_options(body), **_item_options(token.options)}
        # Products are the exception (ItemOptions.products in the Python SDK: "used only when the
        # item request doesn't send its own products").
        requested = body.get("products") or token.options.get("products")
        item_json = data.item(
            id=data.new_uuid(self._ids),
            connector=data.connector_json(connector, self.connector_health[connector.id]),
            status="UPDATING",
            executionStatus="CREATING",
            clientUserId=options.get("clientUserId"),
            webhookUrl=options.get("webhookUrl"),
            createdAt=now,
            updatedAt=now,
            lastUpdatedAt=None,
            nextAutoSyncAt=None,
            products=served_products(connector, requested),
        )
        record = ItemRecord(
            json=item_json,
            parameters=dict(parameters),
            data_rng=random.Random(f"{self.seed}:item:{index}:data"),
            event_rng=random.Random(f"{self.seed}:item:{index}:events"),
            triggered_by=token.triggered_by,
            oauth_redirect_uri=token.options.get("oauthRedirectUri") or body.get("oauthRedirectUri"),
        )
        self.items[record.id] = record
        token.created_items.add(record.id)
        return record

    def arrange_item(self, item_json: Json, parameters: Json) -> ItemRecord:
        """An item as it stands at Pluggy, with data the caller puts in (``add_account``,
        ``add_rows``) instead of generated rows; its next execution ends by ``parameters``."""
        with self.lock:
            index = self._items_created
            self._items_created += 1
            record = ItemRecord(
                json=item_json,
                parameters=dict(parameters),
                data_rng=random.Random(f"{self.seed}:item:{index}:data"),
                event_rng=random.Random(f"{self.seed}:item:{index}:events"),
                arranged=True,
                announced=True,
            )
            self.items[record.id] = record
            self.set_item_state(record.id)
            return record

    def set_item_state(self, item_id: str, **fields: Any) -> Json:
        """The item now stands as ``fields`` say: any running execution ends without a word, and an
        item left WAITING_USER_INPUT waits for an answer to its ``parameter``."""
        with self.lock:
            record = self.record_for(item_id)
            cancel_timer(record)
            record.generation += 1
            record.json.update(fields)
            record.stage = PROMPT_STAGES.get(record.json["status"], "idle")
            return record.json

    def record_for(self, item_id: str, token: Token | None = None) -> ItemRecord:
        record = self.items.get(item_id)
        if record is None:
            raise not_found("item")
        if token is not None and not token.may_act_on(item_id):
            raise PluggyApiError(403, FORBIDDEN)
        return record

    def withholds_data(self, item_id: str) -> bool:
        """True once the item's consent has expired or been revoked: Pluggy's data routes then
        answer empty data (an empty page, not a 404) until the user connects again."""
        consent = self.record_for(item_id).consent
        if consent is None:
            return False
        if consent.get("revokedAt"):
            return True
        expires_at = consent.get("expiresAt")
        return expires_at is not None and expires_at <= data.iso(self.now())

    def offers(self, item_id: str, product: str) -> bool:
        """Whether the item collects ``product`` (its ``products``, limited by the connect token)."""
        return product in (self.record_for(item_id).json.get("products") or [])

    # Open Finance consents --------------------------------------------------------------

    def grant_consent(self, record: ItemRecord) -> None:
        """The user authorized at the institution: a new consent replaces the old one."""
        record.consent = data.consent(record.data_rng, record.id, record.json["products"], self.now())
        record.json["consentExpiresAt"] = record.consent["expiresAt"]

    def end_consent(self, item_id: str, how: str) -> Json:
        """The item's consent ``expire``s now or is ``revoke``d by the user at the institution."""
        with self.lock:
            consent = self.record_for(item_id).consent
            if consent is None:
                raise not_found("consent")
            now = data.iso(self.now())
            if how == "expire":
                consent["expiresAt"] = now
                self.record_for(item_id).json["consentExpiresAt"] = now
            else:
                consent["revokedAt"] = now
            return copy.deepcopy(consent)

    def consents_of(self, item_id: str) -> list[Json]:
        with self.lock:
            consent = self.record_for(item_id).consent
            return [copy.deepcopy(consent)] if consent else []

    def find_consent(self, consent_id: str) -> Json:
        with self.lock:
            for record in self.items.values():
                if record.consent and record.consent["id"] == consent_id:
                    return copy.deepcopy(record.consent)
        raise not_found("consent")

    def item_json(self, item_id: str, token: Token | None = None) -> Json:
        with self.lock:
            return copy.deepcopy(self.record_for(item_id, token).json)

    def touch(self, record: ItemRecord, **fields: Any) -> None:
        record.json.update(fields, updatedAt=data.iso(self.now()))

    def count_patch(self) -> None:
        """Pluggy's 20 PATCH /items per minute; every PATCH that gets an answer counts."""
        now = time.monotonic()
        while self._patch_times and now - self._patch_times[0] >= RATE_LIMIT_WINDOW_S:
            self._patch_times.popleft()
        if len(self._patch_times) >= PATCH_ITEMS_LIMIT:
            reset = RATE_LIMIT_WINDOW_S - (now - self._patch_times[0])
            raise rate_limited("Too many requests: item updates are limited to 20 per minute", PATCH_ITEMS_LIMIT, reset)
        self._patch_times.append(now)

    def delete_item(self, item_id: str) -> None:
        with self.lock:
            record = self.record_for(item_id)
            cancel_timer(record)
            record.generation += 1
            self.publish(record, [events.item_event(record.event_rng, "item/deleted", record.json, "CLIENT")])
            del self.items[item_id]
            self.products.pop(item_id, None)
            for account_id in self.account_ids(item_id):
                del self.accounts[account_id]
                del self.rows[account_id]
                self._sorted_rows.pop(account_id, None)

    def set_connector_status(self, connector_id: int, status: str) -> Json:
        with self.lock:
            if connector_id not in self.connector_health:
                raise not_found("connector")
            self.connector_health[connector_id] = status
            for record in self.items.values():
                if record.json["connector"]["id"] == connector_id:
                    record.json["connector"]["health"]["status"] = status
            payload = events.connector_status(self._connector_events, connector_id, status)
            self.deliverer.enqueue(self._deliveries(payload, None))
            return payload

    # Accounts and transactions -----------------------------------------------------------

    def account_ids(self, item_id: str) -> list[str]:
        return [aid for aid, account in self.accounts.items() if account["itemId"] == item_id]

    def add_account(self, account: Json) -> None:
        self.accounts[account["id"]] = account
        self.rows[account["id"]] = {}

    def add_rows(self, rows: list[Json]) -> None:
        for row in rows:
            self.rows[row["accountId"]][row["id"]] = row
            self._sorted_rows.pop(row["accountId"], None)

    def add_account_rows(self, account_id: str, rows: list[Json]) -> None:
        with self.lock:
            if account_id not in self.accounts:
                raise not_found("account")
            self.add_rows(rows)

    def delete_row(self, row: Json) -> None:
        del self.rows[row["accountId"]][row["id"]]
        self._sorted_rows.pop(row["accountId"], None)
        self.deleted_transaction_ids.append(row["id"])

    def sorted_rows(self, account_id: str) -> list[Json]:
        """The account's live rows in (date, id) order; KeyError for an unknown account."""
        if account_id not in self._sorted_rows:
            self._sorted_rows[account_id] = sorted(self.rows[account_id].values(), key=data.sort_key)
        return self._sorted_rows[account_id]

    def refresh_balances(self, account_ids: list[str]) -> None:
        now = self.now()
        for account_id in account_ids:
            data.refresh_balance(self.accounts[account_id], list(self.rows[account_id].values()), now)

    def find_row(self, transaction_id: str) -> Json:
        with self.lock:
            for rows in self.rows.values():
                if transaction_id in rows:
                    return copy.deepcopy(rows[transaction_id])
        raise not_found("transaction")

    # Webhooks ------------------------------------------------------------------------------

    def add_webhook(self, event: str, url: str, headers: dict[str, str] | None, *, unique: bool = True) -> Json:
        """A new subscription; ``unique=False`` lets a test arrange a duplicate left from the past."""
        with self.lock:
            self._refuse_webhook(event, url, None, unique)
            now = data.iso(self.now())
            webhook = {
                "id": data.new_uuid(self._ids),
                "url": url,
                "event": event,
                "disabledAt": None,
                "createdAt": now,
                "updatedAt": now,
                "headers": dict(headers or {}),
            }
            self.webhooks[webhook["id"]] = webhook
            return copy.deepcopy(webhook)

    def _refuse_webhook(self, event: str, url: str, webhook_id: str | None, unique: bool = True) -> None:
        """Pluggy's 400s for a subscription (``webhook_id`` aside) to ``event`` at ``url``."""
        others = [w for w in self.webhooks.values() if w["event"] == event and w["id"] != webhook_id]
        if unique and any(w["url"] == url for w in others):
            message = f"A webhook for event '{event}' and url '{url}' already exists."
            raise PluggyApiError(400, message, "WEBHOOK_ALREADY_EXISTS")
        if len(others) >= WEBHOOKS_PER_EVENT:
            message = f"You have reached the maximum of {WEBHOOKS_PER_EVENT} webhooks for event '{event}'."
            raise PluggyApiError(400, message, "WEBHOOK_LIMIT_REACHED")

    def webhook(self, webhook_id: str) -> Json:
        webhook = self.webhooks.get(webhook_id)
        if webhook is None:
            raise not_found("webhook")
        return webhook

    def webhook_json(self, webhook_id: str) -> Json:
        with self.lock:
            return copy.deepcopy(self.webhook(webhook_id))

    def webhooks_json(self) -> list[Json]:
        with self.lock:
            return copy.deepcopy(list(self.webhooks.values()))

    def change_webhook(self, webhook_id: str, changes: Json) -> Json:
        with self.lock:
            webhook = self.webhook(webhook_id)
            if "url" in changes or "event" in changes:
                event, url = changes.get("event", webhook["event"]), changes.get("url", webhook["url"])
                self._refuse_webhook(event, url, webhook_id)
                webhook.update(event=event, url=url)
            if "headers" in changes:
                webhook["headers"] = dict(changes["headers"] or {})
            if "enabled" in changes:
                webhook["disabledAt"] = None if changes["enabled"] else data.iso(self.now())
                self._failed_in_a_row.pop(webhook_id, None)
            webhook["updatedAt"] = data.iso(self.now())
            return copy.deepcopy(webhook)

    def remove_webhook(self, webhook_id: str) -> None:
        with self.lock:
            self.webhook(webhook_id)
            del self.webhooks[webhook_id]
            self._failed_in_a_row.pop(webhook_id, None)

    def delivery_settled(self, delivery: Delivery, delivered: bool) -> None:
        """The deliverer's report: a subscription whose deliveries keep failing is disabled."""
        webhook_id = delivery.webhook_id
        if webhook_id is None:
            return
        with self.lock:
            webhook = self.webhooks.get(webhook_id)
            if webhook is None:
                return
            if delivered:
                self._failed_in_a_row.pop(webhook_id, None)
                return
            self._failed_in_a_row[webhook_id] = self._failed_in_a_row.get(webhook_id, 0) + 1
            if self._failed_in_a_row[webhook_id] >= self.disable_webhook_after and webhook["disabledAt"] is None:
                webhook["disabledAt"] = webhook["updatedAt"] = data.iso(self.now())

    # Deliveries ----------------------------------------------------------------------------

    def publish(self, record: ItemRecord, payloads: list[Json]) -> None:
        """Queue the payloads as one burst, to the subscribed webhooks and the item's webhookUrl."""
        deliveries = []
        for payload in payloads:
            deliveries += self._deliveries(payload, record.json.get("webhookUrl"))
        self.deliverer.enqueue(deliveries)

    def _deliveries(self, payload: Json, item_webhook_url: str | None) -> list[Delivery]:
        deliveries = [
            Delivery(webhook["url"], payload, dict(webhook["headers"]), webhook_id=webhook_id)
            for webhook_id, webhook in self.webhooks.items()
            if webhook["disabledAt"] is None and subscribes_to(webhook["event"], payload["event"])
        ]
        if item_webhook_url:
            deliveries.append(Delivery(item_webhook_url, payload))
        return deliveries

    def link_base(self) -> str:
        return self.base_url or "http://127.0.0.1"

    # Faults and waiting --------------------------------------------------------------------

    def set_fail_rules(self, rules: list[FailRule]) -> None:
        with self.lock:
            self._fail_rules = rules

    def fail_rules(self) -> list[Json]:
        with self.lock:
            return [rule.as_json() for rule in self._fail_rules]

    def take_failure(self, method: str, path: str) -> FailRule | None:
        with self.lock:
            for rule in self._fail_rules:
                if rule.count > 0 and rule.method == method and fnmatch.fnmatchcase(path, rule.path):
                    rule.count -= 1
                    return rule
        return None

    def wait_idle(self, timeout: float) -> bool:
        """True once no execution runs and no delivery waits, False if ``timeout`` passes first."""
        deadline = time.monotonic() + timeout
        while True:
            with self.executions_changed:
                settled = self.executions_changed.wait_for(
                    lambda: self.running_executions == 0, timeout=max(0.0, deadline - time.monotonic())
                )
            if not settled or not self.deliverer.wait_idle(deadline):
                return False
            with self.lock:
                # Deliveries are queued before an execution ends, so both quiet at once means idle.
                if self.running_executions == 0 and self.deliverer.is_idle():
                    return True

    def snapshot(self) -> Json:
        with self.lock:
            rows = [row for account_id in self.accounts for row in self.sorted_rows(account_id)]
            webhooks = list(self.webhooks.values())
            return copy.deepcopy(
                {
                    "items": [record.json for record in self.items.values()],
                    "accounts": list(self.accounts.values()),
                    "transactions": rows,
                    "deleted_transaction_ids": self.deleted_transaction_ids,
                    "products": self.products,
                    "webhooks": webhooks,
                }
            )


def subscribes_to(subscribed: str, event: str) -> bool:
    """Whether a subscription to ``subscribed`` receives ``event``. `item/all` is in the OAS's
    GET /webhooks example though not in its event list: read here as every item/* event."""
    return subscribed in (event, "all") or (subscribed == "item/all" and event.startswith("item/"))


def cancel_timer(record: ItemRecord) -> None:
    if record.mfa_timer is not None:
        record.mfa_timer.cancel()
        record.mfa_timer = None


def served_products(connector: data.Connector, requested: list[str] | None) -> list[str]:
    """The connector's products, limited to those asked for (all of them when none were)."""
    return [product for product in connector.products if requested is None or product in requested]


def _item_options(values: Json) -> Json:
    return {name: values[name] for name in ("clientUserId", "webhookUrl") if values.get(name) is not None}
