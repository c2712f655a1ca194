"""How each kind of setting is read from its text. Every reader takes the variable's name, for a
message that says which one to fix; none repeats a secret's value."""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import urlsplit


class ConfigError(RuntimeError):
    """The service cannot start with this configuration. Messages never contain secret values."""


def optional_text(name: str, value: str) -> str | None:
    return value or None


def url_root(name: str, value: str) -> str:
    """An http(s) URL without its trailing slash; empty stays empty."""
    if not value:
        return value
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"{name} must be an http:// or https:// URL; got {value!r}")
    return value.rstrip("/")


def redirect_uri(name: str, value: str) -> str | None:
    """Where Pluggy sends the user back after an institution's OAuth page: an https:// URL, or an
    app's deep link (`myapp://path`), never plain http; empty means unset."""
    if not value:
        return None
    parts = urlsplit(value)
    scheme = parts.scheme.lower()
    if scheme == "https" and parts.netloc:
        return value
    # A deep link names an app's own scheme (RFC 3986: a letter, then letters, digits, + - .).
    custom_scheme = scheme not in ("", "http", "https", "javascript", "data", "file") and scheme[:1].isalpha()
    if custom_scheme and value.split(":", 1)[1].strip("/") and not any(c.isspace() for c in value):
        return value
    raise ConfigError(
        f"{name} must be an https:// URL or an app's deep link (myapp://callback), as Pluggy requires; got {value!r}"
    )


def database_url(name: str, value: str) -> str:
    # Hosting platforms hand out postgres:// URLs; psycopg 3 is the driver installed.
    for prefix in ("postgres://", "postgresql://"):
        if value.startswith(prefix):
            return "postgresql+psycopg://" + value[len(prefix) :]
    return value


def split_secrets(name: str, value: str) -> tuple[str, ...]:
    """Several comma-separated secrets are accepted at once, so one can be rotated without downtime."""
    return tuple(part.strip() for part in value.split(",") if part.strip())


# An app key is the whole credential of a server-to-server API: one short enough to guess is refused.
MIN_APP_KEY_CHARS = 32


def app_keys(name: str, value: str) -> tuple[str, ...]:
    """Comma-separated keys (the new one first while rotating), each at least MIN_APP_KEY_CHARS long.
    The message names the variable and the key's position, never the key."""
    keys = split_secrets(name, value)
    for position, key in enumerate(keys, 1):
        if len(key) < MIN_APP_KEY_CHARS:
            raise ConfigError(
                f"{name} must be keys of at least {MIN_APP_KEY_CHARS} characters each; key {position} of {len(keys)} "
                f"has {len(key)} (for example: python -c 'import secrets; print(secrets.token_urlsafe(32))')"
            )
    return keys


# The operator console's password guards every connection's status and the queue: one short enough
# to guess is refused.
MIN_OPERATOR_PASSWORD_CHARS = 12


def operator_password(name: str, value: str) -> str | None:
    """One password (commas and spaces inside are part of it); empty means unset. The message
    names the variable and the length, never the password."""
    if value and len(value) < MIN_OPERATOR_PASSWORD_CHARS:
        raise ConfigError(f"{name} must be at least {MIN_OPERATOR_PASSWORD_CHARS} characters; it has {len(value)}")
    return value or None


FLAG_WORDS = {"1": True, "true": True, "yes": True, "0": False, "false": False, "no": False}


def flag(name: str, value: str) -> bool:
    """On (1, true, yes) or off (0, false, no, unset)."""
    if value.lower() not in FLAG_WORDS:
        raise ConfigError(f"{name} must be 1 or 0 (true/false, yes/no); got {value!r}")
    return FLAG_WORDS[value.lower()]


def choice(name: str, value: str, allowed: Sequence[str]) -> str:
    if value not in allowed:
        raise ConfigError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")
    return value


def whole_number_at_least(name: str, value: str, least: int, unit: str = "") -> int:
    if not (value.isascii() and value.isdigit()) or int(value) < least:
        raise ConfigError(f"{name} must be a whole number{unit}, {least} or more; got {value!r}")
    return int(value)


def positive_int(name: str, value: str) -> int:
    unit = " of days" if name.endswith("_DAYS") else ""
    return whole_number_at_least(name, value, 1, unit)


def positive_number(name: str, value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        number = 0.0
    if not 0 < number < float("inf"):
        raise ConfigError(f"{name} must be a number above 0; got {value!r}")
    return number
