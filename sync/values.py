"""Reading Pluggy's loosely typed fields into typed columns: money as Decimal, days, whole numbers,
strings that fit their column. Anything else reads as None (the raw payload keeps what was sent)."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from pluggy_client import timestamp

# An INTEGER column's range, on SQLite and PostgreSQL alike.
MAX_INTEGER = 2**31 - 1


def has_control_character(value: str) -> bool:
    """PostgreSQL refuses some of them in a text parameter, and no stored id or name holds one."""
    return any(ord(c) < 0x20 or ord(c) == 0x7F for c in value)


def ascii_digits(value: str) -> bool:
    """Whether `value` is a whole number in ASCII digits: str.isdigit() also takes "²", which int() refuses."""
    return value.isascii() and value.isdigit()


def fits_text_column(value: str, length: int) -> bool:
    """Could a String(length) column hold `value`? One that could not matches no row, so a lookup
    by it answers 'none' without asking the database (which may refuse it as a parameter)."""
    return 0 < len(value) <= length and not has_control_character(value)


def money(value, bound: Decimal | None = None) -> Decimal | None:
    """A figure as the Decimal Pluggy wrote, or None when it is none or beyond ``bound`` (what its
    column holds)."""
    # str() gives the shortest decimal that reads back as the same double: the figure Pluggy sent.
    if value is None or isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        amount = Decimal(str(value))
    except ArithmeticError:
        return None
    if not amount.is_finite() or (bound is not None and abs(amount) >= bound):
        return None
    return amount


def day(value) -> date | None:
    """The day a Pluggy date-time names, as written ("2024-05-25T00:00:00.000Z" is the 25th)."""
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value).date()
    except ValueError:
        try:
            return date.fromisoformat(value[:10])
        except ValueError:
            return None


def moment(value) -> datetime | None:
    """A Pluggy timestamp, or None when it is none or unreadable."""
    try:
        return timestamp(value) if isinstance(value, str) else None
    except ValueError:
        return None


def whole(value) -> int | None:
    """A whole number that fits an INTEGER column (Pluggy's `number`s may come as 3.0)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if value != value or value in (float("inf"), float("-inf")) or value != int(value):
        return None
    return int(value) if 0 <= value <= MAX_INTEGER else None


def identifier(value, limit: int = 64) -> str | None:
    """An id that fits its column, or None: a cut id would name something else."""
    return value if isinstance(value, str) and 0 < len(value) <= limit else None


def label(value, limit: int) -> str | None:
    """A word of Pluggy's vocabularies (a card's brand, level, status), cut to its column."""
    return value[:limit] if isinstance(value, str) and value else None


def mapping(value) -> dict:
    return value if isinstance(value, dict) else {}
