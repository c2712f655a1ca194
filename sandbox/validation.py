"""Reading request bodies; a malformed one is Pluggy's 400."""

from __future__ import annotations

from typing import Any

from flask import request

from .data import PRODUCT_TYPES, Json
from .errors import bad_request


def body() -> Json:
    """The JSON object sent; an empty body counts as ``{}``."""
    if not request.get_data():
        return {}
    payload = request.get_json(silent=True)
    if not isinstance(payload, dict):
        raise bad_request("Body must be a JSON object", "INVALID_BODY")
    return payload


def optional_string(values: Json, name: str) -> str | None:
    value = values.get(name)
    if value is not None and not isinstance(value, str):
        raise bad_request(f"{name} must be a string", "INVALID_PARAMETERS")
    return value


def string_map(value: Any, name: str) -> dict[str, str]:
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise bad_request(f"{name} must be an object of strings", "INVALID_PARAMETERS")
    return value


def optional_products(values: Json, name: str = "products") -> list[str] | None:
    """A list of Pluggy's product names, or None when absent."""
    value = values.get(name)
    if value is None:
        return None
    if not isinstance(value, list) or not all(product in PRODUCT_TYPES for product in value):
        raise bad_request(f"{name} must be a list of {', '.join(PRODUCT_TYPES)}", "INVALID_PARAMETERS")
    return value
