"""How the console writes values: masked personal data, ages and moments."""

from __future__ import annotations

from datetime import UTC, datetime

from flask import Blueprint

from models.base import utcnow


def mask_email(email: str | None) -> str:
    """j•••@example.com: enough to tell two users apart, not enough to write to them."""
    if not email:
        return ""
    name, at, domain = email.partition("@")
    return f"{name[:1]}•••{at}{domain}" if at else f"{email[:1]}•••"


def mask_cpf(document: str | None) -> str:
    """•••.456.789-•• (the middle digits, the way Brazilian receipts print a CPF)."""
    digits = "".join(c for c in document or "" if c.isdigit())
    if len(digits) != 11:
        return "•••" if document else ""
    return f"•••.{digits[3:6]}.{digits[6:9]}-••"


def ago(moment: datetime | None, now: datetime | None = None) -> str:
    """How long ago, in the largest unit that fits: 45 s, 12 min, 3 h, 2 d."""
    if moment is None:
        return "never"
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return duration(((now or utcnow()) - moment).total_seconds())


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    future = seconds < 0
    seconds = abs(seconds)
    for size, unit in ((86400, "d"), (3600, "h"), (60, "min")):
        if seconds >= size:
            text = f"{seconds / size:.0f} {unit}"
            break
    else:
        text = f"{seconds:.0f} s" if seconds >= 1 else f"{seconds * 1000:.0f} ms"
    return f"in {text}" if future else text


def moment(value: datetime | None) -> str:
    if value is None:
        return "–"
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def register(bp: Blueprint) -> None:
    for name, function in (
        ("mask_email", mask_email),
        ("mask_cpf", mask_cpf),
        ("ago", ago),
        ("duration", duration),
        ("moment", moment),
    ):
        bp.add_app_template_filter(function, name)
