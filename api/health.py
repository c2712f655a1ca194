"""GET /health (liveness: cheap, the database and the queue's figures) and GET /health/ready
(readiness: also that workers keep up with the queue and that Pluggy gives an API key). No auth,
no secrets."""

from __future__ import annotations

import logging

from flask import Blueprint, current_app, jsonify
from sqlalchemy.exc import SQLAlchemyError

from config import ConfigError
from jobqueue import queue_stats
from models import db
from sync.monitoring import Check, PluggyAccessCheck, queue_check
from sync.runtime import pluggy_client
from web.errors import error_response

from .schemas import ReadyQuery
from .validation import parse_query

log = logging.getLogger(__name__)
bp = Blueprint("health", __name__)

DATABASE_UNAVAILABLE = "The database cannot be reached."


def read_queue() -> dict | None:
    try:
        return queue_stats(db.session)
    except SQLAlchemyError as exc:
        log.warning("health check: database unreachable (%s)", type(exc).__name__)
        return None
    finally:
        db.session.rollback()  # end the read transaction


@bp.get("/health")
def health():
    stats = read_queue()
    if stats is None:
        return error_response(503, "database_unavailable", DATABASE_UNAVAILABLE, status="error", database="error")
    return jsonify(status="ok", database="ok", queue=stats)


@bp.get("/health/ready")
def ready():
    limits = parse_query(ReadyQuery)
    stats = read_queue()
    checks = {
        "database": Check(False, DATABASE_UNAVAILABLE) if stats is None else Check(True),
        "queue": Check(False, "not checked without the database")
        if stats is None
        else queue_check(stats, max_due_age_s=limits.max_due_age, max_dead=limits.max_dead),
        "pluggy": pluggy_check(),
    }
    body = {"checks": {name: "ok" if check.ok else "error" for name, check in checks.items()}, "queue": stats}
    problems = [f"{name}: {check.problem}" for name, check in checks.items() if not check.ok]
    if problems:
        return error_response(503, "not_ready", "; ".join(problems), status="error", **body)
    return jsonify(status="ok", **body)


def pluggy_check() -> Check:
    extensions = current_app.extensions
    try:
        client = pluggy_client()
    except ConfigError as exc:
        return Check(False, str(exc))
    access = extensions.setdefault("pluggy_access_check", PluggyAccessCheck())
    return access(client)
