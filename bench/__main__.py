"""`make bench`: every benchmark on one database, a table of the results and their goals, and the
JSON of each in bench/results/.

    python -m bench [--database-url URL] [--only NAME,...]
    python -m bench console          (one benchmark: the same as --only console)

Without a URL, SQLite in a temporary directory; the scale-out benchmark needs PostgreSQL and is left
out on SQLite. Each benchmark empties the tables it uses; give a database of its own.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from collections.abc import Callable
from pathlib import Path

from . import (
    change_feed,
    console,
    incremental,
    lag,
    memory,
    outbound,
    products,
    queue_depth,
    scale_out,
    sync_throughput,
    webhook_intake,
)
from .common import ROOT, engine_name

BENCHMARKS: dict[str, Callable[[str], dict]] = {
    "webhook_intake": webhook_intake.run,
    "sync_throughput": sync_throughput.run,
    "incremental": incremental.run,
    "products": products.run,
    "memory": memory.run,
    "lag": lag.run,
    "queue_depth": queue_depth.run,
    "scale_out": scale_out.run,
    "console": console.run,
    "change_feed": change_feed.run,
    "outbound": outbound.run,
}
POSTGRESQL_ONLY = {"scale_out"}
RESULTS = ROOT / "bench" / "results"


def chosen(only: str | None, engine: str) -> list[str]:
    names = only.split(",") if only else list(BENCHMARKS)
    unknown = set(names) - set(BENCHMARKS)
    if unknown:
        raise SystemExit(f"unknown benchmark(s): {', '.join(sorted(unknown))}; known: {', '.join(BENCHMARKS)}")
    return [name for name in names if engine == "postgresql" or name not in POSTGRESQL_ONLY]


def table(results: list[dict]) -> str:
    lines = ["| benchmark | measure | figure | goal | met |", "| --- | --- | --- | --- | --- |"]
    for result in results:
        for row in result["table"]:
            met = {True: "yes", False: "**no**", None: "-"}[row["met"]]
            lines.append(f"| {result['benchmark']} | {row['measure']} | {row['figure']} | {row['goal']} | {met} |")
    return "\n".join(lines)


def run_all(database_url: str, names: list[str]) -> list[dict]:
    engine = engine_name(database_url)
    RESULTS.mkdir(parents=True, exist_ok=True)
    results = []
    for name in names:
        print(f"== {name} on {engine}", flush=True)
        result = BENCHMARKS[name](database_url)
        (RESULTS / f"{name}-{engine}.json").write_text(json.dumps(result, indent=2))
        results.append(result)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", help="default: a fresh SQLite file")
    parser.add_argument("--only", help=f"comma-separated, of: {', '.join(BENCHMARKS)}")
    parser.add_argument("names", nargs="*", metavar="NAME", help="the same as --only")
    args = parser.parse_args()
    only = ",".join(filter(None, [args.only, *args.names])) or None
    with tempfile.TemporaryDirectory() as scratch:
        url = args.database_url or f"sqlite:///{Path(scratch) / 'bench.db'}"
        results = run_all(url, chosen(only, engine_name(url)))
    summary = table(results)
    (RESULTS / f"summary-{engine_name(url)}.md").write_text(summary + "\n")
    print(summary)


if __name__ == "__main__":
    main()
