"""The service's state: one module per aggregate, all on one declarative base."""

from .account import Account
from .base import Base
from .bill import Bill
from .change import CHANGE_KINDS, Change, ChangeClock, ChangeKind
from .connection import Connection
from .connector_status import ConnectorStatus
from .database import db, engine_options, migrate
from .identity import Identity
from .investment import Investment, InvestmentTransaction
from .job import JOB_STATUSES, LIVE_JOB_STATUSES, Job, JobStatus
from .loan import Loan
from .outbound import (
    DELIVERY_STATUSES,
    ENDPOINT_STATUSES,
    OPEN_DELIVERY_STATUSES,
    DeliveryStatus,
    EndpointStatus,
    OutboundEvent,
    ReportedStatus,
    WebhookDelivery,
    WebhookEndpoint,
)
from .sync_run import (
    FETCHED_SYNC_STATUSES,
    OPEN_SYNC_STATUSES,
    SYNC_STATUSES,
    SYNC_TRIGGERS,
    RunStatus,
    RunTrigger,
    SyncRun,
)
from .transaction import Transaction
from .user import User
from .webhook_event import WEBHOOK_EVENT_STATUSES, EventStatus, WebhookEvent

__all__ = [
    "Account",
    "Base",
    "Bill",
    "CHANGE_KINDS",
    "Change",
    "ChangeClock",
    "ChangeKind",
    "Connection",
    "ConnectorStatus",
    "DELIVERY_STATUSES",
    "DeliveryStatus",
    "ENDPOINT_STATUSES",
    "EndpointStatus",
    "JOB_STATUSES",
    "LIVE_JOB_STATUSES",
    "EventStatus",
    "Investment",
    "InvestmentTransaction",
    "Identity",
    "Job",
    "JobStatus",
    "Loan",
    "OPEN_DELIVERY_STATUSES",
    "OutboundEvent",
    "ReportedStatus",
    "FETCHED_SYNC_STATUSES",
    "OPEN_SYNC_STATUSES",
    "SYNC_STATUSES",
    "SYNC_TRIGGERS",
    "RunStatus",
    "RunTrigger",
    "SyncRun",
    "Transaction",
    "User",
    "WEBHOOK_EVENT_STATUSES",
    "WebhookDelivery",
    "WebhookEndpoint",
    "WebhookEvent",
    "db",
    "engine_options",
    "migrate",
]
