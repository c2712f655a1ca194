"""Structured logs: the formatters, the ids in scope, configure_logging, the dev server's access
lines, the request line, the job line and its Pluggy calls, and a scan of every line the main
flows log (at DEBUG, every logger) for secrets."""

from __future__ import annotations

import contextvars
import io
import json
import logging
import re
import threading
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa
from werkzeug.serving import make_server

from config import ConfigError
from harness.processes import gunicorn, service_env
from models import Job, SyncRun, db
from models.base import utcnow
from observability import logs
from observability.logs import (
    ContextFilter,
    JsonFormatter,
    TextFormatter,
    WithoutDevServerAccessLines,
    configure_logging,
)
from sandbox import data as pf
from sync import scheduling
from sync.jobs import sync_worker
from sync.runtime import pluggy_client
from sync.tokens import issue_api_token, issue_webhook_token
from sync.transactions import read_ahead
from sync.users import create_user
from tests.conftest import TEST_SECRETS, drain
from tests.fake_pluggy import FakePluggy, now_iso

ROOT = Path(__file__).resolve().parents[1]

API = "/api/banking"
GENERATED_ID = re.compile(r"^[0-9a-f]{32}$")


class Capture(logging.Handler):
    """Every record that reaches the root logger, with the ids in scope put on it the way the
    production handler does (ContextFilter runs in the thread that logs)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.addFilter(ContextFilter())
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def entries(self, message: str | None = None) -> list[dict]:
        found = [json.loads(JsonFormatter().format(r)) for r in self.records]
        return [e for e in found if message is None or e["message"] == message]

    def only(self, message: str) -> dict:
        (entry,) = self.entries(message)
        return entry


@pytest.fixture
def captured(caplog):
    caplog.set_level(logging.DEBUG)
    handler = Capture()
    root = logging.getLogger()
    root.addHandler(handler)
    yield handler
    root.removeHandler(handler)


@pytest.fixture
def root_logger():
    """The root logger, put back as it was (configure_logging changes it)."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield root
    for handler in root.handlers[:]:
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)


def record(name="tests.logs", level=logging.INFO, msg="hello %s", args=("world",), **extra) -> logging.LogRecord:
    made = logging.LogRecord(name, level, __file__, 1, msg, args, None)
    made.__dict__.update(extra)
    return made


# Formatters -------------------------------------------------------------------------------------


def test_a_json_line_holds_the_ids_in_scope_and_the_fields(captured):
    logger = logging.getLogger("tests.logs")
    with logs.scope(job_id=7, item_id="item-1"):
        logs.bind(event_ids=["e-1", "e-2"])
        logs.event(
            logger,
            "job",
            outcome="done",
            attempt=1,
            at=datetime(2026, 1, 2, tzinfo=UTC),
            amount=Decimal("1.50"),
            error=None,
        )

    (record_,) = captured.records
    line = JsonFormatter().format(record_)
    entry = json.loads(line)
    assert "\n" not in line
    assert list(entry)[:4] == ["ts", "level", "logger", "message"]
    assert {k: v for k, v in entry.items() if k != "ts"} == {
        "level": "info",
        "logger": "tests.logs",
        "message": "job",
        "job_id": 7,
        "item_id": "item-1",
        "event_ids": ["e-1", "e-2"],
        "outcome": "done",
        "attempt": 1,
        "at": "2026-01-02T00:00:00+00:00",
        "amount": "1.50",
        "error": None,
    }
    ts = datetime.fromisoformat(entry["ts"])
    assert ts.utcoffset() == timedelta(0) and re.search(r"\.\d{3}\+00:00$", entry["ts"])
    assert abs((datetime.now(UTC) - ts).total_seconds()) < 60


def test_a_plain_logging_call_gets_the_ids_too(captured):
    with logs.scope(request_id="r-1"):
        logging.getLogger("some.library").warning("disk %s%% full", 93)

    entry = captured.only("disk 93% full")
    assert (entry["level"], entry["logger"], entry["request_id"]) == ("warning", "some.library", "r-1")


def test_a_field_named_like_an_id_in_scope_wins(captured):
    with logs.scope(job_id=1):
        logs.event(logging.getLogger("tests.logs"), "x", job_id=2)
    assert captured.only("x")["job_id"] == 2


def test_exceptions_are_in_the_json_line(captured):
    try:
        raise ValueError("the detail of the failure")
    except ValueError:
        logging.getLogger("tests.logs").exception("job %s failed", 5)

    entry = captured.only("job 5 failed")
    assert entry["level"] == "error"
    assert entry["exception"].startswith("Traceback (most recent call last):")
    assert entry["exception"].endswith("ValueError: the detail of the failure")


def test_a_record_without_context_or_fields_is_still_a_line():
    entry = json.loads(JsonFormatter().format(record()))
    assert set(entry) == {"ts", "level", "logger", "message"} and entry["message"] == "hello world"


def test_the_text_format(captured):
    with logs.scope(job_id=7):
        logs.event(logging.getLogger("tests.logs"), "job", logging.WARNING, outcome="failed", error="Pluggy 500")
    try:
        raise KeyError("k")
    except KeyError:
        logging.getLogger("tests.logs").exception("boom")

    first, second = (TextFormatter().format(r) for r in captured.records)
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00 "
        r'WARNING tests\.logs: job job_id=7 outcome=failed error="Pluggy 500"',
        first,
    ), first
    head, *trace = second.splitlines()
    assert head.endswith("ERROR   tests.logs: boom")
    assert trace[0] == "Traceback (most recent call last):" and trace[-1] == "KeyError: 'k'"


def test_text_values_that_could_break_the_line_are_quoted(captured):
    logs.event(logging.getLogger("tests.logs"), "request", event="item/updated\nforged=1", route="/health", ids=[1, 2])
    line = TextFormatter().format(captured.records[-1])
    assert "\n" not in line
    assert line.endswith('request event="item/updated\\nforged=1" route=/health ids=[1,2]')


def test_event_costs_nothing_when_the_level_is_off(captured):
    logger = logging.getLogger("tests.logs.quiet")
    logger.setLevel(logging.WARNING)
    try:
        logs.event(logger, "not shown", detail="x")
        logs.event(logger, "shown", logging.ERROR)
    finally:
        logger.setLevel(logging.NOTSET)
    assert [e["message"] for e in captured.entries()] == ["shown"]


# Scopes and bind ----------------------------------------------------------------------------------


def test_scopes_nest_and_reset():
    assert logs.current() == {}
    with logs.scope(request_id="r-1"):
        logs.bind(event_id="e-1")
        assert logs.current() == {"request_id": "r-1", "event_id": "e-1"}
        with logs.scope(job_id=2):
            assert logs.current() == {"job_id": 2}  # a fresh set, not added to the outer one
            logs.bind(item_id="item-1")
            assert logs.current() == {"job_id": 2, "item_id": "item-1"}
        assert logs.current() == {"request_id": "r-1", "event_id": "e-1"}
    assert logs.current() == {}


def test_a_scope_resets_when_its_block_raises():
    with pytest.raises(RuntimeError), logs.scope(job_id=3):
        logs.bind(event_ids=["e"])
        raise RuntimeError
    assert logs.current() == {}


def test_start_and_end_scope_pair_by_token():
    outer = logs.start_scope(request_id="r-1")
    inner = logs.start_scope(job_id=1)
    logs.end_scope(inner)
    assert logs.current() == {"request_id": "r-1"}
    logs.end_scope(outer)
    assert logs.current() == {}


def test_bind_leaves_lines_already_logged_as_they_were(captured):
    logger = logging.getLogger("tests.logs")
    with logs.scope(job_id=1):
        logger.info("before")
        logs.bind(event_ids=["e-1"])
        logger.info("after")
        returned = logs.current()
        returned["job_id"] = "tampered"  # a copy: changing it changes nothing
        logger.info("later")

    assert "event_ids" not in captured.only("before")
    assert captured.only("after")["event_ids"] == ["e-1"]
    assert captured.only("later")["job_id"] == 1


def test_a_new_thread_starts_without_ids_unless_given_the_context():
    seen = {}
    with logs.scope(job_id=9):
        context = contextvars.copy_context()
        plain = threading.Thread(target=lambda: seen.update(plain=logs.current()))
        copied = threading.Thread(target=lambda: context.run(lambda: seen.update(copied=logs.current())))
        for thread in (plain, copied):
            thread.start()
            thread.join()
    assert seen == {"plain": {}, "copied": {"job_id": 9}}


def test_read_ahead_fetches_each_page_on_its_thread_under_the_callers_ids():
    seen = []

    def pages():
        for n in range(3):
            seen.append((threading.current_thread().name, logs.current()))
            yield [n]

    with logs.scope(job_id=4, item_id="item-1"):
        assert list(read_ahead(pages())) == [[0], [1], [2]]

    assert len(seen) == 3
    for thread_name, ids in seen:
        assert thread_name.startswith("read-ahead") and ids == {"job_id": 4, "item_id": "item-1"}


# configure_logging --------------------------------------------------------------------------------


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def ours(root: logging.Logger) -> list[logging.Handler]:
    return [h for h in root.handlers if getattr(h, "pluggy_sync", False)]


def test_json_when_the_stream_is_not_a_terminal(root_logger):
    stream = io.StringIO()

    handler = configure_logging({}, stream)

    assert isinstance(handler.formatter, JsonFormatter) and ours(root_logger) == [handler]
    assert root_logger.level == logging.INFO
    with logs.scope(job_id=5):
        logging.getLogger("tests.configured").info("shown %d", 1)
        logging.getLogger("tests.configured").debug("not at INFO")
    (line,) = stream.getvalue().splitlines()
    assert json.loads(line)["message"] == "shown 1" and json.loads(line)["job_id"] == 5


def test_text_on_a_terminal(root_logger):
    stream = Terminal()

    handler = configure_logging({}, stream)

    assert isinstance(handler.formatter, TextFormatter)
    with logs.scope(job_id=5):
        logging.getLogger("tests.configured").warning("careful")
    assert re.search(r" WARNING tests\.configured: careful job_id=5\n$", stream.getvalue())


@pytest.mark.parametrize(
    "environ, stream, formatter, level",
    [
        ({"LOG_FORMAT": "text"}, io.StringIO, TextFormatter, logging.INFO),
        ({"LOG_FORMAT": "JSON"}, Terminal, JsonFormatter, logging.INFO),
        ({"LOG_FORMAT": ""}, io.StringIO, JsonFormatter, logging.INFO),
        ({"LOG_LEVEL": "debug"}, io.StringIO, JsonFormatter, logging.DEBUG),
        ({"LOG_LEVEL": "WARNING"}, io.StringIO, JsonFormatter, logging.WARNING),
        ({"LOG_LEVEL": "error", "LOG_FORMAT": "Text"}, io.StringIO, TextFormatter, logging.ERROR),
    ],
)
def test_log_format_and_level_settings(root_logger, environ, stream, formatter, level):
    handler = configure_logging(environ, stream())
    assert isinstance(handler.formatter, formatter) and root_logger.level == level


@pytest.mark.parametrize(
    "environ, named",
    [
        ({"LOG_FORMAT": "xml"}, "LOG_FORMAT"),
        ({"LOG_LEVEL": "verbose"}, "LOG_LEVEL"),
        ({"LOG_LEVEL": "TRACE"}, "LOG_LEVEL"),
    ],
)
def test_bad_settings_are_refused_and_change_nothing(root_logger, environ, named):
    handlers = root_logger.handlers[:]
    with pytest.raises(ConfigError, match=named):
        configure_logging(environ, io.StringIO())
    assert root_logger.handlers == handlers


def test_configuring_again_replaces_the_handler(root_logger):
    first_stream, second_stream = io.StringIO(), io.StringIO()
    configure_logging({}, first_stream)
    second = configure_logging({"LOG_FORMAT": "text"}, second_stream)

    logging.getLogger("tests.configured").info("once")

    assert ours(root_logger) == [second]
    assert first_stream.getvalue() == "" and "once" in second_stream.getvalue()


# The development server's access lines ----------------------------------------------------------


def test_werkzeugs_access_line_is_dropped():
    keep = WithoutDevServerAccessLines().filter
    as_briefed = record(
        "werkzeug",
        msg='%s - - [%s] "%s" %s %s',
        args=("127.0.0.1", "now", "POST /webhooks/pluggy/tok HTTP/1.1", "200", "-"),
    )
    as_werkzeug_makes_it = record(
        "werkzeug", msg='127.0.0.1 - - [29/Nov/2026 20:41:04] "%s" %s %s', args=("GET /x HTTP/1.1", "404", "-")
    )
    assert not keep(as_briefed) and not keep(as_werkzeug_makes_it)


@pytest.mark.parametrize(
    "made",
    [
        record("werkzeug", msg=" * Running on %s", args=("http://127.0.0.1:5000",)),
        record("werkzeug", msg="Press CTRL+C to quit", args=()),
        record("werkzeug", level=logging.ERROR, msg="Error on request:", args=()),
        record("api.requests", msg='%s - - [%s] "%s" %s %s', args=("a", "b", "c", "d", "e")),  # not werkzeug's
    ],
    ids=["running on", "ctrl-c", "error", "another logger"],
)
def test_other_lines_are_kept(made):
    assert WithoutDevServerAccessLines().filter(made)


def test_behind_the_dev_server_the_token_in_a_webhook_url_reaches_no_log_line(app, captured, root_logger):
    """The real werkzeug server logs the raw path; configure_logging's handler drops that line and
    keeps the service's own request line, which shows the route."""
    stream = io.StringIO()
    configure_logging({"LOG_LEVEL": "DEBUG"}, stream)
    token = issue_webhook_token(app.config["SECRET_KEY"])
    server = make_server("127.0.0.1", 0, app, threaded=True)
    serving = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    serving.start()
    try:
        request = urllib.request.Request(
            f"http://127.0.0.1:{server.server_port}/webhooks/pluggy/{token}",
            data=json.dumps(pf.webhook_event("item/updated", itemId="item-1")).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as answer:
            assert answer.status == 200
    finally:
        server.shutdown()
        server.server_close()

    access = [r for r in captured.records if r.name == "werkzeug" and token in r.getMessage()]
    assert access, "werkzeug logged its access line with the raw path"
    written = stream.getvalue()
    assert token not in written
    lines = [json.loads(line) for line in written.splitlines()]
    (request_line,) = [line for line in lines if line["message"] == "request"]
    assert (request_line["route"], request_line["status"]) == ("/webhooks/pluggy/<token>", 200)


def test_under_gunicorn_every_line_is_the_services_and_no_access_line_shows_a_token(tmp_path):
    """gunicorn.conf.py's logger class: gunicorn's own lines in the service's format, none of its
    access lines (they would show the raw path)."""
    token = issue_webhook_token(TEST_SECRETS["SECRET_KEY"])
    env = service_env(f"sqlite:///{tmp_path / 'db.sqlite'}", TEST_SECRETS["SECRET_KEY"], LOG_FORMAT=None)
    # The database is not migrated here: /health's 503 is an answer.
    with gunicorn(env, "--workers", "1", log=tmp_path / "gunicorn.log", any_status=True, stop_timeout=30) as port:
        request = urllib.request.Request(f"http://127.0.0.1:{port}/webhooks/pluggy/{token}", data=b"{}", method="POST")
        with pytest.raises(urllib.error.HTTPError):  # an empty event: 400, and logged
            urllib.request.urlopen(request, timeout=5)

    written = (tmp_path / "gunicorn.log").read_text()
    assert token not in written
    lines = [json.loads(line) for line in written.splitlines()]  # every line, gunicorn's included
    assert any(line["logger"] == "gunicorn.error" and line["message"].startswith("Booting worker") for line in lines)
    assert not [line for line in lines if line["logger"] == "gunicorn.access"]
    (webhook,) = [line for line in lines if line["message"] == "request" and line["route"].startswith("/webhooks")]
    assert (webhook["route"], webhook["status"]) == ("/webhooks/pluggy/<token>", 400)


# The request line ---------------------------------------------------------------------------------


def test_one_request_line_per_request(client, captured):
    response = client.get("/health", headers={"X-Request-ID": "lb-42.a:b_c"})

    line = captured.only("request")
    assert response.headers["X-Request-ID"] == "lb-42.a:b_c"
    assert {k: line[k] for k in ("level", "logger", "method", "route", "status", "request_id")} == {
        "level": "info",
        "logger": "api.requests",
        "method": "GET",
        "route": "/health",
        "status": 200,
        "request_id": "lb-42.a:b_c",
    }
    assert isinstance(line["duration_ms"], float) and line["duration_ms"] >= 0
    assert logs.current() == {}  # the request's ids end with it


def test_without_a_request_id_one_is_made_for_each_request(client, captured):
    first, second = client.get("/health"), client.get("/health")

    ids = [line["request_id"] for line in captured.entries("request")]
    assert [first.headers["X-Request-ID"], second.headers["X-Request-ID"]] == ids
    assert all(GENERATED_ID.match(i) for i in ids) and ids[0] != ids[1]


def test_the_longest_plain_request_id_is_kept(client, captured):
    given = "a" * 128
    assert client.get("/health", headers={"X-Request-ID": given}).headers["X-Request-ID"] == given


@pytest.mark.parametrize(
    "given",
    ["a\nb", "a\r\nX-Injected: 1", "a" * 129, "x" * 500, "a b", '"quoted"', "<script>", "ação", "a/b", "a=b", ""],
    ids=[
        "newline",
        "header injection",
        "129 chars",
        "500 chars",
        "space",
        "quotes",
        "markup",
        "non-ascii",
        "slash",
        "equals",
        "empty",
    ],
)
def test_a_request_id_that_is_not_plainly_an_id_is_replaced(client, captured, given):
    # Set in the environ directly: werkzeug's client would refuse some of these as header values.
    response = client.get("/health", environ_overrides={"HTTP_X_REQUEST_ID": given})

    replaced = response.headers["X-Request-ID"]
    assert GENERATED_ID.match(replaced)
    assert captured.only("request")["request_id"] == replaced
    if given:
        assert not any(given in JsonFormatter().format(r) for r in captured.records)


def test_the_request_line_shows_the_route_never_the_path(app, client, captured, user):
    token = issue_webhook_token(app.config["SECRET_KEY"])
    api_token = issue_api_token(app.config["SECRET_KEY"], user)
    payload = pf.webhook_event("item/updated", itemId="item-1")

    accepted = client.post(f"/webhooks/pluggy/{token}", json=payload)
    refused = client.post("/webhooks/pluggy/forged-token-value", json=payload)
    client.get(f"{API}/connections/12345/", headers={"Authorization": f"Bearer {api_token}"})
    client.get(f"/no/such/page/{token}")

    assert (accepted.status_code, refused.status_code) == (200, 401)
    lines = captured.entries("request")
    assert [(line["method"], line["route"], line["status"]) for line in lines] == [
        ("POST", "/webhooks/pluggy/<token>", 200),
        ("POST", "/webhooks/pluggy/<token>", 401),
        ("GET", "/api/banking/connections/<id:connection_id>/", 404),
        ("GET", "<unmatched>", 404),
    ]
    assert (lines[0]["event_id"], lines[0]["event"]) == (payload["eventId"], "item/updated")
    assert "event_id" not in lines[1]
    everything = "\n".join(JsonFormatter().format(r) for r in captured.records)
    for hidden in (token, "forged-token-value", api_token, "/no/such/page", "12345"):
        assert hidden not in everything


def test_a_duplicate_delivery_names_its_event_too(client, captured):
    payload = pf.webhook_event("transactions/created", itemId="item-1")
    client.post("/webhooks/pluggy", json=payload, headers={"X-Webhook-Secret": "test-webhook-secret"})
    client.post("/webhooks/pluggy", json=payload, headers={"X-Webhook-Secret": "test-webhook-secret"})

    assert [line["event_id"] for line in captured.entries("request")] == [payload["eventId"]] * 2


def test_an_unhandled_error_is_logged_under_the_request_id(app, captured):
    def broken():
        raise RuntimeError("the view broke")

    app.add_url_rule("/broken", view_func=broken)

    response = app.test_client().get("/broken", headers={"X-Request-ID": "req-500"})

    assert (response.status_code, response.headers["X-Request-ID"]) == (500, "req-500")
    failure = captured.only("unhandled error")
    assert failure["request_id"] == "req-500" and "RuntimeError: the view broke" in failure["exception"]
    line = captured.only("request")
    assert (line["route"], line["status"], line["request_id"]) == ("/broken", 500, "req-500")
    assert logs.current() == {}


# The job line, and the Pluggy calls made inside a job -------------------------------------------


def test_a_job_line_and_every_pluggy_call_of_the_job_carry_its_id(session, connection, fake_pluggy, worker, captured):
    fake_pluggy.page_size = 2  # five transactions: three pages, read ahead on a thread of their own
    account_id = fake_pluggy.accounts[connection.item_id][0]["id"]
    for n in range(5):
        fake_pluggy.add_transaction(account_id, date=f"{utcnow().date() - timedelta(days=n)}T03:00:00.000Z")
    job_id = scheduling.queue_initial_sync(session, connection)
    session.commit()

    assert drain(worker, session) == 1

    job = captured.only("job")
    assert {k: job[k] for k in ("level", "logger", "job_id", "job_kind", "item_id", "outcome", "attempt", "error")} == {
        "level": "info",
        "logger": "jobqueue.worker",
        "job_id": job_id,
        "job_kind": "initial_sync",
        "item_id": connection.item_id,
        "outcome": "done",
        "attempt": 1,
        "error": None,
    }
    assert job["duration_ms"] >= 0
    calls = [r for r in captured.records if r.getMessage() == "pluggy call"]
    assert {r.fields["endpoint"] for r in calls} >= {"/items/{id}", "/accounts", "/v2/transactions"}
    for call in calls:
        assert (call.context["job_id"], call.context["job_kind"]) == (job_id, "initial_sync"), call.fields
    ahead = [r for r in calls if r.threadName.startswith("read-ahead")]
    assert len(ahead) == 3 and all(r.fields["endpoint"] == "/v2/transactions" for r in ahead)
    assert {r.thread for r in ahead}.isdisjoint({threading.get_ident()})
    closed = captured.only("sync run closed")
    assert (closed["job_id"], closed["trigger"], closed["status"], closed["created"], closed["accounts"]) == (
        job_id,
        "initial",
        "success",
        5,
        1,
    )
    assert logs.current() == {}


def test_a_failed_job_logs_its_outcome_and_error_under_its_id(session, connection, fake_pluggy, worker, captured):
    job_id = scheduling.queue_initial_sync(session, connection)
    session.commit()
    fake_pluggy.refuse_next("GET", f"/items/{connection.item_id}", 400, "SOMETHING_WRONG")

    drain(worker, session)

    job = captured.only("job")
    assert (job["level"], job["outcome"], job["job_id"]) == ("warning", "failed", job_id)
    assert "SOMETHING_WRONG" in job["error"]
    failure = [e for e in captured.entries() if e["message"].startswith(f"job {job_id} ")]
    assert failure and failure[0]["job_id"] == job_id and "PluggyError" in failure[0]["exception"]
    call = [e for e in captured.entries("pluggy call") if e["status"] == 400]
    assert call and call[0]["job_id"] == job_id


def test_a_job_of_unknown_kind_is_logged_dead(session, worker, captured):
    session.add(Job(kind="no_such_kind", payload={}))
    session.commit()

    drain(worker, session)

    job = captured.only("job")
    assert (job["level"], job["outcome"], job["job_kind"]) == ("warning", "dead", "no_such_kind")


def test_a_webhook_is_followed_from_its_request_line_to_the_run_it_closed(
    client, session, connection, fake_pluggy, worker, captured
):
    scheduling.queue_initial_sync(session, connection)
    session.commit()
    drain(worker, session)
    fake_pluggy.add_transaction(
        fake_pluggy.accounts[connection.item_id][0]["id"], date=f"{utcnow().date()}T03:00:00.000Z"
    )
    fake_pluggy.set_item(connection.item_id, status="UPDATED", lastUpdatedAt=now_iso())
    captured.records.clear()
    payload = pf.webhook_event("item/updated", itemId=connection.item_id)

    client.post("/webhooks/pluggy", json=payload, headers={"X-Webhook-Secret": "test-webhook-secret"})
    drain(worker, session)

    delivery = captured.only("request")
    (handled,) = captured.entries("webhook events handled")
    assert delivery["event_id"] == payload["eventId"]
    (event,) = handled["events"]
    assert (event["event_id"], event["event"], event["status"]) == (payload["eventId"], "item/updated", "processed")
    job = captured.only("job")
    assert (job["job_id"], job["job_kind"], job["event_ids"]) == (
        handled["job_id"],
        "webhook_events",
        [payload["eventId"]],
    )
    closed = captured.only("sync run closed")
    assert (closed["run_id"], closed["job_id"], closed["trigger"], closed["created"]) == (
        event["run_id"],
        job["job_id"],
        "webhook",
        1,
    )
    for call in captured.entries("pluggy call"):
        assert call["job_id"] == job["job_id"] and call["event_ids"] == [payload["eventId"]]


# Secrets: the main flows, every line at DEBUG --------------------------------------------------

MARK = "LEAKCHECK"  # in every secret below, so any part of one that reaches a line is found too
SECRET_KEY = f"sk-{MARK}-5b7e0c9a2f1d4e3b8a6c"
CLIENT_SECRET = f"pcs-{MARK}-8d2a6f4c1e9b7035"
WEBHOOK_SECRET = f"whs-{MARK}-3f9c1a7e5d2b8046"
WRONG_WEBHOOK_SECRET = f"whs-{MARK}-wrong-0c4e8a"
RIGHT_MFA = f"mfa-{MARK}-right-602931"
WRONG_MFA = f"mfa-{MARK}-wrong-731458"
REFUSED_MFA = f"mfa-{MARK}-refused-918273"
JWT = re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.eyJ")


class SecretIssuingPluggy(FakePluggy):
    """Pluggy, naming the API keys and connect tokens it handed out."""

    @property
    def api_keys(self) -> list[str]:
        return self.world.issued_keys("api")

    @property
    def connect_tokens(self) -> list[str]:
        return self.world.issued_keys("connect")

    def refuse_echoing(self, method: str, path: str, status: int, code: str, *echoed: str) -> None:
        """A refusal whose message and data repeat what Pluggy was sent or knows."""
        text = " ".join(echoed)
        body = pf.error_body(status, code, f"refused: {text}", {"echo": list(echoed), "detail": {"values": text}})
        self.answer_next(method, path, status, body)


def fragments(token: str) -> list[str]:
    """A signed token, and its signature alone (the part that must never be seen)."""
    return [token, token.rsplit(".", 1)[-1]]


def leaks(records: list[logging.LogRecord], secrets: list[str]) -> list[tuple[str, str]]:
    found = []
    for formatter in (JsonFormatter(), TextFormatter()):
        for made in records:
            line = formatter.format(made)
            found += [(secret, line) for secret in secrets if secret in line]
            if JWT.search(line):
                found.append(("a JWT", line))
    return found


def test_the_scan_finds_a_secret_wherever_a_line_holds_it(captured):
    logger = logging.getLogger("tests.planted")
    logger.info("in the message %s", CLIENT_SECRET)
    logs.event(logger, "in a field", value=RIGHT_MFA)
    with logs.scope(token=SECRET_KEY):
        logger.info("in the context")
    try:
        raise ValueError(WEBHOOK_SECRET)
    except ValueError:
        logger.exception("in the exception")
    logger.info("a key %s", pf.api_key())

    found = leaks(captured.records, [CLIENT_SECRET, RIGHT_MFA, SECRET_KEY, WEBHOOK_SECRET])
    assert {secret for secret, _ in found} == {CLIENT_SECRET, RIGHT_MFA, SECRET_KEY, WEBHOOK_SECRET, "a JWT"}


@pytest.fixture
def leak_pluggy(monkeypatch):
    """The fake over real loopback HTTP, so the whole requests/urllib3 stack logs as in production."""
    fake = SecretIssuingPluggy(client_secret=CLIENT_SECRET)
    monkeypatch.setattr(pf, "MFA_VALUE", RIGHT_MFA)  # the value the sandbox takes
    with fake.serve() as url:
        fake.url = fake.base_url = url
        yield fake
    fake.close()


def test_no_secret_reaches_any_log_line_in_the_main_flows(app, caplog, captured, leak_pluggy):
    # Every logger at DEBUG, the libraries' own included (SQLAlchemy and psycopg set theirs to WARNING).
    for name in ("sqlalchemy", "psycopg", "urllib3", "werkzeug"):
        caplog.set_level(logging.DEBUG, logger=name)
    fake = leak_pluggy
    app.config.update(
        SECRET_KEY=SECRET_KEY,
        PLUGGY_CLIENT_SECRET=CLIENT_SECRET,
        PLUGGY_WEBHOOK_SECRETS=(WEBHOOK_SECRET,),
        PUBLIC_BASE_URL="https://sync.example.com",
        PLUGGY_BASE_URL=fake.url,
        SYNC_WATCH_INTERVAL_S=0.05,
    )
    client = app.test_client()
    responses_seen: list[str] = []

    def call(method: str, path: str, expected: int, **kwargs):
        response = getattr(client, method)(path, **kwargs)
        assert response.status_code == expected, (path, response.get_data(as_text=True))
        responses_seen.append(response.get_data(as_text=True))
        return response

    with app.app_context():
        user = create_user(db.session, "ana@example.com")
        api_token = issue_api_token(SECRET_KEY, user)
        headers = {"Authorization": f"Bearer {api_token}"}
        item = fake.add_item()
        account = fake.add_account(item["id"])
        fake.page_size = 2
        for n in range(5):
            fake.add_transaction(account["id"], date=f"{utcnow().date() - timedelta(days=n)}T03:00:00.000Z")
        worker = sync_worker(app, pluggy_client(), poll_interval=0.05)

        def drain_all() -> None:
            while worker.run_one(db.session, "test-worker"):
                pass

        # Connect tokens (a new connection), carrying the signed webhook URL.
        call("post", f"{API}/connect_token/", 200, headers=headers)
        ((_, _, _, sent),) = fake.calls_to("POST", "/connect_token")
        url_token = sent["options"]["webhookUrl"].rsplit("/", 1)[1]
        assert url_token == issue_webhook_token(SECRET_KEY)

        # Register, list, get; update-mode connect token; the first sync.
        connection_id = call(
            "post", f"{API}/connections/", 201, headers=headers, json={"item_id": item["id"]}
        ).get_json()["id"]
        call("get", f"{API}/connections/", 200, headers=headers)
        call("get", f"{API}/connections/{connection_id}/", 200, headers=headers)
        call("post", f"{API}/connect_token/", 200, headers=headers, json={"item_id": item["id"]})
        drain_all()

        # A manual sync (the update is triggered), its item/updated by the secret header.
        fake.add_transaction(account["id"], date=f"{utcnow().date()}T05:00:00.000Z")
        call("post", f"{API}/connections/{connection_id}/sync_transactions/", 202, headers=headers)
        fake.set_item(item["id"], status="UPDATED", lastUpdatedAt=now_iso())  # the update is over
        call(
            "post",
            "/webhooks/pluggy",
            200,
            json=pf.webhook_event("item/updated", itemId=item["id"]),
            headers={"X-Webhook-Secret": WEBHOOK_SECRET},
        )
        drain_all()

        # The wait paths, with a worker beside the web process.
        running = threading.Thread(target=worker.run, name="background-worker")
        running.start()
        try:
            waited = call(
                "post",
                f"{API}/connections/{connection_id}/sync_transactions/",
                200,
                headers=headers,
                query_string={"wait": "20"},
            )
            assert waited.get_json()["status"] == "SUCCESS"
            reread = call(
                "post",
                f"{API}/connections/{connection_id}/sync_transactions/",
                200,
                headers=headers,
                query_string={"wait": "20"},
                json={"trigger_update": False},
            )
            assert reread.get_json()["status"] == "SUCCESS"
        finally:
            worker.request_stop()
            running.join(20)
        assert not running.is_alive()

        # MFA: refused by Pluggy with an answer repeating the value and its keys; a wrong value the
        # bank turns down; the right one.
        def ask_for_mfa() -> None:
            prompt = pf.mfa_parameter(placeholder="000000")  # a hint, not the value the bank expects
            fake.set_item(
                item["id"], status="WAITING_USER_INPUT", executionStatus="USER_INPUT_TIMEOUT", parameter=prompt
            )

        ask_for_mfa()
        call("post", f"{API}/connections/{connection_id}/sync_transactions/", 409, headers=headers)
        fake.refuse_echoing(
            "POST", f"/items/{item['id']}/mfa", 400, "INVALID_MFA", REFUSED_MFA, CLIENT_SECRET, *fake.api_keys
        )
        refused = call(
            "post",
            f"{API}/connections/{connection_id}/send_mfa/",
            400,
            headers=headers,
            json={"mfa_value": REFUSED_MFA},
        )
        assert refused.get_json()["error"]["code"] == "invalid_mfa"
        assert not [s for s in (REFUSED_MFA, CLIENT_SECRET, *fake.api_keys) if s in refused.get_data(as_text=True)]
        call(
            "post", f"{API}/connections/{connection_id}/send_mfa/", 200, headers=headers, json={"mfa_value": WRONG_MFA}
        )
        ask_for_mfa()
        call(
            "post",
            f"{API}/connections/{connection_id}/send_mfa/",
            200,
            headers=headers,
            json={"parameters": {"token": RIGHT_MFA}},
        )
        fake.set_item(item["id"], status="UPDATED", executionStatus="SUCCESS", lastUpdatedAt=now_iso())
        call("get", f"{API}/connections/{connection_id}/check_status/", 200, headers=headers)

        # Pluggy refusing a manual sync and a job's read with answers that repeat its keys.
        fake.refuse_echoing("PATCH", f"/items/{item['id']}", 400, "SOMETHING_WRONG", CLIENT_SECRET, *fake.api_keys)
        call("post", f"{API}/connections/{connection_id}/sync_transactions/", 502, headers=headers)
        fake.refuse_echoing("GET", f"/items/{item['id']}", 400, "SOMETHING_WRONG", CLIENT_SECRET, *fake.api_keys)

        # Webhooks: the signed URL, the header, and senders turned away.
        call("post", f"/webhooks/pluggy/{url_token}", 200, json=pf.webhook_event("item/updated", itemId=item["id"]))
        call(
            "post",
            "/webhooks/pluggy",
            200,
            json=pf.webhook_event("transactions/created", itemId=item["id"], accountId=account["id"]),
            headers={"X-Webhook-Secret": WEBHOOK_SECRET},
        )
        call(
            "post",
            "/webhooks/pluggy",
            401,
            json=pf.webhook_event("item/updated"),
            headers={"X-Webhook-Secret": WRONG_WEBHOOK_SECRET},
        )
        call("post", f"/webhooks/pluggy/{url_token[:-3]}xyz", 401, json=pf.webhook_event("item/updated"))
        call("post", f"/webhooks/pluggy/{api_token}", 401, json=pf.webhook_event("item/updated"))
        call(
            "post", f"{API}/connections/", 401, headers={"Authorization": f"Bearer {url_token}"}, json={"item_id": "x"}
        )
        drain_all()  # the first attempt fails on the refused read; the retry is not due yet
        db.session.execute(sa.update(Job).where(Job.status == "queued").values(run_at=utcnow()))
        db.session.commit()
        drain_all()

        # What operators call.
        call("get", "/health/ready", 200)
        call("get", "/metrics", 200)
        assert (
            db.session.scalar(sa.select(sa.func.count()).select_from(SyncRun).where(SyncRun.status == "success")) >= 4
        )
        failed_jobs = db.session.scalars(sa.select(Job).where(Job.last_error.is_not(None))).all()
        assert failed_jobs, "the echoed refusal failed a job attempt"

    secrets = [
        MARK,
        SECRET_KEY,
        CLIENT_SECRET,
        WEBHOOK_SECRET,
        WRONG_WEBHOOK_SECRET,
        RIGHT_MFA,
        WRONG_MFA,
        REFUSED_MFA,
        *fragments(api_token),
        *fragments(url_token),
        *fake.connect_tokens,
        *(part for key in fake.api_keys for part in fragments(key)),
    ]
    assert len(fake.api_keys) >= 1 and len(fake.connect_tokens) == 2
    records = list({id(r): r for r in [*caplog.records, *captured.records]}.values())
    assert leaks(records, secrets) == []

    # The scan saw the flows: the lines are there, only without secrets.
    messages = {r.getMessage() for r in captured.records}
    assert {"request", "pluggy call", "job", "sync run closed", "webhook events handled"} <= messages
    loggers = {r.name for r in captured.records}
    assert {"api.requests", "pluggy_client.client", "jobqueue.worker", "urllib3.connectionpool", "werkzeug"} <= loggers
    assert any(r.name.startswith("sqlalchemy.engine") for r in captured.records)
    routes = {e["route"] for e in captured.entries("request")}
    assert {
        "/api/banking/connect_token/",
        "/api/banking/connections/",
        "/api/banking/connections/<id:connection_id>/",
        "/api/banking/connections/<id:connection_id>/sync_transactions/",
        "/api/banking/connections/<id:connection_id>/send_mfa/",
        "/api/banking/connections/<id:connection_id>/check_status/",
        "/webhooks/pluggy",
        "/webhooks/pluggy/<token>",
    } <= routes
    endpoints = {(e["method"], e["endpoint"], e["status"]) for e in captured.entries("pluggy call")}
    assert {
        ("POST", "/auth", 200),
        ("POST", "/connect_token", 200),
        ("POST", "/items/{id}/mfa", 400),
        ("POST", "/items/{id}/mfa", 200),
        ("PATCH", "/items/{id}", 400),
        ("GET", "/items/{id}", 400),
    } <= endpoints
    assert any(r.exc_info for r in captured.records), "a failure's traceback was scanned too"


def test_a_connect_token_refusal_repeating_the_webhook_url_leaks_nothing(
    app, client, user, connection, fake_pluggy, captured
):
    app.config["PUBLIC_BASE_URL"] = "https://sync.example.com"
    token = issue_webhook_token(app.config["SECRET_KEY"])
    headers = {"Authorization": f"Bearer {issue_api_token(app.config['SECRET_KEY'], user)}"}
    body = pf.error_body(
        400, "INVALID_WEBHOOK_URL", f"webhookUrl https://sync.example.com/webhooks/pluggy/{token} is not reachable"
    )
    fake_pluggy.answer_next("POST", "/connect_token", 400, body, times=2)
    fake_pluggy.set_item(connection.item_id, status="LOGIN_ERROR", error=pf.item_error())

    answers = [
        client.post(f"{API}/connect_token/", headers=headers),
        client.post(f"{API}/connections/{connection.id}/sync_transactions/", headers=headers),  # credentials required
    ]

    assert [a.status_code for a in answers] == [400, 409]
    assert not any(token in a.get_data(as_text=True) for a in answers)
    assert leaks(captured.records, fragments(token)) == []
