"""An item's loans and financing contracts (Pluggy's /loans), mirrored into `loans`.

Read on every full fetch of an item that offers LOANS, page by page, each page one upsert
committed on its own; a loan stored under another connection is left with its owner. A loan
missing from a complete, non-empty list is tombstoned (`deleted_at`: settled or gone at the
institution; it comes back to life if Pluggy lists it again). An empty list never tombstones:
it is also what Pluggy answers while an Open Finance consent withholds the data, and before
tombstoning the consent is read again (`ProductContext.may_tombstone`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import sqlalchemy as sa

from jobqueue import dialect_insert
from models import Loan
from models.base import utcnow
from pluggy_client import timestamp

from . import values
from .bulk import updatable

if TYPE_CHECKING:
    from .products import ProductContext

PRODUCT = "LOANS"


def read(context: ProductContext) -> None:
    if not context.offers(PRODUCT):
        return
    connection_id = context.connection.id
    seen: set[str] = set()
    for page in context.client.iter_loans(context.connection.item_id):
        rows = list({row["pluggy_id"]: row for row in (loan_row(data, connection_id) for data in page)}.values())
        if rows:
            insert = dialect_insert(context.session)(Loan).values(rows)
            context.session.execute(
                insert.on_conflict_do_update(
                    index_elements=[Loan.pluggy_id],
                    set_=updatable(insert, Loan.__table__),
                    where=Loan.connection_id == insert.excluded.connection_id,
                )
            )
            context.session.commit()
            context.checkpoint(progressed=True)
        seen.update(row["pluggy_id"] for row in rows)
    if seen:
        tombstone_missing(context, seen)


def tombstone_missing(context: ProductContext, seen: set[str]) -> None:
    live = context.session.scalars(
        sa.select(Loan.pluggy_id).where(Loan.connection_id == context.connection.id, Loan.deleted_at.is_(None))
    )
    missing = [pluggy_id for pluggy_id in live if pluggy_id not in seen]
    if not missing or not context.may_tombstone():
        return
    context.session.execute(
        sa.update(Loan)
        .where(Loan.connection_id == context.connection.id, Loan.pluggy_id.in_(missing))
        .values(deleted_at=utcnow(), updated_at=utcnow())
    )
    context.session.commit()


def loan_row(data: dict, connection_id: int) -> dict:
    installments = data.get("installments") or {}
    payments = data.get("payments") or {}
    now = utcnow()
    return {
        "connection_id": connection_id,
        "pluggy_id": data["id"],
        "contract_number": data.get("contractNumber"),
        "ipoc_code": data.get("ipocCode"),
        "product_name": data.get("productName"),
        "type": data.get("type"),
        "kind": data.get("kind"),
        "currency_code": data.get("currencyCode"),
        "contract_amount": values.money(data.get("contractAmount")),
        "outstanding_balance": values.money(payments.get("contractOutstandingBalance")),
        "cet": values.money(data.get("CET")),
        "installment_periodicity": data.get("installmentPeriodicity"),
        "total_installments": values.whole(installments.get("totalNumberOfInstallments")),
        "paid_installments": values.whole(installments.get("paidInstallments")),
        "due_installments": values.whole(installments.get("dueInstallments")),
        "past_due_installments": values.whole(installments.get("pastDueInstallments")),
        "remaining_installments": values.whole(installments.get("contractRemainingNumber")),
        "interest_rates": data.get("interestRates"),
        "contract_date": timestamp(data.get("contractDate")),
        "first_installment_due_date": timestamp(data.get("firstInstallmentDueDate")),
        "due_date": timestamp(data.get("dueDate")),
        "settlement_date": timestamp(data.get("settlementDate")),
        "raw": data,
        "pluggy_date": timestamp(data.get("date")),
        "deleted_at": None,
        "created_at": now,
        "updated_at": now,
    }
