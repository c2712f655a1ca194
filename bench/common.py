"""What every benchmark needs: the stand-in in a process of its own, an item of a given size, the
service's app on a database, and a place for the results."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import requests
import sqlalchemy as sa
from flask import Flask
from flask_migrate import upgrade

from api import create_app
from models import db

ROOT = Path(__file__).resolve().parents[1]
CLIENT_ID = "sandbox-client-id"
CLIENT_SECRET = "sandbox-client-secret"
SECRET_KEY = "bench-secret-key-0123456789abcdef"
WEBHOOK_SECRET = "bench-webhook-secret"
PER_ACCOUNT_AT_PERF_1 = 60  # the stand-in's history per account for a perf multiplier of 1
ACCOUNTS = 2
TIMEOUT = 30


@contextmanager
def sandbox_process(*args: str) -> Iterator[str]:
    """The stand-in in a process of its own, as Pluggy is a server of its own; yields its URL."""
    process = subprocess.Popen(
        [sys.executable, "-m", "sandbox", "--port", "0", "--step-delay", "0", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        yield process.stdout.readline().split()[-1]  # "sandbox listening on http://127.0.0.1:PORT"
    finally:
        stop(process)


def stop(process: subprocess.Popen, timeout: float = 15) -> None:
    """SIGTERM (servers finish what is in flight, workers the job in hand), then SIGKILL."""
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def service_env(database_url: str, sandbox: str, **settings: str) -> dict[str, str]:
    """The environment a deployed web or worker process runs with (API.md), for `sandbox`."""
    env = {
        **os.environ,
        "FLASK_APP": "wsgi",
        "DATABASE_URL": database_url,
        "SECRET_KEY": SECRET_KEY,
        "PLUGGY_BASE_URL": sandbox,
        "PLUGGY_CLIENT_ID": CLIENT_ID,
        "PLUGGY_CLIENT_SECRET": CLIENT_SECRET,
        "PLUGGY_WEBHOOK_SECRET": WEBHOOK_SECRET,
        **settings,
    }
    env.pop("FLASK_DEBUG", None)  # production settings: no generated key, no debugger
    return env


def api_key(sandbox: str) -> str:
    body = {"clientId": CLIENT_ID, "clientSecret": CLIENT_SECRET}
    return requests.post(f"{sandbox}/auth", json=body, timeout=TIMEOUT).json()["apiKey"]


def create_item(sandbox: str, transactions: int) -> str:
    """A connected item holding about `transactions` transactions on two accounts."""
    perf = max(1, round(transactions / (PER_ACCOUNT_AT_PERF_1 * ACCOUNTS)))
    item = requests.post(
        f"{sandbox}/items",
        headers={"X-API-KEY": api_key(sandbox)},
        json={"connectorId": 0, "parameters": {"user": f"user-ok-perf-{perf}", "password": "password-ok"}},
        timeout=TIMEOUT,
    ).json()
    wait_for_sandbox(sandbox)
    return item["id"]


def wait_for_sandbox(sandbox: str) -> None:
    """Until the stand-in has finished every execution and delivery."""
    requests.post(f"{sandbox}/sandbox/idle", params={"timeout": 600}, timeout=610).raise_for_status()


def service_app(database_url: str, sandbox: str = "http://sandbox.invalid", **config) -> Flask:
    """The service's app on `database_url`, migrated to the latest schema."""
    app = create_app(
        {
            "TESTING": True,
            "SQLALCHEMY_DATABASE_URI": database_url,
            "PLUGGY_BASE_URL": sandbox,
            "PLUGGY_CLIENT_ID": CLIENT_ID,
            "PLUGGY_CLIENT_SECRET": CLIENT_SECRET,
            "SYNC_BACKFILL_DAYS": 800,  # more than the stand-in's history: the whole of it is read
            **config,
        }
    )
    with app.app_context():
        upgrade()
    return app


def empty_tables() -> None:
    db.session.close()  # TRUNCATE waits for every open transaction on the tables, ours included
    with db.engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            names = ", ".join(table.name for table in db.metadata.sorted_tables)
            connection.execute(sa.text(f"TRUNCATE {names} RESTART IDENTITY"))
        else:
            for table in reversed(db.metadata.sorted_tables):
                connection.execute(table.delete())


def engine_name(database_url: str) -> str:
    return sa.make_url(database_url).get_backend_name()


def timed(work: Callable[[], object]) -> tuple[float, object]:
    started = time.perf_counter()
    result = work()
    return time.perf_counter() - started, result


def write_json(result: dict, path: Path | None) -> None:
    text = json.dumps(result, indent=2)
    print(text)
    if path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
