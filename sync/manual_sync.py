"""The manual sync: first ask Pluggy to update the item (a plain re-read would only return what
Pluggy cached), then report what the item needs. The fetch itself happens when the update's outcome
is known: an `item/updated` webhook, or the watcher in poll mode and for `--wait`."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from config import Settings, SyncMode
from models import Account, Connection, RunStatus, RunTrigger, SyncRun
from models.base import utcnow
from models.database import DbSession
from pluggy_client import ItemStatus, PluggyClient, PluggyError, PluggyNotFound, PluggyRateLimited, timestamp

from . import consents, runs, scheduling
from .connections import BankConnectionService
from .item_state import ITEM_BUSY, REFUSED_RUN_STATUS, RUN_ANSWER, apply_item, consent_withheld
from .results import ClosedBy, ManualSyncResult, ManualSyncStatus

log = logging.getLogger(__name__)

DEFAULT_RETRY_AFTER = 60.0


class ManualSync:
    """A user's "sync now", from the API or the command line."""

    def __init__(self, session: DbSession, client: PluggyClient, settings: Settings) -> None:
        self.session = session
        self.client = client
        self.settings = settings
        self.connections = BankConnectionService(session, client, settings)

    def sync_transactions(
        self, connection: Connection, account: Account | None = None, trigger_update: bool = True
    ) -> ManualSyncResult:
        """The seed's entry point. With trigger_update, ask Pluggy to update the item first (once,
        whatever the number of accounts) and fetch when the outcome arrives; without it, queue a
        re-read of what Pluggy already has, for one account or all of them. Either way the fetch
        runs in the worker, into the run returned."""
        if trigger_update:
            return self.trigger_manual_sync(connection)
        if consent_withheld(connection):
            # Pluggy answers empty data until the user renews the consent: a re-read brings nothing.
            return self.credentials_required(connection, consent_ended=True)
        runs.let_go_of_stale_run(self.session, connection, self.settings.watch_timeout_s)
        try:
            run = runs.open_run(self.session, connection, RunTrigger.MANUAL)
        except runs.AlreadySyncing as exc:
            return ManualSyncResult(ManualSyncStatus.ALREADY_SYNCING, connection, sync_run=exc.run)
        scheduling.queue_reread(self.session, connection, account.pluggy_id if account else None)
        self.session.commit()
        return ManualSyncResult(ManualSyncStatus.SYNC_STARTED, connection, sync_run=run)

    def sync_all_accounts_transactions(self, connection: Connection, trigger_update: bool = True) -> ManualSyncResult:
        """One item update for the whole connection, never one per account, then every account."""
        return self.sync_transactions(connection, None, trigger_update)

    def trigger_manual_sync(self, connection: Connection, *, trigger: str = RunTrigger.MANUAL) -> ManualSyncResult:
        runs.let_go_of_stale_run(self.session, connection, self.settings.watch_timeout_s)
        open_run = runs.find_open_run(self.session, connection.id)
        if open_run is not None and open_run.status == RunStatus.RUNNING:  # the worker is fetching
            return ManualSyncResult(ManualSyncStatus.ALREADY_SYNCING, connection, sync_run=open_run)
        try:
            item = self.connections.refresh_item(connection)
        except PluggyError as exc:
            if open_run is not None:
                return ManualSyncResult(ManualSyncStatus.ALREADY_SYNCING, connection, sync_run=open_run)
            return self.refused(connection, exc)
        open_run = self.connections.close_settled_run(connection, item)
        if open_run is not None:
            return ManualSyncResult(ManualSyncStatus.ALREADY_SYNCING, connection, sync_run=open_run)

        status = item.get("status")
        if status in ITEM_BUSY:
            return ManualSyncResult(ManualSyncStatus.ALREADY_SYNCING, connection)
        if status == ItemStatus.WAITING_USER_INPUT:
            return ManualSyncResult(ManualSyncStatus.MFA_REQUIRED, connection)
        if status == ItemStatus.WAITING_USER_ACTION:
            return ManualSyncResult(ManualSyncStatus.USER_ACTION_REQUIRED, connection)
        if status == ItemStatus.LOGIN_ERROR:
            return self.credentials_required(connection)
        if consent_withheld(connection):
            # Nothing an update could bring until the user renews the consent (refresh_item has
            # read it again): the widget in update mode does that.
            return self.credentials_required(connection, consent_ended=True)
        return self.update_item(connection, trigger)

    def update_item(self, connection: Connection, trigger: str) -> ManualSyncResult:
        """PATCH the item (once, whatever the concurrency) and leave a run waiting for the outcome."""
        try:
            run = runs.reserve_item_update(
                self.session, connection, trigger, per_minute=self.settings.item_updates_per_minute
            )
        except runs.AlreadySyncing as exc:
            return ManualSyncResult(ManualSyncStatus.ALREADY_SYNCING, connection, sync_run=exc.run)
        except runs.Throttled as exc:
            return ManualSyncResult(ManualSyncStatus.RATE_LIMITED, connection, retry_after=exc.retry_after)

        try:
            item = self.client.trigger_item_update(connection.item_id)
        except PluggyError as exc:
            result = self.refused(connection, exc, run=run)
            if result.status == ManualSyncStatus.ALREADY_SYNCING:
                runs.accept_item_update(run)  # Pluggy is on an update already: its outcome is the run's
                self.session.commit()
            else:
                runs.close_run(
                    self.session,
                    run,
                    REFUSED_RUN_STATUS.get(result.status, RunStatus.ERROR),
                    error_code=exc.code_description,
                    error=str(exc),
                )
                result.sync_run = None
            return result
        apply_item(connection, item)
        runs.accept_item_update(run)
        closed_by = ClosedBy.WEBHOOK
        if self.settings.sync_mode == SyncMode.POLL:
            scheduling.queue_watch(self.session, run, connection, after_s=self.settings.watch_interval_s)
            closed_by = ClosedBy.WATCHER
        self.session.commit()
        return ManualSyncResult(ManualSyncStatus.SYNC_STARTED, connection, sync_run=run, closed_by=closed_by)

    def refused(self, connection: Connection, exc: PluggyError, *, run: SyncRun | None = None) -> ManualSyncResult:
        """What a refusal or failure from Pluggy means for the caller."""
        code = exc.code_description
        data = exc.data if isinstance(exc.data, dict) else {}
        if isinstance(exc, PluggyRateLimited):
            return ManualSyncResult(
                ManualSyncStatus.RATE_LIMITED, connection, retry_after=exc.retry_after or DEFAULT_RETRY_AFTER
            )
        if code == "CLIENT_IS_UPDATING_BEFORE_ALLOWED_FREQUENCY":
            return ManualSyncResult(ManualSyncStatus.RATE_LIMITED, connection, retry_after=allowed_again_in(data))
        if code == "TOO_MANY_CONSECUTIVE_ERRORS":
            return ManualSyncResult(
                ManualSyncStatus.RATE_LIMITED, connection, retry_after=seconds_until(data.get("canRetryAfterDate"))
            )
        if code in ("CONNECTOR_REQUIRED_PARAMETER_VALIDATION_ERROR", "TOO_MANY_CONSECUTIVE_LOGIN_FAILURES"):
            return self.credentials_required(connection)
        if code == "ITEM_ALREADY_UPDATING":
            # Pluggy is updating the item anyway: our run waits for that update's outcome.
            return ManualSyncResult(ManualSyncStatus.ALREADY_SYNCING, connection, sync_run=run)
        if isinstance(exc, PluggyNotFound):
            return ManualSyncResult(
                ManualSyncStatus.ERROR, connection, error={"code": "item_not_found", "message": str(exc)}
            )
        log.warning("manual sync of connection %s failed: %s", connection.id, exc)
        return ManualSyncResult(
            ManualSyncStatus.ERROR, connection, error={"code": code or "pluggy_unavailable", "message": str(exc)}
        )

    def credentials_required(self, connection: Connection, *, consent_ended: bool = False) -> ManualSyncResult:
        try:
            token = self.connections.connect_token(connection.user, connection)
        except PluggyError as exc:
            log.warning("no connect token for connection %s: %s", connection.id, exc)
            token = None
        error = (
            {"code": consents.CONSENT_EXPIRED, "message": consents.CONSENT_EXPIRED_MESSAGE} if consent_ended else None
        )
        return ManualSyncResult(ManualSyncStatus.CREDENTIALS_REQUIRED, connection, connect_token=token, error=error)

    def follow(self, connection: Connection, result: ManualSyncResult, wait_s: float) -> ManualSyncResult:
        """Wait up to `wait_s` for a started sync to finish, and say how it ended.
        The worker does the following (a watcher is queued, so no webhook is needed)."""
        run = result.sync_run
        if result.status != ManualSyncStatus.SYNC_STARTED or run is None or wait_s <= 0:
            return result
        if run.item_update_requested_at is not None:
            scheduling.queue_watch(self.session, run, connection)
            self.session.commit()
        run = runs.wait_until_closed(self.session, run, wait_s)
        self.session.refresh(connection)
        result = self.outcome_of(connection, run)
        if result.status == ManualSyncStatus.SYNC_STARTED:
            result.closed_by = ClosedBy.WATCHER
        return result

    def outcome_of(self, connection: Connection, run: SyncRun) -> ManualSyncResult:
        """A finished (or still open) run, told as a manual sync result."""
        answer = RUN_ANSWER.get(RunStatus(run.status))
        if answer is None:
            return ManualSyncResult(ManualSyncStatus.SYNC_STARTED, connection, sync_run=run)
        if answer == ManualSyncStatus.CREDENTIALS_REQUIRED:
            result = self.credentials_required(connection, consent_ended=run.error_code == consents.CONSENT_EXPIRED)
            result.sync_run = run
            return result
        error = None
        if answer == ManualSyncStatus.ERROR:
            error = {"code": run.error_code or "sync_failed", "message": run.error or "The sync failed."}
        return ManualSyncResult(answer, connection, sync_run=run, error=error)


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
