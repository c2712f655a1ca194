"""One JSON error shape for every 4xx and 5xx: {"error": {"code", "message"}} plus any extra fields."""
from __future__ import annotations

import logging
import re

from flask import Flask, jsonify
from werkzeug.exceptions import HTTPException

log = logging.getLogger(__name__)


class ApiError(Exception):
    """Raised by views and services to answer with a specific status and stable error code."""

    def __init__(self, http_status: int, code: str, message: str, /, headers: dict | None = None, **extra) -> None:
        super().__init__(message)
        self.http_status = http_status
        self.code = code
        self.message = message
        self.headers = headers or {}
        self.extra = extra


def error_response(http_status: int, code: str, message: str, /, **extra):
    response = jsonify({"error": {"code": code, "message": message}, **extra})
    response.status_code = http_status
    return response


def snake_case(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def api_error(error: ApiError):
        response = error_response(error.http_status, error.code, error.message, **error.extra)
        response.headers.update(error.headers)
        return response

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException):
        response = error_response(error.code or 500, snake_case(error.name), error.description or error.name)
        # Keep what the exception says about itself, e.g. Allow on a 405.
        for name, value in error.get_headers():
            if name.lower() != "content-type":
                response.headers[name] = value
        return response

    @app.errorhandler(Exception)
    def unexpected_error(error: Exception):
        log.exception("unhandled error")
        return error_response(500, "internal_error", "The server failed to answer this request.")
