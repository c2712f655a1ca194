"""One log line and one metric sample per request, under a request id the caller can pass in."""

from __future__ import annotations

import logging
import re
import time
import uuid

from flask import Flask, g, request

from observability import logs
from observability.metrics import HTTP_REQUESTS

log = logging.getLogger("api.requests")

# A caller's own id (a proxy's X-Request-ID) is kept when it is plainly an id, so it cannot inject
# anything into a log line.
GIVEN_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
UNMATCHED = "<unmatched>"


def request_id() -> str:
    given = request.headers.get("X-Request-ID", "")
    return given if GIVEN_REQUEST_ID.match(given) else uuid.uuid4().hex


def init_request_logging(app: Flask) -> None:
    @app.before_request
    def start_request() -> None:
        g.request_started = time.perf_counter()
        g.log_scope = logs.start_scope(request_id=request_id())

    @app.after_request
    def log_request(response):
        # The route, never the raw path: a webhook URL carries its signed token in the path.
        route = request.url_rule.rule if request.url_rule else UNMATCHED
        seconds = time.perf_counter() - g.get("request_started", time.perf_counter())
        HTTP_REQUESTS.labels(request.method, route, str(response.status_code)).observe(seconds)
        logs.event(
            log,
            "request",
            method=request.method,
            route=route,
            status=response.status_code,
            duration_ms=round(seconds * 1000, 1),
        )
        response.headers["X-Request-ID"] = logs.current().get("request_id", "")
        return response

    @app.teardown_request
    def end_request(_error) -> None:
        token = g.pop("log_scope", None)
        if token is not None:
            logs.end_scope(token)
