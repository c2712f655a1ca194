"""Request bodies and query strings, validated by pydantic models into one 400 shape."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar

from flask import current_app, request
from pydantic import BaseModel, ConfigDict, ValidationError

from web.errors import ApiError, request_body

Model = TypeVar("Model", bound=BaseModel)


class Body(BaseModel):
    """A JSON body: exact types, and a field we do not know is an error, not a silent no-op."""

    model_config = ConfigDict(extra="forbid", strict=True)


class Query(BaseModel):
    """A query string: values arrive as text and are converted; unknown parameters are errors."""

    model_config = ConfigDict(extra="forbid")


def parse_body(model: type[Model], *, optional: bool = False) -> Model:
    body = request_body()
    if not body:
        if optional:
            return model()
        raise ApiError(400, "invalid_json", "A JSON object is required as the request body.")
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):  # RecursionError: nested deeper than any real request
        raise ApiError(400, "invalid_json", "The request body is not valid JSON.") from None
    if not isinstance(data, dict):
        raise ApiError(400, "invalid_json", "The request body must be a JSON object.")
    return validate(model, data)


def parse_query(model: type[Model]) -> Model:
    """The query string, by a view marked `takes_query`. No parameter is a list: one given twice is
    refused, not settled by taking one of its values."""
    repeated = [name for name in request.args if len(request.args.getlist(name)) > 1]
    if repeated:
        raise invalid_request([{"field": name, "message": "given more than once"} for name in repeated])
    return validate(model, request.args.to_dict())


View = TypeVar("View", bound=Callable[..., Any])


def takes_query(view: View) -> View:
    """Marks a view that reads its query string (parse_query). A view not marked takes none, and a
    request that sends one is refused before the view runs (`refuse_unread_query`): a parameter the
    API does not know, `DELETE ...?dry_run=true` say, must not be ignored while the action happens."""
    view.takes_query = True  # type: ignore[attr-defined]
    return view


def refuse_unread_query() -> None:
    """A blueprint's before_request: 400, naming each parameter, for a query sent to a view that reads none."""
    view = current_app.view_functions.get(request.endpoint or "")
    if request.args and not getattr(view, "takes_query", False):
        validate(Query, dict(request.args))


def validate(model: type[Model], data: dict) -> Model:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        whole = "query" if issubclass(model, Query) else "body"  # what a check of several fields names
        # Built from locations and messages only: the rejected values (an MFA code...) never echo back.
        problems = [
            {"field": ".".join(str(part) for part in error["loc"]) or whole, "message": error["msg"]}
            for error in exc.errors(include_url=False, include_input=False)
        ]
        raise invalid_request(problems) from None


def invalid_request(problems: list[dict[str, str]]) -> ApiError:
    """The one 400 for input that breaks the rules, naming each field and what is wrong with it."""
    summary = "; ".join(f"{p['field']}: {p['message']}" for p in problems)
    return ApiError(400, "invalid_request", summary, details=problems)
