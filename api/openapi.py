"""GET /openapi.json: the API's OpenAPI 3.1 document, kept beside the code (api/openapi.json) and
checked against the routes and the real responses by tests/test_openapi.py."""

from __future__ import annotations

import functools
from pathlib import Path

from flask import Blueprint, Response

bp = Blueprint("openapi", __name__)
DOCUMENT = Path(__file__).with_name("openapi.json")


@functools.cache
def document() -> bytes:
    return DOCUMENT.read_bytes()


@bp.get("/openapi.json")
def openapi():
    return Response(document(), content_type="application/json")
