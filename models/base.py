"""Declarative base, shared column types and helpers for every model."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, ClassVar

import orjson
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, registry

# Predictable constraint names let Alembic create, compare and drop them on both engines.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(sa.types.TypeDecorator):
    """A timezone-aware timestamp that always comes back in UTC.

    SQLite has no time zones and hands back naive values; PostgreSQL hands back the session's zone.
    Naive values are refused on the way in, so local time can never be mistaken for UTC.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given where an aware one is required")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


# Money keeps four decimals: Pluggy sends doubles, and converted amounts may carry more than cents.
Money = sa.Numeric(18, 4, asdecimal=True)

# JSONB on PostgreSQL (indexable, compact), plain JSON text elsewhere.
JSONType = sa.JSON().with_variant(JSONB(), "postgresql")


def dump_json(value) -> str:
    """How JSON columns are written (the engine's json_serializer): orjson, several times faster
    than json.dumps on the raw payload of every transaction."""
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()


def load_json(text: str | bytes) -> Any:
    """JSON text read back: orjson, several times faster than json.loads, and json.loads for what
    orjson refuses (an escaped lone surrogate, an integer beyond 64 bits), so the values are always
    json.loads's."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


class BuiltJSON(sa.types.TypeDecorator):
    """The type of a JSON value a query builds (not a column's): read by load_json on SQLite, where
    it comes back as text; PostgreSQL's driver hands jsonb back decoded already."""

    impl = sa.Text
    cache_ok = True

    def process_result_value(self, value: Any, dialect: Any) -> Any:
        return load_json(value) if isinstance(value, str | bytes) else value


# A NUL character in a JSON string, as orjson writes it: an escaped backslash before it does not count.
ESCAPED_NUL = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")


def json_storable(value) -> bool:
    """Whether a JSON column can hold `value` on every engine: orjson refuses lone surrogates and
    integers beyond 64 bits, and PostgreSQL's jsonb refuses NUL characters."""
    try:
        written = orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)
    except orjson.JSONEncodeError:
        return False
    return b"\\u0000" not in written or ESCAPED_NUL.search(written) is None


def partial_index(name: str, *columns: str, where: str, unique: bool = False) -> sa.Index:
    """An index over the rows matching `where` (SQL text), on SQLite and PostgreSQL alike."""
    condition = sa.text(where)
    return sa.Index(name, *columns, unique=unique, sqlite_where=condition, postgresql_where=condition)


def one_of(column: str, values: tuple[str, ...]) -> str:
    """SQL for a CHECK that a column holds one of our own enumerated values."""
    quoted = ", ".join(f"'{v}'" for v in values)
    return f"{column} IN ({quoted})"


class Base(DeclarativeBase):
    registry = registry(
        metadata=sa.MetaData(naming_convention=NAMING_CONVENTION),
        type_annotation_map={datetime: UTCDateTime(), Decimal: Money, dict: JSONType},
    )

    if TYPE_CHECKING:
        # Every model here maps one Table (none a join or a select), with its name and columns.
        __table__: ClassVar[sa.Table]
