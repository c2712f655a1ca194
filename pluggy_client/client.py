"""HTTP client for Pluggy's API: API-key handling, retries, paging and error mapping."""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import orjson
import requests
import urllib3
from requests.adapters import HTTPAdapter

from observability import logs, metrics

from .errors import PluggyError, PluggyUnavailable, error_from_response
from .retry import PluggyRetry

logger = logging.getLogger(__name__)

Json = Any
Clock = Callable[[], float]

API_KEY_LIFETIME_WITHOUT_EXP = 2 * 60 * 60
API_KEY_REFRESH_MARGIN = 5 * 60
CONNECT_TOKEN_LIFETIME = timedelta(minutes=30)
CONNECT_TOKEN_REUSE_FOR = timedelta(minutes=25)
MAX_IDS_PER_REQUEST = 500
PAGE_SIZE = 500  # rows asked for per page of a page-numbered list (the OpenAPI document's default and largest)
POOL_SIZE = 16
AUTH_REFUSED = (401, 403)
WEBHOOK_FIELDS = frozenset({"url", "event", "headers", "enabled"})


@dataclass(frozen=True)
class ConnectToken:
    """A token for Pluggy Connect (the widget); ``item_id`` set means update mode for that item."""

    access_token: str = field(repr=False)
    item_id: str | None
    expires_at: datetime


class PluggyClient:
    """Thread-safe client; one instance per process is meant to be shared."""

    def __init__(
        self,
        base_url: str,
        client_id: str,
        client_secret: str,
        *,
        timeout: float | tuple[float, float] = (3.05, 30),
        session: requests.Session | None = None,
        clock: Clock = time.time,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.client_id = client_id
        self._client_secret = client_secret
        self._timeout = timeout
        self._clock = clock
        self._owns_session = session is None
        self._session = session or requests.Session()
        self._session.mount(self.base_url + "/", HTTPAdapter(max_retries=PluggyRetry(), pool_maxsize=POOL_SIZE))
        self._api_key_lock = threading.Lock()
        self._api_key: str | None = None
        self._api_key_refresh_at = 0.0
        self._connect_tokens_lock = threading.Lock()
        self._connect_tokens: dict[tuple[Any, ...], tuple[float, ConnectToken]] = {}

    def __repr__(self) -> str:
        return f"PluggyClient(base_url={self.base_url!r}, client_id={self.client_id!r})"

    def close(self) -> None:
        if self._owns_session:
            self._session.close()

    def create_connect_token(
        self,
        item_id: str | None = None,
        *,
        client_user_id: str | None = None,
        webhook_url: str | None = None,
        oauth_redirect_uri: str | None = None,
        avoid_duplicates: bool | None = None,
    ) -> ConnectToken:
        """A connect token, reused for 25 of its 30 minutes for the same arguments."""
        options = _without_none(
            clientUserId=client_user_id,
            webhookUrl=webhook_url,
            oauthRedirectUri=oauth_redirect_uri,
            avoidDuplicates=avoid_duplicates,
        )
        cache_key = (item_id, *sorted(options.items()))
        with self._connect_tokens_lock:
            now = self._clock()
            self._connect_tokens = {key: entry for key, entry in self._connect_tokens.items() if entry[0] > now}
            if cache_key not in self._connect_tokens:
                token = self._fetch_connect_token(item_id, options, now)
                reuse_until = now + CONNECT_TOKEN_REUSE_FOR.total_seconds()
                self._connect_tokens[cache_key] = (reuse_until, token)
            return self._connect_tokens[cache_key][1]

    def _fetch_connect_token(self, item_id: str | None, options: dict[str, Any], now: float) -> ConnectToken:
        body = _without_none(itemId=item_id, options=options or None)
        # The webhookUrl carries this service's signed token: a refusal quoting it must not pass it on.
        webhook_url = options.get("webhookUrl")
        secrets = [webhook_url, webhook_url.rsplit("/", 1)[-1]] if webhook_url else []
        response = self._request("POST", "/connect_token", body=body, secrets=secrets)
        expires_at = datetime.fromtimestamp(now, UTC) + CONNECT_TOKEN_LIFETIME
        return ConnectToken(_field(response, "accessToken", "/connect_token"), item_id, expires_at)

    def get_item(self, item_id: str) -> Json:
        return self._request("GET", f"/items/{_segment(item_id)}")

    def update_item(
        self,
        item_id: str,
        parameters: dict[str, str] | None = None,
        *,
        webhook_url: str | None = None,
        client_user_id: str | None = None,
    ) -> Json:
        """Start a sync, optionally with new credentials; no arguments reuses the stored ones."""
        body = _without_none(parameters=parameters, webhookUrl=webhook_url, clientUserId=client_user_id)
        credentials = (parameters or {}).values()
        return self._request("PATCH", f"/items/{_segment(item_id)}", body=body, secrets=credentials)

    def trigger_item_update(self, item_id: str) -> Json:
        """Refresh the item with its stored credentials (body ``{}``)."""
        return self.update_item(item_id)

    def send_mfa(self, item_id: str, values: dict[str, str]) -> Json:
        """Answer the item's pending ``parameter``, e.g. ``{"token": "123456"}``."""
        return self._request("POST", f"/items/{_segment(item_id)}/mfa", body=values, secrets=values.values())

    def delete_item(self, item_id: str) -> Json:
        return self._request("DELETE", f"/items/{_segment(item_id)}")

    def list_accounts(self, item_id: str, type: str | None = None) -> list[Json]:
        return self._collect_pages("/accounts", _without_none(itemId=item_id, type=type))

    def iter_transactions(
        self,
        account_id: str,
        *,
        date_from: date | str | None = None,
        date_to: date | str | None = None,
        created_at_from: datetime | str | None = None,
        ids: Iterable[str] | None = None,
    ) -> Iterator[list[Json]]:
        """Pages of transactions from ``/v2/transactions``, each fetched only when asked for.

        Arguments are checked here, before the first page is requested. An empty ``ids`` matches
        nothing, so nothing is requested.
        """
        if created_at_from is not None and date_from is not None:
            raise ValueError("Pluggy does not accept created_at_from together with date_from")
        query = _without_none(
            accountId=account_id,
            dateFrom=_as_day(date_from),
            dateTo=_as_day(date_to),
            createdAtFrom=_as_utc_timestamp(created_at_from),
        )
        if ids is None:
            queries = [query]
        else:
            chunks = _chunks(list(ids), MAX_IDS_PER_REQUEST)
            queries = [{**query, "ids": ",".join(chunk)} for chunk in chunks]
        return self._transaction_pages(queries)

    def _transaction_pages(self, queries: list[dict[str, str]]) -> Iterator[list[Json]]:
        for query in queries:
            cursor: str | None = None
            while True:
                params = _without_none(**query, after=cursor)
                page = self._request("GET", "/v2/transactions", params=params)
                yield page["results"]
                if page.get("next") is None:
                    break
                cursor = _cursor_from(page["next"])

    def list_bills(self, account_id: str) -> list[Json]:
        """A credit-card account's bills (``GET /bills?accountId=``), every page: a card has a few
        dozen at most. An empty list is not a deletion (a consent that ended answers empty)."""
        return self._collect_pages("/bills", {"accountId": account_id})

    def get_transaction(self, transaction_id: str) -> Json:
        return self._request("GET", f"/transactions/{_segment(transaction_id)}")

    def iter_investments(self, item_id: str, *, type: str | None = None) -> Iterator[list[Json]]:
        """Pages of the item's investments from ``/investments``, each fetched only when asked for
        (page numbers, ``PAGE_SIZE`` a page)."""
        return self._numbered_pages("/investments", _without_none(itemId=item_id, type=type))

    def iter_investment_transactions(self, investment_id: str) -> Iterator[list[Json]]:
        """Pages of an investment's movements from ``/investments/{id}/transactions``, each fetched
        only when asked for. Pluggy takes page and pageSize only here: no date filter."""
        return self._numbered_pages(f"/investments/{_segment(investment_id)}/transactions", {})

    # Identity, loans, consents ----------------------------------------------------------------

    def get_identity(self, item_id: str) -> Json:
        """The item's owner (``/identity?itemId=``): name, CPF/CNPJ, contacts, addresses. Raises
        PluggyNotFound (``IDENTITY_NOT_FOUND``) when the item has none, or its consent withholds it.
        Personal data: the caller must not log it."""
        return self._request("GET", "/identity", params={"itemId": item_id})

    def iter_loans(self, item_id: str) -> Iterator[list[Json]]:
        """Pages of the item's loans (``/loans?itemId=``), each fetched only when asked for."""
        return self._numbered_pages("/loans", {"itemId": item_id})

    def list_consents(self, item_id: str) -> list[Json]:
        """The item's Open Finance consents (``/consents?itemId=``): ``expiresAt``, ``revokedAt``,
        ``products``, ``openFinancePermissionsGranted``. Empty for an item of another kind."""
        return self._collect_pages("/consents", {"itemId": item_id})

    def _numbered_pages(self, path: str, query: dict[str, Any]) -> Iterator[list[Json]]:
        """A page-numbered list, page by page, up to the ``totalPages`` the latest page announces."""
        number = 1
        while True:
            page = self._request("GET", path, params={**query, "page": number, "pageSize": PAGE_SIZE})
            if page is None:
                return
            yield page["results"]
            if number >= int(page.get("totalPages") or 1) or not page["results"]:
                return
            number += 1

    def create_webhook(self, event: str, url: str, headers: dict[str, str] | None = None) -> Json:
        body = _without_none(event=event, url=url, headers=headers)
        return self._request("POST", "/webhooks", body=body, secrets=(headers or {}).values())

    def list_webhooks(self) -> list[Json]:
        return self._collect_pages("/webhooks", {})

    def update_webhook(self, webhook_id: str, **fields: Any) -> Json:
        """PATCH any of ``url``, ``event``, ``headers`` (None clears them) and ``enabled``."""
        unknown = set(fields) - WEBHOOK_FIELDS
        if unknown:
            raise TypeError(f"update_webhook got unknown fields: {', '.join(sorted(unknown))}")
        headers = fields.get("headers") or {}
        return self._request("PATCH", f"/webhooks/{_segment(webhook_id)}", body=fields, secrets=headers.values())

    def delete_webhook(self, webhook_id: str) -> Json:
        return self._request("DELETE", f"/webhooks/{_segment(webhook_id)}")

    def _collect_pages(self, path: str, query: dict[str, str]) -> list[Json]:
        first = self._request("GET", path, params=query)
        if first is None:
            return []
        results = list(first["results"])
        for number in range(2, int(first.get("totalPages") or 1) + 1):
            results += self._request("GET", path, params={**query, "page": number})["results"]
        return results

    def _request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        body: Json = None,
        secrets: Iterable[str] = (),
    ) -> Json:
        """Send with the API key; on 401/403 fetch a new key and send once more."""
        api_key = self._current_api_key()
        response = self._send(method, path, api_key, params, body)
        if response.status_code in AUTH_REFUSED:
            self._forget_api_key(api_key)
            api_key = self._current_api_key()
            response = self._send(method, path, api_key, params, body)
        return self._parse(response, [*secrets, self._client_secret, api_key])

    def _send(
        self, method: str, path: str, api_key: str | None, params: dict[str, Any] | None, body: Json
    ) -> requests.Response:
        headers = {"X-API-KEY": api_key} if api_key else {}
        started = time.monotonic()
        try:
            response = self._session.request(
                method,
                self.base_url + path,
                params=params,
                json=body,
                headers=headers,
                timeout=self._timeout,
            )
        except (requests.RequestException, urllib3.exceptions.HTTPError) as exc:
            record_call(method, path, None, time.monotonic() - started, error=type(exc).__name__)
            message = f"{method} {path} got no answer ({type(exc).__name__})"
            raise PluggyUnavailable(None, None, message) from exc
        record_call(method, path, response.status_code, time.monotonic() - started, retried=earlier_statuses(response))
        return response

    @staticmethod
    def _parse(response: requests.Response, secrets: Iterable[str]) -> Json:
        if not response.ok:
            raise error_from_response(response, secrets)
        if not response.content:
            return None
        try:
            return decoded(response.content)
        except ValueError:
            raise PluggyError(response.status_code, None, "answer is not JSON") from None

    def ensure_api_key(self) -> None:
        """Make sure an API key can be had: free while the cached one is fresh, else one /auth call.
        Raises PluggyError (PluggyAuthError when the keys are refused)."""
        self._current_api_key()

    def _current_api_key(self) -> str:
        # One lock around check and fetch: threads arriving together wait for a single /auth call.
        with self._api_key_lock:
            now = self._clock()
            if self._api_key is None or now >= self._api_key_refresh_at:
                self._api_key = self._fetch_api_key()
                expires_at = _expiry_of(self._api_key, now)
                self._api_key_refresh_at = expires_at - API_KEY_REFRESH_MARGIN
            return self._api_key

    def _forget_api_key(self, refused_key: str) -> None:
        with self._api_key_lock:
            # Another thread may already have replaced the refused key; keep its new one.
            if self._api_key == refused_key:
                self._api_key = None

    def _fetch_api_key(self) -> str:
        credentials = {"clientId": self.client_id, "clientSecret": self._client_secret}
        response = self._send("POST", "/auth", None, None, credentials)
        return _field(self._parse(response, [self._client_secret]), "apiKey", "/auth")


def decoded(content: bytes) -> Json:
    """An answer's JSON: orjson, three times faster than json on a page of transactions, and json for
    what orjson refuses (an escaped lone surrogate, an integer beyond 64 bits), so the values are
    always json's."""
    try:
        return orjson.loads(content)
    except orjson.JSONDecodeError:
        return json.loads(content)


def _field(answer: Json, name: str, path: str) -> str:
    """A token field of a successful answer; a PluggyError (never a KeyError) when it is missing."""
    value = answer.get(name) if isinstance(answer, dict) else None
    if not isinstance(value, str) or not value:
        raise PluggyError(200, None, f"the answer of {path} has no {name}")
    return value


def _expiry_of(api_key: str, now: float) -> float:
    """The JWT's ``exp`` (read, not verified); a key that is not a JWT is assumed to last 2 h."""
    try:
        payload = api_key.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        return float(claims["exp"])
    except (IndexError, KeyError, TypeError, ValueError):
        return now + API_KEY_LIFETIME_WITHOUT_EXP


def _segment(value: str) -> str:
    return quote(str(value), safe="")


def _without_none(**values: Any) -> dict[str, Any]:
    return {key: value for key, value in values.items() if value is not None}


def _chunks(values: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


def _as_day(value: date | str | None) -> str | None:
    if value is None:
        return None
    day = value if isinstance(value, date) else date.fromisoformat(value)
    return day.strftime("%Y-%m-%d")


def _as_utc_timestamp(value: datetime | str | None) -> str | None:
    """ISO 8601 in UTC with milliseconds and ``Z``, the form Pluggy documents for createdAtFrom."""
    if value is None:
        return None
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(value)
    if moment.tzinfo is None:
        raise ValueError("created_at_from must carry a timezone")
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _cursor_from(next_link: str) -> str:
    cursors = parse_qs(urlsplit(next_link).query).get("after")
    if not cursors:
        raise PluggyError(200, None, "Pluggy's next link carries no 'after' cursor")
    return cursors[0]


def earlier_statuses(response: requests.Response) -> list[int | None]:
    """Statuses of the attempts urllib3 retried before this answer (a 429 waited out, a 503...)."""
    retries = getattr(response.raw, "retries", None)
    return [attempt.status for attempt in getattr(retries, "history", ())]


def record_call(
    method: str,
    path: str,
    status: int | None,
    seconds: float,
    *,
    retried: Sequence[int | None] = (),
    error: str | None = None,
) -> None:
    """One log line and the metrics of one call, its retried attempts counted under their own status."""
    endpoint = metrics.endpoint_label(path)
    for earlier in retried:
        metrics.PLUGGY_REQUESTS.labels(method, endpoint, str(earlier or "none")).inc()
    metrics.PLUGGY_REQUESTS.labels(method, endpoint, str(status or "none")).inc()
    metrics.PLUGGY_DURATION.labels(method, endpoint).observe(seconds)
    fields: dict[str, Any] = {
        "method": method,
        "path": path,
        "endpoint": endpoint,
        "status": status,
        "duration_ms": round(seconds * 1000, 1),
    }
    if retried:
        fields["retried"] = retried
    if error:
        fields["error"] = error
    logs.event(logger, "pluggy call", logging.WARNING if status is None or status >= 500 else logging.INFO, **fields)
