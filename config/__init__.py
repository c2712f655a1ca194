"""Every setting the service reads from the environment, in one table, checked once at start-up.

`SETTINGS` names each variable, its default and how it is read; `read_environment` turns the
environment into the Flask config the app factory starts from (a bad value stops start-up with the
variable's name in the message, never the value of a secret). `Settings` is the typed view of that
config the service layer is handed. The README's configuration table lists the same variables
(a test keeps the two in step).

This package imports nothing of the project's: every layer may use it.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from .values import (
    ConfigError,
    app_keys,
    choice,
    database_url,
    flag,
    operator_password,
    optional_text,
    positive_int,
    positive_number,
    redirect_uri,
    split_secrets,
    url_root,
    whole_number_at_least,
)

__all__ = [
    "ConfigError",
    "SETTINGS",
    "Setting",
    "Settings",
    "SyncMode",
    "ensure_secret_key",
    "read_environment",
    "read_setting",
]

LOG_FORMATS = ("json", "text")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
# Whoever holds one signed token can try keys against it offline, as fast as they like: a short or
# memorable key would be found.
MIN_SECRET_KEY_BYTES = 32
NEW_KEY_HINT = "for example to the output of: python -c 'import secrets; print(secrets.token_hex(32))'"
# No request this service accepts comes near this; anything larger is refused unread (413).
MAX_CONTENT_LENGTH = 1024 * 1024


class SyncMode(StrEnum):
    """What closes a started sync: Pluggy's webhook, or a worker reading the item until it settles."""

    WEBHOOK = "webhook"
    POLL = "poll"


SYNC_MODES = tuple(SyncMode)


@dataclass(frozen=True)
class Setting:
    """One environment variable: its default (as it would be written in the environment), how its
    text is read, and the Flask config key it fills when that is not its own name."""

    env: str
    default: str
    read: Callable[[str, str], Any]
    config_key: str | None = None

    @property
    def key(self) -> str:
        return self.config_key or self.env


SETTINGS: tuple[Setting, ...] = (
    Setting("DATABASE_URL", "", database_url, "SQLALCHEMY_DATABASE_URI"),
    Setting("SECRET_KEY", "", optional_text),
    # Keys being retired: tokens they signed are still accepted (Flask's own name for this).
    Setting("SECRET_KEY_FALLBACKS", "", split_secrets),
    Setting("PLUGGY_BASE_URL", "https://api.pluggy.ai", url_root),
    Setting("PLUGGY_CLIENT_ID", "", optional_text),
    Setting("PLUGGY_CLIENT_SECRET", "", optional_text),
    Setting("PLUGGY_WEBHOOK_SECRET", "", split_secrets, "PLUGGY_WEBHOOK_SECRETS"),
    Setting("PUBLIC_BASE_URL", "", lambda name, value: url_root(name, value) or None),
    Setting("SYNC_MODE", "webhook", lambda name, value: SyncMode(choice(name, value, SYNC_MODES))),
    Setting("SYNC_BACKFILL_DAYS", "365", positive_int),
    Setting("SYNC_LOOKBACK_DAYS", "7", positive_int),
    Setting("SYNC_SWEEP_INTERVAL_MINUTES", "15", positive_number),
    Setting("SYNC_SWEEP_STALE_HOURS", "6", positive_number),
    Setting("SYNC_SWEEP_BATCH", "100", positive_int),
    # How often a watched item (poll mode, --wait) is read again while Pluggy is still at work.
    Setting("SYNC_WATCH_INTERVAL_S", "5", positive_number),
    # How long a started sync may wait for Pluggy's outcome before it is given up.
    Setting("SYNC_WATCH_TIMEOUT_S", "1800", positive_number),
    # Pluggy allows 20 PATCH /items per minute per client; the service refuses before Pluggy has to.
    Setting("SYNC_ITEM_UPDATES_PER_MINUTE", "20", positive_int),
    Setting("JOB_MAX_ATTEMPTS", "8", lambda name, value: whole_number_at_least(name, value, 1)),
    # Where the institution's OAuth page sends the user back (Open Finance connectors need it).
    Setting("PLUGGY_OAUTH_REDIRECT_URI", "", redirect_uri),
    # Days a deleted item's copied data is kept before it is removed; 0: removed at once.
    Setting("DELETED_ITEM_RETENTION_DAYS", "0", lambda name, value: whole_number_at_least(name, value, 0, " of days")),
    # Days the change feed keeps telling of a deleted object; a cursor older than that is expired.
    Setting("CHANGE_FEED_RETENTION_DAYS", "30", lambda name, value: whole_number_at_least(name, value, 1, " of days")),
    # The key(s) of the server-to-server API under /api/app/ (comma-separated to rotate); unset: no such API.
    Setting("APP_API_KEY", "", app_keys, "APP_API_KEYS"),
    # The operator console's password (/console/); the app key signs in too. Neither set: no console.
    Setting("OPERATOR_PASSWORD", "", operator_password),
    # Webhook endpoints of the app may be http:// and on private, loopback or link-local addresses
    # (local development and tests only: in production that would let the app reach internal hosts).
    Setting("ALLOW_PRIVATE_WEBHOOK_URLS", "0", flag),
    Setting("LOG_FORMAT", "", lambda name, value: choice(name, value.lower(), LOG_FORMATS) if value else None),
    Setting("LOG_LEVEL", "INFO", lambda name, value: choice(name, value.upper(), LOG_LEVELS)),
)
BY_NAME = {setting.env: setting for setting in SETTINGS}


def read_setting(environ: Mapping[str, str], name: str) -> Any:
    setting = BY_NAME[name]
    value = environ.get(name)
    return setting.read(name, (value if value not in (None, "") else setting.default).strip())


def read_environment(environ: Mapping[str, str], instance_path: str) -> dict[str, Any]:
    """The Flask config for these variables; a missing or empty one takes its default."""
    config = {setting.key: read_setting(environ, setting.env) for setting in SETTINGS}
    if not config["SQLALCHEMY_DATABASE_URI"]:
        config["SQLALCHEMY_DATABASE_URI"] = f"sqlite:///{Path(instance_path) / 'pluggy_sync.db'}"
    config["MAX_CONTENT_LENGTH"] = MAX_CONTENT_LENGTH
    return config


@dataclass(frozen=True)
class Settings:
    """What the service layer needs of the configuration, as one value it can be handed. Read from a
    Flask config that `read_environment` filled: no defaults of its own."""

    backfill_days: int
    lookback_days: int
    sync_mode: SyncMode
    item_updates_per_minute: int
    secret_key: str
    public_base_url: str | None
    watch_interval_s: float
    watch_timeout_s: float
    sweep_interval_minutes: float
    sweep_stale_hours: float
    sweep_batch: int
    oauth_redirect_uri: str | None = None
    deleted_item_retention_days: int = 0
    change_feed_retention_days: int = 30
    allow_private_webhook_urls: bool = False
    secret_key_fallbacks: tuple[str, ...] = ()

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Settings:
        return cls(
            backfill_days=config["SYNC_BACKFILL_DAYS"],
            lookback_days=config["SYNC_LOOKBACK_DAYS"],
            sync_mode=config["SYNC_MODE"],
            item_updates_per_minute=config["SYNC_ITEM_UPDATES_PER_MINUTE"],
            secret_key=config["SECRET_KEY"],
            public_base_url=config["PUBLIC_BASE_URL"],
            watch_interval_s=config["SYNC_WATCH_INTERVAL_S"],
            watch_timeout_s=config["SYNC_WATCH_TIMEOUT_S"],
            sweep_interval_minutes=config["SYNC_SWEEP_INTERVAL_MINUTES"],
            sweep_stale_hours=config["SYNC_SWEEP_STALE_HOURS"],
            sweep_batch=config["SYNC_SWEEP_BATCH"],
            oauth_redirect_uri=config["PLUGGY_OAUTH_REDIRECT_URI"],
            deleted_item_retention_days=config["DELETED_ITEM_RETENTION_DAYS"],
            change_feed_retention_days=config["CHANGE_FEED_RETENTION_DAYS"],
            allow_private_webhook_urls=config["ALLOW_PRIVATE_WEBHOOK_URLS"],
            secret_key_fallbacks=tuple(config.get("SECRET_KEY_FALLBACKS", ())),
        )

    def __repr__(self) -> str:
        return f"Settings(sync_mode={self.sync_mode!r}, backfill_days={self.backfill_days})"


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
