"""Bank connections (Pluggy items): registering one, MFA, status, Connect tokens, deleting one, and
settling the outcome of an item update (closing its run, or fetching into it)."""

from __future__ import annotations

import contextlib
import logging

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from config import Settings, SyncMode
from models import Account, Connection, RunStatus, RunTrigger, SyncRun, User
from models.base import utcnow
from models.connection import DeletedReason
from models.database import DbSession
from pluggy_client import ConnectToken, ItemStatus, PluggyClient, PluggyNotFound

from . import consents, removal, runs, scheduling
from .item_state import ITEM_BUSY, RUN_OUTCOME, answers, apply_item, has_collected, updated_since
from .tokens import client_user_id, user_id_named_by, webhook_url
from .transactions import Progress, TransactionService, ignore

log = logging.getLogger(__name__)


class ConnectionRefusal(Exception):
    """Base of the refusals the callers turn into answers."""


class ItemOwnedByAnotherUser(ConnectionRefusal):
    pass


class MfaNotRequired(ConnectionRefusal):
    pass


class MfaValueRequired(ConnectionRefusal):
    pass


class BankConnectionService:
    def __init__(self, session: DbSession, client: PluggyClient, settings: Settings) -> None:
        self.session = session
        self.client = client
        self.settings = settings

    # Registering ---------------------------------------------------------------------------

    def register(self, user: User, item_id: str) -> tuple[Connection, bool]:
        """The user's connection for a Pluggy item, created (first sync queued) if new.
        Raises PluggyNotFound if Pluggy does not know the item, ItemOwnedByAnotherUser if another
        user registered it or its clientUserId names another user."""
        existing = self.by_item_id(item_id)
        if existing is not None and existing.deleted_at is None and existing.user_id == user.id:
            return existing, False
        # Asked for another user's item too: an answer as slow as for an unknown item does not tell it exists.
        item = self.client.get_item(item_id)
        self.refuse_another_users_item(item, user)
        if existing is not None:
            return self.revive(self.owned(existing, user), item), True
        connection = Connection(user_id=user.id, item_id=item["id"])
        apply_item(connection, item)
        self.session.add(connection)
        try:
            self.session.flush()
        except IntegrityError:
            self.session.rollback()  # registered by a concurrent request a moment ago
            concurrent = self.by_item_id(item_id)
            if concurrent is None:
                raise  # not that: another constraint refused the row
            return self.owned(concurrent, user), False
        scheduling.queue_initial_sync(self.session, connection)
        self.session.commit()
        return connection, True

    def refuse_another_users_item(self, item: dict, user: User) -> None:
        """An item made through a connect token of this service names its owner (clientUserId): no
        one else may adopt it by its id. An item without a clientUserId, or with one this service
        never hands out, or naming no user of this service, names no owner here and may be registered."""
        named = user_id_named_by(item.get("clientUserId"))
        if named is not None and named != user.id and self.session.get(User, named) is not None:
            raise ItemOwnedByAnotherUser(item.get("id"))

    def revive(self, connection: Connection, item: dict) -> Connection:
        """A connection marked deleted whose item Pluggy knows again: a fresh start, history kept."""
        removal.revived(connection)
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

    def delete(self, connection: Connection) -> None:
        """Delete the item at Pluggy, then its copied data here at once (the user asked); the
        connection stays as a tombstone (`user_request`). A removal job is queued too: it runs
        under the item's lock, after any fetch of the item still writing, and removes what it wrote.
        The request is written first: a worker that learns of the deletion from Pluggy before this
        commits (its `item/deleted`, a 404) names the tombstone as the user's."""
        connection.deletion_requested_at = utcnow()
        self.session.commit()
        try:
            with contextlib.suppress(PluggyNotFound):  # already gone at Pluggy: only our copy is left to delete
                self.client.delete_item(connection.item_id)
        except Exception:
            connection.deletion_requested_at = None  # the API answers that nothing was deleted
            self.session.commit()
            raise
        removal.mark_deleted(self.session, connection, DeletedReason.USER_REQUEST, self.settings)
        self.session.commit()
        removal.remove_copied_data(self.session, connection)

    # MFA, status, connect tokens -------------------------------------------------------------

    def send_mfa(self, connection: Connection, *, value: str | None = None, parameters: dict | None = None) -> dict:
        """Answer the item's pending prompt. The value goes to Pluggy only: never stored or logged."""
        if not parameters and not value:
            raise MfaValueRequired()
        item = self.refresh_item(connection)
        if item.get("status") != ItemStatus.WAITING_USER_INPUT:
            raise MfaNotRequired()
        name = (item.get("parameter") or {}).get("name") or "token"
        item = self.client.send_mfa(connection.item_id, parameters or {name: value})
        apply_item(connection, item)
        self.session.commit()
        if self.settings.sync_mode == SyncMode.POLL:
            self.watch_after_input(connection)
        return item

    def watch_after_input(self, connection: Connection) -> None:
        run: SyncRun | None
        try:
            run = runs.open_run(self.session, connection, RunTrigger.MANUAL)
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
        # An Open Finance item's consent is part of its state: a revocation shows only in /consents.
        consents.refresh(self.session, self.client, connection)
        return item

    def connect_token(self, user: User, connection: Connection | None = None) -> ConnectToken:
        """A Connect widget token for the user; for a connection, in update mode for its item."""
        return self.client.create_connect_token(
            connection.item_id if connection else None,
            client_user_id=client_user_id(user),
            webhook_url=webhook_url(self.settings.public_base_url, self.settings.secret_key),
            # Pluggy then answers with the item the user already has at this institution instead of
            # creating another: duplicate items use up Open Finance quotas.
            avoid_duplicates=True,
            oauth_redirect_uri=self.settings.oauth_redirect_uri,
        )

    # Settling: the outcome of an item update ------------------------------------------------

    def close_settled_run(self, connection: Connection, item: dict) -> SyncRun | None:
        """The connection's open run, unless the item just read from Pluggy shows that the update it
        waits for is over, or never began: such a run is closed from the item (None is returned), or,
        when the update ended well but its webhook never came, its fetch is queued (the run is
        returned: the fetch closes it)."""
        run = runs.find_open_run(self.session, connection.id)
        if run is None or run.status != RunStatus.PENDING or run.item_update_requested_at is None:
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
                    RunStatus.ERROR,
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
        run succeeds only by fetching. While Pluggy is at work on such an item (its user just sent
        the code it waited for), the run stays open: the update's outcome settles it."""
        if not has_collected(connection) and connection.item_status in ITEM_BUSY:
            return run
        if not has_collected(connection):
            return runs.close_run(
                self.session,
                run,
                RUN_OUTCOME.get(connection.item_status or "", RunStatus.ERROR),
                error_code=connection.error_code,
                error=connection.error_message or "Pluggy has not finished an update of this item yet.",
            )
        service = TransactionService(self.session, self.client, self.settings, progress=progress, checkpoint=checkpoint)
        return service.fetch(connection, run, only_account=only_account)
