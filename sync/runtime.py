"""The sync layer's collaborators, built from the running Flask app's configuration."""

from __future__ import annotations

from flask import current_app

from config import ConfigError, Settings
from pluggy_client import PluggyClient


def pluggy_client() -> PluggyClient:
    """The app's one Pluggy client (its API key and connect tokens are cached, so it is shared)."""
    clients = current_app.extensions
    if "pluggy_client" not in clients:
        config = current_app.config
        if not config.get("PLUGGY_CLIENT_ID") or not config.get("PLUGGY_CLIENT_SECRET"):
            raise ConfigError("PLUGGY_CLIENT_ID and PLUGGY_CLIENT_SECRET must be set to talk to Pluggy")
        clients["pluggy_client"] = PluggyClient(
            config["PLUGGY_BASE_URL"], config["PLUGGY_CLIENT_ID"], config["PLUGGY_CLIENT_SECRET"]
        )
    return clients["pluggy_client"]


def sync_settings() -> Settings:
    return Settings.from_config(current_app.config)
