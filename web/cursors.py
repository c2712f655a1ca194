"""A list's keyset cursor: the last row's sort key in the list's order (sync/listing.py `Order`)
with the scope it was given for (owner ids, filters), signed with SECRET_KEY under a salt per list.
Shared by the API's lists and the operator console's."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from flask import current_app
from itsdangerous import BadData, URLSafeSerializer

from sync.listing import Key, Order
from sync.tokens import accepted_keys

from .errors import ApiError

CURSOR_SALT = "pluggy-sync.cursor."


def invalid_cursor() -> ApiError:
    return ApiError(
        400, "invalid_cursor", "The cursor is not one this list gave with these filters: start again without it."
    )


def encode(order: Order, key: Key, scope: dict) -> str:
    values = [value.isoformat() if isinstance(value, date) else value for value in key]
    return URLSafeSerializer(current_app.config["SECRET_KEY"], salt=CURSOR_SALT + order.name).dumps(
        {"k": values, "s": scope}
    )


def decode(order: Order, cursor: str, scope: dict) -> Key:
    try:
        payload = URLSafeSerializer(accepted_keys(current_app.config), salt=CURSOR_SALT + order.name).loads(cursor)
    except BadData:
        raise invalid_cursor() from None
    if not isinstance(payload, dict) or set(payload) != {"k", "s"} or payload["s"] != scope:
        raise invalid_cursor()
    values = payload["k"]
    if not isinstance(values, list) or len(values) != len(order.columns):
        raise invalid_cursor()
    try:
        return tuple(
            key_value(python_type(column.type), value, nullable=order.nulls_last and i == 0)
            for i, (column, value) in enumerate(zip(order.columns, values, strict=True))
        )
    except (TypeError, ValueError):
        raise invalid_cursor() from None


def python_type(type_: Any) -> type:
    """What a column holds (a TypeDecorator such as UTCDateTime: what its implementation holds)."""
    return getattr(type_, "impl_instance", type_).python_type


def key_value(kind: type, value: Any, *, nullable: bool) -> Any:
    """One value of a key, read back strictly as the column's type."""
    if value is None and nullable:
        return None
    if kind is int and type(value) is int:
        return value
    if kind is datetime and isinstance(value, str):
        moment = datetime.fromisoformat(value)
        if moment.tzinfo is None:
            raise ValueError("a naive timestamp")
        return moment
    if kind is date and isinstance(value, str) and len(value) == 10:
        return date.fromisoformat(value)
    raise TypeError(f"not a {kind.__name__}")
