"""What an item's state means for this service: the rules that read Pluggy's item, and the one place
where its vocabularies meet ours (Pluggy's item status, the API's `sync_status`, how a sync run
ends, what a manual sync answers)."""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum

from models import Connection, RunStatus, SyncRun
from models.base import utcnow
from pluggy_client import ItemStatus, timestamp

from .results import ManualSyncStatus


class SyncStatus(StrEnum):
    """A connection's state as the API reports it (`sync_status`)."""

    UPDATED = "UPDATED"
    UPDATING = "UPDATING"
    OUTDATED = "OUTDATED"
    MFA_REQUIRED = "MFA_REQUIRED"
    USER_ACTION_REQUIRED = "USER_ACTION_REQUIRED"
    CREDENTIALS_REQUIRED = "CREDENTIALS_REQUIRED"
    CONSENT_EXPIRED = "CONSENT_EXPIRED"
    ERROR = "ERROR"


# Pluggy is still at work on the item: its state tells nothing yet.
ITEM_BUSY = (ItemStatus.UPDATING, ItemStatus.MERGING)
# Item statuses that only the user can move on (a code, an action, new credentials).
WAITING_FOR_USER = (ItemStatus.WAITING_USER_INPUT, ItemStatus.WAITING_USER_ACTION, ItemStatus.LOGIN_ERROR)
# An item update that ended without anything to fetch, and how its run closes (UPDATED ends by fetching).
# Both tables are looked up with the status stored on the connection, a plain string.
RUN_OUTCOME: dict[str, RunStatus] = {
    ItemStatus.WAITING_USER_INPUT: RunStatus.MFA_REQUIRED,
    ItemStatus.WAITING_USER_ACTION: RunStatus.USER_ACTION_REQUIRED,
    ItemStatus.LOGIN_ERROR: RunStatus.CREDENTIALS_REQUIRED,
    ItemStatus.OUTDATED: RunStatus.ERROR,
}
# The item's status, as the API's sync_status (any other: ERROR).
SYNC_STATUS: dict[str, SyncStatus] = {
    ItemStatus.UPDATED: SyncStatus.UPDATED,
    ItemStatus.OUTDATED: SyncStatus.OUTDATED,
    ItemStatus.WAITING_USER_INPUT: SyncStatus.MFA_REQUIRED,
    ItemStatus.WAITING_USER_ACTION: SyncStatus.USER_ACTION_REQUIRED,
    ItemStatus.LOGIN_ERROR: SyncStatus.CREDENTIALS_REQUIRED,
}
# A closed run, told as a manual sync's answer (an open one: SYNC_STARTED).
RUN_ANSWER = {
    RunStatus.SUCCESS: ManualSyncStatus.SUCCESS,
    RunStatus.PARTIAL: ManualSyncStatus.SUCCESS,
    RunStatus.MFA_REQUIRED: ManualSyncStatus.MFA_REQUIRED,
    RunStatus.USER_ACTION_REQUIRED: ManualSyncStatus.USER_ACTION_REQUIRED,
    RunStatus.CREDENTIALS_REQUIRED: ManualSyncStatus.CREDENTIALS_REQUIRED,
    RunStatus.ERROR: ManualSyncStatus.ERROR,
}
# A manual sync whose item update Pluggy refused: how its run closes.
REFUSED_RUN_STATUS = {ManualSyncStatus.CREDENTIALS_REQUIRED: RunStatus.CREDENTIALS_REQUIRED}

# An item reported UPDATED but not re-synced since our PATCH has probably not started that update;
# after this long, its state is taken as the outcome all the same.
START_GRACE = timedelta(minutes=2)


def sync_status(connection: Connection, open_run: SyncRun | None = None) -> SyncStatus:
    """The connection's state in the words of the API, from the item's status and our open run."""
    status = connection.item_status
    if status in ITEM_BUSY or (status in (ItemStatus.UPDATED, ItemStatus.OUTDATED) and open_run is not None):
        return SyncStatus.UPDATING
    if status not in WAITING_FOR_USER and consent_withheld(connection):
        return SyncStatus.CONSENT_EXPIRED
    return SYNC_STATUS.get(status or "", SyncStatus.ERROR)


def consent_withheld(connection: Connection, now: datetime | None = None) -> bool:
    """Has the item's Open Finance consent been revoked or run out, as last read? Pluggy then answers
    every data route with empty data until the user renews it through the Connect widget."""
    if connection.consent_revoked_at is not None:
        return True
    expires_at = connection.consent_expires_at
    return expires_at is not None and expires_at <= (now or utcnow())


def answers(item: dict, run: SyncRun) -> bool:
    """Does the item's state tell the outcome of this run? Not while Pluggy is busy, and not when an
    UPDATED item has not synced since we asked it to: that is the previous update's result."""
    if item.get("status") in ITEM_BUSY:
        return False
    requested = run.item_update_requested_at
    if item.get("status") != ItemStatus.UPDATED or requested is None:
        return True
    return updated_since(item, requested) or utcnow() - requested > START_GRACE


def updated_since(item: dict, moment: datetime) -> bool:
    last_updated = timestamp(item.get("lastUpdatedAt"))
    return last_updated is not None and last_updated >= moment


def has_collected(connection: Connection) -> bool:
    """Has Pluggy anything to give? Not for an item that never finished an update: a new item still
    waiting for its user's code, or whose first login failed."""
    return connection.item_status == ItemStatus.UPDATED or connection.last_updated_at is not None


def apply_item(connection: Connection, item: dict) -> None:
    """Mirror Pluggy's item onto the connection. The payload is Pluggy's answer, never a webhook's."""
    connector = item.get("connector") or {}
    error = item.get("error") or {}
    connection.connector_id = connector.get("id")
    connection.connector_name = connector.get("name")
    connection.client_user_id = item.get("clientUserId", connection.client_user_id)
    connection.item_status = item.get("status")
    connection.execution_status = item.get("executionStatus")
    connection.status_detail = item.get("statusDetail")
    connection.products = item.get("products", connection.products)
    connection.error_code = error.get("code")
    connection.error_message = error.get("message")
    # A prompt or an action only means something while the item is waiting for it.
    status = item.get("status")
    connection.mfa_parameter = item.get("parameter") if status == ItemStatus.WAITING_USER_INPUT else None
    connection.user_action = item.get("userAction") if status == ItemStatus.WAITING_USER_ACTION else None
    connection.last_updated_at = timestamp(item.get("lastUpdatedAt"))
    connection.next_auto_sync_at = timestamp(item.get("nextAutoSyncAt"))
    connection.consent_expires_at = timestamp(item.get("consentExpiresAt"))
    connection.open_finance = (
        bool(connector.get("isOpenFinance", connection.open_finance)) or connection.consent_expires_at is not None
    )
