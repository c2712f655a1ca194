"""Queue depth: the cost of one claim and complete with 500, 5,000 and 50,000 jobs queued, in one
run. A claim that slows down with the backlog caps the workers exactly when they are most needed.

    python -m bench.queue_depth [--database-url URL] [--claims 200] [--json PATH]

Method: on emptied tables, the queued jobs are written in one statement (due, oldest first), then a
worker claims and completes `--claims` of them (jobqueue.queue.claim and complete, two transactions
each) and the mean time per pair is taken. Goal: the same cost however deep the queue (the deepest
within 2x of the shallowest).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa

from jobqueue import queue
from models import Job, db
from models.base import utcnow

from .common import empty_tables, engine_name, service_app, write_json

DEPTHS = (500, 5_000, 50_000)
GOAL_RATIO = 2.0


def fill(depth: int) -> None:
    empty_tables()
    now = utcnow()
    rows = [
        {"kind": "bench", "payload": {}, "status": "queued", "run_at": now, "created_at": now} for _ in range(depth)
    ]
    with db.engine.begin() as connection:
        connection.execute(sa.insert(Job), rows)
        if connection.dialect.name == "postgresql":
            connection.exec_driver_sql("ANALYZE jobs")


def claim_and_complete(claims: int) -> float:
    started = time.perf_counter()
    for _ in range(claims):
        job = queue.claim(db.session, "bench-queue-depth")
        queue.complete(db.session, job)
    return (time.perf_counter() - started) / claims


def run(database_url: str, claims: int = 200) -> dict:
    app = service_app(database_url)
    with app.app_context():
        per_claim_ms = {}
        for depth in DEPTHS:
            fill(depth)
            per_claim_ms[depth] = round(claim_and_complete(claims) * 1000, 2)
        db.engine.dispose()
    ratio = round(per_claim_ms[DEPTHS[-1]] / per_claim_ms[DEPTHS[0]], 2)
    return {
        "benchmark": "queue_depth",
        "engine": engine_name(database_url),
        "claims": claims,
        "ms_per_claim_and_complete": per_claim_ms,
        "deepest_over_shallowest": ratio,
        "table": [
            {
                "measure": "claim + complete, " + " / ".join(f"{depth:,}" for depth in DEPTHS) + " jobs queued",
                "figure": " / ".join(f"{per_claim_ms[depth]} ms" for depth in DEPTHS),
                "goal": f"deepest <= {GOAL_RATIO:g}x shallowest",
                "met": ratio <= GOAL_RATIO,
            }
        ],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", help="default: a fresh SQLite file")
    parser.add_argument("--claims", type=int, default=200)
    parser.add_argument("--json", type=Path, help="also write the result here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        url = args.database_url or f"sqlite:///{Path(scratch) / 'bench.db'}"
        write_json(run(url, args.claims), args.json)


if __name__ == "__main__":
    main()
