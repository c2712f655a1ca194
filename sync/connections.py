"""Bank connections (Pluggy items): registering one, the manual sync decision, MFA, status.

A manual sync first asks Pluggy to update the item (a plain re-read would only return what Pluggy
cached), then reports what the item needs. The fetch itself happens when the update's outcome is
known: an `item/updated` webhook, or the watcher in poll mode and for `--wait`.
"""

from __future__ import annotations

import contextlib
import logging
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from config import Settings
from models import Account, Connection, SyncRun, User
from models.base import utcnow
from pluggy_client import ConnectToken, PluggyClient, PluggyError, PluggyNotFound, PluggyRateLimited

from . import runs, scheduling
from .results import (
    ALREADY_SYNCING,
    CREDENTIALS_REQUIRED,
    ERROR,
    MFA_REQUIRED,
    RATE_LIMITED,
    SUCCESS,
    SYNC_STARTED,
    USER_ACTION_REQUIRED,
    WATCHER,
    WEBHOOK,
    ManualSyncResult,
)
from .tokens import webhook_url
from .transactions import Progress, TransactionService, ignore, timestamp

log = logging.getLogger(__name__)

ITEM_BUSY = ("UPDATING", "MERGING")
DEFAULT_RETRY_AFTER = 60.0
# An item reported UPDATED but not re-synced since our PATCH has probably not started that update;
# after this long, its state is taken as the outcome all the same.
START_GRACE = timedelta(minutes=2)

# Item statuses that only the user can move on (a code, an action, new credentials).
WAITING_FOR_USER = ("WAITING_USER_INPUT", "WAITING_USER_ACTION", "LOGIN_ERROR")
# A settled item's status -> how its open run ends (UPDATED ends by fetching).
RUN_OUTCOME = {
    "WAITING_USER_INPUT": "mfa_required",
    "WAITING_USER_ACTION": "user_action_required",
    "LOGIN_ERROR": "credentials_required",
    "OUTDATED": "error",
}


class ConnectionRefusal(Exception):
    """Base of the refusals the callers turn into answers."""


class ItemOwnedByAnotherUser(ConnectionRefusal):
    pass


class MfaNotRequired(ConnectionRefusal):
    pass


class MfaValueRequired(ConnectionRefusal):
    pass


def sync_status(connection: Connection, open_run: SyncRun | None = None) -> str:
    """The connection's state in the words of API.md, from the item's status and our open run."""
    status = connection.item_status
    if status in ITEM_BUSY or (status in ("UPDATED", "OUTDATED") and open_run is not None):
        return "UPDATING"
    return {
        "UPDATED": "UPDATED",
        "OUTDATED": "OUTDATED",
        "WAITING_USER_INPUT": "MFA_REQUIRED",
        "WAITING_USER_ACTION": "USER_ACTION_REQUIRED",
        "LOGIN_ERROR": "CREDENTIALS_REQUIRED",
    }.get(status, "ERROR")


def answers(item: dict, run: SyncRun) -> bool:
    """Does the item's state tell the outcome of this run? Not while Pluggy is busy, and not when an
    UPDATED item has not synced since we asked it to: that is the previous update's result."""
    if item.get("status") in ITEM_BUSY:
        return False
    requested = run.item_update_requested_at
    if item.get("status") != "UPDATED" or requested is None:
        return True
    return updated_since(item, requested) or utcnow() - requested > START_GRACE


def updated_since(item: dict, moment: datetime) -> bool:
    last_updated = timestamp(item.get("lastUpdatedAt"))
    return last_updated is not None and last_updated >= moment


def has_collected(connection: Connection) -> bool:
    """Has Pluggy anything to give? Not for an item that never finished an update: a new item still
    waiting for its user's code, or whose first login failed."""
    return connection.item_status == "UPDATED" or connection.last_updated_at is not None


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
    connection.error_code = error.get("code")
    connection.error_message = error.get("message")
    # A prompt or an action only means something while the item is waiting for it.
    status = item.get("status")
    connection.mfa_parameter = item.get("parameter") if status == "WAITING_USER_INPUT" else None
    connection.user_action = item.get("userAction") if status == "WAITING_USER_ACTION" else None
    connection.last_updated_at = timestamp(item.get("lastUpdatedAt"))
    connection.next_auto_sync_at = timestamp(item.get("nextAutoSyncAt"))
    connection.consent_expires_at = timestamp(item.get("consentExpiresAt"))


class BankConnectionService:
    def __init__(self, session: Session, client: PluggyClient, settings: Settings) -> None:
        self.session = session
        self.client = client
        self.settings = settings

    # Registering ---------------------------------------------------------------------------

    def register(self, user: User, item_id: str) -> tuple[Connection, bool]:
        """The user's connection for a Pluggy item, created (first sync queued) if new.
        Raises PluggyNotFound if Pluggy does not know the item, ItemOwnedByAnotherUser."""
        existing = self.by_item_id(item_id)
        if existing is not None and existing.deleted_at is None and existing.user_id == user.id:
            return existing, False
        # Asked for another user's item too: an answer as slow as for an unknown item does not tell it exists.
        item = self.client.get_item(item_id)
        if existing is not None:
            return self.revive(self.owned(existing, user), item), True
        connection = Connection(user_id=user.id, item_id=item["id"])
        apply_item(connection, item)
        self.session.add(connection)
        try:
            self.session.flush()
        except IntegrityError:
            self.session.rollback()  # registered by a concurrent request a moment ago
            return self.owned(self.by_item_id(item_id), user), False
        scheduling.queue_initial_sync(self.session, connection)
        self.session.commit()
        return connection, True

    def revive(self, connection: Connection, item: dict) -> Connection:
        """A connection marked deleted whose item Pluggy knows again: a fresh start, history kept."""
        connection.deleted_at = None
        apply_item(connection, item)
        scheduling.queue_initial_sync(self.session, connection)
        self.session.commit()
        return connection

    def by_item_id(self, item_id: str) -> Connection | None:
        return self.session.scalars(sa.select(Connection).where(Connection.item_id == item_id)).one_or_none()

    @staticmethod
    def owned(connection: Connection, user: User) -> Connection:
        if connection.user_id != user.id:
            raise ItemOwnedByAnotherUser(connection.item_id)
        return connection

    # Manual sync ---------------------------------------------------------------------------

    def trigger_manual_sync(self, connection: Connection, *, trigger: str = "manual") -> ManualSyncResult:
        runs.let_go_of_stale_run(self.session, connection, self.settings.watch_timeout_s)
        open_run = runs.find_open_run(self.session, connection.id)
        if open_run is not None and open_run.status == "running":
            return ManualSyncResult(ALREADY_SYNCING, connection, sync_run=open_run)  # the worker is fetching
        try:
            item = self.refresh_item(connection)
        except PluggyError as exc:
            if open_run is not None:
                return ManualSyncResult(ALREADY_SYNCING, connection, sync_run=open_run)
            return self.refused(connection, exc)
        open_run = self.close_settled_run(connection, item)
        if open_run is not None:
            return ManualSyncResult(ALREADY_SYNCING, connection, sync_run=open_run)

        status = item.get("status")
        if status in ITEM_BUSY:
            return ManualSyncResult(ALREADY_SYNCING, connection)
        if status == "WAITING_USER_INPUT":
            return ManualSyncResult(MFA_REQUIRED, connection)
        if status == "WAITING_USER_ACTION":
            return ManualSyncResult(USER_ACTION_REQUIRED, connection)
        if status == "LOGIN_ERROR":
            return self.credentials_required(connection)
        return self.update_item(connection, trigger)

    def close_settled_run(self, connection: Connection, item: dict) -> SyncRun | None:
        """The connection's open run, unless the item just read from Pluggy shows that the update it
        waits for is over, or never began: such a run is closed from the item (None is returned), or,
        when the update ended well but its webhook never came, its fetch is queued (the run is
        returned: the fetch closes it)."""
        run = runs.find_open_run(self.session, connection.id)
        if run is None or run.status != "pending" or run.item_update_requested_at is None:
            return run  # a fetch under way, or a run whose job is queued: it closes on its own
        status = item.get("status")
        if status in ITEM_BUSY:
            return run
        if run.item_update_accepted_at is None:
            # The PATCH is on its way (the item still shows the state before it), or it never left.
            if runs.update_never_reached_pluggy(run) and not updated_since(item, run.item_update_requested_at):
                runs.close_run(
                    self.session,
                    run,
                    "error",
                    error_code="item_update_not_sent",
                    error="The item update never reached Pluggy.",
                )
                return None
            return run
        if not answers(item, run):
            return run
        if status in RUN_OUTCOME:
            runs.close_run(
                self.session, run, RUN_OUTCOME[status], error_code=connection.error_code, error=connection.error_message
            )
            return None
        scheduling.queue_fetch(self.session, connection, run.trigger)
        self.session.commit()
        return run

    def update_item(self, connection: Connection, trigger: str) -> ManualSyncResult:
        """PATCH the item (once, whatever the concurrency) and leave a run waiting for the outcome."""
        try:
            run = runs.reserve_item_update(
                self.session, connection, trigger, per_minute=self.settings.item_updates_per_minute
            )
        except runs.AlreadySyncing as exc:
            return ManualSyncResult(ALREADY_SYNCING, connection, sync_run=exc.run)
        except runs.Throttled as exc:
            return ManualSyncResult(RATE_LIMITED, connection, retry_after=exc.retry_after)

        try:
            item = self.client.trigger_item_update(connection.item_id)
        except PluggyError as exc:
            result = self.refused(connection, exc, run=run)
            if result.status == ALREADY_SYNCING:
                runs.accept_item_update(run)  # Pluggy is on an update already: its outcome is the run's
                self.session.commit()
            else:
                runs.close_run(
                    self.session, run, run_status_for(result.status), error_code=exc.code_description, error=str(exc)
                )
                result.sync_run = None
            return result
        apply_item(connection, item)
        runs.accept_item_update(run)
        closed_by = WEBHOOK
        if self.settings.sync_mode == "poll":
            scheduling.queue_watch(self.session, run, connection, after_s=self.settings.watch_interval_s)
            closed_by = WATCHER
        self.session.commit()
        return ManualSyncResult(SYNC_STARTED, connection, sync_run=run, closed_by=closed_by)

    def refused(self, connection: Connection, exc: PluggyError, *, run: SyncRun | None = None) -> ManualSyncResult:
        """What a refusal or failure from Pluggy means for the caller."""
        code = exc.code_description
        data = exc.data if isinstance(exc.data, dict) else {}
        if isinstance(exc, PluggyRateLimited):
            return ManualSyncResult(RATE_LIMITED, connection, retry_after=exc.retry_after or DEFAULT_RETRY_AFTER)
        if code == "CLIENT_IS_UPDATING_BEFORE_ALLOWED_FREQUENCY":
            return ManualSyncResult(RATE_LIMITED, connection, retry_after=allowed_again_in(data))
        if code == "TOO_MANY_CONSECUTIVE_ERRORS":
            return ManualSyncResult(RATE_LIMITED, connection, retry_after=seconds_until(data.get("canRetryAfterDate")))
        if code in ("CONNECTOR_REQUIRED_PARAMETER_VALIDATION_ERROR", "TOO_MANY_CONSECUTIVE_LOGIN_FAILURES"):
            return self.credentials_required(connection)
        if code == "ITEM_ALREADY_UPDATING":
            # Pluggy is updating the item anyway: our run waits for that update's outcome.
            return ManualSyncResult(ALREADY_SYNCING, connection, sync_run=run)
        if isinstance(exc, PluggyNotFound):
            return ManualSyncResult(ERROR, connection, error={"code": "item_not_found", "message": str(exc)})
        log.warning("manual sync of connection %s failed: %s", connection.id, exc)
        return ManualSyncResult(ERROR, connection, error={"code": code or "pluggy_unavailable", "message": str(exc)})

    def credentials_required(self, connection: Connection) -> ManualSyncResult:
        try:
            token = self.connect_token(connection.user, connection)
        except PluggyError as exc:
            log.warning("no connect token for connection %s: %s", connection.id, exc)
            token = None
        return ManualSyncResult(CREDENTIALS_REQUIRED, connection, connect_token=token)

    def follow(self, connection: Connection, result: ManualSyncResult, wait_s: float) -> ManualSyncResult:
        """Wait up to `wait_s` for a started sync to finish, and say how it ended.
        The worker does the following (a watcher is queued, so no webhook is needed)."""
        run = result.sync_run
        if result.status != SYNC_STARTED or run is None or wait_s <= 0:
            return result
        if run.item_update_requested_at is not None:
            scheduling.queue_watch(self.session, run, connection)
            self.session.commit()
        run = runs.wait_until_closed(self.session, run, wait_s)
        self.session.refresh(connection)
        result = self.outcome_of(connection, run)
        if result.status == SYNC_STARTED:
            result.closed_by = WATCHER
        return result

    def outcome_of(self, connection: Connection, run: SyncRun) -> ManualSyncResult:
        """A finished (or still open) run, told as a manual sync result."""
        if run.status in ("success", "partial"):
            return ManualSyncResult(SUCCESS, connection, sync_run=run)
        if run.status == "mfa_required":
            return ManualSyncResult(MFA_REQUIRED, connection, sync_run=run)
        if run.status == "user_action_required":
            return ManualSyncResult(USER_ACTION_REQUIRED, connection, sync_run=run)
        if run.status == "credentials_required":
            result = self.credentials_required(connection)
            result.sync_run = run
            return result
        if run.status == "error":
            error = {"code": run.error_code or "sync_failed", "message": run.error or "The sync failed."}
            return ManualSyncResult(ERROR, connection, sync_run=run, error=error)
        return ManualSyncResult(SYNC_STARTED, connection, sync_run=run)

    def delete(self, connection: Connection) -> None:
        """Delete the item at Pluggy, then everything stored about it here."""
        with contextlib.suppress(PluggyNotFound):  # already gone at Pluggy: only our copy is left to delete
            self.client.delete_item(connection.item_id)
        self.session.delete(connection)
        self.session.commit()

    # MFA, status, connect tokens -------------------------------------------------------------

    def send_mfa(self, connection: Connection, *, value: str | None = None, parameters: dict | None = None) -> dict:
        """Answer the item's pending prompt. The value goes to Pluggy only: never stored or logged."""
        if not parameters and not value:
            raise MfaValueRequired()
        item = self.refresh_item(connection)
        if item.get("status") != "WAITING_USER_INPUT":
            raise MfaNotRequired()
        name = (item.get("parameter") or {}).get("name") or "token"
        item = self.client.send_mfa(connection.item_id, parameters or {name: value})
        apply_item(connection, item)
        self.session.commit()
        if self.settings.sync_mode == "poll":
            self.watch_after_input(connection)
        return item

    def watch_after_input(self, connection: Connection) -> None:
        try:
            run = runs.open_run(self.session, connection, "manual")
        except runs.AlreadySyncing as exc:
            run = exc.run
        if run is not None:
            scheduling.queue_watch(self.session, run, connection, after_s=self.settings.watch_interval_s)
            self.session.commit()

    def check_status(self, connection: Connection) -> Connection:
        """The item read fresh from Pluggy, which also closes a run whose outcome it shows."""
        self.close_settled_run(connection, self.refresh_item(connection))
        return connection

    def refresh_item(self, connection: Connection) -> dict:
        item = self.client.get_item(connection.item_id)
        apply_item(connection, item)
        self.session.commit()
        return item

    def connect_token(self, user: User, connection: Connection | None = None) -> ConnectToken:
        """A Connect widget token for the user; for a connection, in update mode for its item."""
        return self.client.create_connect_token(
            connection.item_id if connection else None,
            client_user_id=str(user.id),
            webhook_url=webhook_url(self.settings.public_base_url, self.settings.secret_key),
        )

    # Settling: the outcome of an item update ------------------------------------------------

    def settle(
        self,
        connection: Connection,
        item: dict,
        *,
        trigger: str,
        progress: Progress = ignore,
        checkpoint=ignore,
    ) -> SyncRun | None:
        """Close the open run (opening one if needed) according to the item Pluggy reports:
        fetch when UPDATED, record what the item needs otherwise. None while Pluggy is still busy."""
        apply_item(connection, item)
        self.session.commit()
        status = item.get("status")
        run = runs.find_open_run(self.session, connection.id)
        if status in ITEM_BUSY or (run is not None and not answers(item, run)):
            return None
        if status in RUN_OUTCOME:
            if run is None:
                return None
            return runs.close_run(
                self.session, run, RUN_OUTCOME[status], error_code=connection.error_code, error=connection.error_message
            )
        if run is None:
            fetched = runs.run_of_update(self.session, connection)
            if fetched is not None:
                return fetched  # this update is in already: a late or repeated signal of it
            run = runs.open_run(self.session, connection, trigger)
        return self.fetch(connection, run, progress=progress, checkpoint=checkpoint)

    def fetch(
        self,
        connection: Connection,
        run: SyncRun,
        *,
        only_account: Account | None = None,
        progress: Progress = ignore,
        checkpoint=ignore,
    ) -> SyncRun:
        """Fetch into the run, or, when Pluggy has nothing yet, close it with what the item needs: a
        run succeeds only by fetching."""
        if not has_collected(connection):
            return runs.close_run(
                self.session,
                run,
                RUN_OUTCOME.get(connection.item_status or "", "error"),
                error_code=connection.error_code,
                error=connection.error_message or "Pluggy has not finished an update of this item yet.",
            )
        service = TransactionService(self.session, self.client, self.settings, progress=progress, checkpoint=checkpoint)
        return service.fetch(connection, run, only_account=only_account)


def run_status_for(result_status: str) -> str:
    return {CREDENTIALS_REQUIRED: "credentials_required"}.get(result_status, "error")


def allowed_again_in(data: dict) -> float:
    """Seconds until Pluggy's minimum update interval has passed since the item's last update."""
    last = timestamp(data.get("lastUpdatedAt"))
    hours = data.get("minUpdateFrequencyAllowedInHours")
    if last is None or not isinstance(hours, (int, float)):
        return DEFAULT_RETRY_AFTER
    return max(1.0, (last + timedelta(hours=hours) - utcnow()).total_seconds())


def seconds_until(moment: str | None) -> float:
    when: datetime | None = timestamp(moment)
    if when is None:
        return DEFAULT_RETRY_AFTER
    return max(1.0, (when - utcnow()).total_seconds())
