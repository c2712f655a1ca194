"""The job queue that lives in the database, and the worker that runs it.

Knows nothing of Pluggy or of what jobs do: the packages that own job kinds register their
handlers in a `JobRegistry` (`sync.jobs.register`, `jobqueue.maintenance.register`), and a
`Worker` is handed that registry. Uses `models` (the `jobs` table and the shared `db`) and
`observability`, nothing above them.
"""

from .queue import ClaimedJob, JobOutcome, dialect_insert, enqueue, queue_stats
from .registry import JobContext, JobRegistry, MissingHandlers
from .worker import LeaseLost, Released, RetryLater, Worker, WorkerThreadDied, describe

__all__ = [
    "ClaimedJob",
    "JobContext",
    "JobOutcome",
    "JobRegistry",
    "LeaseLost",
    "MissingHandlers",
    "Released",
    "RetryLater",
    "Worker",
    "WorkerThreadDied",
    "describe",
    "dialect_insert",
    "enqueue",
    "queue_stats",
]
