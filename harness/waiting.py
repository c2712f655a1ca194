"""Waiting on another process: poll a condition until it holds and fail after a deadline, and the
conditions polled most (an HTTP endpoint answering, the stand-in idle)."""

from __future__ import annotations

import http.client
import time
from collections.abc import Callable
from typing import TypeVar
from urllib.parse import urlsplit

import requests

T = TypeVar("T")


class NotMet(AssertionError):
    """A condition still false at its deadline. An AssertionError, so that a test waiting on it
    fails as a check that did not hold."""


def wait_until(
    condition: Callable[[], T], timeout: float = 30, *, interval: float = 0.05, what: str = "condition"
) -> T:
    """The condition's first truthy value, polled every `interval` seconds. Polling is the only way
    to watch another process's database or HTTP state; the deadline turns a hang into a clear
    failure (NotMet). A condition may raise to fail at once (a process it needs has exited)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise NotMet(f"{what} not met within {timeout:g} s")
        time.sleep(interval)


def answers(url: str, *, any_status: bool = False, timeout: float = 5) -> bool:
    """Whether GET `url` gets a 2xx answer (with `any_status`, any answer at all: a 503 from an
    unmigrated database is still a server up). Plain http.client: no proxy from the environment,
    and never intercepted by a test's fake of `requests`."""
    parts = urlsplit(url)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        connection.request("GET", path)
        status = connection.getresponse().status
    except (OSError, http.client.HTTPException):
        return False
    finally:
        connection.close()
    return any_status or 200 <= status < 300


def stand_in_idle(url: str, timeout: float = 600) -> None:
    """Until the stand-in at `url` has finished every execution and webhook delivery it has begun.
    The stand-in does the waiting (POST /sandbox/idle answers once idle, or false after at most its
    own limit, when it is asked again): nothing polls on a timer."""
    deadline = time.monotonic() + timeout

    def idle() -> bool:
        remaining = max(0.0, deadline - time.monotonic())
        answer = requests.post(f"{url}/sandbox/idle", params={"timeout": remaining}, timeout=remaining + 10)
        answer.raise_for_status()
        return answer.json()["idle"]

    wait_until(idle, timeout, interval=0, what=f"the stand-in at {url} idle")
