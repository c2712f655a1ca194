"""Configuration read from the environment (API.md "Configuration"), checked once at start-up."""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from pathlib import Path

from models.base import dump_json

SYNC_MODES = ("webhook", "poll")
# Whoever holds one signed token can try keys against it offline, as fast as they like: a short or
# memorable key would be found.
MIN_SECRET_KEY_BYTES = 32
NEW_KEY_HINT = "for example to the output of: python -c 'import secrets; print(secrets.token_hex(32))'"


class ConfigError(RuntimeError):
    """The service cannot start with this configuration. Messages never contain secret values."""


def config_from_env(environ: Mapping[str, str], instance_path: str) -> dict:
    return {
        "SQLALCHEMY_DATABASE_URI": database_url(environ.get("DATABASE_URL"), instance_path),
        "SECRET_KEY": environ.get("SECRET_KEY") or None,
        # Keys being retired: tokens they signed are still accepted (Flask's own name for this).
        "SECRET_KEY_FALLBACKS": split_secrets(environ.get("SECRET_KEY_FALLBACKS", "")),
        "PLUGGY_BASE_URL": environ.get("PLUGGY_BASE_URL") or "https://api.pluggy.ai",
        "PLUGGY_CLIENT_ID": environ.get("PLUGGY_CLIENT_ID") or None,
        "PLUGGY_CLIENT_SECRET": environ.get("PLUGGY_CLIENT_SECRET") or None,
        "PLUGGY_WEBHOOK_SECRETS": split_secrets(environ.get("PLUGGY_WEBHOOK_SECRET", "")),
        "PUBLIC_BASE_URL": (environ.get("PUBLIC_BASE_URL") or "").rstrip("/") or None,
        "SYNC_MODE": choice("SYNC_MODE", environ.get("SYNC_MODE") or "webhook", SYNC_MODES),
        "SYNC_BACKFILL_DAYS": positive_int("SYNC_BACKFILL_DAYS", environ.get("SYNC_BACKFILL_DAYS", "365")),
        "SYNC_LOOKBACK_DAYS": positive_int("SYNC_LOOKBACK_DAYS", environ.get("SYNC_LOOKBACK_DAYS", "7")),
        "SYNC_SWEEP_INTERVAL_MINUTES": positive_number(
            "SYNC_SWEEP_INTERVAL_MINUTES", environ.get("SYNC_SWEEP_INTERVAL_MINUTES", "15")
        ),
        "SYNC_SWEEP_STALE_HOURS": positive_number("SYNC_SWEEP_STALE_HOURS", environ.get("SYNC_SWEEP_STALE_HOURS", "6")),
        # How long a started sync may wait for Pluggy's outcome before it is given up.
        "SYNC_WATCH_TIMEOUT_S": positive_number("SYNC_WATCH_TIMEOUT_S", environ.get("SYNC_WATCH_TIMEOUT_S", "1800")),
        # No request this service accepts comes near this; anything larger is refused unread (413).
        "MAX_CONTENT_LENGTH": 1024 * 1024,
    }


def database_url(url: str | None, instance_path: str) -> str:
    if not url:
        return f"sqlite:///{Path(instance_path) / 'pluggy_sync.db'}"
    # Hosting platforms hand out postgres:// URLs; psycopg 3 is the driver installed.
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def split_secrets(value: str) -> tuple[str, ...]:
    """Several comma-separated secrets are accepted at once, so one can be rotated without downtime."""
    return tuple(part.strip() for part in value.split(",") if part.strip())


def choice(name: str, value: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise ConfigError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")
    return value


def positive_int(name: str, value: str) -> int:
    if not value.strip().isdigit() or int(value) < 1:
        raise ConfigError(f"{name} must be a whole number of days, 1 or more; got {value!r}")
    return int(value)


def positive_number(name: str, value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        number = 0.0
    if not 0 < number < float("inf"):
        raise ConfigError(f"{name} must be a number above 0; got {value!r}")
    return number


def ensure_secret_key(config: dict, instance_path: str, *, debug: bool, testing: bool) -> None:
    """Production must be given a SECRET_KEY of 32 bytes or more; development keeps a generated one in
    the instance folder."""
    if config.get("SECRET_KEY"):
        if not debug:
            refuse_a_short_secret_key(config["SECRET_KEY"])
        return
    if testing:
        config["SECRET_KEY"] = secrets.token_hex(32)
    elif debug:
        config["SECRET_KEY"] = instance_secret_key(Path(instance_path) / "secret_key")
    else:
        raise ConfigError(
            f"SECRET_KEY is not set. It signs API and webhook tokens, so production must set it ({NEW_KEY_HINT}). "
            "For local development run with FLASK_DEBUG=1 and one is generated for you."
        )


def refuse_a_short_secret_key(key: str | bytes) -> None:
    size = len(key.encode() if isinstance(key, str) else key)
    if size < MIN_SECRET_KEY_BYTES:
        raise ConfigError(
            f"SECRET_KEY is {size} bytes long; it signs API and webhook tokens, so it must have at least "
            f"{MIN_SECRET_KEY_BYTES}: set it again ({NEW_KEY_HINT})."
        )


def instance_secret_key(path: Path) -> str:
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_hex(32)
    # Created owner-only from the start, so the key is never readable by others even briefly.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(key)
    return key


def engine_options(database_uri: str) -> dict:
    options = {"json_serializer": dump_json}
    if database_uri.startswith("postgresql"):
        # Every outbound call has a timeout, the database included; pre-ping survives server restarts.
        options.update(pool_pre_ping=True, connect_args={"connect_timeout": 5})
    return options
