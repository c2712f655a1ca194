"""Client for Pluggy, the Brazilian open-finance API."""

from .client import ConnectToken, PluggyClient
from .errors import (
    PluggyAuthError,
    PluggyError,
    PluggyNotFound,
    PluggyRateLimited,
    PluggyUnavailable,
)
from .retry import PluggyRetry

__all__ = [
    "ConnectToken",
    "PluggyAuthError",
    "PluggyClient",
    "PluggyError",
    "PluggyNotFound",
    "PluggyRateLimited",
    "PluggyRetry",
    "PluggyUnavailable",
]
