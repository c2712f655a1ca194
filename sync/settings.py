"""What the sync layer needs from the configuration, as one value services can be handed."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class SyncSettings:
    backfill_days: int = 365
    lookback_days: int = 7
    sync_mode: str = "webhook"
    # Pluggy allows 20 PATCH /items per minute; we refuse before Pluggy has to.
    item_updates_per_minute: int = 20
    secret_key: str = ""
    public_base_url: str | None = None
    watch_interval_s: float = 5.0
    watch_timeout_s: float = 30 * 60
    sweep_interval_minutes: float = 15
    sweep_stale_hours: float = 6
    sweep_batch: int = 100

    @classmethod
    def from_config(cls, config: Mapping) -> SyncSettings:
        return cls(
            backfill_days=config["SYNC_BACKFILL_DAYS"],
            lookback_days=config["SYNC_LOOKBACK_DAYS"],
            sync_mode=config["SYNC_MODE"],
            item_updates_per_minute=config.get("SYNC_ITEM_UPDATES_PER_MINUTE", 20),
            secret_key=config["SECRET_KEY"],
            public_base_url=config.get("PUBLIC_BASE_URL"),
            watch_interval_s=config.get("SYNC_WATCH_INTERVAL_S", 5.0),
            watch_timeout_s=config["SYNC_WATCH_TIMEOUT_S"],
            sweep_interval_minutes=config["SYNC_SWEEP_INTERVAL_MINUTES"],
            sweep_stale_hours=config["SYNC_SWEEP_STALE_HOURS"],
        )

    def __repr__(self) -> str:
        return f"SyncSettings(sync_mode={self.sync_mode!r}, backfill_days={self.backfill_days})"
