"""What the sync layer's job handlers are given: the queue's context plus the Pluggy client and the
settings they run with, bound when the handlers are registered."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from config import Settings
from jobqueue import ClaimedJob, JobContext
from jobqueue.registry import Handler
from models.database import DbSession
from pluggy_client import PluggyClient


@dataclass
class SyncJobContext:
    job: ClaimedJob
    session: DbSession
    client: PluggyClient
    settings: Settings
    progress: Callable[[str], None]
    checkpoint: Callable[..., None]


def bind(handler: Callable[[SyncJobContext], None], client: PluggyClient, settings: Settings) -> Handler:
    """`handler` as the queue calls it, with this client and these settings."""

    def run(context: JobContext) -> None:
        handler(SyncJobContext(context.job, context.session, client, settings, context.progress, context.checkpoint))

    run.__name__ = run.__qualname__ = handler.__name__
    return run
