"""GET /health: is the database reachable, and how is the queue doing. No auth, no secrets."""
from __future__ import annotations

import logging

from flask import Blueprint, jsonify
from sqlalchemy.exc import SQLAlchemyError

from sync.queue import queue_stats

from .extensions import db

log = logging.getLogger(__name__)
bp = Blueprint("health", __name__)


@bp.get("/health")
def health():
    try:
        stats = queue_stats(db.session)
    except SQLAlchemyError as exc:
        db.session.rollback()
        log.warning("health check: database unreachable (%s)", type(exc).__name__)
        response = jsonify(
            status="error",
            database="error",
            error={"code": "database_unavailable", "message": "The database cannot be reached."},
        )
        response.status_code = 503
        return response
    return jsonify(status="ok", database="ok", queue=stats)
