"""What the sync layer's job handlers are given: the queue's context plus the Pluggy client and the
settings they run with, bound when the handlers are registered."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields

from config import Settings
from jobqueue import JobContext
from jobqueue.registry import Handler
from pluggy_client import PluggyClient


@dataclass
class SyncJobContext(JobContext):
    client: PluggyClient
    settings: Settings


def bind(handler: Callable[[SyncJobContext], None], client: PluggyClient, settings: Settings) -> Handler:
    """`handler` as the queue calls it, with this client and these settings."""

    def run(context: JobContext) -> None:
        queued = {field.name: getattr(context, field.name) for field in fields(context)}
        handler(SyncJobContext(**queued, client=client, settings=settings))

    run.__name__ = run.__qualname__ = handler.__name__
    return run
