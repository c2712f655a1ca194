"""What the stand-in's tests share: the default key pair, building a stand-in, driving it through
the Flask test client, and a loopback webhook receiver. The fixtures are in conftest.py."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs

from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from sandbox import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, create_sandbox
from tests.oas import validate_response, validate_schema

CLIENT_ID, CLIENT_SECRET = DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET
GOOD = {"user": "user-ok", "password": "password-ok"}
FAST_BACKOFF = (0.01, 0.01, 0.01)
FIXED_NOW = datetime(2024, 5, 10, 12, 0, tzinfo=UTC)


class MovableClock:
    """A clock a test moves on, so rows ingested later get a strictly later createdAt."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def make_sandbox(**options):
    options.setdefault("step_delay", 0)
    options.setdefault("retry_backoff", FAST_BACKOFF)
    return create_sandbox(**options)


def api_key(client) -> str:
    answer = client.post("/auth", json={"clientId": CLIENT_ID, "clientSecret": CLIENT_SECRET})
    assert answer.status_code == 200
    return answer.json["apiKey"]


def settle(client, timeout: float = 10) -> None:
    assert client.post(f"/sandbox/idle?timeout={timeout}").json == {"idle": True}


def create_item(client, headers, connector: int = 0, parameters=None, **fields) -> dict:
    body = {"connectorId": connector, "parameters": parameters or GOOD, **fields}
    answer = client.post("/items", json=body, headers=headers)
    assert answer.status_code == 200, answer.json
    validate_response("POST", "/items", answer.json, 200)
    return answer.json


def synced_item(client, headers, **kwargs) -> dict:
    item = create_item(client, headers, **kwargs)
    settle(client)
    return client.get(f"/items/{item['id']}", headers=headers).json


def accounts_of(client, headers, item_id: str) -> list[dict]:
    return client.get(f"/accounts?itemId={item_id}", headers=headers).json["results"]


def all_transactions(client, headers, account_id: str, **filters) -> list[dict]:
    query = {"accountId": account_id, **filters}
    rows, cursor = [], None
    while True:
        params = {**query, **({"after": cursor} if cursor else {})}
        page = client.get("/v2/transactions", query_string=params, headers=headers)
        assert page.status_code == 200, page.json
        rows += page.json["results"]
        if page.json["next"] is None:
            return rows
        cursor = _after(page.json["next"])


def _after(next_link: str) -> str:
    return parse_qs(next_link.lstrip("?"))["after"][0]


def state(client) -> dict:
    return client.get("/sandbox/state").json


def deliveries(client) -> list[dict]:
    return client.get("/sandbox/deliveries").json["deliveries"]


def serve(server) -> None:
    # A short poll interval keeps shutdown() (and so each test's teardown) quick.
    server.serve_forever(poll_interval=0.01)


class Receiver:
    """A loopback webhook receiver; ``answers[path]`` scripts statuses, then 200."""

    def __init__(self) -> None:
        self.received: list[dict] = []
        self.answers: dict[str, list[int]] = {}
        self.changed = threading.Condition()
        self.server = make_server("127.0.0.1", 0, self._wsgi, threaded=True)
        self.thread = threading.Thread(target=serve, args=(self.server,), daemon=True)
        self.thread.start()

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.server.port}{path}"

    @Request.application
    def _wsgi(self, request: Request) -> Response:
        with self.changed:
            self.received.append({"path": request.path, "headers": dict(request.headers), "json": request.get_json()})
            scripted = self.answers.get(request.path) or []
            status = scripted.pop(0) if scripted else 200
            self.changed.notify_all()
        return Response("{}", status=status, content_type="application/json")

    def events(self, path: str | None = None) -> list[str]:
        return [r["json"]["event"] for r in self.received if path in (None, r["path"])]

    def wait_for(self, predicate, timeout: float = 10) -> bool:
        with self.changed:
            return self.changed.wait_for(lambda: predicate(self.received), timeout=timeout)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def subscribe(client, headers, url: str, event: str = "all", hook_headers=None) -> dict:
    body = {"event": event, "url": url, **({"headers": hook_headers} if hook_headers else {})}
    answer = client.post("/webhooks", json=body, headers=headers)
    # 200, not the OAS's 201: the live API's answer, the only one the Node SDK accepts.
    assert answer.status_code == 200, answer.json
    validate_schema("Webhook", answer.json)
    return answer.json
