"""Separate processes sharing one database: manual syncs racing, workers draining, a worker killed.

The processes are real `flask` commands; Pluggy is the in-memory fake served over HTTP on loopback.
"""

from __future__ import annotations

import random
import signal
from datetime import timedelta

import sqlalchemy as sa

from harness.processes import PIPE, STDOUT, Child, finish, killed_on_exit, python_m, service_env, start
from harness.waiting import wait_until
from jobqueue import queue
from models import Connection, Job, SyncRun, Transaction
from models.base import utcnow
from sync import scheduling
from sync.item_state import apply_item
from tests.conftest import TEST_SECRETS
from tests.fake_pluggy import FakePluggy


def flask(database_url: str, pluggy_url: str, *args: str) -> Child:
    """`flask args...` on the test database with the test's keys, its output (stderr included) piped."""
    env = service_env(
        database_url,
        TEST_SECRETS["SECRET_KEY"],
        pluggy_url=pluggy_url,
        client_id=TEST_SECRETS["PLUGGY_CLIENT_ID"],
        client_secret=TEST_SECRETS["PLUGGY_CLIENT_SECRET"],
    )
    return start(python_m("flask", *args), env=env, stdout=PIPE, stderr=STDOUT)


def add_connection(session, user, fake: FakePluggy, transactions: int = 3) -> Connection:
    item = fake.add_item()
    account = fake.add_account(item["id"])
    for n in range(transactions):
        fake.add_transaction(account["id"], date=f"{utcnow().date() - timedelta(days=n)}T03:00:00.000Z")
    connection = Connection(user_id=user.id, item_id=item["id"])
    apply_item(connection, item)
    session.add(connection)
    session.commit()
    return connection


def lease_expired(session, job_id: int) -> bool:
    session.expire_all()
    job = session.get(Job, job_id)
    return job.locked_until is not None and job.locked_until < utcnow()


def test_manual_syncs_racing_in_separate_processes_send_one_patch(app, session, user, served_pluggy, database_url):
    connection = add_connection(session, user, served_pluggy)
    # Every process reads the item before any may go on: they all reach the decision together.
    served_pluggy.hold("GET", f"/items/{connection.item_id}", opens_at=4)

    processes = [
        flask(database_url, served_pluggy.base_url, "test-manual-sync", "--connection-id", str(connection.id))
        for _ in range(4)
    ]
    outputs = [process.communicate(timeout=60)[0] for process in processes]

    assert served_pluggy.count("PATCH", f"/items/{connection.item_id}") == 1
    statuses = sorted(
        line.split(": ")[1].split(" ")[0] for output in outputs for line in output.splitlines() if "(item" in line
    )
    assert statuses == ["ALREADY_SYNCING"] * 3 + ["SYNC_STARTED"], outputs


def test_worker_processes_draining_one_queue_do_every_job_exactly_once(app, session, user, served_pluggy, database_url):
    connections = [add_connection(session, user, served_pluggy) for _ in range(24)]
    for connection in connections:
        scheduling.queue_initial_sync(session, connection)
    session.commit()

    workers = [flask(database_url, served_pluggy.base_url, "worker", "--burst", "--concurrency", "2") for _ in range(3)]
    for worker in workers:
        finish(worker)

    session.expire_all()
    runs = session.scalars(sa.select(SyncRun)).all()
    assert sorted(run.connection_id for run in runs) == sorted(c.id for c in connections)
    assert {run.status for run in runs} == {"success"}
    sync_jobs = session.scalars(sa.select(Job).where(Job.kind == "initial_sync")).all()
    assert {(job.status, job.attempts) for job in sync_jobs} == {("done", 1)}
    assert session.scalar(sa.select(sa.func.count()).select_from(Transaction)) == 24 * 3
    # Each item was fetched once: one transaction read per account, no more.
    assert served_pluggy.count("GET", "/v2/transactions") == 24


def test_a_killed_worker_loses_nothing_and_doubles_nothing(app, session, user, served_pluggy, database_url):
    connection = add_connection(session, user, served_pluggy, transactions=5)
    job_id = scheduling.queue_initial_sync(session, connection)
    session.commit()
    gate = served_pluggy.hold("GET", "/v2/transactions")

    with killed_on_exit(flask(database_url, served_pluggy.base_url, "worker", "--lease", "1")) as doomed:
        assert gate.wait_for_arrivals(1)  # the worker is in the middle of the fetch
        doomed.send_signal(signal.SIGKILL)
        doomed.wait()
    gate.open()

    wait_until(lambda: lease_expired(session, job_id))
    finish(flask(database_url, served_pluggy.base_url, "worker", "--burst"))

    session.expire_all()
    job = session.get(Job, job_id)
    assert (job.status, job.attempts) == ("done", 1)  # the attempt after the kill made progress: the kill is forgiven
    (run,) = session.scalars(sa.select(SyncRun)).all()
    assert (run.status, run.created) == ("success", 5)
    assert session.scalar(sa.select(sa.func.count()).select_from(Transaction)) == 5


def test_sigterm_lets_the_worker_finish_the_job_in_hand(app, session, user, served_pluggy, database_url):
    connection = add_connection(session, user, served_pluggy)
    job_id = scheduling.queue_initial_sync(session, connection)
    session.commit()
    gate = served_pluggy.hold("GET", "/v2/transactions")

    with killed_on_exit(flask(database_url, served_pluggy.base_url, "worker")) as worker:
        assert gate.wait_for_arrivals(1)
        worker.send_signal(signal.SIGTERM)
        gate.open()
        output = finish(worker, timeout=30)

    session.expire_all()
    assert session.get(Job, job_id).status == "done", output
    assert session.scalars(sa.select(SyncRun)).one().status == "success"


def deliver_webhooks(app, payloads) -> None:
    client = app.test_client()
    for payload in payloads:
        response = client.post("/webhooks/pluggy", json=payload, headers={"X-Webhook-Secret": "test-webhook-secret"})
        assert response.status_code == 200


def test_a_burst_of_webhooks_is_processed_exactly_once_by_several_workers(
    app, session, user, served_pluggy, database_url
):
    from models import WebhookEvent
    from sandbox import data as pf

    connections = [add_connection(session, user, served_pluggy) for _ in range(20)]
    payloads = []
    for connection in connections:
        account_id = served_pluggy.accounts[connection.item_id][0]["id"]
        payloads += [
            pf.webhook_event("item/updated", itemId=connection.item_id),
            pf.webhook_event("transactions/created", itemId=connection.item_id, accountId=account_id),
            pf.webhook_event("item/updated", itemId=connection.item_id),
        ]
    deliver_webhooks(app, payloads + payloads[:10])  # ten of them delivered twice

    workers = [flask(database_url, served_pluggy.base_url, "worker", "--burst", "--concurrency", "2") for _ in range(3)]
    for worker in workers:
        finish(worker)

    session.expire_all()
    events = session.scalars(sa.select(WebhookEvent)).all()
    assert len(events) == 60
    assert {(e.status, e.attempts) for e in events} == {("processed", 1)}
    runs = session.scalars(sa.select(SyncRun)).all()
    assert sorted(r.connection_id for r in runs) == sorted(c.id for c in connections)  # one fetch per item
    assert session.scalar(sa.select(sa.func.count()).select_from(Transaction)) == 20 * 3


def test_a_worker_killed_while_processing_a_webhook_loses_nothing(app, session, user, served_pluggy, database_url):
    from models import WebhookEvent
    from sandbox import data as pf

    connection = add_connection(session, user, served_pluggy, transactions=4)
    deliver_webhooks(app, [pf.webhook_event("item/updated", itemId=connection.item_id)])
    gate = served_pluggy.hold("GET", "/v2/transactions")

    with killed_on_exit(flask(database_url, served_pluggy.base_url, "worker", "--lease", "1")) as doomed:
        assert gate.wait_for_arrivals(1)
        doomed.send_signal(signal.SIGKILL)
        doomed.wait()
    gate.open()

    job_id = session.scalars(sa.select(Job.id).where(Job.kind == "webhook_events")).one()
    wait_until(lambda: lease_expired(session, job_id))
    finish(flask(database_url, served_pluggy.base_url, "worker", "--burst"))

    session.expire_all()
    (event,) = session.scalars(sa.select(WebhookEvent)).all()
    assert (event.status, event.attempts) == ("processed", 1)
    (run,) = session.scalars(sa.select(SyncRun)).all()
    assert (run.status, run.created) == ("success", 4)
    assert session.scalar(sa.select(sa.func.count()).select_from(Transaction)) == 4


def job_row(session, job_id: int) -> Job:
    session.expire_all()
    return session.get(Job, job_id)


def held_by(session, job_id: int, worker: Child) -> bool:
    job = job_row(session, job_id)
    return job.status == "running" and f":{worker.pid}:" in (job.locked_by or "")


def test_workers_killed_at_random_moments_never_stall_the_queue(app, session, user, served_pluggy, database_url):
    seed = random.randrange(10**6)
    chance = random.Random(seed)
    served_pluggy.page_size = 10
    # Pages of transactions pass only when let through: each kill lands in the middle of the fetch,
    # with a random number of pages written before it.
    pages = served_pluggy.hold("GET", "/v2/transactions")
    connection = add_connection(session, user, served_pluggy, transactions=300)
    sync_id = scheduling.queue_initial_sync(session, connection)
    session.commit()
    lease = 2

    for kill in range(3):
        worker = flask(database_url, served_pluggy.base_url, "worker", "--lease", str(lease), "--poll-interval", "0.1")
        with killed_on_exit(worker):
            if kill == 0:
                wait_until(lambda: job_row(session, sync_id).status == "running", what="the first sync claimed")
                # The stall: another job of the same item falls due while the first one's worker dies.
                follow_up_id = scheduling.queue_fetch(session, connection, "webhook")
                session.commit()
            else:
                # Taken back from the killed worker within its lease (and a poll or two).
                wait_until(
                    lambda worker=worker: held_by(session, sync_id, worker),
                    timeout=lease + 10,
                    what=f"taken back ({seed=})",
                )
            pages.let_through(chance.randint(0, 6))
            assert pages.wait_until_holding(1), f"the worker waiting for a page ({seed=})"
            worker.send_signal(signal.SIGKILL)
            worker.wait()
        pages.let_through(1)  # the dead worker's page, answered to nobody
        assert pages.wait_until_holding(0)
    pages.open()
    # A job of no item queued after the last kill must not wait behind the abandoned one either.
    unrelated_id = queue.enqueue(session, "prune_jobs")
    session.commit()

    with killed_on_exit(
        flask(database_url, served_pluggy.base_url, "worker", "--lease", str(lease), "--poll-interval", "0.1")
    ):
        wait_until(
            lambda: job_row(session, unrelated_id).status == "done",
            timeout=lease + 10,
            what=f"the unrelated job ({seed=})",
        )
        wait_until(
            lambda: {job_row(session, job_id).status for job_id in (sync_id, follow_up_id)} == {"done"},
            timeout=60,
            what=f"the item's jobs ({seed=})",
        )

    stored = session.scalars(sa.select(Transaction.pluggy_id)).all()
    assert sorted(stored) == sorted(
        t["id"] for t in served_pluggy.transactions[served_pluggy.accounts[connection.item_id][0]["id"]]
    )
    assert {run.status for run in session.scalars(sa.select(SyncRun))} == {"success"}, seed
