"""What each endpoint accepts."""

from __future__ import annotations

import re
from datetime import date
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    model_validator,
)

from sync.monitoring import DEFAULT_MAX_DUE_AGE_S
from sync.outbound.events import EventType
from sync.users import UserError, normalise_email

from .validation import Body, Query

# Ids, names and addresses are printable; a control character (PostgreSQL refuses NUL outright) is a
# bad request.
PRINTABLE = r"^[^\x00-\x1f\x7f]+$"
PluggyId = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64, pattern=PRINTABLE)]
Secret = Annotated[str, StringConstraints(max_length=4096)]
# A list's opaque cursor (api/paging.py); empty: the first page, paged by cursor.
Cursor = Annotated[str, StringConstraints(max_length=1024)]
_PLUGGY_ID = TypeAdapter(PluggyId)


def is_pluggy_id(value: str) -> bool:
    """Whether a path segment can be a Pluggy id at all (one that cannot is answered like an unknown one)."""
    try:
        _PLUGGY_ID.validate_python(value)
    except ValidationError:
        return False
    return True


class RegisterConnection(Body):
    item_id: PluggyId


class SyncOptions(Body):
    trigger_update: bool = True


class WaitQuery(Query):
    wait: float = Field(0, ge=0, le=60, description="seconds to wait for the run to finish")


class SendMfa(Body):
    # Out of the model's repr, so that no log or traceback of the body shows the values.
    mfa_value: Secret | None = Field(None, repr=False)
    parameters: (
        dict[Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=PRINTABLE)], Secret] | None
    ) = Field(None, repr=False)

    @model_validator(mode="after")
    def one_answer(self) -> SendMfa:
        if self.mfa_value is not None and self.parameters:
            raise ValueError("send either mfa_value or parameters, not both")
        return self

    @property
    def given(self) -> bool:
        return bool(self.mfa_value) or bool(self.parameters)


class PageQuery(Query):
    """The page of a list: `page` from 1, `page_size` rows."""

    page: int = Field(1, ge=1, le=1_000_000)
    page_size: int = Field(50, ge=1, le=500)
    cursor: Cursor | None = None  # instead of page: the next_cursor of the page before


class ChangesQuery(Query):
    """A page of the change feed: after `cursor` (none: from the start), at most `limit` entries."""

    cursor: Cursor | None = None
    limit: int = Field(100, ge=1, le=500)


def iso_day(value: object) -> object:
    """A day as YYYY-MM-DD only: pydantic alone would read "0" as the Unix epoch's day."""
    if isinstance(value, str) and not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        raise ValueError("a day as YYYY-MM-DD")
    return value


Day = Annotated[date, BeforeValidator(iso_day)]


class TransactionsQuery(PageQuery):
    account_id: PluggyId | None = None
    date_from: Day | None = None
    date_to: Day | None = None
    status: Literal["POSTED", "PENDING"] | None = None
    include_deleted: bool = False
    bill_id: PluggyId | None = None

    @model_validator(mode="after")
    def dates_in_order(self) -> TransactionsQuery:
        if self.date_from and self.date_to and self.date_from > self.date_to:
            raise ValueError("date_from must not be after date_to")
        return self


class TombstonedPageQuery(PageQuery):
    """A list whose rows Pluggy may stop returning: `include_deleted` shows those too."""

    include_deleted: bool = False


class BillsQuery(PageQuery):
    account_id: PluggyId | None = None


class SyncRunsQuery(Query):
    limit: int = Field(50, ge=1, le=500)
    cursor: Cursor | None = None


class WholeListQuery(Query):
    """A list answered whole unless paged: by `cursor` (empty to start) or `page_size`."""

    cursor: Cursor | None = None
    page_size: int = Field(50, ge=1, le=500)

    @property
    def paged(self) -> bool:
        return bool(self.model_fields_set & {"cursor", "page_size"})


class ConnectTokenRequest(Body):
    item_id: PluggyId | None = None


class ReadyQuery(Query):
    max_due_age: float = Field(
        DEFAULT_MAX_DUE_AGE_S, ge=0, allow_inf_nan=False, description="seconds the oldest due job may wait"
    )
    max_dead: int | None = Field(None, ge=0, description="dead jobs allowed; unset, they are only reported")


def app_user_email(value: str) -> str:
    """Normalised as `flask users create` does; the refusal does not repeat the value."""
    try:
        return normalise_email(value)
    except UserError:
        raise ValueError("not an e-mail address") from None


class CreateAppUser(Body):
    email: Annotated[str, StringConstraints(max_length=320), AfterValidator(app_user_email)]


def event_type(value: str) -> str:
    if value not in EventType.__members__.values():
        raise ValueError(f"unknown event type; one of: {', '.join(EventType)}")
    return value


class CreateWebhookEndpoint(Body):
    url: Annotated[str, StringConstraints(min_length=1, max_length=2048, pattern=PRINTABLE)]
    # None: every type.
    events: (
        Annotated[
            list[Annotated[str, StringConstraints(max_length=64), AfterValidator(event_type)]],
            Field(min_length=1, max_length=16),
        ]
        | None
    ) = None


class KeysetQuery(Query):
    """A list paged by cursor only: empty or no cursor starts it."""

    cursor: Cursor | None = None
    page_size: int = Field(50, ge=1, le=500)


class DeliveriesQuery(KeysetQuery):
    endpoint_id: int | None = Field(None, ge=1, le=2**31 - 1)
