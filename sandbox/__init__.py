"""A local stand-in for Pluggy's API, deterministic given a seed.

``create_sandbox()`` answers a Flask app; ``world_of(app)`` reaches its state (for tests), and
``world_of(app).close()`` stops its delivery thread. ``python -m sandbox`` serves it over HTTP.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from flask import Flask

from .app import create_app, world_of
from .delivery import DEFAULT_BACKOFF
from .state import World

DEFAULT_MFA_TIMEOUT_S = 300.0


def create_sandbox(
    seed: int = 0,
    client_id: str = "sandbox-client-id",
    client_secret: str = "sandbox-client-secret",
    step_delay: float | None = 0.2,
    page_size: int = 500,
    *,
    clock: Callable[[], datetime] | None = None,
    retry_backoff: tuple[float, ...] = DEFAULT_BACKOFF,
    mfa_timeout_s: float = DEFAULT_MFA_TIMEOUT_S,
    base_url: str | None = None,
    deliver: bool = True,
) -> Flask:
    """The sandbox app. ``clock`` fixes "now" (data and timestamps); ``base_url`` is the root put
    in webhook links (default: learnt from the first request). ``step_delay=None`` runs each
    execution when the item is next read instead of on a thread (see sandbox.execution);
    ``deliver=False`` keeps webhook deliveries in ``world.deliverer.held`` instead of sending them."""
    world = World(
        seed=seed,
        client_id=client_id,
        client_secret=client_secret,
        step_delay=step_delay,
        page_size=page_size,
        clock=clock or (lambda: datetime.now(UTC)),
        retry_backoff=retry_backoff,
        mfa_timeout_s=mfa_timeout_s,
        base_url=base_url,
        deliver=deliver,
    )
    return create_app(world)


__all__ = ["create_sandbox", "world_of"]
