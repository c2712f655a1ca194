"""Waiting on a condition across processes: poll it until it holds, fail after a deadline."""

from __future__ import annotations

import time


def wait_until(condition, timeout: float = 30, interval: float = 0.05, what: str = "condition"):
    """The condition's first truthy value. Polling is the only way to watch another process's
    database or HTTP state; the deadline turns a hang into a clear failure."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"{what} not met within {timeout} s"
        time.sleep(interval)
