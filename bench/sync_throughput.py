"""Sync throughput against its peers: a first sync of one item of N transactions from the local
stand-in, measured side by side in one run against what a team would use instead.

    python -m bench.sync_throughput [--transactions 100000] [--rounds 3] [--database-url URL] [--json PATH]

The passes, each on emptied tables and each in a fresh process of its own:
- floor: download and parse every page of the item's transactions (`/accounts`, then
  `/v2/transactions` with its `next` cursor), keeping nothing: what any sync pays before writing.
- ours: TransactionService.fetch, the service's first sync (accounts, then a bulk upsert per page;
  then the item's other products, investments with their movements, identity, loans, bills, which
  neither the floor nor the peers read: that weighs only against ours).
- seed per-row: the Django-era code this service replaces wrote each transaction with a per-row
  `update_or_create` in autocommit: inside its own transaction, `SELECT ... FOR UPDATE` by
  pluggy_id, then an INSERT or an UPDATE, then a COMMIT. Here the same through the ORM: a lookup
  (FOR UPDATE, which SQLite ignores), `add` or `setattr`, and `db.session.commit()` after every row.
- per-page: the same per-row lookup and add/setattr, committed once per page (what a hand-written
  sync that learnt to batch its commits does).
- pluggy-extract 0.1.0 (PyPI), a third-party CLI that lands an item's data as JSONL files, run as
  a user runs it: its console script `pluggy-extract run`, with a profiles.toml whose `base_url` is
  the stand-in, credentials from the environment, datasets `accounts,transactions` (investments
  are not needed to land transactions), a window (`--window-days`) longer than the stand-in's
  history and `--date` the stand-in's today, so it reads the same rows as the others. It calls
  `POST /auth`, `GET /items/{id}`, `GET /accounts?itemId=` and `GET /v2/transactions` with
  `dateFrom`, `dateTo` and the `after` of each `next`: the stand-in answers each as Pluggy documents
  them (tests/stand_in/test_protocol.py holds `next` repeating the filters), and its
  `/investments` and `/identity` too, so nothing in it needed changing. Neither pluggy-extract nor
  ours sends a `pageSize` to `/v2/transactions`: both read the same pages of 500.

Method. The stand-in (`sandbox/`) holds one item of about N transactions on two accounts. Before
each pass this process empties the tables and registers the item as the service does; then a small
launcher process starts the pass (`python -m bench.sync_throughput --pass NAME ...`, or the
pluggy-extract command) and reports the wall time and the peak RSS that wait4() gives for that one
child: the pass is not forked from this large process, whose resident pages ru_maxrss would keep.
Each pass of ours and the others times its own work inside the process (after the interpreter,
the app and the connection are ready) and writes it to a file; pluggy-extract is timed by its
process's wall time, start-up included, since that is all a CLI offers. Floor, ours and
pluggy-extract run `rounds` times each, in turn, and their medians are taken (this machine's speed
drifts, and one run of pluggy-extract took 7.1 s and another 9.0 s: enough to flip its goal); the
seed's per-row pass and the per-page pass run once (the per-row one takes minutes at full size, and
is the baseline, not a figure to refine). After each pass the rows are counted:
transactions in the database for the passes that store, JSON lines in pluggy-extract's
transaction files (and their distinct ids); every peer must hold the rows ours stored.

Ratios: ours / floor and the peers / ours, in the work's time. pluggy-extract / ours compares the
whole run a user starts (its process's wall time, its start-up included and reported: what
`pluggy-extract --help` takes) with ours's sync alone, since ours runs in a worker already up; the
process-to-process ratio (ours's start-up, the app and its libraries, included) is reported beside
it. MB are 10^6 bytes of peak RSS (ru_maxrss is KiB on Linux); floor and ours give the largest of
their rounds.

Goals: ours at most 1.3x the floor; ours at least 10x faster than the seed's per-row style, on
SQLite and PostgreSQL (the per-page variant reported beside it); ours faster than pluggy-extract
to have the item's transactions stored locally, with the memory of each reported beside it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa

from harness.processes import PIPE, finish, last_line, python_m, stand_in, start
from models import Connection, Transaction, User, db
from models.base import utcnow
from sync import runs
from sync.connections import BankConnectionService
from sync.runtime import pluggy_client, sync_settings
from sync.transactions import TransactionService, transaction_row

from .common import CLIENT_ID, CLIENT_SECRET, create_item, empty_tables, engine_name, service_app, write_json

SINCE = "2000-01-01"  # before the stand-in's oldest row: every pass reads the whole history
WINDOW_DAYS = 800  # pluggy-extract's window, longer than the stand-in's year of history
OURS_OVER_FLOOR_GOAL = 1.3
PER_ROW_GOAL = 10.0
PASS_DEADLINE_S = 3600.0
EXTRACT_PROFILE = "bench"
EXTRACT_CREDENTIALS = "BENCH"  # pluggy-extract reads BENCH_PLUGGY_CLIENT_ID / _CLIENT_SECRET
PLUGGY_EXTRACT = Path(sys.executable).with_name("pluggy-extract")  # its console script, beside python


# The passes, each run in a process of its own -----------------------------------------------


def floor(connection: Connection) -> int:
    """Download and parse every page, as the fetch does, and keep nothing."""
    client = pluggy_client()
    rows = 0
    for account in client.list_accounts(connection.item_id):
        for page in client.iter_transactions(account["id"], date_from=SINCE):
            rows += len(page)
    return rows


def ours(connection: Connection) -> int:
    service = TransactionService(db.session, pluggy_client(), sync_settings())
    run = service.fetch(connection, runs.open_run(db.session, connection, "initial"))
    return run.created


def looked_up(pluggy_id: str) -> Transaction | None:
    """The row `update_or_create` locks and reads first (SQLite has no FOR UPDATE: SQLAlchemy
    leaves it out there)."""
    return db.session.scalars(
        sa.select(Transaction).where(Transaction.pluggy_id == pluggy_id).with_for_update()
    ).one_or_none()


def upsert_row(data: dict, account_id: int) -> None:
    values = transaction_row(data, account_id, utcnow())
    row = looked_up(data["id"])
    if row is None:
        db.session.add(Transaction(**values))
    else:
        for name, value in values.items():
            setattr(row, name, value)


def seed_per_row(connection: Connection) -> int:
    """The seed's style: one `update_or_create` per transaction in autocommit, a commit per row."""
    client = pluggy_client()
    service = TransactionService(db.session, client, sync_settings())
    written = 0
    for account in service.refresh_accounts(connection):
        account_id, account_pluggy_id = account.id, account.pluggy_id  # not reloaded after each commit
        for page in client.iter_transactions(account_pluggy_id, date_from=SINCE):
            for data in page:
                upsert_row(data, account_id)
                db.session.commit()
                written += 1
    return written


def per_page(connection: Connection) -> int:
    """The same per-row lookup and upsert, committed once per page."""
    client = pluggy_client()
    service = TransactionService(db.session, client, sync_settings())
    written = 0
    for account in service.refresh_accounts(connection):
        account_id, account_pluggy_id = account.id, account.pluggy_id
        for page in client.iter_transactions(account_pluggy_id, date_from=SINCE):
            for data in page:
                upsert_row(data, account_id)
                written += 1
            db.session.commit()
    return written


PASSES = {"floor": floor, "ours": ours, "seed_per_row": seed_per_row, "per_page": per_page}
STORING = {"ours", "seed_per_row", "per_page"}


def connection_of(item_id: str) -> Connection:
    return db.session.scalars(sa.select(Connection).where(Connection.item_id == item_id)).one()


def run_pass(name: str, database_url: str, sandbox: str, item_id: str, result: Path) -> None:
    """In the pass's own process: the app, the registered connection, then the timed work."""
    app = service_app(database_url, sandbox)
    with app.app_context():
        connection = connection_of(item_id)
        started = time.perf_counter()
        rows = PASSES[name](connection)
        seconds = time.perf_counter() - started
        db.session.close()
    result.write_text(json.dumps({"rows": rows, "seconds": seconds}))


# Launching and measuring them -----------------------------------------------------------------

# A small process that starts one pass and reports its wall time and peak RSS. The pass must not be
# a direct child of this benchmark: a child forked from a large process starts with that process's
# pages resident, and ru_maxrss keeps them across exec. (bench/memory.py's MEASURE, with the time.)
LAUNCHER = """
import json, os, subprocess, sys, threading, time
deadline, command = float(sys.argv[1]), sys.argv[2:]
started = time.perf_counter()
child = subprocess.Popen(command, stdout=subprocess.DEVNULL)
watchdog = threading.Timer(deadline, child.kill)
watchdog.start()
_, status, usage = os.wait4(child.pid, 0)
seconds = time.perf_counter() - started
watchdog.cancel()
code = os.waitstatus_to_exitcode(status)
print(json.dumps({"exit": code, "maxrss_kb": usage.ru_maxrss, "seconds": seconds}))
sys.exit(code and f"the pass exited with {code}")
"""


def launched(command: list[str], name: str, env: dict[str, str] | None = None) -> dict:
    """`command` run to its end under the launcher: its wall seconds and peak RSS in MB."""
    launcher = [sys.executable, "-c", LAUNCHER, str(PASS_DEADLINE_S), *command]
    output = finish(start(launcher, env=env, stdout=PIPE, stderr=PIPE, name=name), timeout=None)
    measured = json.loads(last_line(output))
    return {"process_seconds": measured["seconds"], "peak_rss_mb": measured["maxrss_kb"] * 1024 / 1e6}


def register(item_id: str) -> None:
    """On emptied tables, a user and the item registered as the service does."""
    empty_tables()
    user = User(email="bench@example.com")
    db.session.add(user)
    db.session.commit()
    BankConnectionService(db.session, pluggy_client(), sync_settings()).register(user, item_id)
    db.session.close()  # the pass's process gets the database to itself


def stored_rows() -> int:
    count = db.session.scalar(sa.select(sa.func.count()).select_from(Transaction))
    db.session.close()
    return count


def database_pass(name: str, database_url: str, sandbox: str, item_id: str, scratch: Path) -> dict:
    """One of PASSES on freshly registered tables, in its own process: its work's seconds, its
    process's, its peak RSS, the rows it handled and the rows the database then holds."""
    register(item_id)
    result = scratch / f"{name}.json"
    command = python_m("bench.sync_throughput", "--pass", name, "--database-url", database_url)
    command += ["--sandbox", sandbox, "--item", item_id, "--result", str(result)]
    measured = launched(command, name)
    work = json.loads(result.read_text())
    stored = stored_rows() if name in STORING else None
    return {**measured, "seconds": work["seconds"], "rows": work["rows"], "stored": stored}


def extract_profile(folder: Path, sandbox: str, item_id: str) -> Path:
    """pluggy-extract's profiles file for the item, its Pluggy being the stand-in."""
    path = folder / "profiles.toml"
    path.write_text(
        f"[profiles.{EXTRACT_PROFILE}]\n"
        f'credentials_env = "{EXTRACT_CREDENTIALS}"\n'
        f'base_url = "{sandbox}"\n'
        f'items = [{{ id = "{item_id}", label = "stand-in" }}]\n'
    )
    return path


def extract_command(profiles: Path, out: Path) -> list[str]:
    today = datetime.now(UTC).date().isoformat()  # the stand-in's today: its newest rows are dated so
    return [
        str(PLUGGY_EXTRACT),
        "run",
        f"--profile={EXTRACT_PROFILE}",
        f"--profiles={profiles}",
        f"--out={out}",
        "--datasets=accounts,transactions",
        f"--window-days={WINDOW_DAYS}",
        f"--date={today}",
    ]


def landed_transactions(out: Path) -> dict:
    """What pluggy-extract's transaction files hold: JSON lines, and distinct transaction ids."""
    ids = []
    for path in out.glob("**/dataset=transactions/**/*.jsonl"):
        with path.open(encoding="utf-8") as lines:
            ids += [json.loads(line)["payload"]["id"] for line in lines]
    return {"rows": len(ids), "distinct": len(set(ids))}


def extract_pass(sandbox: str, item_id: str, scratch: Path) -> dict:
    """pluggy-extract's CLI landing the item in a fresh folder, under the launcher; and the same
    command's start-up alone (`--help` imports every module it runs with, then exits)."""
    folder = Path(tempfile.mkdtemp(dir=scratch))
    out = folder / "raw"
    env = {**os.environ, f"{EXTRACT_CREDENTIALS}_PLUGGY_CLIENT_ID": CLIENT_ID}
    env[f"{EXTRACT_CREDENTIALS}_PLUGGY_CLIENT_SECRET"] = CLIENT_SECRET
    measured = launched(extract_command(extract_profile(folder, sandbox, item_id), out), "pluggy-extract", env)
    start_up = launched([str(PLUGGY_EXTRACT), "--help"], "pluggy-extract --help", env)
    landed = landed_transactions(out)
    return {
        **measured,
        "seconds": measured["process_seconds"],
        "start_up_seconds": start_up["process_seconds"],
        "rows": landed["rows"],
        "stored": landed["distinct"],
    }


# The run and its table --------------------------------------------------------------------------


def passes(database_url: str, sandbox: str, item_id: str, rounds: int, scratch: Path) -> dict[str, list[dict]]:
    """The floor, ours and pluggy-extract in turn, `rounds` times (their medians are compared, so
    the machine's drift weighs on the three alike), then the seed's per-row style and the per-page
    variant once each."""
    done: dict[str, list[dict]] = {name: [] for name in (*PASSES, "pluggy_extract")}
    for name in ["floor", "ours", "pluggy_extract"] * rounds + ["seed_per_row", "per_page"]:
        print(f"   {name}", file=sys.stderr, flush=True)
        if name == "pluggy_extract":
            done[name].append(extract_pass(sandbox, item_id, scratch))
        else:
            done[name].append(database_pass(name, database_url, sandbox, item_id, scratch))
    return done


def summary(measured: list[dict]) -> dict:
    """The median of a pass's rounds in time, the largest in memory."""
    summed = {
        "seconds": round(statistics.median(m["seconds"] for m in measured), 3),
        "process_seconds": round(statistics.median(m["process_seconds"] for m in measured), 3),
        "peak_rss_mb": round(max(m["peak_rss_mb"] for m in measured), 1),
        "rows": measured[0]["rows"],
        "stored": measured[0]["stored"],
    }
    if "start_up_seconds" in measured[0]:
        summed["start_up_seconds"] = round(measured[0]["start_up_seconds"], 3)
    return summed


def ratio_row(
    measure: str, slow: dict, fast: dict, goal: float | None, key: str = "seconds", fast_key: str = ""
) -> dict:
    """`slow` over `fast` in time (their `key`s, or `fast_key` for `fast`), with the MB of each;
    met when the ratio is at least `goal` (None: reported only)."""
    slow_s, fast_s = slow[key], fast[fast_key or key]
    figure = f"{slow_s / fast_s:.2f} ({slow_s:.1f} s, {slow['peak_rss_mb']:.0f} MB"
    figure += f" / {fast_s:.1f} s, {fast['peak_rss_mb']:.0f} MB)"
    met = None if goal is None else slow_s / fast_s >= goal
    return {"measure": measure, "figure": figure, "goal": "reported" if goal is None else f">= {goal:g}", "met": met}


def speed_rows(s: dict[str, dict]) -> list[dict]:
    ours_, floor_, extract = s["ours"], s["floor"], s["pluggy_extract"]
    over_floor = ours_["seconds"] / floor_["seconds"]
    return [
        {
            "measure": f"first sync of {ours_['stored']:,} transactions, ours / floor (download and parse)",
            "figure": f"{over_floor:.2f} ({ours_['seconds']:.1f} s, {ours_['peak_rss_mb']:.0f} MB"
            f" / {floor_['seconds']:.1f} s, {floor_['peak_rss_mb']:.0f} MB)",
            "goal": f"<= {OURS_OVER_FLOOR_GOAL:g}",
            "met": over_floor <= OURS_OVER_FLOOR_GOAL,
        },
        ratio_row("seed's per-row update_or_create, a commit per row / ours", s["seed_per_row"], ours_, PER_ROW_GOAL),
        ratio_row("per-row upsert, a commit per page / ours", s["per_page"], ours_, None),
        ratio_row(
            "pluggy-extract 0.1.0 run to JSONL files (its start-up "
            f"{extract['start_up_seconds']:.2f} s included) / ours's sync into the database",
            extract,
            ours_,
            1.0,
            key="process_seconds",
            fast_key="seconds",
        ),
        ratio_row(
            "pluggy-extract's process / ours's process (each with its start-up: ours's app and migrations check)",
            extract,
            ours_,
            None,
            key="process_seconds",
        ),
    ]


def rows_row(s: dict[str, dict]) -> dict:
    stored = {name: s[name]["stored"] for name in ("ours", "seed_per_row", "per_page", "pluggy_extract")}
    counts = [s["floor"]["rows"], s["pluggy_extract"]["rows"], *stored.values()]
    return {
        "measure": "transactions stored by each (floor: parsed; pluggy-extract: distinct ids in its files)",
        "figure": f"floor {s['floor']['rows']:,}; " + ", ".join(f"{name} {count:,}" for name, count in stored.items()),
        "goal": "all equal",
        "met": len(set(counts)) == 1,
    }


def table(s: dict[str, dict]) -> list[dict]:
    return [*speed_rows(s), rows_row(s)]


def run(database_url: str, transactions: int = 100_000, rounds: int = 3) -> dict:
    with stand_in() as pluggy, tempfile.TemporaryDirectory() as scratch:
        sandbox = pluggy.url
        item_id = create_item(sandbox, transactions)
        app = service_app(database_url, sandbox)
        with app.app_context():
            measured = passes(database_url, sandbox, item_id, rounds, Path(scratch))
            db.engine.dispose()
    summaries = {name: summary(values) for name, values in measured.items()}
    return {
        "benchmark": "sync_throughput",
        "engine": engine_name(database_url),
        "transactions": summaries["ours"]["stored"],
        "rounds": measured,
        "passes": summaries,
        "table": table(summaries),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transactions", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3, help="floor and ours passes each (median)")
    parser.add_argument("--database-url", help="default: a fresh SQLite file")
    parser.add_argument("--json", type=Path, help="also write the result here")
    # One pass in this process, as the benchmark launches it.
    parser.add_argument("--pass", dest="one_pass", choices=sorted(PASSES), help=argparse.SUPPRESS)
    parser.add_argument("--sandbox", help=argparse.SUPPRESS)
    parser.add_argument("--item", help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one_pass:
        run_pass(args.one_pass, args.database_url, args.sandbox, args.item, args.result)
        return
    with tempfile.TemporaryDirectory() as scratch:
        url = args.database_url or f"sqlite:///{Path(scratch) / 'bench.db'}"
        result = run(url, args.transactions, args.rounds)
    write_json(result, args.json)


if __name__ == "__main__":
    main()
