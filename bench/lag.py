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
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import requests
import sqlalchemy as sa

from models import Connection, SyncRun, WebhookEvent, db

from .common import (
    ROOT,
    TIMEOUT,
    empty_tables,
    engine_name,
    free_port,
    sandbox_process,
    service_app,
    service_env,
    stop,
    wait_for_sandbox,
    write_json,
)

POLL_INTERVAL_S = 1.0  # the worker's default


def wait_until(condition, seconds: float = 60, what: str = "condition"):
    """Polling is the only way to watch another process's database state; the deadline turns a
    hang into an error."""
    deadline = time.monotonic() + seconds
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not met within {seconds} s")
        time.sleep(0.01)
    return value


class Service:
    """The web service and a worker as processes on one database, talking to the stand-in."""

    def __init__(self, database_url: str, sandbox: str) -> None:
        self.web = f"http://127.0.0.1:{free_port()}"
        self.env = service_env(database_url, sandbox, PUBLIC_BASE_URL=self.web, SYNC_BACKFILL_DAYS="400")
        self.token = ""

    def spawn(self, *args: str) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-m", *args], cwd=ROOT, env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )

    def flask(self, *args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "flask", *args], cwd=ROOT, env=self.env, capture_output=True, text=True, check=True
        )
        return done.stdout.strip().splitlines()[-1]

    @contextmanager
    def web_server(self):
        port = self.web.rsplit(":", 1)[1]
        process = self.spawn("gunicorn", "--bind", f"127.0.0.1:{port}", "--workers", "2", "wsgi:app")
        try:
            wait_until(self.web_up, what="the web service up")
            yield
        finally:
            stop(process)

    @contextmanager
    def worker(self, *flags: str):
        process = self.spawn("flask", "worker", *flags)
        try:
            yield process
        finally:
            stop(process)

    def web_up(self) -> bool:
        try:
            return requests.get(f"{self.web}/health", timeout=TIMEOUT).ok
        except requests.ConnectionError:
            return False

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
    done = wait_until(lambda: (rows := processed_updates(item_id)) and len(rows) > before and rows, what="the update")
    received, committed = done[-1]
    return (committed - received).total_seconds()


def trials_with(service: Service, sandbox: str, item_id: str, trials: int, *flags: str) -> list[float]:
    with service.worker(*flags):
        lags = []
        for _ in range(trials):
            wait_for_sandbox(sandbox)
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
    with sandbox_process() as sandbox:
        app = service_app(database_url, sandbox)
        with app.app_context():
            empty_tables()
            service = Service(database_url, sandbox)
            with service.web_server():
                service.flask("webhooks", "register", f"{service.web}/webhooks/pluggy")
                service.token = service.flask("users", "create", "bench@example.com")
                item_id = connect_item(service, sandbox)
                with service.worker():  # the first sync, before any trial
                    wait_until(lambda: first_synced(item_id), what="the first sync")
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
