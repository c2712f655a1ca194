"""The item owner's identity (Pluggy's /identity): one row per connection, replaced by each read.

Read on every full fetch of an item that offers IDENTITY. Pluggy answers 404 when it has none, and
also while an Open Finance consent withholds it: a 404 leaves the stored row as it is (an absent
identity is not a deleted one). Personal data (name, CPF/CNPJ, contacts, addresses): never logged,
served only to the connection's owner.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from jobqueue import dialect_insert
from models import Identity
from models.base import utcnow
from pluggy_client import PluggyNotFound, timestamp

from . import values
from .bulk import updatable

if TYPE_CHECKING:
    from .products import ProductContext

PRODUCT = "IDENTITY"


def read(context: ProductContext) -> None:
    if not context.offers(PRODUCT):
        return
    try:
        data = context.client.get_identity(context.connection.item_id)
    except PluggyNotFound:
        return  # none, or withheld by an ended consent: what is stored stays
    if not isinstance(data, dict) or not data:
        return
    row = identity_row(data, context.connection.id)
    insert = dialect_insert(context.session)(Identity).values([row])
    context.session.execute(
        insert.on_conflict_do_update(
            index_elements=[Identity.connection_id],
            set_={**updatable(insert, Identity.__table__), "pluggy_id": insert.excluded.pluggy_id},
        )
    )
    context.session.commit()


def identity_row(data: dict, connection_id: int) -> dict:
    now = utcnow()
    return {
        "connection_id": connection_id,
        "pluggy_id": data.get("id"),
        "full_name": data.get("fullName"),
        "social_name": data.get("socialName"),
        "document": data.get("document"),
        "document_type": data.get("documentType"),
        "tax_number": data.get("taxNumber"),
        "birth_date": values.day(data.get("birthDate")),
        "job_title": data.get("jobTitle"),
        "company_name": data.get("companyName"),
        "emails": data.get("emails"),
        "phone_numbers": data.get("phoneNumbers"),
        "addresses": data.get("addresses"),
        "relations": data.get("relations"),
        "raw": data,
        "pluggy_created_at": timestamp(data.get("createdAt")),
        "pluggy_updated_at": timestamp(data.get("updatedAt")),
        "created_at": now,
        "updated_at": now,
    }
