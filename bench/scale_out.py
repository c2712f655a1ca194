"""Scale-out: jobs per second with 1, 2 and 4 worker processes on PostgreSQL, and what limits it.

    python -m bench.scale_out --database-url postgresql+psycopg://USER@HOST/DB
        [--items 200] [--noop-jobs 5000] [--workers 1,2,4] [--json PATH]

PostgreSQL only: `FOR UPDATE SKIP LOCKED` sharing one queue among processes is what is measured.
The database is emptied first.

Method. The local stand-in (`sandbox/`, a process of its own) holds `--items` small items, each
registered and first-synced before anything is measured. Then, for each number K of workers, on a
fresh queue of the same size:
- item jobs: every item is updated at the stand-in as by Pluggy's scheduler (`auto_sync`: an
  execution bringing new transactions, three on each account, and a new `lastUpdatedAt`), and one
  `item/updated` webhook per item is stored through the real inbox (`webhooks.inbox.store`), which
  queues one `webhook_events` job per item: read the item, its accounts and transactions, write the
  new rows.
  Each account's watermark is first set to "now", as it is in the steady state once the first
  sync is over an hour old; otherwise the watermark's hour of overlap would make every job re-read
  a newly created item's whole history.
- no-op jobs: `--noop-jobs` jobs (`jobqueue.queue.enqueue`) whose handler does nothing, run by
  `python -m bench.scale_out --noop-worker`, so claim and complete are all that is measured: the
  queue's own ceiling.
K real worker processes in burst mode (`flask worker --burst`, or the no-op worker) are started
while the benchmark holds the jobs table locked against writes, so the clock starts only once
every one of them has started up and is blocked on its first write to the queue; it stops when
the last one has exited because nothing was due. jobs/s is the jobs over that time; since a
process takes a few tenths of a second to exit, the rate up to the last job's `finished_at` is
given beside it. Then every job must be done (none failed or dead) and, for item jobs, every
webhook processed and every new row stored.

What limits it: during each drain the CPU seconds of each party are read from /proc: the workers
(while they run; once they exit, from this process's usage of its reaped children), the stand-in,
every process named exactly `postgres` (including backends that exited, through the postmaster's
reaped-children time), this process, and the whole machine (/proc/stat), so "other" is whatever
else ran meanwhile (other users of the machine). Each is reported as a share of the machine's
cores; above 90% busy the machine is CPU-bound. PostgreSQL's commits (pg_stat_database, where
each pool pre-ping counts as one) and WAL flushes (pg_stat_wal, cluster-wide: one per commit that
wrote) per job tell how many round trips and synchronous disk flushes a job costs.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from pathlib import Path

import requests
import sqlalchemy as sa
from flask import current_app

from api import create_app
from harness.processes import DEVNULL, Child, kill, python_m, stand_in, start
from harness.waiting import stand_in_idle, wait_until
from jobqueue import enqueue
from models import Account, Job, SyncRun, Transaction, User, WebhookEvent, db
from pluggy_client import PluggyClient
from sync.connections import BankConnectionService
from sync.jobs import sync_worker
from sync.runtime import pluggy_client, sync_settings
from sync.scheduling import JobKind
from webhooks.inbox import store

from .common import (
    ACCOUNTS,
    CLIENT_ID,
    CLIENT_SECRET,
    TIMEOUT,
    WEBHOOK_SECRET,
    api_key,
    bench_env,
    empty_tables,
    engine_name,
    service_app,
    write_json,
)

NOOP = "bench_noop"
WORKER_APP_NAME = "bench-scale-out-worker"  # PostgreSQL's application_name of the workers' sessions
NEW_TRANSACTIONS_PER_ACCOUNT = 3
NEW_TRANSACTIONS_PER_ITEM = NEW_TRANSACTIONS_PER_ACCOUNT * ACCOUNTS  # a bank account and a card each
POLL_INTERVAL = "0.05"
START_TIMEOUT_S = 120.0
POLL_S = 0.02  # how often the database is looked at while waiting on the workers
DRAIN_TIMEOUT_S = 600.0
CPU_SATURATED = 0.9  # share of all cores busy above which the machine counts as CPU-bound
SHARED_MACHINE = 0.05  # share of all cores used by others above which the figures are suspect
TICKS_PER_S = os.sysconf("SC_CLK_TCK")


class BenchmarkError(RuntimeError):
    pass


# CPU accounting ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProcStat:
    name: str
    ppid: int
    cpu_s: float  # utime + stime
    reaped_cpu_s: float  # cutime + cstime: the children it has waited for


def proc_stat(pid: int) -> ProcStat | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The name is in parentheses and may itself contain spaces or parentheses.
    name = text[text.index("(") + 1 : text.rindex(")")]
    rest = text[text.rindex(")") + 2 :].split()  # rest[0] is field 3 of proc(5)
    utime, stime, cutime, cstime = (int(value) for value in rest[11:15])
    return ProcStat(name, int(rest[1]), (utime + stime) / TICKS_PER_S, (cutime + cstime) / TICKS_PER_S)


def all_proc_stats() -> Iterator[ProcStat]:
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := proc_stat(int(entry.name))) is not None:
            yield stat


def postgres_cpu_s() -> float:
    """Every process named `postgres`; a backend that exited lives on in the postmaster's
    reaped-children time, so the workers' sessions that close during a drain are counted too."""
    return sum(s.cpu_s + s.reaped_cpu_s for s in all_proc_stats() if s.name == "postgres")


def cpu_s_of(pids: list[int]) -> float:
    return sum(stat.cpu_s for pid in pids if (stat := proc_stat(pid)) is not None)


def reaped_children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def own_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def machine_cpu_s() -> tuple[float, float]:
    """(busy, iowait) CPU seconds of the whole machine since boot, all cores together."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    user, nice, system, idle, iowait, irq, softirq, steal = values[:8]
    return (user + nice + system + irq + softirq + steal) / TICKS_PER_S, iowait / TICKS_PER_S


def cores() -> int:
    return len(os.sched_getaffinity(0))


@dataclass(frozen=True)
class CpuSample:
    workers: float
    stand_in: float
    postgres: float
    bench: float
    machine_busy: float
    machine_iowait: float

    def __sub__(self, earlier: CpuSample) -> CpuSample:
        return CpuSample(*(getattr(self, f.name) - getattr(earlier, f.name) for f in fields(self)))


def cpu_sample(worker_pids: list[int], stand_in_pid: int) -> CpuSample:
    # Living workers are read from /proc, reaped ones from our children's usage; the stand-in is
    # a child too but is reaped only at the very end, so it never shows up in the latter.
    busy, iowait = machine_cpu_s()
    return CpuSample(
        workers=cpu_s_of(worker_pids) + reaped_children_cpu_s(),
        stand_in=cpu_s_of([stand_in_pid]),
        postgres=postgres_cpu_s(),
        bench=own_cpu_s(),
        machine_busy=busy,
        machine_iowait=iowait,
    )


# PostgreSQL's own counters ----------------------------------------------------------------------


@dataclass(frozen=True)
class ServerCounters:
    commits: int  # this database's committed transactions
    other_commits: int  # other databases': the server's CPU then is not all ours
    wal_flushes: int  # the whole cluster's WAL syncs to disk

    def __sub__(self, earlier: ServerCounters) -> ServerCounters:
        return ServerCounters(*(getattr(self, f.name) - getattr(earlier, f.name) for f in fields(self)))


def server_counters() -> ServerCounters:
    # A connection of its own: statistics are snapshotted once per transaction.
    with db.engine.connect() as connection:
        row = connection.execute(
            sa.text(
                "SELECT sum(xact_commit) FILTER (WHERE datname = current_database()),"
                " coalesce(sum(xact_commit) FILTER (WHERE datname <> current_database()), 0),"
                " (SELECT wal_sync FROM pg_stat_wal)"
                " FROM pg_stat_database"
            )
        ).one()
    return ServerCounters(*map(int, row))  # sum() of bigints comes back as NUMERIC


def worker_sessions(waiting_on_a_lock: bool = False) -> int:
    condition = " AND wait_event_type = 'Lock'" if waiting_on_a_lock else ""
    with db.engine.connect() as connection:
        return connection.execute(
            sa.text(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = current_database() AND application_name = :name" + condition
            ),
            {"name": WORKER_APP_NAME},
        ).scalar_one()


# Worker processes -------------------------------------------------------------------------------


def worker_env(database_url: str, sandbox: str) -> dict[str, str]:
    """The environment a deployed worker runs with, as the end-to-end tests' Stack builds it."""
    # PGAPPNAME is libpq's default application_name: it finds the workers' sessions.
    return bench_env(database_url, sandbox, PGAPPNAME=WORKER_APP_NAME)


def service_worker_command() -> list[str]:
    return python_m("flask", "worker", "--burst", "--poll-interval", POLL_INTERVAL)


def noop_worker_command(database_url: str) -> list[str]:
    return python_m("bench.scale_out", "--noop-worker", "--database-url", database_url)


@contextmanager
def worker_processes(command: list[str], env: dict[str, str], count: int) -> Iterator[list[Child]]:
    with tempfile.TemporaryDirectory(prefix="scale-out-") as scratch:
        workers = []
        try:
            for n in range(count):
                # A file, not a pipe: nobody reads while they run, and a full pipe would block them.
                stderr = Path(scratch) / f"worker-{n}.err"
                workers.append(start(command, env=env, stdout=DEVNULL, stderr=stderr, name=f"worker {n}"))
            yield workers
        finally:
            # Blocked on the queue's lock, a worker would handle SIGTERM only once it is free.
            kill(*workers)


def all_blocked_on_the_queue(workers: list[Child]) -> bool:
    for worker in workers:
        if worker.poll() is not None:
            raise BenchmarkError(f"a worker stopped before the start: {failure(worker)}")
    return worker_sessions(waiting_on_a_lock=True) == len(workers)


def failure(worker: Child) -> str:
    return f"{worker.name} (pid {worker.pid}) exited with {worker.returncode}:\n{worker.said(2000)}"


def wait_for_exits(workers: list[Child], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    for worker in workers:
        try:
            worker.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            raise BenchmarkError(f"the queue was not drained within {timeout:.0f} s") from None
        if worker.returncode != 0:
            raise BenchmarkError(failure(worker))


@dataclass(frozen=True)
class Drain:
    workers: int
    seconds: float
    last_job_done_s: float
    cpu: CpuSample
    server: ServerCounters


def drain(command: list[str], env: dict[str, str], count: int, stand_in_pid: int) -> Drain:
    """Start `count` burst workers behind a lock on the jobs table, release them all at once and
    time them until the last one exits because nothing is due."""
    db.session.close()  # nothing of ours stays in a transaction while the workers run
    with db.engine.connect() as gate:
        gate.execute(sa.text("LOCK TABLE jobs IN EXCLUSIVE MODE"))  # readers pass, writers wait
        with worker_processes(command, env, count) as workers:
            wait_until(
                lambda: all_blocked_on_the_queue(workers), START_TIMEOUT_S, interval=POLL_S, what="the workers to start"
            )
            pids = [worker.pid for worker in workers]
            cpu_before, server_before = cpu_sample(pids, stand_in_pid), server_counters()
            released_at = datetime.now(UTC)
            gate.commit()
            started = time.perf_counter()
            wait_for_exits(workers, DRAIN_TIMEOUT_S)
            seconds = time.perf_counter() - started
    # Sessions close a moment after their process exits; only then are their statistics written.
    wait_until(lambda: worker_sessions() == 0, START_TIMEOUT_S, interval=POLL_S, what="the workers' sessions to close")
    return Drain(
        workers=count,
        seconds=seconds,
        last_job_done_s=(last_job_finished_at() - released_at).total_seconds(),
        cpu=cpu_sample([], stand_in_pid) - cpu_before,
        server=server_counters() - server_before,
    )


def last_job_finished_at() -> datetime:
    return db.session.scalar(sa.select(sa.func.max(Job.finished_at)))


# The no-op worker (a process of its own) --------------------------------------------------------


def do_nothing(context) -> None:
    pass


def run_noop_worker(database_url: str) -> None:
    """A real Worker, with one more handler that does nothing: claim + complete is all it costs."""
    app = create_app({"SQLALCHEMY_DATABASE_URI": database_url})
    client = PluggyClient(app.config["PLUGGY_BASE_URL"], CLIENT_ID, CLIENT_SECRET)
    worker = sync_worker(app, client, poll_interval=float(POLL_INTERVAL))
    worker.registry.register(NOOP, do_nothing)
    worker.run(burst=True)


# Setting up: items at the stand-in, connections first-synced ------------------------------------


def create_small_items(sandbox: str, count: int) -> list[str]:
    headers = {"X-API-KEY": api_key(sandbox)}
    body = {"connectorId": 0, "parameters": {"user": "user-ok", "password": "password-ok"}}
    ids = []
    for _ in range(count):
        response = requests.post(f"{sandbox}/items", headers=headers, json=body, timeout=TIMEOUT)
        response.raise_for_status()
        ids.append(response.json()["id"])
    stand_in_idle(sandbox)
    return ids


def register_and_first_sync(item_ids: list[str]) -> None:
    empty_tables()
    user = User(email="scale-out@example.com")
    db.session.add(user)
    db.session.commit()
    service = BankConnectionService(db.session, pluggy_client(), sync_settings())
    for item_id in item_ids:
        service.register(user, item_id)
    sync_worker(current_app._get_current_object(), pluggy_client(), concurrency=4).run(burst=True)
    db.session.expire_all()
    synced = db.session.scalar(sa.select(sa.func.count()).select_from(SyncRun).where(SyncRun.status == "success"))
    if synced != len(item_ids) or count_rows(Transaction) == 0:
        raise BenchmarkError(f"only {synced} of {len(item_ids)} first syncs succeeded")


def count_rows(model) -> int:
    return db.session.scalar(sa.select(sa.func.count()).select_from(model))


# A fresh queue for each drain -------------------------------------------------------------------


def fresh_queue() -> None:
    """An empty jobs table and inbox, so every drain starts from the same queue."""
    # Through the session, not a connection of its own, whose open transaction would hold locks
    # that TRUNCATE waits for.
    db.session.execute(sa.text("TRUNCATE jobs, webhook_events RESTART IDENTITY"))
    db.session.commit()


def analyze_queue() -> None:
    # Autovacuum may be off (it is on this machine's server): without fresh statistics the claim's
    # plan would depend on what the table held in the previous drain.
    db.session.execute(sa.text("ANALYZE jobs, webhook_events"))
    db.session.commit()


def queue_item_jobs(sandbox: str, item_ids: list[str], tag: str) -> None:
    steady_state_watermarks()
    for item_id in item_ids:
        # An execution by Pluggy's scheduler: new rows come with one, which moves the item's
        # lastUpdatedAt (the service does not fetch again an update it has fetched).
        response = requests.post(
            f"{sandbox}/sandbox/items/{item_id}/auto_sync",
            json={"transactions": NEW_TRANSACTIONS_PER_ACCOUNT},
            timeout=TIMEOUT,
        )
        response.raise_for_status()
    stand_in_idle(sandbox)
    for item_id in item_ids:
        store_item_updated(item_id, f"scale-out-{tag}-{item_id}")
    analyze_queue()


def steady_state_watermarks() -> None:
    db.session.execute(sa.update(Account).values(transactions_watermark=sa.func.now()))
    db.session.commit()


def store_item_updated(item_id: str, event_id: str) -> None:
    """What the webhook receiver stores for Pluggy's `item/updated`, through the same inbox."""
    payload = {"event": "item/updated", "eventId": event_id, "itemId": item_id, "triggeredBy": "SYNC"}
    headers = {"Content-Type": "application/json", "X-Webhook-Secret": WEBHOOK_SECRET}
    new, _ = store(db.session, json.dumps(payload).encode(), payload, headers)
    if not new:
        raise BenchmarkError(f"event {event_id} was already stored")


def queue_noop_jobs(count: int) -> None:
    for _ in range(count):
        enqueue(db.session, NOOP)
    db.session.commit()
    analyze_queue()


# Checking that a drain did all its work ---------------------------------------------------------


def check_jobs_done(kind: str, expected: int) -> None:
    """Every job of `kind` done; nothing else due, running or dead. The worker's periodic jobs
    (prune, sweep) ran too and queued their next turn for later: that is not left over."""
    done = db.session.scalar(sa.select(sa.func.count()).select_from(Job).where(Job.kind == kind, Job.status == "done"))
    left = db.session.execute(
        sa.select(Job.kind, Job.status, sa.func.count())
        .where((Job.status != "done") & ((Job.kind == kind) | (Job.status != "queued") | (Job.run_at <= sa.func.now())))
        .group_by(Job.kind, Job.status)
    ).all()
    if done != expected or left:
        raise BenchmarkError(f"{done} of {expected} {kind} jobs done; left over: {[tuple(r) for r in left]}")


def check_item_jobs(expected_jobs: int, rows_before: int, runs_before: int) -> dict:
    check_jobs_done(JobKind.PROCESS_EVENTS, expected_jobs)
    pending = db.session.scalar(
        sa.select(sa.func.count()).select_from(WebhookEvent).where(WebhookEvent.status != "processed")
    )
    runs = db.session.execute(
        sa.select(sa.func.count(), sa.func.count().filter(SyncRun.status == "success")).where(SyncRun.id > runs_before)
    ).one()
    landed = count_rows(Transaction) - rows_before
    expected_rows = expected_jobs * NEW_TRANSACTIONS_PER_ITEM
    if pending or runs[0] != runs[1] or runs[1] != expected_jobs or landed != expected_rows:
        raise BenchmarkError(
            f"{pending} webhooks not processed; {runs[1]} of {runs[0]} runs succeeded, "
            f"{expected_jobs} expected; {landed} new rows, {expected_rows} expected"
        )
    return {"sync_runs": runs[1], "new_rows": landed}


def max_run_id() -> int:
    return db.session.scalar(sa.select(sa.func.coalesce(sa.func.max(SyncRun.id), 0)))


# One measured drain of each kind ----------------------------------------------------------------


def item_drain(sandbox: str, item_ids: list[str], workers: int, env: dict, stand_in_pid: int) -> dict:
    fresh_queue()
    queue_item_jobs(sandbox, item_ids, tag=f"k{workers}")
    rows_before, runs_before = count_rows(Transaction), max_run_id()
    measured = drain(service_worker_command(), env, workers, stand_in_pid)
    db.session.expire_all()
    checked = check_item_jobs(len(item_ids), rows_before, runs_before)
    return {**summary(measured, len(item_ids)), **checked}


def noop_drain(database_url: str, jobs: int, workers: int, env: dict, stand_in_pid: int) -> dict:
    fresh_queue()
    queue_noop_jobs(jobs)
    measured = drain(noop_worker_command(database_url), env, workers, stand_in_pid)
    db.session.expire_all()
    check_jobs_done(NOOP, jobs)
    return summary(measured, jobs)


def summary(measured: Drain, jobs: int) -> dict:
    cpu, wall = measured.cpu, measured.seconds
    parties = {
        "workers": cpu.workers,
        "postgres": cpu.postgres,
        "stand_in": cpu.stand_in,
        "bench": cpu.bench,
        "other": cpu.machine_busy - cpu.workers - cpu.postgres - cpu.stand_in - cpu.bench,
    }
    machine = {**parties, "machine_busy": cpu.machine_busy, "machine_iowait": cpu.machine_iowait}
    shares = rounded(machine, 3, per=wall * cores())
    return {
        "workers": measured.workers,
        "jobs": jobs,
        "seconds": round(wall, 3),
        "jobs_per_s": round(jobs / wall, 1),
        "last_job_done_s": round(measured.last_job_done_s, 3),
        "jobs_per_s_to_last_job_done": round(jobs / measured.last_job_done_s, 1),
        "cpu_s": rounded(machine, 2),
        "share_of_cores": shares,
        "cpu_ms_per_job": rounded(parties, 2, per=jobs / 1000),
        "commits_per_job": round(measured.server.commits / jobs, 2),
        "wal_flushes_per_job": round(measured.server.wal_flushes / jobs, 2),
        "other_databases_commits": measured.server.other_commits,
        "limit": limit(shares, measured.workers, measured.server.other_commits),
    }


def rounded(values: dict[str, float], digits: int, per: float = 1.0) -> dict[str, float]:
    return {name: round(value / per, digits) for name, value in values.items()}


def limit(share: dict[str, float], workers: int, other_commits: int) -> str:
    """Whether the machine's CPU saturated, and who used it."""
    parties = ", ".join(f"{name} {share[name]:.0%}" for name in ("workers", "postgres", "stand_in", "other"))
    where = f"{share['machine_busy']:.0%} of {cores()} cores busy with {workers} workers ({parties})"
    verdict = (
        f"CPU: {where}"
        if share["machine_busy"] >= CPU_SATURATED
        else (f"not CPU: {where}; iowait {share['machine_iowait']:.0%}")
    )
    if share["other"] > SHARED_MACHINE or other_commits:
        verdict += (
            f"; the machine was shared (others used {share['other']:.0%} outside PostgreSQL and committed"
            f" {other_commits} transactions in other databases): jobs/s is lower than on a quiet machine"
            " and PostgreSQL's share includes theirs"
        )
    return verdict


# The whole benchmark ----------------------------------------------------------------------------


def require_postgresql(database_url: str) -> None:
    if engine_name(database_url) != "postgresql":
        raise BenchmarkError(
            f"the scale-out benchmark needs PostgreSQL (SKIP LOCKED among processes), not {engine_name(database_url)}"
        )


def run(database_url: str, items: int = 200, noop_jobs: int = 5000, workers: tuple[int, ...] = (1, 2, 4)) -> dict:
    require_postgresql(database_url)
    with stand_in() as pluggy:
        sandbox, stand_in_pid = pluggy.url, pluggy.pid
        item_ids = create_small_items(sandbox, items)
        app = service_app(database_url, sandbox)
        env = worker_env(database_url, sandbox)
        with app.app_context():
            register_and_first_sync(item_ids)
            item_results = {str(k): item_drain(sandbox, item_ids, k, env, stand_in_pid) for k in workers}
            noop_results = {str(k): noop_drain(database_url, noop_jobs, k, env, stand_in_pid) for k in workers}
            db.engine.dispose()
    results = {
        "cores": cores(),
        "item_jobs_per_drain": items,
        "new_transactions_per_item": NEW_TRANSACTIONS_PER_ITEM,
        "noop_jobs_per_drain": noop_jobs,
        "item_jobs": item_results,
        "noop_jobs": noop_results,
    }
    return {
        "benchmark": "scale_out",
        "engine": "postgresql",
        "results": results,
        "table": table(item_results, noop_results),
    }


# The summary `make bench` prints ----------------------------------------------------------------


def table(item_results: dict[str, dict], noop_results: dict[str, dict]) -> list[dict]:
    counts = " / ".join(item_results)
    rows = []
    for label, runs in (("item", item_results), ("no-op", noop_results)):
        widest = runs[max(runs, key=int)]
        rows += [
            row(
                f"{label} jobs/s with {counts} workers",
                f"{joined(runs, lambda r: format(r['jobs_per_s'], '.0f'))} (to the last job done:"
                f" {joined(runs, lambda r: format(r['jobs_per_s_to_last_job_done'], '.0f'))})",
            ),
            row(
                f"{label} jobs: CPU busy (of {cores()} cores) with {counts} workers",
                joined(runs, lambda r: f"{r['share_of_cores']['machine_busy']:.0%}"),
            ),
            row(
                f"{label} jobs: CPU ms per job, workers / PostgreSQL / stand-in, with {counts} workers",
                joined(runs, per_job_cpu, separator="; "),
            ),
            row(
                f"{label} jobs: PostgreSQL commits / WAL flushes per job with {counts} workers",
                joined(runs, lambda r: f"{r['commits_per_job']:.1f} / {r['wal_flushes_per_job']:.1f}", separator="; "),
            ),
            row(f"{label} jobs: what limits scale-out", widest["limit"]),
        ]
    return rows


def row(measure: str, figure: str) -> dict:
    return {"measure": measure, "figure": figure, "goal": "reported", "met": None}


def joined(runs: dict[str, dict], show: Callable[[dict], str], separator: str = " / ") -> str:
    return separator.join(show(result) for result in runs.values())


def per_job_cpu(result: dict) -> str:
    ms = result["cpu_ms_per_job"]
    return f"{ms['workers']:.1f} / {ms['postgres']:.1f} / {ms['stand_in']:.1f}"


def worker_counts(text: str) -> tuple[int, ...]:
    counts = tuple(dict.fromkeys(int(part) for part in text.split(",")))
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError("a comma-separated list of positive worker counts, e.g. 1,2,4")
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--database-url", required=True, help="a PostgreSQL database, emptied first: postgresql+psycopg://USER@HOST/DB"
    )
    parser.add_argument("--items", type=int, default=200, help="connections, one job each per drain")
    parser.add_argument("--noop-jobs", type=int, default=5000, help="no-op jobs per drain")
    parser.add_argument("--workers", type=worker_counts, default=(1, 2, 4), help="worker processes per drain")
    parser.add_argument("--json", type=Path, help="also write the result here")
    parser.add_argument("--noop-worker", action="store_true", help="internal: be one no-op worker process")
    args = parser.parse_args()
    try:
        require_postgresql(args.database_url)
        if args.noop_worker:
            run_noop_worker(args.database_url)
            return
        result = run(args.database_url, args.items, args.noop_jobs, args.workers)
    except BenchmarkError as exc:
        parser.exit(1, f"scale_out: {exc}\n")
    write_json(result, args.json)


if __name__ == "__main__":
    main()
