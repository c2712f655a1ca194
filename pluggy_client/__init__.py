"""Client for Pluggy, the Brazilian open-finance API."""

from .client import ConnectToken, PluggyClient
from .dates import timestamp
from .errors import (
    PluggyAuthError,
    PluggyError,
    PluggyNotFound,
    PluggyRateLimited,
    PluggyUnavailable,
)
from .retry import PluggyRetry
from .statuses import ExecutionStatus, ItemStatus

__all__ = [
    "ConnectToken",
    "ExecutionStatus",
    "ItemStatus",
    "PluggyAuthError",
    "PluggyClient",
    "PluggyError",
    "PluggyNotFound",
    "PluggyRateLimited",
    "PluggyRetry",
    "PluggyUnavailable",
    "timestamp",
]
