"""Open Finance consents, and the rule that keeps what is stored when Pluggy withholds data.

An Open Finance item reads the institution under a consent its user gave (GET /consents?itemId=).
Once the consent has expired or been revoked, Pluggy's data routes answer *empty* data: empty
pages for every list (accounts, transactions, loans...), 404 for the identity. An empty answer then
means "not shown", never "deleted", so:

- every fetch reads the consent first (`refresh`), and a fetch that finds it ended reads nothing,
  writes nothing and closes its run `credentials_required` with the code `consent_expired`
  (`close_withheld`): the connection's sync_status says CONSENT_EXPIRED and a manual sync answers
  with an update-mode connect token, through which the user gives a new consent;
- the consent may still end between the first read and the last (Pluggy's answers then turn
  empty halfway): nothing is tombstoned for a missing row before the consent has been read again
  and found still granted (`still_granted`, called by every tombstoning step: the transactions'
  lookback window and the product readers, through `ProductContext.may_tombstone`). Consents do
  not come back by themselves (a renewal needs the user), so a consent granted after the rows
  were read was granted while they were read.

Items that are not Open Finance have no consent, and none of this applies to them.
"""

from __future__ import annotations

import logging

from models import Connection, RunStatus, SyncRun
from models.database import DbSession
from observability import logs, metrics
from pluggy_client import PluggyClient, PluggyNotFound, timestamp

from . import runs
from .item_state import consent_withheld

log = logging.getLogger(__name__)

CONSENT_EXPIRED = "consent_expired"  # the error code of a run closed for want of consent
CONSENT_EXPIRED_MESSAGE = (
    "The Open Finance consent of this connection has expired or was revoked: Pluggy shares no data until "
    "the user renews it through the Connect widget (update mode). Everything stored is kept."
)


def under_consent(connection: Connection) -> bool:
    """Does the item read under an Open Finance consent?"""
    return bool(connection.open_finance or connection.consent_id or connection.consent_expires_at)


def refresh(session: DbSession, client: PluggyClient, connection: Connection) -> bool:
    """Read the item's consent from Pluggy onto the connection (committed) and answer whether
    Pluggy withholds the item's data now. False at once for an item without a consent."""
    if not under_consent(connection):
        return False
    try:
        found = client.list_consents(connection.item_id)
    except PluggyNotFound:
        found = []  # Pluggy keeps no consent for it: the item's consentExpiresAt is all there is
    if found:
        apply_consent(connection, max(found, key=lambda consent: consent.get("createdAt") or ""))
    session.commit()
    return consent_withheld(connection)


def apply_consent(connection: Connection, consent: dict) -> None:
    """The item's current consent (the newest one: a renewal gives a new consent)."""
    connection.open_finance = True
    connection.consent_id = consent.get("id")
    connection.consent_granted_at = timestamp(consent.get("createdAt"))
    connection.consent_expires_at = timestamp(consent.get("expiresAt"))
    connection.consent_revoked_at = timestamp(consent.get("revokedAt"))
    connection.consent_products = consent.get("products")
    connection.consent_permissions = consent.get("openFinancePermissionsGranted")


def reason(connection: Connection) -> str:
    return "revoked" if connection.consent_revoked_at is not None else "expired"


def close_withheld(
    session: DbSession, connection: Connection, run: SyncRun, *, found: str | None = "before_fetch"
) -> SyncRun:
    """Close a fetch that found the consent ended: before reading (nothing read, nothing changed;
    counted here), or while reading (`found=None`: counted when it was found, in `still_granted`)."""
    if found is not None:
        report_withheld(connection, found, "consent ended: nothing read, everything stored kept")
    return runs.close_run(
        session, run, RunStatus.CREDENTIALS_REQUIRED, error_code=CONSENT_EXPIRED, error=CONSENT_EXPIRED_MESSAGE
    )


def ended_during_fetch(connection: Connection) -> bool:
    """Did a read of the consent during the fetch (`still_granted`) find it ended? Then the fetch
    closes as one that found it ended, not as a success. No call to Pluggy: as last read."""
    return under_consent(connection) and consent_withheld(connection)


def still_granted(session: DbSession, client: PluggyClient, connection: Connection) -> bool:
    """May rows Pluggy no longer returns be taken for deleted? Only once the consent, read again
    now (after the rows), still stands. Always for an item without a consent."""
    if not refresh(session, client, connection):
        return True
    report_withheld(connection, "during_fetch", "consent ended during a fetch: rows missing from Pluggy's answers kept")
    return False


def report_withheld(connection: Connection, found: str, message: str) -> None:
    metrics.count_consent_withheld(reason(connection), found)
    logs.event(log, message, logging.WARNING, connection_id=connection.id, reason=reason(connection))
