"""Memory: the worker's peak RSS while it runs the first sync (backfill) of an item, for a small and
a large item, to show that it stays under a ceiling and does not grow with the history.

    python -m bench.memory [--sizes 50000,500000] [--database-url URL] [--json PATH]

Method. The local stand-in (`sandbox/`, a process of its own) holds one item per size (about N
transactions on two accounts; generating 500,000 takes it a few seconds). For each size, on emptied
tables, the item is registered the way the service does (BankConnectionService.register, which
queues the `initial_sync` job), then the real worker runs as a process of its own,
`python -m flask worker --burst` (FLASK_APP=wsgi, configured from the environment as in
production, SYNC_BACKFILL_DAYS covering the stand-in's whole history), and drains the queue.
Its peak RSS is the ru_maxrss that wait4() reports for that one child once it exits (RUSAGE_CHILDREN
would mix in the stand-in, also a child of this process). The same worker on an empty queue gives
the floor: the interpreter with the app and its libraries loaded. Afterwards the rows are checked:
the connection's stored transactions must number what the stand-in serves for the item (read back
through the Pluggy client), or the figure would not be a backfill's.

MB here are 10^6 bytes (ru_maxrss is in KiB on Linux).

Goal: peak RSS of the worker during a 500,000-transaction backfill at most 150 MB, and flat
in the size of the history: the large item's peak within 1.2x the small one's, plus 5 MB.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa

from harness.processes import PIPE, finish, last_line, python_m, stand_in, start
from models import Account, Job, SyncRun, Transaction, User, db
from sync.connections import BankConnectionService
from sync.runtime import pluggy_client, sync_settings
from sync.scheduling import JobKind

from .common import bench_env, create_item, empty_tables, engine_name, service_app, timed, write_json

SIZES = (50_000, 500_000)
GOAL_MB = 150.0
FLAT_FACTOR = 1.2
FLAT_SLACK_MB = 5.0
BACKFILL_DAYS = 800  # more than the stand-in's year of history: the first sync reads all of it
WORKER_DEADLINE_S = 3600.0
SINCE = "2000-01-01"  # before the stand-in's oldest row


def worker_env(database_url: str, sandbox: str) -> dict[str, str]:
    """The worker configured from the environment, as it is deployed."""
    return bench_env(database_url, sandbox, SYNC_BACKFILL_DAYS=str(BACKFILL_DAYS))


# A small process that starts the worker and reports its peak RSS. The worker must not be a direct
# child of this benchmark: a child forked from a large process starts with that process's pages
# resident, and ru_maxrss keeps them across exec.
MEASURE = """
import json, os, subprocess, sys, threading
deadline, command = float(sys.argv[1]), sys.argv[2:]
worker = subprocess.Popen(command, stdout=subprocess.DEVNULL)
watchdog = threading.Timer(deadline, worker.kill)
watchdog.start()
_, status, usage = os.wait4(worker.pid, 0)
watchdog.cancel()
code = os.waitstatus_to_exitcode(status)
print(json.dumps({"exit": code, "maxrss_kb": usage.ru_maxrss}))
sys.exit(code and f"the worker exited with {code}")
"""


def run_worker(env: dict[str, str]) -> dict:
    """`flask worker --burst` in a process of its own until the queue is empty: its peak RSS and
    how long it took. A worker still running at the deadline is killed and the bench fails."""
    command = [sys.executable, "-c", MEASURE, str(WORKER_DEADLINE_S), *python_m("flask", "worker", "--burst")]
    started = time.perf_counter()
    # Fails (harness.processes.Exited) with the end of what the worker wrote when it did not exit 0.
    output = finish(start(command, env=env, stdout=PIPE, stderr=PIPE, name="flask worker --burst"), timeout=None)
    seconds = time.perf_counter() - started
    measured = json.loads(last_line(output))
    return {"peak_rss_mb": round(measured["maxrss_kb"] * 1024 / 1e6, 1), "seconds": round(seconds, 1)}


def register(item_id: str) -> int:
    """On emptied tables, a user and the item registered as the service does (first sync queued)."""
    db.session.close()  # TRUNCATE waits for every open transaction, this session's included
    empty_tables()
    user = User(email="bench@example.com")
    db.session.add(user)
    db.session.commit()
    connection, _ = BankConnectionService(db.session, pluggy_client(), sync_settings()).register(user, item_id)
    connection_id = connection.id
    db.session.close()  # the worker process gets the database to itself
    return connection_id


def stand_in_rows(item_id: str) -> int:
    """What the stand-in serves for the item, read back page by page."""
    client = pluggy_client()
    return sum(
        len(page)
        for account in client.list_accounts(item_id)
        for page in client.iter_transactions(account["id"], date_from=SINCE)
    )


def stored_rows(connection_id: int) -> int:
    return db.session.scalar(
        sa.select(sa.func.count())
        .select_from(Transaction)
        .join(Account, Transaction.account_id == Account.id)
        .where(Account.connection_id == connection_id, Transaction.deleted_at.is_(None))
    )


def first_sync_outcome(connection_id: int) -> dict:
    """The first sync's job and run after the worker exited: anything but done is a failed bench."""
    job = db.session.scalars(sa.select(Job).where(Job.kind == JobKind.INITIAL_SYNC)).one()
    run = db.session.scalars(sa.select(SyncRun).where(SyncRun.connection_id == connection_id)).one_or_none()
    if job.status != "done" or run is None or run.status != "success":
        raise RuntimeError(
            f"the first sync did not finish: job {job.status} ({job.last_error!r}), run {run and run.status}"
        )
    return {"run_created": run.created}


def backfill(env: dict[str, str], item_id: str) -> dict:
    """The first sync of one item by the worker process, measured, then checked."""
    connection_id = register(item_id)
    measured = run_worker(env)
    outcome = first_sync_outcome(connection_id)
    rows = {"stored": stored_rows(connection_id), "stand_in": stand_in_rows(item_id)}
    db.session.close()
    return {**measured, **outcome, **rows}


def idle_worker(env: dict[str, str]) -> dict:
    """The same worker with nothing to do: the floor of what any worker process holds."""
    db.session.close()
    empty_tables()
    return run_worker(env)


def is_flat(small: dict, large: dict) -> bool:
    return large["peak_rss_mb"] <= FLAT_FACTOR * small["peak_rss_mb"] + FLAT_SLACK_MB


def table(idle: dict, results: dict[int, dict]) -> list[dict]:
    rows = [
        {
            "measure": f"worker peak RSS, first sync of {size:,} transactions",
            "figure": f"{result['peak_rss_mb']:.1f} MB in {result['seconds']:.0f} s "
            f"(idle worker {idle['peak_rss_mb']:.1f} MB)",
            "goal": f"<= {GOAL_MB:g} MB",
            "met": result["peak_rss_mb"] <= GOAL_MB,
        }
        for size, result in results.items()
    ]
    rows += [
        {
            "measure": f"rows stored by that sync ({size:,})",
            "figure": f"{result['stored']:,} of {result['stand_in']:,}",
            "goal": "all of the stand-in's",
            "met": result["stored"] == result["stand_in"],
        }
        for size, result in results.items()
    ]
    if len(results) > 1:
        (small_size, small), (large_size, large) = min(results.items()), max(results.items())
        rows.append(
            {
                "measure": f"peak RSS flat in the history: {large_size:,} vs {small_size:,}",
                "figure": f"{large['peak_rss_mb']:.1f} MB vs {small['peak_rss_mb']:.1f} MB "
                f"({large['peak_rss_mb'] / small['peak_rss_mb']:.2f}x)",
                "goal": f"<= {FLAT_FACTOR:g}x + {FLAT_SLACK_MB:g} MB",
                "met": is_flat(small, large),
            }
        )
    return rows


def run(database_url: str, sizes: tuple[int, ...] = SIZES) -> dict:
    sizes = tuple(sorted(sizes))
    with stand_in() as pluggy:
        sandbox = pluggy.url
        generation = {}
        items = {}
        for size in sizes:
            generation[size], items[size] = timed(lambda size=size: create_item(sandbox, size))
        app = service_app(database_url, sandbox)
        env = worker_env(database_url, sandbox)
        with app.app_context():
            idle = idle_worker(env)
            results = {size: backfill(env, items[size]) for size in sizes}
            db.engine.dispose()
    for size in sizes:
        results[size]["stand_in_generation_seconds"] = round(generation[size], 1)
    return {
        "benchmark": "memory",
        "engine": engine_name(database_url),
        "results": {"idle_worker": idle, "backfills": {str(size): result for size, result in results.items()}},
        "goals": {"peak_rss_mb_at_most": GOAL_MB, "flat": f"large <= {FLAT_FACTOR:g} x small + {FLAT_SLACK_MB:g} MB"},
        "table": table(idle, results),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes",
        default=",".join(str(size) for size in SIZES),
        help="comma-separated item sizes in transactions (default: %(default)s)",
    )
    parser.add_argument("--database-url", help="default: a fresh SQLite file")
    parser.add_argument("--json", type=Path, help="also write the result here")
    args = parser.parse_args()
    sizes = tuple(int(size) for size in args.sizes.split(","))
    with tempfile.TemporaryDirectory() as scratch:
        url = args.database_url or f"sqlite:///{Path(scratch) / 'bench.db'}"
        result = run(url, sizes)
    write_json(result, args.json)


if __name__ == "__main__":
    main()
