"""Validate payloads against Pluggy's OpenAPI document (docs/pluggy-oas3.json).

Two readings are applied to the document, both because Pluggy's real answers need them:
- ``nullable: true`` (an OpenAPI 3.0 keyword that JSON Schema 2020-12 ignores) admits null;
- optional properties admit null, since Pluggy serialises absent values as null
  (``"error": null``, ``"lastUpdatedAt": null``...). Required properties stay strict.
"""

from __future__ import annotations

import json
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator, FormatChecker
from jsonschema.exceptions import best_match
from referencing import Registry
from referencing.jsonschema import DRAFT202012

OAS_PATH = Path(__file__).resolve().parents[1] / "docs" / "pluggy-oas3.json"
OAS_URI = "urn:pluggy:oas3"
JSON_CONTENT = "application/json"

FORMAT_CHECKER = FormatChecker()


@FORMAT_CHECKER.checks("date-time", raises=ValueError)
def _is_aware_iso_timestamp(value: object) -> bool:
    # jsonschema needs an extra package for date-time; Pluggy's timestamps all carry Z or an offset.
    return not isinstance(value, str) or datetime.fromisoformat(value).tzinfo is not None


def validate_schema(name: str, data: Any) -> None:
    """Raise jsonschema.ValidationError unless ``data`` fits components/schemas/``name``."""
    _validate(f"/components/schemas/{name}", data)


def validate_response(method: str, path: str, data: Any, status: int = 200) -> None:
    """Validate a response body against the OAS entry for ``method path`` and ``status``."""
    response = _operation(method, path)["responses"][str(status)]
    pointer = _operation_pointer(method, path) + f"/responses/{status}"
    _validate(_content_schema_pointer(response, pointer), data)


def validate_request(method: str, path: str, data: Any) -> None:
    """Validate a request body against the OAS entry for ``method path``."""
    body = _operation(method, path)["requestBody"]
    _validate(_content_schema_pointer(body, _operation_pointer(method, path) + "/requestBody"), data)


def _validate(pointer: str, data: Any) -> None:
    validator = Draft202012Validator(
        {"$ref": f"{OAS_URI}#{pointer}"}, registry=_registry(), format_checker=FORMAT_CHECKER
    )
    # best_match looks inside the anyOf [schema, null] wrappers for the error that explains most.
    error = best_match(validator.iter_errors(data))
    if error is not None:
        raise error


def _operation(method: str, path: str) -> dict[str, Any]:
    return _document()["paths"][path][method.lower()]


def _operation_pointer(method: str, path: str) -> str:
    return f"/paths/{_escape(path)}/{method.lower()}"


def _content_schema_pointer(node: dict[str, Any], pointer: str) -> str:
    """Pointer to the JSON schema of a request body or response, following a ``$ref`` to components."""
    if "$ref" in node:
        pointer = node["$ref"].removeprefix("#")
        node = _lookup(pointer)
    if "schema" not in node.get("content", {}).get(JSON_CONTENT, {}):
        raise LookupError(f"no JSON body is documented at {pointer}")
    return f"{pointer}/content/{_escape(JSON_CONTENT)}/schema"


def _lookup(pointer: str) -> Any:
    node: Any = _document()
    for part in pointer.strip("/").split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def _escape(segment: str) -> str:
    return segment.replace("~", "~0").replace("/", "~1")


@cache
def _registry() -> Registry:
    return Registry().with_resource(OAS_URI, DRAFT202012.create_resource(_document()))


@cache
def _document() -> dict[str, Any]:
    document = json.loads(OAS_PATH.read_text(encoding="utf-8"))
    return _as_pluggy_answers(_as_the_sdks_read_it(document))


def _as_the_sdks_read_it(document: dict[str, Any]) -> dict[str, Any]:
    """Where the document and Pluggy's official SDKs (built against the live API) disagree, the SDKs
    win: ``payeeMCC`` is an integer (npm types, PyPI model) and GET /categories answers a page
    (npm ``PageResponse<Category>``, PyPI ``PageResponseCategories``), not a bare array."""
    schemas = document["components"]["schemas"]
    schemas["CreditCardMetadata"]["properties"]["payeeMCC"]["type"] = "integer"
    categories = document["paths"]["/categories"]["get"]["responses"]["200"]["content"][JSON_CONTENT]
    categories["schema"] = {
        "type": "object",
        "required": ["page", "total", "totalPages", "results"],
        "properties": {
            "page": {"type": "integer"},
            "total": {"type": "integer"},
            "totalPages": {"type": "integer"},
            "results": categories["schema"],
        },
    }
    return document


def _as_pluggy_answers(node: Any) -> Any:
    if isinstance(node, list):
        return [_as_pluggy_answers(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = {key: _as_pluggy_answers(value) for key, value in node.items()}
    if isinstance(node.get("properties"), dict):
        required = set(node.get("required", []))
        node["properties"] = {
            name: schema if name in required else _or_null(schema) for name, schema in node["properties"].items()
        }
    if node.get("nullable") is True:
        node.pop("nullable")
        return _or_null(node)
    return node


def _or_null(schema: Any) -> Any:
    if not isinstance(schema, dict):
        return schema
    return {"anyOf": [schema, {"type": "null"}]}
