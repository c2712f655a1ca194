"""Structured logs: one line per event, JSON when stderr is not a terminal.

Every line carries the ids of what is in progress (request_id in a request; job_id, event_ids and
item_id in a job), so one webhook can be followed from its delivery through its job to the sync
run that wrote its rows. Lines never carry secrets: callers log ids, counts and statuses, never
headers, bodies or parameters.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar, Token
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

import orjson

from config import read_setting

FIELDS = "fields"

# Never changed in place (scopes set a new mapping), so one empty default is shared safely.
_context: ContextVar[Mapping[str, Any]] = ContextVar("log_context", default=MappingProxyType({}))


def event(logger: logging.Logger, message: str, /, level: int = logging.INFO, **fields) -> None:
    """Log `message` with `fields` as structured data (JSON keys, or key=value in text)."""
    if logger.isEnabledFor(level):
        logger.log(level, message, extra={FIELDS: fields})


def bind(**fields) -> None:
    """Add ids to every line logged from here to the end of the current scope."""
    _context.set({**_context.get(), **fields})


def start_scope(**fields) -> Token:
    """A fresh set of ids for the lines logged until `end_scope`; `bind` adds to it."""
    return _context.set(dict(fields))


def end_scope(token: Token) -> None:
    _context.reset(token)


@contextmanager
def scope(**fields) -> Iterator[None]:
    """A fresh set of ids for the lines logged inside (a job); `bind` adds to it."""
    token = start_scope(**fields)
    try:
        yield
    finally:
        end_scope(token)


def current() -> dict:
    return dict(_context.get())


def entry(record: logging.LogRecord) -> dict:
    """A record as fields: when, how bad, where from, what, then the ids in scope and its own."""
    return {
        "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
        "level": record.levelname.lower(),
        "logger": record.name,
        "message": record.getMessage(),
        **getattr(record, "context", {}),
        **getattr(record, FIELDS, {}),
    }


class ContextFilter(logging.Filter):
    """Puts the ids in scope onto each record as it reaches the handler, whatever logger made it."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.context = _context.get()
        return True


class WithoutRowValues(logging.Formatter):
    def formatException(self, ei) -> str:
        """A traceback without PostgreSQL's DETAIL lines, which repeat a refused row's values (an
        identity's CPF); the statement's parameters are hidden by the engine (hide_parameters)."""
        return "\n".join(line for line in super().formatException(ei).splitlines() if not line.startswith("DETAIL:"))


class JsonFormatter(WithoutRowValues):
    def format(self, record: logging.LogRecord) -> str:
        fields = entry(record)
        if record.exc_info:
            fields["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(fields, default=str).decode()


class TextFormatter(WithoutRowValues):
    def format(self, record: logging.LogRecord) -> str:
        fields = entry(record)
        head = f"{fields.pop('ts')} {fields.pop('level').upper():7} {fields.pop('logger')}: {fields.pop('message')}"
        line = " ".join([head, *(f"{key}={text_value(value)}" for key, value in fields.items())])
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def text_value(value) -> str:
    """A field as one word: quoted as JSON when it has spaces or anything that could break the line."""
    if isinstance(value, str) and value and value.isprintable() and not any(c in value for c in ' "='):
        return value
    if isinstance(value, (int, float, type(None))):
        return str(value)
    return orjson.dumps(value, default=str).decode()


class WithoutDevServerAccessLines(logging.Filter):
    """The development server's access lines show raw paths, a webhook URL's signed token among
    them; the service logs its own request line with the route instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.name == "werkzeug" and '"%s" %s %s' in str(record.msg))


def configure_logging(environ: Mapping[str, str], stream=None) -> logging.Handler:
    """One handler on the root logger, for this process's every logger. Called by the entry point
    (wsgi.py), not by the app factory, so tests and embedding apps keep their own logging."""
    handler = make_handler(environ, stream)
    # alembic announces each of its plugins at INFO whenever the app loads.
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
    root = logging.getLogger()
    for previous in [h for h in root.handlers if getattr(h, "pluggy_sync", False)]:
        root.removeHandler(previous)
    root.addHandler(handler)
    root.setLevel(level_of(environ))
    return handler


class ServiceHandler(logging.StreamHandler):
    """The service's handler, marked so that configuring logging again replaces it."""

    pluggy_sync = True


def make_handler(environ: Mapping[str, str] = os.environ, stream=None) -> logging.Handler:
    """The service's handler: JSON or text as LOG_FORMAT (or the stream) says, with the ids in scope."""
    stream = stream or sys.stderr
    log_format = read_setting(environ, "LOG_FORMAT") or ("text" if stream.isatty() else "json")
    level_of(environ)  # a bad LOG_LEVEL stops the process before anything runs
    handler = ServiceHandler(stream)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    handler.addFilter(ContextFilter())
    handler.addFilter(WithoutDevServerAccessLines())
    return handler


def level_of(environ: Mapping[str, str]) -> str:
    return read_setting(environ, "LOG_LEVEL")
