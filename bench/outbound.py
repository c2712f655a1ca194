"""Outbound events: events per second delivered by the worker to a local receiver against a bare HTTP
client posting the same signed bodies to it, and the lag from a committed change to the receiver's
2xx with an idle worker, in one run.

    python -m bench.outbound [--database-url URL] [--events 5000] [--trials 50] [--concurrency 1]
                             [--json PATH]

The receiver: `http.server` on 127.0.0.1 in a thread of this process. It checks nothing costly (that
the Standard Webhooks headers are there), reads the body, answers 204 and records the arrival
(`time.time()`) and the `webhook-id`.

The service as an app uses it: a user with `--connections` connections (100), each first seen as
UPDATED (recorded without an event); an endpoint registered through the app API
(`POST /api/app/webhook_endpoints/`, the app key, a Flask test client in this process), with
`ALLOW_PRIVATE_WEBHOOK_URLS=1` since the receiver is http:// on loopback. Events come from real
changes: a connection's item status moved (UPDATED <-> LOGIN_ERROR) through the ORM and committed,
whose flush hook writes a `connection.status_changed` event, its delivery and its `deliver_event` job
in the change's transaction (sync/outbound/events.py), as every path that moves a status does.

Throughput: `--events` events queued first (one commit per round of one change on each connection),
then the real worker started (`python -m flask worker`, a process of its own, `--concurrency` jobs at
once) to deliver them: events/s from the first 2xx to the last, every event delivered once (a worker
may repeat one: at least once; repeats are counted and reported). The floor, measured before the
worker starts: the same events' bodies signed with the endpoint's secret (as the service signs:
`standardwebhooks`) and posted one after another by a bare client (urllib3, a new connection each,
as the service's delivery makes one per attempt, and as the receiver's HTTP/1.0 closes each anyway)
to the same receiver: its rate bounds what any sender reaches here. Reported: both rates and their
ratio; what the worker adds is a claim, a read of the delivery, its endpoint and secret (unsealed:
Fernet), the signature, the attempt's record and a commit per event.

Lag: with the worker idle (its queue empty, waiting, woken as in production: LISTEN/NOTIFY on
PostgreSQL, SQLite's data_version on SQLite), `--trials` times: a wait of a random moment of the
worker's poll interval, one change committed, its time stamped right after the commit
(`time.time()`, the clock the receiver stamps with: one machine), then the wait for the receiver to
have its event; lag = arrival minus commit. Reported: median and p99. Its reference is the wake-up:
the lag benchmark's woken-worker webhook-to-data lag includes the same wake; a worker that missed
the wake would be seen at up to its poll interval (1 s).

Goals: the issue sets none for the delivery rate, so it is reported beside the bare client's (the
worker claims a job, posts and records the outcome per event, where the bare client only posts);
lag median under 100 ms and p99 under 1 s (the poll interval: a missed wake would show there).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import sqlalchemy as sa
import urllib3
from flask import Flask
from standardwebhooks import Webhook

from harness.processes import Child, python_m, start, stopped_on_exit
from harness.waiting import wait_until
from models import Connection, DeliveryStatus, OutboundEvent, User, WebhookDelivery, db
from models.base import utcnow

from .common import SECRET_KEY, bench_env, empty_tables, engine_name, percentile_ms, service_app, write_json

APP_KEY = "bench-app-key-0123456789abcdef0123456789"
EVENTS = 5_000
TRIALS = 50
CONNECTIONS = 100
POLL_INTERVAL_S = 1.0  # the worker's default
DELIVERY_WAIT_S = 600
LAG_WAIT_S = 30
GOAL_LAG_MEDIAN_MS = 100.0
GOAL_LAG_P99_MS = 1000.0
# (item status, the sync_status it reads as): each flip is a connection.status_changed event.
FLIP = {"UPDATED": "LOGIN_ERROR", "LOGIN_ERROR": "UPDATED"}


# The receiver.


@dataclass
class Receiver:
    """What arrived: (arrival time, webhook-id) of every POST, in order."""

    url: str = ""
    arrivals: list[tuple[float, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, message_id: str) -> None:
        arrived = time.time()
        with self.lock:
            self.arrivals.append((arrived, message_id))

    def taken(self) -> list[tuple[float, str]]:
        """What arrived so far, and a fresh start."""
        with self.lock:
            arrived, self.arrivals = self.arrivals, []
        return arrived

    def arrival_of(self, message_id: str) -> float | None:
        with self.lock:
            return next((moment for moment, arrived in self.arrivals if arrived == message_id), None)


@contextmanager
def receiving() -> Iterator[Receiver]:
    receiver = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("content-length", 0)))
            message_id = self.headers.get("webhook-id") or ""
            signed = message_id and self.headers.get("webhook-timestamp") and self.headers.get("webhook-signature")
            if signed:
                receiver.record(message_id)  # before answering: the sender sees its 2xx after this
            self.send_response(204 if signed else 400)
            self.end_headers()

        def log_message(self, *args) -> None:
            pass  # one line per request on stderr, from a benchmark

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}/hooks"
    thread = threading.Thread(target=server.serve_forever, name="receiver", daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


# The service's side.


def prepare(app: Flask, receiver: Receiver, connections: int) -> str:
    """Empty tables, a user's connections first seen as UPDATED, and the receiver registered through
    the app API; answers the endpoint's secret."""
    with app.app_context():
        empty_tables()
        user = User(email="bench-outbound@example.com")
        db.session.add(user)
        now = utcnow()
        for n in range(1, connections + 1):
            db.session.add(
                Connection(
                    user=user,
                    item_id=f"00000000-0000-4000-8000-{n:012d}",
                    connector_id=201,
                    connector_name="Bench Bank",
                    item_status="UPDATED",
                    execution_status="SUCCESS",
                    last_updated_at=now,
                    last_synced_at=now,
                )
            )
        db.session.commit()
    answer = app.test_client().post(
        "/api/app/webhook_endpoints/",
        json={"url": receiver.url, "events": ["connection.status_changed"]},
        headers={"Authorization": f"Bearer {APP_KEY}"},
    )
    assert answer.status_code == 201, f"registering the receiver answered {answer.status_code}: {answer.text}"
    return answer.get_json()["secret"]


def flip(connection: Connection) -> None:
    assert connection.item_status is not None
    connection.item_status = FLIP[connection.item_status]


def queue_events(app: Flask, count: int) -> list[str]:
    """`count` status changes committed, a round of one change per connection a commit; answers the
    webhook-ids of their events."""
    with app.app_context():
        first = db.session.scalar(sa.select(sa.func.coalesce(sa.func.max(OutboundEvent.id), 0)))
        connections = list(db.session.scalars(sa.select(Connection).order_by(Connection.id)))
        left = count
        while left:
            for connection in connections[:left]:
                flip(connection)
            db.session.commit()
            left -= min(left, len(connections))
        return list(
            db.session.scalars(
                sa.select(OutboundEvent.message_id).where(OutboundEvent.id > first).order_by(OutboundEvent.id)
            )
        )


def event_bodies(app: Flask, message_ids: list[str]) -> list[tuple[str, str]]:
    """(webhook-id, body) of each event, the body serialised as the delivery serialises it."""
    with app.app_context():
        rows = db.session.execute(
            sa.select(OutboundEvent.message_id, OutboundEvent.payload).where(OutboundEvent.message_id.in_(message_ids))
        )
        payloads: dict[str, dict] = dict(iter(rows))
    return [
        (message_id, json.dumps(payloads[message_id], separators=(",", ":"), ensure_ascii=False))
        for message_id in message_ids
    ]


def post_signed(receiver: Receiver, secret: str, message_id: str, body: str) -> None:
    """One event signed now and posted as the delivery posts it: a new connection, no retries."""
    now = datetime.now(UTC)
    headers = {
        "webhook-id": message_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": Webhook(secret).sign(message_id, now, body),
        "content-type": "application/json",
    }
    host, port = receiver.url.split("/")[2].split(":")
    with urllib3.HTTPConnectionPool(host, int(port), retries=False, maxsize=1) as pool:
        answer = pool.urlopen("POST", "/hooks", body=body.encode(), headers=headers, redirect=False, retries=False)
    assert 200 <= answer.status < 300, f"the receiver answered {answer.status}"


def bare_rate(receiver: Receiver, secret: str, bodies: list[tuple[str, str]]) -> Rate:
    """The floor: the same events signed and posted one after another by a bare client."""
    receiver.taken()
    for message_id, body in bodies:
        post_signed(receiver, secret, message_id, body)
    return Rate.of(receiver.taken(), [message_id for message_id, _ in bodies])


@dataclass(frozen=True)
class Rate:
    """Deliveries seen by the receiver: how many distinct events, repeats, and events/s from the
    first arrival to the last."""

    events: int
    repeats: int
    seconds: float

    @classmethod
    def of(cls, arrivals: list[tuple[float, str]], expected: list[str]) -> Rate:
        ids = [message_id for _, message_id in arrivals]
        assert set(ids) == set(expected), f"{len(set(expected) - set(ids))} events not received"
        moments = [moment for moment, _ in arrivals]
        return cls(len(set(ids)), len(ids) - len(set(ids)), max(moments) - min(moments))

    @property
    def per_second(self) -> float:
        return (self.events - 1) / self.seconds if self.seconds > 0 else 0.0

    def figures(self) -> dict:
        return {
            "events": self.events,
            "repeats": self.repeats,
            "seconds": round(self.seconds, 3),
            "events_per_s": round(self.per_second, 1),
        }


# The worker.


def worker(database_url: str, log: Path, concurrency: int) -> AbstractContextManager[Child]:
    env = bench_env(database_url, "http://sandbox.invalid", ALLOW_PRIVATE_WEBHOOK_URLS="1")
    command = python_m("flask", "worker", "--concurrency", str(concurrency))
    return stopped_on_exit(start(command, env=env, stdout=log, stderr=log))


def delivered(app: Flask, child: Child) -> int:
    """Deliveries marked delivered so far (read in a fresh transaction: the worker commits meanwhile)."""
    child.check_running()
    with app.app_context():
        db.session.rollback()
        table = WebhookDelivery.__table__
        return (
            db.session.scalar(
                sa.select(sa.func.count()).select_from(table).where(table.c.status == DeliveryStatus.DELIVERED)
            )
            or 0
        )


def worker_rate(app: Flask, receiver: Receiver, child: Child, message_ids: list[str]) -> Rate:
    """The queued events delivered by the worker: waits until every delivery is recorded delivered."""
    total = len(message_ids)
    wait_until(lambda: delivered(app, child) >= total, DELIVERY_WAIT_S, interval=0.2, what="every delivery")
    return Rate.of(receiver.taken(), message_ids)


def one_lag(app: Flask, receiver: Receiver, child: Child, connection_id: int) -> float:
    """One change committed at a random moment of the idle worker's cycle: seconds to its 2xx."""
    time.sleep(random.uniform(0, POLL_INTERVAL_S))
    with app.app_context():
        connection = db.session.get(Connection, connection_id)
        assert connection is not None
        flip(connection)
        db.session.commit()
        committed = time.time()
        message_id = db.session.scalar(sa.select(OutboundEvent.message_id).order_by(OutboundEvent.id.desc()).limit(1))
    assert message_id is not None

    def arrived() -> float | None:
        child.check_running()
        return receiver.arrival_of(message_id)

    arrival = wait_until(arrived, LAG_WAIT_S, interval=0.001, what="the event's arrival")
    assert arrival is not None
    return arrival - committed


def lags(app: Flask, receiver: Receiver, child: Child, trials: int) -> list[float]:
    with app.app_context():
        connection_id = db.session.scalar(sa.select(sa.func.min(Connection.id))) or 0
    measured = [one_lag(app, receiver, child, connection_id) for _ in range(trials)]
    receiver.taken()
    return measured


def job_durations_ms(log: Path) -> list[float]:
    """What the worker logged as each `deliver_event` job's duration (its handler and its record;
    not the claim before it)."""
    durations = []
    for line in log.read_text(errors="replace").splitlines():
        if '"message":"job"' in line and '"job_kind":"deliver_event"' in line:
            durations.append(float(json.loads(line)["duration_ms"]))
    return sorted(durations)


# The run.


def run(
    database_url: str,
    events: int = EVENTS,
    trials: int = TRIALS,
    concurrency: int = 1,
    connections: int = CONNECTIONS,
    worker_log: Path | None = None,
) -> dict:
    app = service_app(database_url, SECRET_KEY=SECRET_KEY, APP_API_KEYS=(APP_KEY,), ALLOW_PRIVATE_WEBHOOK_URLS=True)
    with tempfile.TemporaryDirectory() as scratch, receiving() as receiver:
        secret = prepare(app, receiver, connections)
        print(f"queueing {events:,} events", flush=True)
        message_ids = queue_events(app, events)
        assert len(message_ids) == events, f"{len(message_ids)} events queued, not {events}"
        bare = bare_rate(receiver, secret, event_bodies(app, message_ids))
        print(f"  bare client: {bare.figures()}", flush=True)
        log = worker_log or Path(scratch) / "worker.log"
        try:
            with worker(database_url, log, concurrency) as child:
                delivered_by_worker = worker_rate(app, receiver, child, message_ids)
                print(f"  worker: {delivered_by_worker.figures()}", flush=True)
                time.sleep(POLL_INTERVAL_S)  # idle: its queue empty, waiting
                measured = lags(app, receiver, child, trials)
            durations = job_durations_ms(log)
        except Exception:
            print(log.read_text(errors="replace")[-3000:] if log.exists() else "", flush=True)
            raise
        finally:
            with app.app_context():
                db.session.remove()
                db.engine.dispose()
    return report(database_url, bare, delivered_by_worker, measured, concurrency, durations)


def report(
    database_url: str, bare: Rate, by_worker: Rate, measured: list[float], concurrency: int, durations: list[float]
) -> dict:
    ordered = sorted(measured)
    median_ms = round(statistics.median(ordered) * 1000, 1)
    p99_ms = percentile_ms(ordered, 0.99)
    ratio = round(by_worker.per_second / bare.per_second, 3)
    return {
        "benchmark": "outbound",
        "engine": engine_name(database_url),
        "concurrency": concurrency,
        "bare_client": bare.figures(),
        "worker": by_worker.figures(),
        "worker_over_bare": ratio,
        "job_duration_ms": {
            "jobs": len(durations),
            "median": statistics.median(durations) if durations else None,
            "p99": durations[min(len(durations) - 1, int(0.99 * len(durations)))] if durations else None,
        },
        "lag": {
            "trials": len(ordered),
            "median_ms": median_ms,
            "p99_ms": p99_ms,
            "max_ms": round(ordered[-1] * 1000, 1),
        },
        "table": [
            {
                "measure": f"events delivered to a local receiver: worker (concurrency {concurrency}) vs bare client",
                "figure": f"{by_worker.per_second:,.0f} vs {bare.per_second:,.0f} events/s ({ratio:.2f}x); "
                f"{by_worker.events:,} events, {by_worker.repeats} repeated",
                "goal": "reported",
                "met": None,
            },
            {
                "measure": f"committed change to the receiver's 2xx, idle woken worker, median / p99 "
                f"({len(ordered)} trials)",
                "figure": f"{median_ms} / {p99_ms} ms",
                "goal": f"median < {GOAL_LAG_MEDIAN_MS:g} ms, p99 < {GOAL_LAG_P99_MS:g} ms",
                "met": median_ms < GOAL_LAG_MEDIAN_MS and p99_ms is not None and p99_ms < GOAL_LAG_P99_MS,
            },
        ],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", help="default: a fresh SQLite file")
    parser.add_argument("--events", type=int, default=EVENTS)
    parser.add_argument("--trials", type=int, default=TRIALS)
    parser.add_argument("--concurrency", type=int, default=1, help="the worker's jobs at once")
    parser.add_argument("--connections", type=int, default=CONNECTIONS)
    parser.add_argument("--worker-log", type=Path, help="keep the worker's output here")
    parser.add_argument("--json", type=Path, help="also write the result here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        url = args.database_url or f"sqlite:///{Path(scratch) / 'bench.db'}"
        result = run(url, args.events, args.trials, args.concurrency, args.connections, args.worker_log)
        write_json(result, args.json)


if __name__ == "__main__":
    main()
