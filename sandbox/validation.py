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


def optional_bool(values: Json, name: str) -> bool | None:
    value = values.get(name)
    if value is not None and not isinstance(value, bool):
        raise bad_request(f"{name} must be a boolean", "INVALID_PARAMETERS")
    return value


def string_map(value: Any, name: str) -> dict[str, str]:
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise bad_request(f"{name} must be an object of strings", "INVALID_PARAMETERS")
    return value


def credential_errors(credentials: list[Json], parameters: Any, *, partial: bool = False) -> list[dict[str, str]]:
    """Pluggy's ``details`` for item ``parameters`` against a connector's ``credentials``: each
    required one missing or empty (PATCH, ``partial``, checks only those sent; an MFA credential is
    asked for later, never required up front), and each value that is not a string."""
    values = {} if parameters is None else parameters
    if not isinstance(values, dict):
        return [{"code": "002", "message": "parameters must be an object", "parameter": "parameters"}]
    errors = [
        {"code": "002", "message": f"{name} parameter must be a string", "parameter": str(name)}
        for name, value in values.items()
        if not isinstance(value, str)
    ]
    for credential in credentials:
        name = credential["name"]
        if credential.get("optional") or credential.get("mfa") or (partial and name not in values):
            continue
        if values.get(name) in (None, ""):
            errors.append({"code": "001", "message": f"{name} parameter is required", "parameter": name})
    return errors


def optional_products(values: Json, name: str = "products") -> list[str] | None:
    """A list of Pluggy's product names, or None when absent."""
    value = values.get(name)
    if value is None:
        return None
    if not isinstance(value, list) or not all(product in PRODUCT_TYPES for product in value):
        raise bad_request(f"{name} must be a list of {', '.join(PRODUCT_TYPES)}", "INVALID_PARAMETERS")
    return value
