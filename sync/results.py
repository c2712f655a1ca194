"""What a manual sync answers: a status in the words of the API and what goes with it."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from models import Connection, SyncRun
from pluggy_client import ConnectToken


class ManualSyncStatus(StrEnum):
    """The outcomes of a manual sync (the API's `status`)."""

    SYNC_STARTED = "SYNC_STARTED"
    SUCCESS = "SUCCESS"
    ALREADY_SYNCING = "ALREADY_SYNCING"
    MFA_REQUIRED = "MFA_REQUIRED"
    USER_ACTION_REQUIRED = "USER_ACTION_REQUIRED"
    CREDENTIALS_REQUIRED = "CREDENTIALS_REQUIRED"
    RATE_LIMITED = "RATE_LIMITED"
    ERROR = "ERROR"


class ClosedBy(StrEnum):
    """What closes a started sync's run: Pluggy's item webhook (and, should none reach the service,
    the next manual sync or status check that reads the item), or the worker watching the item."""

    WEBHOOK = "webhook"
    WATCHER = "watcher"


@dataclass
class ManualSyncResult:
    status: ManualSyncStatus
    connection: Connection
    sync_run: SyncRun | None = None
    retry_after: float | None = None
    connect_token: ConnectToken | None = None
    error: dict | None = None
    closed_by: ClosedBy | None = None

    @property
    def mfa(self) -> dict | None:
        return self.connection.mfa_parameter if self.status == ManualSyncStatus.MFA_REQUIRED else None

    @property
    def user_action(self) -> dict | None:
        return self.connection.user_action if self.status == ManualSyncStatus.USER_ACTION_REQUIRED else None
