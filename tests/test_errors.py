"""Every 4xx and 5xx answers in the one JSON error shape."""

import http.client
import io
import json
import re
from pathlib import Path

import pytest

from harness.processes import gunicorn, service_env
from sync.tokens import issue_api_token
from tests.conftest import TEST_SECRETS
from web.errors import ApiError

WEBHOOK_SECRET = TEST_SECRETS["PLUGGY_WEBHOOK_SECRETS"][0]


@pytest.fixture
def app_with_failing_routes(app):
    @app.get("/boom")
    def boom():
        raise RuntimeError("internal detail with a secret test-client-secret-do-not-log")

    @app.get("/refused")
    def refused():
        raise ApiError(409, "already_syncing", "A sync is running.", status="ALREADY_SYNCING")

    return app


def test_404_is_json(client):
    response = client.get("/no/such/page")
    assert response.status_code == 404
    assert response.get_json() == {"error": {"code": "not_found", "message": response.get_json()["error"]["message"]}}
    assert response.get_json()["error"]["message"]


def test_405_is_json_and_keeps_allow(client):
    response = client.post("/health")
    assert response.status_code == 405
    assert response.get_json()["error"]["code"] == "method_not_allowed"
    assert "GET" in response.headers["Allow"]


def test_unexpected_error_is_a_json_500_without_details(app_with_failing_routes, caplog):
    response = app_with_failing_routes.test_client().get("/boom")
    assert response.status_code == 500
    assert response.get_json() == {
        "error": {"code": "internal_error", "message": "The server failed to answer this request."}
    }
    assert "test-client-secret" not in response.get_data(as_text=True)


def test_api_error_carries_extra_fields(app_with_failing_routes):
    response = app_with_failing_routes.test_client().get("/refused")
    assert response.status_code == 409
    assert response.get_json() == {
        "error": {"code": "already_syncing", "message": "A sync is running."},
        "status": "ALREADY_SYNCING",
    }


def concrete_paths(app) -> list[tuple[str, str]]:
    """(method, path) of every route, its variables filled in (`<id:...>` as 1, others as x)."""
    paths = []
    for rule in app.url_map.iter_rules():
        path = re.sub(r"<id:[^>]+>", "1", rule.rule)
        path = re.sub(r"<[^>]+>", "x", path)
        paths += [(method, path) for method in sorted(rule.methods - {"HEAD", "OPTIONS"})]
    return paths


def test_no_path_answers_a_redirect_or_html(app, client):
    """Without its trailing slash, with a doubled one or an extra one, by its methods or one no route
    takes (PUT), every path answers itself or the JSON error shape, never werkzeug's 308 HTML page."""
    app.config["PLUGGY_CLIENT_ID"] = None  # /health/ready answers at once, without trying to reach Pluggy
    for method, path in concrete_paths(app):
        for variant in (path.rstrip("/") or "/", path.replace("/", "//", 1), path + "/"):
            for asked in (method, "PUT"):
                response = client.open(variant, method=asked, json={})
                assert not 300 <= response.status_code < 400, (asked, variant, response.status_code)
                if response.status_code >= 400:
                    assert set(response.get_json()["error"]) == {"code", "message"}, (asked, variant)


# Under gunicorn ------------------------------------------------------------------------------------


def served(database_url: str, log_path: Path):
    """The service as deployed (gthread workers, which keep connections alive), on loopback."""
    env = service_env(
        database_url, TEST_SECRETS["SECRET_KEY"], webhook_secret=TEST_SECRETS["PLUGGY_WEBHOOK_SECRETS"][0]
    )
    options = ("--workers", "1", "--threads", "2", "--worker-class", "gthread")
    return gunicorn(env, *options, log=log_path, any_status=True, stop_timeout=30)


def answer(
    connection: http.client.HTTPConnection, method: str, path: str, body: bytes, headers: dict, *, chunked=False
):
    """(status, JSON body) of one request on this connection; `chunked`: the body in chunks of 64 KiB,
    without a Content-Length."""
    sent = (body[i : i + 65536] for i in range(0, len(body), 65536)) if chunked else body
    connection.request(method, path, body=sent, headers={"Content-Type": "application/json", **headers})
    response = connection.getresponse()
    return response.status, json.loads(response.read())


def test_after_a_413_the_same_connection_answers_the_next_request(app, user, database_url, tmp_path):
    """Once, gunicorn said keep-alive after a 413 and then closed the connection because the refused
    body was still on it, so the next request's answer was lost. Webhooks and API alike, one
    kept-alive connection."""
    webhook = {"X-Webhook-Secret": TEST_SECRETS["PLUGGY_WEBHOOK_SECRETS"][0]}
    api = {"Authorization": f"Bearer {issue_api_token(TEST_SECRETS['SECRET_KEY'], user)}"}
    oversized_webhook = json.dumps({"event": "item/updated", "pad": "x" * (256 * 1024)}).encode()
    oversized_api = json.dumps({"item_id": "x" * (1024 * 1024 + 256 * 1024)}).encode()

    with served(database_url, tmp_path / "gunicorn.log") as port:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        first = answer(connection, "POST", "/webhooks/pluggy", oversized_webhook, webhook)
        kept = connection.sock
        second = answer(connection, "POST", "/webhooks/pluggy", b'{"event": "item/updated"}', webhook)
        third = answer(connection, "POST", "/api/banking/connections/", oversized_api, api)
        fourth = answer(connection, "GET", "/api/banking/connections/", b"", api)
        fifth = answer(connection, "POST", "/webhooks/pluggy", oversized_webhook, webhook, chunked=True)
        sixth = answer(connection, "POST", "/api/banking/connections/", oversized_api, api, chunked=True)
        seventh = answer(connection, "GET", "/api/banking/connections/", b"", api)
        assert connection.sock is kept, "the client had to reconnect"
        connection.close()

    assert (first[0], first[1]["error"]["code"]) == (413, "request_entity_too_large")
    assert (second[0], second[1]["status"]) == (200, "accepted")
    assert (third[0], third[1]["error"]["code"]) == (413, "request_entity_too_large")
    assert fourth == seventh == (200, {"connections": [], "next_cursor": None})
    assert [(fifth[0], fifth[1]["error"]["code"]), (sixth[0], sixth[1]["error"]["code"])] == [
        (413, "request_entity_too_large")
    ] * 2


def chunked(body: bytes, **headers: str) -> dict:
    """A request environ whose body comes without a Content-Length, as a chunked one reaches the app."""
    environ = {"wsgi.input": io.BytesIO(body), "wsgi.input_terminated": True, "CONTENT_TYPE": "application/json"}
    return {**environ, **{"HTTP_" + name.upper().replace("-", "_"): value for name, value in headers.items()}}


def test_a_body_over_the_limit_without_a_content_length_is_413_not_cut_short(app, client, user):
    """werkzeug hands over the first `limit` bytes of such a body as if they were all of it: with
    whitespace after a small JSON object, the start alone would pass for a whole request."""
    token = issue_api_token(app.config["SECRET_KEY"], user)
    padded_api = b'{"item_id": "item-1"}' + b" " * (1024 * 1024)
    padded_webhook = b'{"event": "item/updated", "itemId": "item-1"}' + b" " * (64 * 1024)
    answers = [
        client.post(
            "/api/banking/connections/", environ_overrides=chunked(padded_api, Authorization=f"Bearer {token}")
        ),
        client.post("/webhooks/pluggy", environ_overrides=chunked(padded_webhook, X_Webhook_Secret=WEBHOOK_SECRET)),
    ]
    assert [(a.status_code, a.get_json()["error"]["code"]) for a in answers] == [(413, "request_entity_too_large")] * 2
    at_the_limit = b'{"event": "item/updated", "itemId": "item-1"}'.ljust(64 * 1024)
    accepted = client.post("/webhooks/pluggy", environ_overrides=chunked(at_the_limit, X_Webhook_Secret=WEBHOOK_SECRET))
    assert accepted.status_code == 200
