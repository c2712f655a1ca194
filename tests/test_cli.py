"""The command line: users, connections, jobs and the manual sync, run through Flask's CLI runner."""

from __future__ import annotations

import sqlalchemy as sa

from jobqueue import queue
from models import Connection, Job, SyncRun
from models.base import utcnow
from observability import metrics
from sync.tokens import read_api_token
from tests.fake_pluggy import FakePluggy


def invoke(runner, *args):
    return runner.invoke(args=list(args))


def test_users_create_prints_the_token_last(app, runner, session):
    result = invoke(runner, "users", "create", "Ana@Example.com")

    assert result.exit_code == 0, result.output
    token = result.output.strip().splitlines()[-1]
    user_id, version = read_api_token(app.config["SECRET_KEY"], token)
    assert (user_id, version) == (1, 1)
    assert "ana@example.com" in result.output


def test_users_create_refuses_duplicates_and_non_addresses(runner, session):
    invoke(runner, "users", "create", "ana@example.com")

    assert "already exists" in invoke(runner, "users", "create", "ANA@example.com").output
    assert invoke(runner, "users", "create", "not-an-address").exit_code == 1


def test_connections_add_registers_and_queues_the_first_sync(runner, session, user, fake_pluggy: FakePluggy):
    item = fake_pluggy.add_item()

    result = invoke(runner, "connections", "add", user.email, item["id"])

    assert result.exit_code == 0, result.output
    assert "first sync queued" in result.output
    assert session.scalars(sa.select(Connection)).one().item_id == item["id"]
    assert session.scalars(sa.select(Job)).one().kind == "initial_sync"
    assert "already registered" in invoke(runner, "connections", "add", user.email, item["id"]).output


def test_connections_add_explains_failures(runner, session, user, fake_pluggy):
    assert "no user" in invoke(runner, "connections", "add", "nobody@example.com", "x").output
    result = invoke(runner, "connections", "add", user.email, "unknown-item")
    assert result.exit_code == 1 and "ITEM_NOT_FOUND" in result.output


def test_manual_sync_prints_each_connections_status(runner, connection, fake_pluggy):
    result = invoke(runner, "test-manual-sync", "--connection-id", str(connection.id))

    assert result.exit_code == 0, result.output
    assert f"connection {connection.id} (item {connection.item_id}): SYNC_STARTED (run 1)" in result.output
    assert fake_pluggy.count("PATCH", r"/items/.*") == 1


def test_manual_sync_with_wait_follows_the_run_and_prints_the_counts(app, runner, connection, fake_pluggy, session):
    app.config["SYNC_WATCH_INTERVAL_S"] = 0
    account_id = fake_pluggy.accounts[connection.item_id][0]["id"]
    fake_pluggy.add_transaction(account_id, date=f"{utcnow().date()}T03:00:00.000Z")

    result = invoke(runner, "test-manual-sync", "--item-id", connection.item_id, "--wait", "30")

    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert "SYNC_STARTED" in lines[0]
    assert "Conta Corrente (BANK): 1 new, 0 updated, 0 deleted" in result.output  # progress per account
    assert lines[-1] == f"connection {connection.id}: run 1 success: 1 account(s), 1 new, 0 updated, 0 deleted"


def test_manual_sync_of_all_of_a_users_connections_fails_if_one_does(runner, session, user, connection, fake_pluggy):
    from sync.item_state import apply_item

    broken = fake_pluggy.add_item(status="LOGIN_ERROR")
    other = Connection(user_id=user.id, item_id=broken["id"])
    apply_item(other, broken)
    session.add(other)
    session.commit()

    result = invoke(runner, "test-manual-sync", "--user-email", user.email)

    assert result.exit_code == 1
    assert "SYNC_STARTED" in result.output and "CREDENTIALS_REQUIRED" in result.output


def test_manual_sync_needs_exactly_one_selection(runner, connection):
    assert invoke(runner, "test-manual-sync").exit_code == 2
    assert invoke(runner, "test-manual-sync", "--connection-id", "1", "--item-id", "x").exit_code == 2
    assert "no such connection" in invoke(runner, "test-manual-sync", "--connection-id", "999").output


def test_jobs_list_retry_and_retry_dead(runner, session):
    ids = [queue.enqueue(session, "fetch_item", item_id=f"item-{n}", max_attempts=1) for n in range(2)]
    session.commit()
    for _ in ids:
        queue.fail(session, queue.claim(session, "w"), "PluggyUnavailable: Pluggy 503: down")

    listing = invoke(runner, "jobs", "list", "--status", "dead").output
    assert listing.count("fetch_item") == 2 and "PluggyUnavailable" in listing

    assert invoke(runner, "jobs", "retry", str(ids[0])).exit_code == 0
    assert "1 dead job(s) queued again" in invoke(runner, "jobs", "retry-dead").output
    assert invoke(runner, "jobs", "retry", "12345").exit_code == 1
    session.expire_all()
    assert {job.status for job in session.scalars(sa.select(Job))} == {"queued"}


def test_worker_burst_runs_what_is_due_and_exits(runner, session, connection, fake_pluggy):
    from sync import scheduling

    scheduling.queue_initial_sync(session, connection)
    session.commit()

    result = invoke(runner, "worker", "--burst")

    assert result.exit_code == 0, result.output
    session.expire_all()
    assert session.scalars(sa.select(SyncRun)).one().status == "success"


def test_commands_that_need_pluggy_say_which_settings_are_missing(app, runner, connection):
    app.config["PLUGGY_CLIENT_SECRET"] = None

    result = invoke(runner, "test-manual-sync", "--connection-id", str(connection.id))

    assert result.exit_code == 1
    assert "PLUGGY_CLIENT_ID and PLUGGY_CLIENT_SECRET must be set" in result.output


def test_users_rotate_token_revokes_the_old_one(app, runner, session):
    old = invoke(runner, "users", "create", "ana@example.com").output.strip().splitlines()[-1]

    result = invoke(runner, "users", "rotate-token", "ana@example.com")

    new = result.output.strip().splitlines()[-1]
    assert result.exit_code == 0 and new != old
    assert read_api_token(app.config["SECRET_KEY"], new) == (1, 2)
    client = app.test_client()
    assert client.get("/api/banking/connections/", headers={"Authorization": f"Bearer {old}"}).status_code == 401
    assert client.get("/api/banking/connections/", headers={"Authorization": f"Bearer {new}"}).status_code == 200


def test_users_token_prints_the_current_token_without_revoking_it(app, runner, session):
    created = invoke(runner, "users", "create", "ana@example.com").output.strip().splitlines()[-1]

    shown = invoke(runner, "users", "token", "ana@example.com").output.strip()

    assert shown == created


def column(lines: list[str], header: str, row: int) -> str:
    """The value under `header` in a table printed with aligned columns."""
    start = lines[0].index(header)
    return lines[row][start:].split()[0]


def test_jobs_list_prints_tables_of_the_jobs_and_the_queue(runner, session):
    ids = [queue.enqueue(session, "fetch_item", item_id=f"item-{n}", max_attempts=1) for n in range(2)]
    session.commit()
    queue.fail(session, queue.claim(session, "w"), "PluggyUnavailable: Pluggy 503: down")

    result = invoke(runner, "jobs", "list")

    assert result.exit_code == 0, result.output
    assert "{" not in result.output
    jobs, stats = result.output.split("\n\n")
    jobs = jobs.splitlines()
    assert jobs[0].split() == ["ID", "KIND", "STATUS", "ATTEMPTS", "RUN", "AT", "ITEM", "LAST", "ERROR"]
    assert [column(jobs, "ID", row) for row in (1, 2)] == [str(ids[1]), str(ids[0])]
    assert {column(jobs, "STATUS", row) for row in (1, 2)} == {"queued", "dead"}
    stats = stats.splitlines()
    assert stats[0].split()[:4] == ["DUE", "SCHEDULED", "RUNNING", "DEAD"]
    assert (column(stats, "DUE", 1), column(stats, "DEAD", 1)) == ("1", "1")


def test_jobs_retry_of_a_job_that_does_not_exist_says_so(runner, session):
    result = invoke(runner, "jobs", "retry", "99999")

    assert result.exit_code == 1
    assert "no job 99999" in result.output


def test_jobs_retry_of_a_finished_job_says_why_not(runner, session):
    job_id = queue.enqueue(session, "fetch_item", item_id="item-1")
    session.commit()
    queue.complete(session, queue.claim(session, "w"))

    result = invoke(runner, "jobs", "retry", str(job_id))

    assert result.exit_code == 1
    assert f"job {job_id} is done" in result.output


def test_worker_metrics_listen_on_loopback_unless_told_otherwise(runner, session, fake_pluggy, monkeypatch):
    served = []
    monkeypatch.setattr(metrics, "serve", lambda port, host: served.append((host, port)))

    assert invoke(runner, "worker", "--burst", "--metrics-port", "9100").exit_code == 0
    assert invoke(runner, "worker", "--burst", "--metrics-port", "9100", "--metrics-host", "0.0.0.0").exit_code == 0

    assert served == [("127.0.0.1", 9100), ("0.0.0.0", 9100)]


def test_webhooks_list_prints_every_subscription_at_pluggy(runner, fake_pluggy):
    url = "https://sync.example.com/webhooks/pluggy"
    headers = {"X-Webhook-Secret": "test-webhook-secret"}
    enabled = fake_pluggy.add_webhook("item/updated", url, headers)
    disabled = fake_pluggy.add_webhook("item/error", url, headers, enabled=False)

    result = invoke(runner, "webhooks", "list")

    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split() == ["ID", "EVENT", "URL", "ENABLED"]
    rows = {tuple(column(lines, header, row) for header in ("ID", "EVENT", "URL", "ENABLED")) for row in (1, 2)}
    assert rows == {(enabled["id"], "item/updated", url, "yes"), (disabled["id"], "item/error", url, "no")}
    assert "test-webhook-secret" not in result.output


def test_webhooks_list_says_when_there_is_none(runner, fake_pluggy):
    result = invoke(runner, "webhooks", "list")

    assert result.exit_code == 0 and "no webhook subscriptions" in result.output


def test_webhooks_unregister_deletes_one_subscription_by_id(runner, fake_pluggy):
    url = "https://sync.example.com/webhooks/pluggy"
    kept, removed = fake_pluggy.add_webhook("item/updated", url), fake_pluggy.add_webhook("item/error", url)

    result = invoke(runner, "webhooks", "unregister", removed["id"])

    assert result.exit_code == 0, result.output
    assert removed["id"] in result.output
    assert list(fake_pluggy.webhooks) == [kept["id"]]


def test_webhooks_unregister_of_an_unknown_id_fails(runner, fake_pluggy):
    result = invoke(runner, "webhooks", "unregister", "no-such-webhook")

    assert result.exit_code == 1
    assert "WEBHOOK_NOT_FOUND" in result.output
