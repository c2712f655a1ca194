"""Webhook intake: requests/s and latency of `POST /webhooks/pluggy` under concurrent load on
loopback, measured side by side in one run against a bare Flask endpoint that inserts one row.

    python -m bench.webhook_intake [--database-url URL] [--seconds 15] [--json PATH]

Goal: ours at least 0.7x the bare endpoint's throughput, and a p99 under 20 ms at half
of the maximum load in each of five runs, on SQLite and on PostgreSQL.

The two servers. Both are gunicorn processes started here on 127.0.0.1 with the same settings, the
process layout the README gives for each engine: `--worker-class gthread --keep-alive 2` (gunicorn's
default) with `--workers 2 --threads 4` on PostgreSQL and `--workers 1 --threads 8` on SQLite
(`DEPLOYED`). On PostgreSQL, two workers since the machine has two cores and a request is mostly
Python on the CPU: more processes than cores only take turns. Threads because a request also waits
on the database (a PostgreSQL round trip, SQLite's write lock), and a waiting thread releases the
GIL to the next request. On SQLite one process: SQLite has one writer at a time, and a writer that
finds the lock taken by another process sleeps in its busy handler's growing steps (1, 2, 5, 10 ms
and on) before it looks again, which put the p99 at half load at 14 to 59 ms with two processes
(BENCHMARKS.md); the threads of one process meet at SQLite's lock too, but a turn there is short.
`--workers` and `--threads` measure another layout.
gthread rather than the default sync worker because sync closes the connection after every answer,
which would measure TCP set-up instead of intake; Pluggy and load balancers reuse connections.
- ours is the real app (`wsgi:app`), configured through the environment as in production
  (DATABASE_URL, SECRET_KEY, PLUGGY_WEBHOOK_SECRET), migrated and emptied before the run;
- bare is `bench.webhook_intake:bare_app`, built on import from the same environment: it parses the
  JSON body and inserts one row (event id, payload, time) through Flask-SQLAlchemy with the
  service's engine options. Importing `api` installs the service's SQLite connection pragmas (WAL,
  busy timeout, synchronous=NORMAL) for every engine, so both write to the database the same way.

The load. A separate process (spawned once, standard library only: http.client over keep-alive
connections, one thread per connection) sends realistic deliveries: `item/updated` with a unique
`eventId`, one of a few dozen `itemId`s and the `X-Webhook-Secret` header. No worker runs, so this
is intake alone: each delivery stores the event and queues (or joins) its item's job in one
transaction. Every answer is checked: a non-2xx answer, a failed request or a worker crash in the
server's log is counted, printed and fails the run, and the rows stored at the end are compared
with the deliveries accepted.

Per app, after a warm-up (which also lets every gunicorn worker finish booting):
1. closed loop: C connections each send the next request as soon as the last is answered, for a
   fixed time; requests/s is the maximum throughput, p50/p99 there are service times;
2. open loop at half of that app's maximum rate: request i is scheduled at start + i / rate, and
   its latency counts from that scheduled time, not from when it was actually sent, so a stalled
   server is charged for the requests it kept from being sent (no coordinated omission). This
   phase runs five times (`--runs`), and the p99 goal is judged in each run alone: a tail that
   shows in one run of five is a tail.
Each phase runs in the order ours, bare, bare, ours with half the time per slot, so drift in the
machine's background load (other jobs share these cores) weighs on both apps alike.

The load generator shares the two cores with the servers, so two figures tell how much it weighed:
`client_cpu_share` (cores it used) and `send_lag_p99_ms` (how late it sent in the open loop; a large
one means the client, not the server, was short of CPU, and that lateness is in the latencies).
Throughput counts 2xx answers only.
"""

from __future__ import annotations

import argparse
import http.client
import itertools
import json
import multiprocessing
import os
import random
import secrets
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import sqlalchemy as sa
from flask import Flask, jsonify, request
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from config.values import database_url as normalised_url
from harness.processes import gunicorn, service_env
from models import WebhookEvent, db, engine_options
from models.base import JSONType, UTCDateTime, utcnow

from .common import empty_tables, engine_name, percentile_ms, service_app, write_json

APPS = ("ours", "bare")
SLOT_ORDER = ("ours", "bare", "bare", "ours")  # ABBA: a linear drift in background load cancels out
APP_SPECS = {"ours": "wsgi:app", "bare": "bench.webhook_intake:bare_app"}
WEBHOOK_PATH = "/webhooks/pluggy"
ITEMS = 40
REQUEST_TIMEOUT = 10.0
STARTUP_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0
ERROR_EXAMPLES = 5

# The web tier's processes and threads the README gives for each engine ("Processes").
DEPLOYED = {"postgresql": (2, 4), "sqlite": (1, 8)}

GOAL_THROUGHPUT_RATIO = 0.7
GOAL_P99_MS = 20.0


@dataclass(frozen=True)
class Settings:
    workers: int  # the engine's layout (DEPLOYED) unless asked otherwise
    threads: int
    seconds: float = 15.0
    warmup: float = 3.0
    connections: int = 16
    runs: int = 5  # half-load phases: the tail must hold in each, not on average

    def gunicorn_args(self) -> list[str]:
        return [
            "--worker-class",
            "gthread",
            "--workers",
            str(self.workers),
            "--threads",
            str(self.threads),
            "--keep-alive",
            "2",
        ]

    def describe(self) -> dict:
        return {
            "server": f"gunicorn {' '.join(self.gunicorn_args())} on 127.0.0.1",
            "client": f"1 process, {self.connections} keep-alive connections (http.client, a thread each)",
            "seconds_per_phase_per_app": self.seconds,
            "half_load_runs": self.runs,
            "warmup_seconds_per_app": self.warmup,
            "slot_order": "-".join(SLOT_ORDER),
            "items": ITEMS,
            "cores": os.cpu_count(),
        }


# ---------------------------------------------------------------------------------------------
# The bare endpoint, served by gunicorn as `bench.webhook_intake:bare_app`.


class BareBase(DeclarativeBase):
    pass


class BareEvent(BareBase):
    __tablename__ = "bench_bare_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    event_id: Mapped[str] = mapped_column(sa.String(128))
    payload: Mapped[dict] = mapped_column(JSONType)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


bare_db = SQLAlchemy(model_class=BareBase)


def build_bare_app(environ) -> Flask:
    url = normalised_url("DATABASE_URL", environ["DATABASE_URL"])
    app = Flask("bare_webhook")
    app.config.update(SQLALCHEMY_DATABASE_URI=url, SQLALCHEMY_ENGINE_OPTIONS=engine_options(url))
    bare_db.init_app(app)
    app.add_url_rule(WEBHOOK_PATH, view_func=bare_receive, methods=["POST"])
    app.add_url_rule("/health", view_func=bare_health)
    return app


def bare_receive():
    payload = request.get_json()
    bare_db.session.add(BareEvent(event_id=str(payload.get("eventId")), payload=payload))
    bare_db.session.commit()
    return jsonify(status="accepted", event_id=payload.get("eventId"))


def bare_health():
    bare_db.session.execute(sa.text("SELECT 1"))
    return jsonify(status="ok")


def __getattr__(name: str):
    # Built on first access, not on import: the load generator and the benchmark import this module
    # too, and only gunicorn's workers have DATABASE_URL set for it.
    if name == "bare_app":
        app = globals()["bare_app"] = build_bare_app(os.environ)
        return app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# ---------------------------------------------------------------------------------------------
# The load generator: runs in a process of its own.


@dataclass(frozen=True)
class Target:
    port: int
    secret: str
    items: tuple[tuple[str, str], ...]  # (itemId, clientUserId)


@dataclass
class Tally:
    """One connection's record; merged after the threads end, so no lock is taken per request."""

    latencies: list[float] = field(default_factory=list)
    send_lags: list[float] = field(default_factory=list)
    statuses: Counter = field(default_factory=Counter)
    failures: int = 0
    examples: list[str] = field(default_factory=list)

    def record_answer(self, status: int, body: bytes, latency: float, lag: float) -> None:
        self.latencies.append(latency)
        self.send_lags.append(lag)
        self.statuses[status] += 1
        if not 200 <= status < 300:
            self.note(f"HTTP {status}: {body[:300].decode(errors='replace').strip()}")

    def record_failure(self, error: Exception) -> None:
        self.failures += 1
        self.note(f"{type(error).__name__}: {error}")

    def note(self, example: str) -> None:
        if len(self.examples) < ERROR_EXAMPLES and example not in self.examples:
            self.examples.append(example)


class ClosedSchedule:
    """Closed loop: each connection sends its next request as soon as the last one is answered."""

    def __init__(self, start: float, seconds: float) -> None:
        self.end = start + seconds

    def next_send_time(self) -> float | None:
        now = time.perf_counter()
        return now if now < self.end else None


class OpenSchedule:
    """Open loop: request i is due at start + i / rate, whether or not earlier ones were answered."""

    def __init__(self, start: float, seconds: float, rate: float) -> None:
        self.start, self.end, self.rate = start, start + seconds, rate
        self.tickets = itertools.count()  # its next() is atomic under the GIL: shared by the threads

    def next_send_time(self) -> float | None:
        due = self.start + next(self.tickets) / self.rate
        return due if due < self.end else None


def webhook_body(target: Target, rng: random.Random) -> bytes:
    """An item/updated delivery as Pluggy sends it (sandbox/data.webhook_event)."""
    event_id = str(uuid.uuid4())
    item_id, client_user_id = rng.choice(target.items)
    return json.dumps(
        {
            "event": "item/updated",
            "eventId": event_id,
            "id": event_id,
            "itemId": item_id,
            "triggeredBy": "SYNC",
            "clientUserId": client_user_id,
        }
    ).encode()


def post_webhook(connection: http.client.HTTPConnection, target: Target, body: bytes) -> tuple[int, bytes]:
    headers = {"Content-Type": "application/json", "X-Webhook-Secret": target.secret}
    connection.request("POST", WEBHOOK_PATH, body=body, headers=headers)
    response = connection.getresponse()
    return response.status, response.read()


def sleep_until(moment: float) -> None:
    delay = moment - time.perf_counter()
    if delay > 0:
        time.sleep(delay)


def drive_connection(target: Target, schedule, tally: Tally) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", target.port, timeout=REQUEST_TIMEOUT)
    rng = random.Random()
    try:
        while True:
            body = webhook_body(target, rng)  # before the clock starts: the client's work is not latency
            due = schedule.next_send_time()
            if due is None:
                break
            sleep_until(due)
            sent = time.perf_counter()
            try:
                status, answer = post_webhook(connection, target, body)
            except (OSError, http.client.HTTPException) as error:
                tally.record_failure(error)
                connection.close()  # http.client opens a fresh connection on the next request
                continue
            tally.record_answer(status, answer, time.perf_counter() - due, sent - due)
    finally:
        connection.close()


def load_phase(target: Target, connections: int, seconds: float, rate: float | None = None) -> dict:
    """One slot of load: closed loop when `rate` is None, else open loop at `rate` requests/s."""
    start = time.perf_counter()
    schedule = ClosedSchedule(start, seconds) if rate is None else OpenSchedule(start, seconds, rate)
    tallies = [Tally() for _ in range(connections)]
    cpu_before = time.process_time()
    threads = [threading.Thread(target=drive_connection, args=(target, schedule, t)) for t in tallies]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return merged(tallies, seconds=time.perf_counter() - start, client_cpu=time.process_time() - cpu_before)


def merged(tallies: list[Tally], *, seconds: float, client_cpu: float) -> dict:
    return {
        "seconds": seconds,
        "client_cpu": client_cpu,
        "latencies": [value for tally in tallies for value in tally.latencies],
        "send_lags": [value for tally in tallies for value in tally.send_lags],
        "statuses": sum((tally.statuses for tally in tallies), Counter()),
        "failures": sum(tally.failures for tally in tallies),
        "examples": [example for tally in tallies for example in tally.examples][:ERROR_EXAMPLES],
    }


# ---------------------------------------------------------------------------------------------
# The servers.


def server_environment(database_url: str, webhook_secret: str) -> dict[str, str]:
    """Production configuration: no debug, a real SECRET_KEY, the webhook secret."""
    return service_env(database_url, secrets.token_hex(32), webhook_secret=webhook_secret)


def gunicorn_server(app_spec: str, environ: dict, settings: Settings, log_path: Path):
    """gunicorn serving `app_spec` on a loopback port; yields the port once /health answers 200,
    and stops it at the end (gunicorn finishes the answers in flight)."""
    options = (*settings.gunicorn_args(), "--log-level", "warning")
    return gunicorn(
        environ, *options, app=app_spec, log=log_path, startup_timeout=STARTUP_TIMEOUT, stop_timeout=STOP_TIMEOUT
    )


def log_problems(log_path: Path) -> list[str]:
    """Worker crashes, timeouts and tracebacks the server logged: they count against the run too.
    gunicorn's own lines are text ([ERROR]); the app's are JSON ("level":"error")."""
    markers = ("Traceback", "[ERROR]", "[CRITICAL]", '"level":"error"', '"level":"critical"')
    lines = log_path.read_text(errors="replace").splitlines()
    return [line for line in lines if any(marker in line for marker in markers)][:20]


# ---------------------------------------------------------------------------------------------
# The database.


def prepare_database(database_url: str) -> None:
    """Ours migrated and emptied; the bare table created empty."""
    app = service_app(database_url, "http://sandbox.invalid")  # intake never calls Pluggy
    with app.app_context():
        empty_tables()
        db.engine.dispose()
    with bench_engine(database_url) as engine:
        BareBase.metadata.drop_all(engine)
        BareBase.metadata.create_all(engine)


@contextmanager
def bench_engine(database_url: str) -> Iterator[sa.Engine]:
    engine = sa.create_engine(database_url, **engine_options(database_url))
    try:
        yield engine
    finally:
        engine.dispose()


def stored_rows_and_cleanup(database_url: str) -> dict[str, int]:
    """Rows each app stored; the bare table is then dropped, leaving the database's schema as found."""
    with bench_engine(database_url) as engine:
        with engine.connect() as connection:
            counts = {
                "ours": connection.scalar(sa.select(sa.func.count()).select_from(WebhookEvent)),
                "bare": connection.scalar(sa.select(sa.func.count()).select_from(BareEvent)),
            }
        BareBase.metadata.drop_all(engine)
    return counts


# ---------------------------------------------------------------------------------------------
# The run.


def item_ids() -> tuple[tuple[str, str], ...]:
    return tuple((str(uuid.uuid4()), f"bench-user-{n}") for n in range(ITEMS))


def summary(samples: list[dict]) -> dict:
    """The slots of one app in one phase, taken together. Throughput counts 2xx answers only: an
    app that fails fast must not look fast."""
    seconds = sum(sample["seconds"] for sample in samples)
    latencies = sorted(value for sample in samples for value in sample["latencies"])
    lags = sorted(value for sample in samples for value in sample["send_lags"])
    statuses = sum((sample["statuses"] for sample in samples), Counter())
    accepted = accepted_of(statuses)
    return {
        "requests": len(latencies),
        "seconds": round(seconds, 2),
        "requests_per_s": round(accepted / seconds, 1),
        "p50_ms": percentile_ms(latencies, 0.50),
        "p99_ms": percentile_ms(latencies, 0.99),
        "max_ms": percentile_ms(latencies, 1.0),
        "send_lag_p99_ms": percentile_ms(lags, 0.99),
        "client_cpu_share": round(sum(sample["client_cpu"] for sample in samples) / seconds, 2),
        "statuses": {str(status): count for status, count in sorted(statuses.items())},
        "accepted": accepted,
        "errors": len(latencies) - accepted + sum(sample["failures"] for sample in samples),
        "error_examples": [example for sample in samples for example in sample["examples"]][:ERROR_EXAMPLES],
    }


class Bench:
    """Both servers up, the load generator process, and the slots run against them."""

    def __init__(self, targets: dict[str, Target], load: ProcessPoolExecutor, settings: Settings) -> None:
        self.targets, self.load, self.settings = targets, load, settings

    def slot(self, app: str, seconds: float, rate: float | None = None) -> dict:
        sample = self.load.submit(load_phase, self.targets[app], self.settings.connections, seconds, rate).result()
        report_slot(app, "closed loop" if rate is None else f"open loop at {rate:,.0f}/s", sample)
        return sample

    def warm_up(self) -> dict[str, dict]:
        return {app: summary([self.slot(app, self.settings.warmup)]) for app in APPS}

    def phase(self, rates: dict[str, float] | None = None) -> dict[str, dict]:
        half = self.settings.seconds / 2
        samples = {app: [] for app in APPS}
        for app in SLOT_ORDER:
            samples[app].append(self.slot(app, half, rates[app] if rates else None))
        return {app: summary(samples[app]) for app in APPS}


def accepted_of(statuses: Counter) -> int:
    return sum(n for status, n in statuses.items() if 200 <= status < 300)


def report_slot(app: str, kind: str, sample: dict) -> None:
    accepted = accepted_of(sample["statuses"])
    errors = len(sample["latencies"]) - accepted + sample["failures"]
    print(f"{app:>4} {kind}: {accepted / sample['seconds']:,.0f} req/s, {errors} errors", file=sys.stderr)
    for example in sample["examples"]:
        print(f"     {app} error: {example}", file=sys.stderr)


def measure(bench: Bench) -> dict[str, dict]:
    warmup = bench.warm_up()
    maximum = bench.phase()
    for app in APPS:
        if not maximum[app]["accepted"]:
            raise RuntimeError(f"{app} accepted no delivery at all: {maximum[app]['error_examples']}")
    rates = {app: maximum[app]["requests_per_s"] / 2 for app in APPS}
    half_loads = [bench.phase(rates) for _ in range(bench.settings.runs)]
    return {
        app: {
            "max_throughput": maximum[app],
            "half_load": [{"target_rate_per_s": round(rates[app], 1), **half[app]} for half in half_loads],
            "warmup_errors": warmup[app]["errors"],
            "accepted": sum(phase[app]["accepted"] for phase in (warmup, maximum, *half_loads)),
        }
        for app in APPS
    }


def run(
    database_url: str,
    seconds: float = Settings.seconds,
    *,
    warmup: float = Settings.warmup,
    connections: int = Settings.connections,
    workers: int | None = None,
    threads: int | None = None,
    runs: int = Settings.runs,
) -> dict:
    database_url = normalised_url("DATABASE_URL", database_url)
    deployed_workers, deployed_threads = DEPLOYED[engine_name(database_url)]
    settings = Settings(
        workers or deployed_workers, threads or deployed_threads, seconds, warmup, connections, runs=runs
    )
    prepare_database(database_url)
    results = measure_served_apps(database_url, settings)
    for app, rows in stored_rows_and_cleanup(database_url).items():
        results[app]["stored_rows"] = rows
    return report(engine_name(database_url), settings, results)


def measure_served_apps(database_url: str, settings: Settings) -> dict:
    """Both apps under gunicorn, loaded from the load generator's process; then the servers' logs."""
    webhook_secret = secrets.token_urlsafe(24)
    environ = server_environment(database_url, webhook_secret)
    items = item_ids()
    with tempfile.TemporaryDirectory() as scratch:
        logs = {app: Path(scratch) / f"{app}.log" for app in APPS}
        with ExitStack() as stack:
            ports = {
                app: stack.enter_context(gunicorn_server(APP_SPECS[app], environ, settings, logs[app])) for app in APPS
            }
            load = stack.enter_context(ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")))
            targets = {app: Target(ports[app], webhook_secret, items) for app in APPS}
            results = measure(Bench(targets, load, settings))
        # Read once the servers have stopped, so a crash on shutdown counts too.
        for app in APPS:
            results[app]["server_log_problems"] = log_problems(logs[app])
    return results


# ---------------------------------------------------------------------------------------------
# The report.


def errors_of(result: dict) -> int:
    return (
        result["warmup_errors"]
        + result["max_throughput"]["errors"]
        + sum(half["errors"] for half in result["half_load"])
        + len(result["server_log_problems"])
    )


def report(engine: str, settings: Settings, results: dict) -> dict:
    ours, bare = results["ours"], results["bare"]
    ratio = round(ours["max_throughput"]["requests_per_s"] / bare["max_throughput"]["requests_per_s"], 2)
    p99s = [half["p99_ms"] for half in ours["half_load"]]
    errors = {app: errors_of(results[app]) for app in APPS}
    lost = {app: results[app]["accepted"] - results[app]["stored_rows"] for app in APPS}
    met = {
        "throughput_ratio": ratio >= GOAL_THROUGHPUT_RATIO,
        "p99_at_half_load": all(p99 is not None and p99 < GOAL_P99_MS for p99 in p99s),
        "no_errors": not any(errors.values()),
        "every_accepted_event_stored": not any(lost.values()),
    }
    return {
        "benchmark": "webhook_intake",
        "engine": engine,
        "settings": settings.describe(),
        "results": results,
        "throughput_ratio": ratio,
        "goals": {
            "throughput_ratio_at_least": GOAL_THROUGHPUT_RATIO,
            "p99_ms_at_half_load_below": GOAL_P99_MS,
            "errors": 0,
            "met": met,
            "all_met": all(met.values()),
        },
        "table": table(ours, bare, ratio, errors, met),
    }


def table(ours: dict, bare: dict, ratio: float, errors: dict, met: dict) -> list[dict]:
    mine, floor = ours["max_throughput"], bare["max_throughput"]
    return [
        {
            "measure": "webhook intake throughput, ours / bare",
            "figure": f"{ratio:.2f} ({mine['requests_per_s']:,.0f} / {floor['requests_per_s']:,.0f} req/s)",
            "goal": f">= {GOAL_THROUGHPUT_RATIO}",
            "met": met["throughput_ratio"],
        },
        {
            "measure": f"webhook intake p99 at half load, in each of {len(ours['half_load'])} runs",
            "figure": f"{in_ms_each(ours['half_load'], 'p99_ms')} (p50 {in_ms_each(ours['half_load'], 'p50_ms')}, "
            f"at {ours['half_load'][0]['target_rate_per_s']:,.0f} req/s; "
            f"bare {in_ms_each(bare['half_load'], 'p99_ms')})",
            "goal": f"< {GOAL_P99_MS:g} ms in every run",
            "met": met["p99_at_half_load"],
        },
        {
            "measure": "webhook intake errors (non-2xx, failed requests, server log)",
            "figure": f"ours {errors['ours']} of {ours['accepted'] + errors['ours']:,}, "
            f"bare {errors['bare']} of {bare['accepted'] + errors['bare']:,}",
            "goal": "0",
            "met": met["no_errors"],
        },
        {
            "measure": "webhook events stored / accepted",
            "figure": f"{ours['stored_rows']:,} / {ours['accepted']:,}",
            "goal": "equal",
            "met": met["every_accepted_event_stored"],
        },
    ]


def in_ms_each(runs: list[dict], key: str) -> str:
    figures = ["none answered" if run[key] is None else f"{run[key]:.1f}" for run in runs]
    return " / ".join(figures) + " ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", help="default: a fresh SQLite file in a temporary directory")
    parser.add_argument("--seconds", type=float, default=Settings.seconds, help="per phase and app")
    parser.add_argument("--warmup", type=float, default=Settings.warmup, help="per app")
    parser.add_argument("--connections", type=int, default=Settings.connections)
    parser.add_argument("--workers", type=int, help="gunicorn workers (default: the engine's layout, DEPLOYED)")
    parser.add_argument("--threads", type=int, help="gunicorn threads per worker (default: as --workers)")
    parser.add_argument("--runs", type=int, default=Settings.runs, help="half-load phases, each judged alone")
    parser.add_argument("--json", type=Path, help="also write the result here")
    args = parser.parse_args()
    options = {
        "warmup": args.warmup,
        "connections": args.connections,
        "workers": args.workers,
        "threads": args.threads,
        "runs": args.runs,
    }
    with tempfile.TemporaryDirectory() as scratch:
        url = args.database_url or f"sqlite:///{Path(scratch) / 'bench.db'}"
        result = run(url, args.seconds, **options)
    write_json(result, args.json)


if __name__ == "__main__":
    main()
