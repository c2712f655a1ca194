"""GET /metrics: Prometheus exposition. No authentication, no ids: keep it off the public internet."""

from __future__ import annotations

from flask import Blueprint, Response
from sqlalchemy.exc import SQLAlchemyError

from jobqueue import queue_stats
from models import db
from observability.metrics import SharedFigures, exposition
from sync.monitoring import oldest_connection_staleness

bp = Blueprint("metrics", __name__)


@bp.get("/metrics")
def metrics():
    body, content_type = exposition(shared_figures())
    return Response(body, content_type=content_type)


def shared_figures() -> SharedFigures:
    try:
        figures = SharedFigures(queue_stats(db.session), oldest_connection_staleness(db.session))
    except SQLAlchemyError:
        figures = SharedFigures(None, None)
    db.session.rollback()  # end the read transaction, whichever way it went
    return figures
