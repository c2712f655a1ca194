"""Pluggy's products beyond accounts and transactions, read on every item update that fetches.

Each product has a module of its own (sync/bills.py, sync/investments.py, ...) with one reader
``read(context)``, listed in READERS. A reader reads only what the item offers (its `products`),
writes set-based, commits its own work and says how it treats rows Pluggy no longer returns.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from config import Settings
from models import Connection, SyncRun
from models.database import DbSession
from pluggy_client import PluggyClient

from . import bills, consents, identity, investments, loans


@dataclass(frozen=True)
class ProductContext:
    session: DbSession
    client: PluggyClient
    settings: Settings
    connection: Connection
    run: SyncRun
    # The job's checkpoint, called after each committed page: keeps the job's lease through a long
    # read (an investment's movements) and honours a stop request.
    checkpoint: Callable[..., None] = field(default=lambda **_: None)

    def offers(self, product: str) -> bool:
        """Whether the item collects ``product`` (Pluggy's names: CREDIT_CARDS, INVESTMENTS...)."""
        return product in (self.connection.products or [])

    def may_tombstone(self) -> bool:
        """May rows missing from what was just read be taken for deleted? Not once the item's
        Open Finance consent has ended (read again now): Pluggy then answers empty data
        (sync/consents.py). Ask after reading, and only when something would be tombstoned."""
        return consents.still_granted(self.session, self.client, self.connection)


ProductReader = Callable[[ProductContext], None]

READERS: tuple[ProductReader, ...] = (
    bills.read,  # credit-card bills: kept when Pluggy stops listing them
    investments.read,  # investments and their movements: tombstoned when a full list leaves them out
    identity.read,  # the item's owner: replaced, kept when Pluggy answers none
    loans.read,  # loans: tombstoned when a full list leaves them out
)


def read_products(context: ProductContext) -> None:
    for read in READERS:
        read(context)
