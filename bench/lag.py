"""Webhook-to-data lag: from an `item/updated` webhook received to its new transactions committed,
with an idle worker woken by the queue (LISTEN/NOTIFY on PostgreSQL, `data_version` on SQLite)
against the same worker polling only (`flask worker --no-wake`, one look a second), in one run.

The stand-in, the web service (gunicorn) and the worker run as separate processes on loopback. Each
trial asks the stand-in for an update of a connected item (an execution started by Pluggy's own
scheduler), which brings new transactions and an `item/updated` webhook. The lag is the sync run's
`finished_at` (set in the transaction that commits its last rows) minus the event's `received_at`:
both are stamped by the service on one clock. The worker is idle before each trial, which starts at a
random moment of its poll cycle.

    python -m bench.lag [--database-url URL] [--trials 15] [--json PATH]
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from pathlib import Path

import requests
import sqlalchemy as sa

from harness.ports import free_port
from harness.processes import DEVNULL, gunicorn, last_line, python_m, stand_in, start, stopped_on_exit
from harness.processes import run as run_commands
from harness.waiting import stand_in_idle, wait_until
from models import Connection, SyncRun, WebhookEvent, db

from .common import TIMEOUT, bench_env, empty_tables, engine_name, service_app, write_json

POLL_INTERVAL_S = 1.0  # the worker's default
# Polling is the only way to watch another process's database state; the deadline turns a hang into an error.
WAIT_S = 60
WAIT_INTERVAL_S = 0.01


class Service:
    """The web service and a worker as processes on one database, talking to the stand-in."""

    def __init__(self, database_url: str, sandbox: str) -> None:
        self.port = free_port()
        self.web = f"http://127.0.0.1:{self.port}"
        self.env = bench_env(database_url, sandbox, PUBLIC_BASE_URL=self.web, SYNC_BACKFILL_DAYS="400")
        self.token = ""

    def flask(self, *args: str) -> str:
        return last_line(run_commands(python_m("flask", *args), env=self.env)[0])

    def web_server(self):
        return gunicorn(self.env, "--workers", "2", port=self.port)

    def worker(self, *flags: str):
        return stopped_on_exit(start(python_m("flask", "worker", *flags), env=self.env, stdout=DEVNULL, stderr=DEVNULL))

    def api(self, method: str, path: str, **kwargs) -> requests.Response:
        headers = {"Authorization": f"Bearer {self.token}"}
        response = requests.request(method, f"{self.web}/api/banking{path}", headers=headers, timeout=TIMEOUT, **kwargs)
        response.raise_for_status()
        return response


def connect_item(service: Service, sandbox: str) -> str:
    """What the Connect widget and the app do: an item created with our connect token, registered."""
    token = service.api("POST", "/connect_token/").json()["access_token"]
    item = requests.post(
        f"{sandbox}/items",
        headers={"X-API-KEY": token},
        json={"connectorId": 0, "parameters": {"user": "user-ok", "password": "password-ok"}},
        timeout=TIMEOUT,
    ).json()
    service.api("POST", "/connections/", json={"item_id": item["id"]})
    return item["id"]


def processed_updates(item_id: str) -> list[tuple]:
    """(received_at, the run's finished_at) of every item/updated event whose run has finished."""
    db.session.rollback()  # a fresh snapshot: the other processes commit meanwhile
    rows = db.session.execute(
        sa.select(WebhookEvent.received_at, SyncRun.finished_at)
        .join(SyncRun, SyncRun.id == WebhookEvent.sync_run_id)
        .where(WebhookEvent.item_id == item_id, WebhookEvent.event == "item/updated", SyncRun.finished_at.is_not(None))
        .order_by(WebhookEvent.id)
    )
    return list(rows)


def first_synced(item_id: str) -> bool:
    db.session.rollback()
    return db.session.scalar(sa.select(Connection.last_synced_at).where(Connection.item_id == item_id)) is not None


def one_trial(sandbox: str, item_id: str) -> float:
    before = len(processed_updates(item_id))
    requests.post(f"{sandbox}/sandbox/items/{item_id}/auto_sync", timeout=TIMEOUT).raise_for_status()
    done = wait_until(
        lambda: (rows := processed_updates(item_id)) and len(rows) > before and rows,
        timeout=WAIT_S,
        interval=WAIT_INTERVAL_S,
        what="the update",
    )
    received, committed = done[-1]
    return (committed - received).total_seconds()


def trials_with(service: Service, sandbox: str, item_id: str, trials: int, *flags: str) -> list[float]:
    with service.worker(*flags):
        lags = []
        for _ in range(trials):
            stand_in_idle(sandbox)
            # A webhook comes at any moment of a polling worker's cycle, not just after its last look.
            time.sleep(random.uniform(0, POLL_INTERVAL_S))
            lags.append(one_trial(sandbox, item_id))
        return lags


def summary(lags: list[float]) -> dict:
    return {
        "median_ms": round(statistics.median(lags) * 1000, 1),
        "max_ms": round(max(lags) * 1000, 1),
        "trials_ms": [round(lag * 1000, 1) for lag in lags],
    }


def run(database_url: str, trials: int = 15) -> dict:
    with stand_in() as pluggy:
        sandbox = pluggy.url
        app = service_app(database_url, sandbox)
        with app.app_context():
            empty_tables()
            service = Service(database_url, sandbox)
            with service.web_server():
                service.flask("webhooks", "register", f"{service.web}/webhooks/pluggy")
                service.token = service.flask("users", "create", "bench@example.com")
                item_id = connect_item(service, sandbox)
                with service.worker():  # the first sync, before any trial
                    wait_until(
                        lambda: first_synced(item_id), timeout=WAIT_S, interval=WAIT_INTERVAL_S, what="the first sync"
                    )
                woken = trials_with(service, sandbox, item_id, trials)
                polling = trials_with(service, sandbox, item_id, trials, "--no-wake")
            db.engine.dispose()
    results = {"woken": summary(woken), "polling": summary(polling)}
    return {
        "benchmark": "lag",
        "engine": engine_name(database_url),
        "trials": trials,
        "poll_interval_s": POLL_INTERVAL_S,
        "results": results,
        "table": [
            {
                "measure": "webhook-to-data lag, median (woken worker / polling worker)",
                "figure": f"{results['woken']['median_ms']:.0f} ms / {results['polling']['median_ms']:.0f} ms",
                "goal": "a woken worker, no poll wait",
                "met": results["woken"]["median_ms"] < results["polling"]["median_ms"],
            }
        ],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", help="default: a fresh SQLite file")
    parser.add_argument("--trials", type=int, default=15)
    parser.add_argument("--json", type=Path, help="also write the result here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        url = args.database_url or f"sqlite:///{Path(scratch) / 'bench.db'}"
        write_json(run(url, args.trials), args.json)


if __name__ == "__main__":
    main()
