"""The job queue in the database: enqueue and coalescing, claims and leases, retries, dead jobs."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from harness.waiting import wait_until
from jobqueue import queue
from models import Job, db
from models.base import utcnow


def job(session, job_id: int) -> Job:
    session.expire_all()
    return session.get(Job, job_id)


def test_enqueue_then_claim_takes_a_lease(session):
    job_id = queue.enqueue(session, "fetch_item", {"connection_id": 1}, item_id="item-1")
    session.commit()

    claimed = queue.claim(session, "w1", lease=timedelta(minutes=2))

    assert (claimed.id, claimed.kind, claimed.payload, claimed.attempts) == (
        job_id,
        "fetch_item",
        {"connection_id": 1},
        1,
    )
    stored = job(session, job_id)
    assert (stored.status, stored.locked_by) == ("running", "w1")
    assert timedelta(minutes=1) < stored.locked_until - utcnow() <= timedelta(minutes=2)
    assert queue.claim(session, "w2") is None


def test_jobs_are_claimed_oldest_due_first_and_future_ones_wait(session):
    later = queue.enqueue(session, "k", run_at=utcnow() + timedelta(minutes=5))
    second = queue.enqueue(session, "k", run_at=utcnow() - timedelta(seconds=1))
    first = queue.enqueue(session, "k", run_at=utcnow() - timedelta(seconds=10))
    session.commit()

    claimed = [queue.claim(session, "w") for _ in range(2)]
    assert [c.id for c in claimed] == [first, second]
    assert queue.claim(session, "w") is None
    for c in claimed:
        queue.complete(session, c)
    assert queue.claim(session, "w", now=utcnow() + timedelta(minutes=6)).id == later


def test_a_queued_key_is_joined_not_duplicated(session):
    soon = utcnow() + timedelta(seconds=5)
    first = queue.enqueue(session, "fetch_item", key="fetch:item-1", run_at=utcnow() + timedelta(minutes=1))
    second = queue.enqueue(session, "fetch_item", key="fetch:item-1", run_at=soon)
    session.commit()

    assert first == second
    assert session.scalar(sa.select(sa.func.count()).select_from(Job)) == 1
    assert job(session, first).run_at == soon  # the earlier time wins


def test_only_a_job_made_due_wakes_the_workers(session, monkeypatch):
    """A NOTIFY per webhook delivery would serialise the intake's commits on PostgreSQL: a delivery
    that joins a job already due wakes nobody; one that brings a job forward to now does."""
    notified = []
    monkeypatch.setattr(queue.wakeup, "notify", notified.append)

    queue.enqueue(session, "process_events", key="webhooks:item-1")
    queue.enqueue(session, "process_events", key="webhooks:item-1")
    assert len(notified) == 1

    queue.enqueue(session, "fetch_item", key="fetch:item-2", run_at=utcnow() + timedelta(minutes=5))
    assert len(notified) == 1  # not due: the workers find it when they look again
    queue.enqueue(session, "fetch_item", key="fetch:item-2")
    assert len(notified) == 2
    queue.enqueue(session, "fetch_item")  # no key: always a new job
    assert len(notified) == 3


def test_a_running_job_does_not_block_a_new_one_with_its_key(session):
    first = queue.enqueue(session, "fetch_item", key="fetch:item-1")
    session.commit()
    queue.claim(session, "w1")

    second = queue.enqueue(session, "fetch_item", key="fetch:item-1")
    session.commit()

    assert second != first


def test_two_jobs_of_one_item_never_run_at_once(session):
    queue.enqueue(session, "a", item_id="item-1")
    queue.enqueue(session, "b", item_id="item-1")
    other = queue.enqueue(session, "c", item_id="item-2")
    session.commit()

    first = queue.claim(session, "w1")
    assert queue.claim(session, "w2").id == other
    assert queue.claim(session, "w3") is None  # item-1 is busy
    queue.complete(session, first)
    assert queue.claim(session, "w3").kind == "b"


def test_an_expired_lease_is_claimed_again(session):
    job_id = queue.enqueue(session, "k", item_id="item-1")
    session.commit()
    queue.claim(session, "dead-worker", lease=timedelta(seconds=30))

    assert queue.claim(session, "w2") is None
    again = queue.claim(session, "w2", now=utcnow() + timedelta(seconds=31))

    assert (again.id, again.attempts, again.worker_id) == (job_id, 2, "w2")


def test_a_worker_that_lost_its_lease_cannot_overwrite_the_outcome(session):
    job_id = queue.enqueue(session, "k")
    session.commit()
    slow = queue.claim(session, "slow", lease=timedelta(seconds=1))
    fast = queue.claim(session, "fast", now=utcnow() + timedelta(seconds=2))
    queue.complete(session, fast)

    queue.fail(session, slow, "too late")

    stored = job(session, job_id)
    assert (stored.status, stored.last_error) == ("done", None)


def test_a_failure_is_retried_later_with_backoff(session):
    job_id = queue.enqueue(session, "k")
    session.commit()
    queue.fail(session, queue.claim(session, "w"), "boom")

    stored = job(session, job_id)
    assert (stored.status, stored.attempts, stored.last_error, stored.locked_by) == ("queued", 1, "boom", None)
    delay = (stored.run_at - utcnow()).total_seconds()
    assert 0 < delay <= queue.BACKOFF_BASE_SECONDS


def test_backoff_grows_exponentially_with_jitter_and_a_cap():
    for attempts in range(1, 20):
        ceiling = min(queue.BACKOFF_CAP_SECONDS, queue.BACKOFF_BASE_SECONDS * 2 ** (attempts - 1))
        delays = {queue.backoff_seconds(attempts) for _ in range(20)}
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert len(delays) > 1


def test_retry_after_from_pluggy_is_honoured(session):
    job_id = queue.enqueue(session, "k")
    session.commit()
    queue.fail(session, queue.claim(session, "w"), "rate limited", retry_after=600)

    assert (job(session, job_id).run_at - utcnow()).total_seconds() > 590


def test_a_job_is_dead_after_its_last_attempt_with_the_error_kept(session):
    job_id = queue.enqueue(session, "k", max_attempts=2)
    session.commit()
    for attempt in range(2):
        claimed = queue.claim(session, "w", now=utcnow() + timedelta(hours=attempt * 2))
        queue.fail(session, claimed, f"failure {attempt + 1}")

    stored = job(session, job_id)
    assert (stored.status, stored.attempts, stored.last_error) == ("dead", 2, "failure 2")
    assert queue.queue_stats(session)["dead"] == 1


def test_postponing_spends_no_attempt(session):
    job_id = queue.enqueue(session, "k", max_attempts=1)
    session.commit()
    queue.postpone(session, queue.claim(session, "w"), 5, "item still updating")

    stored = job(session, job_id)
    assert (stored.status, stored.attempts, stored.last_error) == ("queued", 0, "item still updating")


def test_a_retry_that_meets_the_same_work_queued_again_leaves_it_to_that_job(session):
    first = queue.enqueue(session, "fetch_item", key="fetch:item-1")
    session.commit()
    claimed = queue.claim(session, "w")
    second = queue.enqueue(session, "fetch_item", key="fetch:item-1")
    session.commit()

    queue.fail(session, claimed, "boom")

    assert job(session, first).status == "done"
    assert job(session, second).status == "queued"


def test_a_dead_job_can_be_retried(session):
    ids = [queue.enqueue(session, "k", max_attempts=1) for _ in range(3)]
    session.commit()
    for _ in ids:
        queue.fail(session, queue.claim(session, "w"), "boom")

    assert queue.retry_now(session, ids[0])
    assert {job(session, i).status for i in ids} == {"queued", "dead"}
    assert job(session, ids[0]).attempts == 0
    assert not queue.retry_now(session, 999_999)


def test_claim_can_be_limited_to_one_item(session):
    queue.enqueue(session, "k", item_id="item-1")
    mine = queue.enqueue(session, "k", item_id="item-2")
    session.commit()

    assert queue.claim(session, "w", item_id="item-2").id == mine
    assert queue.claim(session, "w", item_id="item-2") is None


@pytest.mark.parametrize("threads", [8])
def test_concurrent_claims_take_each_job_once(app, threads):
    """Many threads, each with its own connection, drain one queue: no job is taken twice."""
    import threading

    from models import db

    with app.app_context():
        for n in range(60):
            queue.enqueue(db.session, "k", item_id=f"item-{n % 20}")
        db.session.commit()
    taken: list[int] = []
    lock = threading.Lock()

    def drain(name: str) -> None:
        with app.app_context():
            while True:
                claimed = queue.claim(db.session, name)
                if claimed is None:
                    if queue.queue_stats(db.session)["due"] == 0:
                        return
                    continue  # lost a race for an item another thread just started
                with lock:
                    taken.append(claimed.id)
                queue.complete(db.session, claimed)

    workers = [threading.Thread(target=drain, args=(f"w{n}",)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()

    assert len(taken) == len(set(taken)) == 60


def test_keyed_enqueue_keeps_working_once_the_driver_prepares_it(session):
    # psycopg prepares a statement after a few runs; a bound partial-index predicate then fails.
    ids = {queue.enqueue(session, "k", key=f"fetch:item-{n}") for n in range(12)}
    session.commit()
    assert len(ids) == 12


def abandoned(session, item_id: str | None, *, attempts: int = 1) -> int:
    """A job left running by a worker that died: its lease ran out a minute ago."""
    row = Job(
        kind="initial_sync",
        status="running",
        item_id=item_id,
        attempts=attempts,
        locked_by="dead-worker",
        locked_until=utcnow() - timedelta(minutes=1),
    )
    session.add(row)
    session.commit()
    return row.id


def test_an_abandoned_job_is_taken_back_though_a_job_of_its_item_is_due(session):
    dead = abandoned(session, "item-1")
    follow_up = queue.enqueue(session, "fetch_item", item_id="item-1")
    unrelated = queue.enqueue(session, "prune_jobs")
    session.commit()

    first, second = queue.claim(session, "w"), queue.claim(session, "w")

    # Taken back before other due work: a steady stream of it would keep its item waiting for ever.
    assert (first.id, second.id) == (dead, unrelated)
    assert first.taken_back and not second.taken_back
    assert queue.claim(session, "w") is None  # item-1 runs its job taken back first
    queue.complete(session, first)
    assert queue.claim(session, "w").id == follow_up


def claim_waiting_on_a_lock(engine) -> bool:
    """PostgreSQL: a claim is waiting for another transaction's lease on the same item (the unique
    index of running jobs). SQLite has one writer at a time: the claim waits for the write lock
    instead, which it cannot be seen doing; either way it runs after the rival commits."""
    if engine.dialect.name != "postgresql":
        return True
    with engine.connect() as connection:
        return (
            connection.scalar(
                sa.text(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE 'UPDATE jobs%'"
                )
            )
            > 0
        )


def test_a_claim_that_loses_the_race_for_an_item_takes_the_next_free_job(app, session):
    first = queue.enqueue(session, "a", item_id="item-1")
    queue.enqueue(session, "b", item_id="item-1")
    other = queue.enqueue(session, "c", item_id="item-2")
    session.commit()
    engine = db.engine
    claimed = []
    with Session(engine) as rival, Session(engine) as mine:
        # Another worker has leased item-1's first job and not committed yet.
        rival.execute(
            sa.update(Job)
            .where(Job.id == first)
            .values(status="running", locked_by="rival", locked_until=utcnow() + timedelta(minutes=5))
        )
        claimer = threading.Thread(target=lambda: claimed.append(queue.claim(mine, "w")))
        claimer.start()
        wait_until(lambda: claim_waiting_on_a_lock(engine), what="the claim waiting for the rival's lease")
        rival.commit()
        claimer.join(10)

    assert [c.id for c in claimed] == [other]
