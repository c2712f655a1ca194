"""Webhook deliveries, posted in order by one background thread, with retries and faults.

A failed POST is queued again for after its backoff rather than waited for, so one dead receiver
does not hold up every other delivery (Pluggy promises no order either). How each delivery ended
(delivered, or given up for good) is told to ``on_outcome``: the world disables a subscription that
keeps failing, and the deliverer knows nothing of the world.
"""

from __future__ import annotations

import itertools
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import requests

DEFAULT_BACKOFF = (0.2, 0.5, 1.0)
TIMEOUT_S = 5.0
NOT_RETRIED = {401}  # Pluggy gives up at once on a receiver that refuses its credentials


@dataclass(frozen=True)
class Delivery:
    url: str
    payload: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)
    webhook_id: str | None = None  # the subscription it is for; None for an item's webhookUrl


Outcome = Callable[[Delivery, bool], None]  # (delivery, delivered): called once it is settled


@dataclass
class Faults:
    drop: int = 0
    duplicate: int = 0
    reorder: bool = False
    delay_s: float = 0.0

    def as_json(self) -> dict[str, Any]:
        return {
            "drop": self.drop,
            "duplicate": self.duplicate,
            "reorder": self.reorder,
            "delay_s": self.delay_s,
        }


@dataclass(order=True)
class _Attempt:
    due: float
    seq: int
    delivery: Delivery = field(compare=False)
    number: int = field(compare=False, default=1)


class Deliverer:
    def __init__(
        self,
        rng: random.Random,
        backoff: tuple[float, ...] = DEFAULT_BACKOFF,
        timeout: float = TIMEOUT_S,
        *,
        sending: bool = True,
        on_outcome: Outcome | None = None,
    ) -> None:
        self.faults = Faults()
        self._on_outcome = on_outcome
        self._rng = rng
        self._backoff = tuple(backoff)
        self._timeout = timeout
        self._changed = threading.Condition()
        self._queue: list[_Attempt] = []
        self._seq = itertools.count()
        self._sending = False
        self._log: list[dict[str, Any]] = []
        self._stopping = threading.Event()
        self._session = requests.Session()
        self.held: list[Delivery] = []  # what was queued while not sending
        self._thread: threading.Thread | None = None
        if sending:
            self._thread = threading.Thread(target=self._run, name="sandbox-deliveries", daemon=True)
            self._thread.start()

    # Used by the world and the control routes -----------------------------------------------

    def enqueue(self, deliveries: list[Delivery]) -> None:
        """Queue one burst: deliveries queued together may be shuffled together."""
        if not deliveries:
            return
        with self._changed:
            if self._thread is None:
                self.held += deliveries
                return
            now = time.monotonic()
            self._queue += [_Attempt(now, next(self._seq), delivery) for delivery in deliveries]
            self._changed.notify_all()

    def set_faults(self, **changes: Any) -> None:
        with self._changed:
            for name, value in changes.items():
                setattr(self.faults, name, value)

    def current_faults(self) -> dict[str, Any]:
        with self._changed:
            return self.faults.as_json()

    def log(self) -> list[dict[str, Any]]:
        with self._changed:
            return [dict(entry) for entry in self._log]

    def is_idle(self) -> bool:
        with self._changed:
            return not self._queue and not self._sending

    def wait_idle(self, deadline: float) -> bool:
        with self._changed:
            return self._changed.wait_for(
                lambda: not self._queue and not self._sending,
                timeout=max(0.0, deadline - time.monotonic()),
            )

    def close(self) -> None:
        self._stopping.set()
        with self._changed:
            self._changed.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=2 * self._timeout)
        self._session.close()

    # The delivery thread ---------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stopping.is_set():
            for attempt in self._next_burst():
                if self._stopping.is_set():
                    break
                self._send(attempt)
            with self._changed:
                self._sending = False
                self._changed.notify_all()

    def _next_burst(self) -> list[_Attempt]:
        """Every attempt that is due, oldest first (shuffled under the reorder fault)."""
        with self._changed:
            while not self._stopping.is_set():
                now = time.monotonic()
                burst = sorted(a for a in self._queue if a.due <= now)
                if burst:
                    self._queue = [a for a in self._queue if a.due > now]
                    self._sending = True
                    if self.faults.reorder:
                        self._rng.shuffle(burst)
                    return burst
                next_due = min((a.due for a in self._queue), default=None)
                self._changed.wait(None if next_due is None else next_due - now)
            return []

    def _send(self, attempt: _Attempt) -> None:
        copies = self._copies(attempt)
        for _ in range(copies):
            with self._changed:
                delay = self.faults.delay_s
            if delay and self._stopping.wait(delay):
                return
            result = self._post(attempt.delivery)
            with self._changed:
                self._record(attempt.delivery, result, attempt.number)
                delivered = self._settle(attempt, result)
            # Outside the lock: the world's callback takes the world's lock, which is held while queueing.
            if delivered is not None and self._on_outcome is not None:
                self._on_outcome(attempt.delivery, delivered)

    def _copies(self, attempt: _Attempt) -> int:
        """0 when the drop fault takes it, 2 when the duplicate fault does; retries are left alone."""
        if attempt.number > 1:
            return 1
        with self._changed:
            if self.faults.drop > 0:
                self.faults.drop -= 1
                self._record(attempt.delivery, "dropped", attempt.number)
                return 0
            if self.faults.duplicate > 0:
                self.faults.duplicate -= 1
                return 2
        return 1

    def _settle(self, attempt: _Attempt, result: int | str) -> bool | None:
        """True once delivered, False once given up for good, None while a retry is queued."""
        if isinstance(result, int) and 200 <= result < 300:
            return True
        if result in NOT_RETRIED or attempt.number > len(self._backoff):
            return False
        due = time.monotonic() + self._backoff[attempt.number - 1]
        self._queue.append(_Attempt(due, next(self._seq), attempt.delivery, attempt.number + 1))
        return None

    def _post(self, delivery: Delivery) -> int | str:
        headers = {**delivery.headers, "Content-Type": "application/json"}
        try:
            response = self._session.post(delivery.url, json=delivery.payload, headers=headers, timeout=self._timeout)
        except requests.RequestException:
            return "error"
        response.close()
        return response.status_code

    def _record(self, delivery: Delivery, result: int | str, attempt: int) -> None:
        self._log.append(
            {
                "event": delivery.payload.get("event"),
                "eventId": delivery.payload.get("eventId"),
                "url": delivery.url,
                "status": result,
                "attempt": attempt,
                "at": time.time(),
            }
        )
