"""Linking a restated transaction to the row it replaces.

Pluggy restates a movement by deleting its transaction and creating another under a new id: a
PENDING card purchase that posts, a bank that re-reports a description or corrects an amount. An
app keeps its user's notes and categories across the change by following the links: the new row's
`replaces_id`, the old one's `replaced_by_id`.

`link_restatements(session, account_id)` runs whenever a step tombstoned or created rows in an
account, in either order and in different jobs alike (a `transactions/deleted` may come before or
after the `transactions/created` of the replacement). It pairs each recently tombstoned row without
a successor with a live, unlinked row of the same account that we stored recently and Pluggy
ingested after the old one, when:

- the dates are at most `DATE_TOLERANCE` apart (a card purchase authorised on a Friday posts on the
  Monday: three days), and
- the amounts are equal, or, for a restated amount, the dates are within a day, the sign is the
  same, the difference at most `AMOUNT_TOLERANCE` of the old amount (a tip added, a converted
  amount settled) and the descriptions nearly the same (`STRONG_SIMILARITY`), and
- the descriptions, normalised (case, accents, punctuation, spaces), are similar
  (difflib's ratio, at least `SIMILARITY`).

SQL selects the candidate pairs (an account's rows tombstoned or created in the last
`RECENT` only, through indexes); the descriptions are compared here. A pair is linked only when
each is the other's single best match: a tie (two identical purchases) links nothing, and is logged.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from collections import defaultdict
from datetime import timedelta
from decimal import Decimal
from difflib import SequenceMatcher
from typing import NamedTuple

import sqlalchemy as sa
from sqlalchemy.orm import aliased

from models import Transaction
from models.base import utcnow
from models.database import DbSession
from observability import logs

log = logging.getLogger(__name__)

# How long after a deletion (or a creation) its other half may arrive, and how far apart the two
# rows' dates may be: Pluggy sends both halves in one item update, a day's updates may split them,
# and a card authorised before a weekend posts after it.
RECENT = timedelta(days=3)
DATE_TOLERANCE_DAYS = 3
SIMILARITY = 0.6
STRONG_SIMILARITY = 0.9
AMOUNT_TOLERANCE = Decimal("0.2")


class Candidate(NamedTuple):
    old_id: int
    new_id: int
    old_description: str
    new_description: str
    old_amount: Decimal
    new_amount: Decimal
    days_apart: float


def link_restatements(session: DbSession, account_id: int) -> int:
    """Link the account's recent restatements; answers how many pairs it linked. Commits."""
    unlink_revived(session, account_id)
    pairs = choose(candidates(session, account_id), account_id)
    if pairs:
        table = Transaction.__table__
        connection = session.connection()
        connection.execute(
            table.update()
            .where(table.c.id == sa.bindparam("old"), table.c.replaced_by_id.is_(None))
            .values(replaced_by_id=sa.bindparam("new")),
            [{"old": old, "new": new} for old, new in pairs],
        )
        connection.execute(
            table.update()
            .where(table.c.id == sa.bindparam("new"), table.c.replaces_id.is_(None))
            .values(replaces_id=sa.bindparam("old")),
            [{"old": old, "new": new} for old, new in pairs],
        )
        logs.event(log, "restatements linked", account_id=account_id, linked=len(pairs))
    session.commit()
    return len(pairs)


def unlink_revived(session: DbSession, account_id: int) -> None:
    """A tombstoned row Pluggy returns again was not replaced after all: both links go."""
    ids = list(session.scalars(revived_rows(account_id)))
    if not ids:
        return
    session.execute(
        sa.update(Transaction)
        .where(Transaction.replaces_id.in_(ids))
        .values(replaces_id=None)
        .execution_options(synchronize_session=False)
    )
    session.execute(
        sa.update(Transaction)
        .where(Transaction.id.in_(ids))
        .values(replaced_by_id=None)
        .execution_options(synchronize_session=False)
    )


def revived_rows(account_id: int) -> sa.Select:
    """The account's live rows still linked to a replacement, found through the partial index of
    linked rows (a few): `account_id + 0` is no column, so SQLite, which has no statistics, cannot
    walk the account's whole history by its index instead, on every fetch."""
    return sa.select(Transaction.id).where(
        Transaction.account_id + 0 == account_id,
        Transaction.replaced_by_id.is_not(None),
        Transaction.deleted_at.is_(None),
    )


def candidates(session: DbSession, account_id: int) -> list[Candidate]:
    old, new = aliased(Transaction, name="old"), aliased(Transaction, name="new")
    since = utcnow() - RECENT
    apart = days_apart(session, new.date, old.date)
    same_sign = sa.or_(sa.and_(old.amount > 0, new.amount > 0), sa.and_(old.amount < 0, new.amount < 0))
    restated_amount = sa.and_(
        apart < 1,
        same_sign,
        sa.func.abs(new.amount - old.amount) <= sa.func.abs(old.amount) * sa.literal_column(str(AMOUNT_TOLERANCE)),
    )
    statement = (
        sa.select(old.id, new.id, old.description, new.description, old.amount, new.amount, apart)
        .join(new, new.account_id == old.account_id)
        .where(
            old.account_id == account_id,
            old.deleted_at >= since,
            old.replaced_by_id.is_(None),
            new.deleted_at.is_(None),
            new.replaces_id.is_(None),
            new.created_at >= since,
            new.created_at >= old.created_at,
            # A replacement is ingested by Pluggy after the row it replaces: rows ingested with the
            # old one (another bill of the same payee, paid that day) are not its replacement.
            sa.or_(
                new.pluggy_created_at.is_(None),
                old.pluggy_created_at.is_(None),
                new.pluggy_created_at > old.pluggy_created_at,
            ),
            within_days(session, new.date, old.date, DATE_TOLERANCE_DAYS),
            sa.or_(new.amount == old.amount, restated_amount),
        )
    )
    return [Candidate(*row) for row in session.execute(statement)]


def days_apart(session: DbSession, a, b) -> sa.ColumnElement:
    if session.get_bind().dialect.name == "postgresql":
        return sa.func.abs(sa.extract("epoch", a - b)) / 86400
    return sa.func.abs(sa.func.julianday(a) - sa.func.julianday(b))


def within_days(session: DbSession, a, b, days: int) -> sa.ColumnElement[bool]:
    """`a` at most `days` from `b`; on PostgreSQL as a range the (account_id, date) index serves."""
    if session.get_bind().dialect.name == "postgresql":
        tolerance = sa.literal(timedelta(days=days), sa.Interval())
        return a.between(b - tolerance, b + tolerance)
    return days_apart(session, a, b) <= days


def choose(found: list[Candidate], account_id: int) -> list[tuple[int, int]]:
    """The pairs where each row is the other's single best match."""
    scores: dict[tuple[int, int], tuple] = {}
    for c in found:
        if (score := score_of(c)) is not None:
            scores[(c.old_id, c.new_id)] = score
    best_of_old = single_best(scores, side=0)
    best_of_new = single_best(scores, side=1)
    pairs = [(old, new) for old, new in best_of_old.items() if new is not None and best_of_new.get(new) == old]
    ambiguous = sum(1 for match in best_of_old.values() if match is None)
    if ambiguous:
        # Ids only: a description is personal.
        logs.event(log, "restatements left unlinked: more than one equal match", account_id=account_id, rows=ambiguous)
    return sorted(pairs)


def score_of(c: Candidate) -> tuple | None:
    similarity = SequenceMatcher(None, normalise(c.old_description), normalise(c.new_description)).ratio()
    same_amount = Decimal(c.old_amount) == Decimal(c.new_amount)
    if similarity < (SIMILARITY if same_amount else STRONG_SIMILARITY):
        return None
    return (same_amount, similarity, -round(float(c.days_apart), 3))


def single_best(scores: dict[tuple[int, int], tuple], side: int) -> dict[int, int | None]:
    """Each row's best match on the other side, or None where two match equally well."""
    ranked: dict[int, list[tuple[tuple, int]]] = defaultdict(list)
    for pair, score in scores.items():
        ranked[pair[side]].append((score, pair[1 - side]))
    best: dict[int, int | None] = {}
    for row, matches in ranked.items():
        matches.sort(reverse=True)
        tied = len(matches) > 1 and matches[0][0] == matches[1][0]
        best[row] = None if tied else matches[0][1]
    return best


NOT_WORD = re.compile(r"[^0-9a-z]+")


def normalise(description: str) -> str:
    """Case, accents, punctuation and runs of spaces do not tell descriptions apart."""
    stripped = unicodedata.normalize("NFKD", description or "")
    plain = "".join(ch for ch in stripped if not unicodedata.combining(ch)).casefold()
    return NOT_WORD.sub(" ", plain).strip()
