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
from .state import DISABLE_WEBHOOK_AFTER, World

DEFAULT_MFA_TIMEOUT_S = 300.0
# The keys the stand-in accepts unless told others. Pluggy's client ids are UUIDs, and the Python
# SDK refuses any other before sending.
DEFAULT_CLIENT_ID = "5a3c4e8f-2b1d-4c6a-9e7f-0d8b1a2c3e4f"
DEFAULT_CLIENT_SECRET = "sandbox-client-secret"


def create_sandbox(
    seed: int = 0,
    client_id: str = DEFAULT_CLIENT_ID,
    client_secret: str = DEFAULT_CLIENT_SECRET,
    step_delay: float | None = 0.2,
    page_size: int = 500,
    *,
    clock: Callable[[], datetime] | None = None,
    retry_backoff: tuple[float, ...] = DEFAULT_BACKOFF,
    mfa_timeout_s: float = DEFAULT_MFA_TIMEOUT_S,
    base_url: str | None = None,
    deliver: bool = True,
    disable_webhook_after: int = DISABLE_WEBHOOK_AFTER,
) -> Flask:
    """The sandbox app. ``clock`` fixes "now" (data and timestamps); ``base_url`` is the root put
    in webhook links (default: learnt from the first request). ``step_delay=None`` runs each
    execution when the item is next read instead of on a thread (see sandbox.execution);
    ``deliver=False`` keeps webhook deliveries in ``world.deliverer.held`` instead of sending them;
    a subscription is disabled once ``disable_webhook_after`` deliveries in a row failed for good."""
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
        disable_webhook_after=disable_webhook_after,
    )
    return create_app(world)


__all__ = ["DEFAULT_CLIENT_ID", "DEFAULT_CLIENT_SECRET", "create_sandbox", "world_of"]
