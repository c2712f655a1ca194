"""What every benchmark needs beside `harness` (which starts the stand-in and the service's processes):
the keys they share, an item of a given size, the service's app on a database, and a place for the
results."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from pathlib import Path

import requests
import sqlalchemy as sa
from flask import Flask
from flask_migrate import upgrade

from api import create_app
from harness.processes import STAND_IN_CLIENT_ID, STAND_IN_CLIENT_SECRET, service_env
from harness.waiting import stand_in_idle
from models import db

ROOT = Path(__file__).resolve().parents[1]
CLIENT_ID = STAND_IN_CLIENT_ID
CLIENT_SECRET = STAND_IN_CLIENT_SECRET
SECRET_KEY = "bench-secret-key-0123456789abcdef"
WEBHOOK_SECRET = "bench-webhook-secret"
PER_ACCOUNT_AT_PERF_1 = 60  # the stand-in's history per account for a perf multiplier of 1
ACCOUNTS = 2
TIMEOUT = 30


def bench_env(database_url: str, sandbox: str, **settings: str) -> dict[str, str]:
    """The environment a deployed web or worker process runs with, on the benchmark's keys, for the
    stand-in at `sandbox`."""
    return service_env(database_url, SECRET_KEY, pluggy_url=sandbox, webhook_secret=WEBHOOK_SECRET, **settings)


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
    stand_in_idle(sandbox)
    return item["id"]


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


def percentile_ms(ordered: list[float], fraction: float) -> float | None:
    """Nearest-rank percentile of an ascending list of seconds, in milliseconds."""
    if not ordered:
        return None
    return round(ordered[min(len(ordered) - 1, max(0, math.ceil(fraction * len(ordered)) - 1))] * 1000, 2)
