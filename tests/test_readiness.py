"""GET /health/ready: the database, the queue (workers keep up; optionally few dead jobs) and
Pluggy (an API key can be had, a failure remembered for 30 s)."""

from __future__ import annotations

import importlib
import json
import time
from datetime import timedelta
from types import SimpleNamespace

import pytest

from harness.ports import free_port
from models import Job, db
from models.base import utcnow
from sandbox import data as pf
from sync.monitoring import PLUGGY_FAILURE_REMEMBERED_S, PluggyAccessCheck
from tests.conftest import TEST_SECRETS, make_app

SECRETS = [TEST_SECRETS["SECRET_KEY"], TEST_SECRETS["PLUGGY_CLIENT_SECRET"], *TEST_SECRETS["PLUGGY_WEBHOOK_SECRETS"]]


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(app) -> Clock:
    """The app's Pluggy check, on a clock the test moves."""
    clock = Clock()
    app.extensions["pluggy_access_check"] = PluggyAccessCheck(clock=clock)
    return clock


def ready(client, **query):
    response = client.get("/health/ready", query_string=query)
    body = response.get_json()
    text = response.get_data(as_text=True)
    assert [secret for secret in SECRETS if secret in text] == []
    return response.status_code, body


def add_jobs(app, *jobs: Job) -> None:
    with app.app_context():
        db.session.add_all(jobs)
        db.session.commit()


def test_ready_when_every_check_passes(client, fake_pluggy):
    status, body = ready(client)

    assert status == 200
    assert body == {
        "status": "ok",
        "checks": {"database": "ok", "queue": "ok", "pluggy": "ok"},
        "queue": {"due": 0, "scheduled": 0, "running": 0, "dead": 0, "oldest_due_age_s": 0.0},
    }
    assert fake_pluggy.count("POST", "/auth") == 1


def test_a_fresh_api_key_is_not_asked_for_again(client, fake_pluggy):
    for _ in range(3):
        assert ready(client)[0] == 200
    assert fake_pluggy.count("POST", "/auth") == 1


def test_readiness_needs_no_authentication(client, fake_pluggy):
    assert client.get("/health/ready", headers={"Authorization": "Bearer forged"}).status_code == 200


# The queue --------------------------------------------------------------------------------------


def test_a_due_job_waiting_longer_than_allowed_is_not_ready(app, client, fake_pluggy):
    add_jobs(app, Job(kind="sync", status="queued", run_at=utcnow() - timedelta(seconds=400)))

    status, body = ready(client)

    assert status == 503
    assert body["status"] == "error"
    assert body["checks"] == {"database": "ok", "queue": "error", "pluggy": "ok"}
    assert body["error"]["code"] == "not_ready"
    assert (
        body["error"]["message"].startswith("queue: the oldest due job has waited 40")
        and "(limit 300 s)" in body["error"]["message"]
    )
    assert body["queue"]["due"] == 1 and body["queue"]["oldest_due_age_s"] >= 400


def test_max_due_age_sets_the_limit(app, client, fake_pluggy):
    add_jobs(app, Job(kind="sync", status="queued", run_at=utcnow() - timedelta(seconds=400)))

    assert ready(client, max_due_age="600")[0] == 200
    assert ready(client, max_due_age="399.5")[0] == 503


def test_with_max_due_age_0_any_due_job_is_too_old(app, client, fake_pluggy):
    assert ready(client, max_due_age="0")[0] == 200  # no due job: nothing waits
    add_jobs(app, Job(kind="sync", status="queued", run_at=utcnow() - timedelta(seconds=1)))
    assert ready(client, max_due_age="0")[0] == 503


def test_scheduled_running_and_finished_jobs_do_not_count_as_waiting(app, client, fake_pluggy):
    long_ago = utcnow() - timedelta(days=2)
    add_jobs(
        app,
        Job(kind="sync", status="queued", run_at=utcnow() + timedelta(hours=1), created_at=long_ago),
        Job(kind="sync", status="running", run_at=long_ago, item_id="item-1"),
        Job(kind="sync", status="done", run_at=long_ago),
    )

    status, body = ready(client)

    assert status == 200
    assert (body["queue"]["scheduled"], body["queue"]["running"], body["queue"]["oldest_due_age_s"]) == (1, 1, 0.0)


def test_dead_jobs_alone_do_not_fail_readiness(app, client, fake_pluggy):
    add_jobs(app, *(Job(kind="sync", status="dead") for _ in range(3)))

    status, body = ready(client)

    assert status == 200 and body["queue"]["dead"] == 3


@pytest.mark.parametrize("max_dead, expected", [("0", 503), ("2", 503), ("3", 200), ("10", 200)])
def test_max_dead_limits_dead_jobs(app, client, fake_pluggy, max_dead, expected):
    add_jobs(app, *(Job(kind="sync", status="dead") for _ in range(3)))

    status, body = ready(client, max_dead=max_dead)

    assert status == expected
    if expected == 503:
        assert body["checks"]["queue"] == "error"
        assert body["error"]["message"] == f"queue: 3 dead job(s) (limit {max_dead})"


def test_max_dead_0_and_one_dead_job(app, client, fake_pluggy):
    add_jobs(app, Job(kind="sync", status="dead"))
    status, body = ready(client, max_dead="0")
    assert (status, body["checks"]["queue"], body["queue"]["dead"]) == (503, "error", 1)


# Pluggy -----------------------------------------------------------------------------------------


def refuse_auth(fake_pluggy, status: int) -> None:
    """/auth refused with an answer that repeats the client secret it was sent."""
    secret = TEST_SECRETS["PLUGGY_CLIENT_SECRET"]
    body = pf.error_body(status, None, f"keys refused: clientSecret {secret}", {"clientSecret": secret})
    fake_pluggy.answer_next("POST", "/auth", status, body)


def test_refused_keys_make_pluggy_not_ready(client, fake_pluggy, clock):
    refuse_auth(fake_pluggy, 401)

    status, body = ready(client)

    assert status == 503
    assert body["checks"] == {"database": "ok", "queue": "ok", "pluggy": "error"}
    assert body["error"]["code"] == "not_ready"
    assert body["error"]["message"].startswith("pluggy: no API key from Pluggy: Pluggy 401")
    assert "[redacted]" in body["error"]["message"]


def test_a_failure_is_remembered_for_30_s_without_asking_pluggy_again(client, fake_pluggy, clock):
    refuse_auth(fake_pluggy, 401)
    first = ready(client)

    for elapsed in (0, 1, PLUGGY_FAILURE_REMEMBERED_S - 0.1):
        clock.now = 1_000.0 + elapsed
        assert ready(client) == first
    assert fake_pluggy.count("POST", "/auth") == 1

    clock.now = 1_000.0 + PLUGGY_FAILURE_REMEMBERED_S + 0.1  # Pluggy answers normally by now
    assert ready(client)[0] == 200
    assert fake_pluggy.count("POST", "/auth") == 2
    assert ready(client)[0] == 200
    assert fake_pluggy.count("POST", "/auth") == 2  # and the key it gave is kept


def test_a_failing_pluggy_is_not_ready(client, fake_pluggy, clock):
    refuse_auth(fake_pluggy, 500)

    status, body = ready(client)

    assert (status, body["checks"]["pluggy"]) == (503, "error")
    assert fake_pluggy.count("POST", "/auth") == 1  # a POST is not retried on a 500


def test_a_pluggy_that_cannot_be_reached_is_not_ready(app, client, monkeypatch):
    waits: list[float] = []
    monkeypatch.setattr(
        importlib.import_module("urllib3.util.retry"), "time", SimpleNamespace(sleep=waits.append, time=time.time)
    )
    app.config["PLUGGY_BASE_URL"] = f"http://127.0.0.1:{free_port()}"  # nothing listens there

    status, body = ready(client)

    assert (status, body["checks"]["pluggy"]) == (503, "error")
    assert "got no answer" in body["error"]["message"]


def test_an_auth_answer_without_a_key_is_not_ready_and_remembered(client, fake_pluggy, clock):
    # Was a 500 (the client's KeyError escaped the check), asked again on every probe: the client
    # now raises PluggyError for an answer without its key.
    fake_pluggy.answer_next("POST", "/auth", 200, {"unexpected": True})

    first, second = ready(client), ready(client)

    assert first == second
    assert (first[0], first[1]["checks"]["pluggy"]) == (503, "error")
    assert (
        first[1]["error"]["message"] == "pluggy: no API key from Pluggy: Pluggy 200: the answer of /auth has no apiKey"
    )
    assert fake_pluggy.count("POST", "/auth") == 1


@pytest.mark.parametrize("missing", ["PLUGGY_CLIENT_ID", "PLUGGY_CLIENT_SECRET"])
def test_pluggy_not_configured_is_not_ready(app, client, missing):
    app.config[missing] = None

    status, body = ready(client)

    assert status == 503
    assert body["checks"] == {"database": "ok", "queue": "ok", "pluggy": "error"}
    assert "PLUGGY_CLIENT_ID and PLUGGY_CLIENT_SECRET must be set" in body["error"]["message"]


# The database -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "database_url",
    [None, "postgresql+psycopg://nobody@127.0.0.1:9/none"],
    ids=["sqlite cannot be opened", "postgresql refuses connections"],
)
def test_without_the_database_nothing_is_ready(tmp_path, fake_pluggy, database_url):
    app = make_app(database_url or f"sqlite:///{tmp_path / 'missing-dir' / 'x.db'}")

    status, body = ready(app.test_client())

    assert status == 503
    assert body["checks"] == {"database": "error", "queue": "error", "pluggy": "ok"}
    assert body["queue"] is None
    assert (
        body["error"]["message"] == "database: The database cannot be reached.; queue: not checked without the database"
    )


def test_every_problem_is_named(app, client, fake_pluggy, clock):
    add_jobs(
        app,
        Job(kind="sync", status="queued", run_at=utcnow() - timedelta(seconds=400)),
        Job(kind="sync", status="dead"),
    )
    refuse_auth(fake_pluggy, 403)

    status, body = ready(client, max_dead="0")

    assert status == 503
    assert body["checks"] == {"database": "ok", "queue": "error", "pluggy": "error"}
    queue_problem, pluggy_problem = body["error"]["message"].split("; ")
    assert queue_problem.startswith("queue: the oldest due job") and pluggy_problem.startswith("pluggy: no API key")


# Bad queries ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "query",
    [
        {"max_due_age": "-1"},
        {"max_due_age": "soon"},
        {"max_due_age": "nan"},
        {"max_due_age": "inf"},
        {"max_due_age": "1e999"},
        {"max_due_age": ""},
        {"max_dead": "-1"},
        {"max_dead": "1.5"},
        {"max_dead": "many"},
        {"max_dead": ""},
        {"max_age": "5"},
    ],
    ids=lambda query: json.dumps(query),
)
def test_bad_query_values_are_400(client, fake_pluggy, query):
    response = client.get("/health/ready", query_string=query)

    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "invalid_request"
    assert fake_pluggy.count("POST", "/auth") == 0  # refused before any check ran
