"""One JSON error shape for every 4xx and 5xx: {"error": {"code", "message"}} plus any extra fields."""

from __future__ import annotations

import logging
import re
from typing import IO

from flask import Flask, jsonify, request
from werkzeug.exceptions import ClientDisconnected, HTTPException, RequestEntityTooLarge
from werkzeug.wsgi import get_input_stream

log = logging.getLogger(__name__)

# A refused body is read to its end and dropped, so that a kept-alive connection carries the next
# request (gunicorn says keep-alive, then closes when more than 64 KiB of body is left unread). A
# larger body is not worth reading: a WSGI app may not send `Connection: close` (PEP 3333), so the
# server then closes the connection itself.
DISCARD_LIMIT = 8 * 1024 * 1024
DISCARD_CHUNK = 64 * 1024


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


def unread_body() -> IO[bytes]:
    """What is left of the request body. A server that ends its input at the body's end (gunicorn)
    is read directly; otherwise the stream werkzeug opened knows how much it read, and a stream
    never opened is bounded by Content-Length."""
    if request.environ.get("wsgi.input_terminated"):
        return request.environ["wsgi.input"]
    try:
        return request.stream
    except RequestEntityTooLarge:  # refused before it was opened
        return get_input_stream(request.environ, max_content_length=None)


def request_body() -> bytes:
    """The request body, refused (413) when over the request's limit. A body that comes without a
    Content-Length (chunked) is cut at the limit by werkzeug without a word, which would hand a
    view the start of the body as if it were all: one more byte read says whether there was more."""
    body = request.get_data()
    limit = request.max_content_length
    if request.content_length is None and limit is not None and len(body) >= limit and unread_body().read(1):
        raise RequestEntityTooLarge()
    return body


def discard_body() -> None:
    if (request.content_length or 0) > DISCARD_LIMIT:
        return
    stream, left = unread_body(), DISCARD_LIMIT
    try:
        while left > 0 and (chunk := stream.read(min(DISCARD_CHUNK, left))):
            left -= len(chunk)
    except (OSError, ClientDisconnected):
        pass  # the client went away: there is no next request to keep the connection for


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

    @app.errorhandler(RequestEntityTooLarge)
    def too_large(error: RequestEntityTooLarge):
        discard_body()
        return http_error(error)

    @app.errorhandler(Exception)
    def unexpected_error(error: Exception):
        log.exception("unhandled error")
        return error_response(500, "internal_error", "The server failed to answer this request.")
