"""Which function runs each kind of job: a registry the worker is handed, filled by the packages
that own job kinds, each in one call (`register(registry, ...)`)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from models.database import DbSession

from .queue import ClaimedJob


@dataclass
class JobContext:
    """What a handler is given: its job, the worker thread's session, a line printer for progress,
    and `checkpoint`, to call between committed steps of a long job (keeps the lease, honours a hard
    stop; `checkpoint(progressed=True)` after a step that changed something)."""

    job: ClaimedJob
    session: DbSession
    progress: Callable[[str], None]
    checkpoint: Callable[..., None]


Handler = Callable[[JobContext], None]
# Called with the session, the job and its last error when a job goes dead: whatever the job owned
# (a run it was to close, events it was to handle) is closed by its owner.
DeadHook = Callable[[DbSession, ClaimedJob, str], None]
# Called with the session when a worker starts; what it returns (a periodic job's id) is not used.
StartHook = Callable[[DbSession], object]


class MissingHandlers(Exception):
    """Kinds that can be queued but that nothing would run: the worker refuses to start."""

    def __init__(self, kinds: Iterable[str]) -> None:
        self.kinds = sorted(str(kind) for kind in kinds)
        super().__init__(
            f"no handler for job kind(s) {', '.join(repr(kind) for kind in self.kinds)}; the worker does not start"
        )


class JobRegistry:
    """Handlers by job kind, plus what runs when a worker starts (periodic jobs queue themselves
    then) and when a job goes dead. `expected` names every kind that can be queued: a worker refuses
    to start while one has no handler."""

    def __init__(self, expected: Iterable[str] = ()) -> None:
        self.expected = set(expected)
        self.handlers: dict[str, Handler] = {}
        self.start_hooks: list[StartHook] = []
        self.dead_hooks: list[DeadHook] = []

    def register(self, kind: str, handler: Handler) -> None:
        if kind in self.handlers:
            raise ValueError(f"job kind {kind!r} already has a handler")
        self.handlers[kind] = handler

    def at_start(self, hook: StartHook) -> None:
        self.start_hooks.append(hook)

    def when_dead(self, hook: DeadHook) -> None:
        self.dead_hooks.append(hook)

    def handler_for(self, kind: str) -> Handler | None:
        return self.handlers.get(kind)

    def check(self) -> None:
        missing = self.expected - set(self.handlers)
        if missing:
            raise MissingHandlers(missing)
