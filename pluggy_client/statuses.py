"""Pluggy's own vocabularies for an item, as it sends them. Values this service does not know may
still arrive (Pluggy adds some): they are stored as the strings they are, never refused."""

from __future__ import annotations

from enum import StrEnum


class ItemStatus(StrEnum):
    """An item's `status`."""

    UPDATED = "UPDATED"
    UPDATING = "UPDATING"
    MERGING = "MERGING"  # a sync still running, like UPDATING
    WAITING_USER_INPUT = "WAITING_USER_INPUT"  # MFA: `parameter` says what
    WAITING_USER_ACTION = "WAITING_USER_ACTION"  # the user must act at the bank: `userAction`
    LOGIN_ERROR = "LOGIN_ERROR"  # bad credentials: only the user, through Connect, moves it on
    OUTDATED = "OUTDATED"  # the login worked, the update failed; retryable


class ExecutionStatus(StrEnum):
    """The outcomes of an item's last execution this service acts on (`executionStatus` has many
    more, stored as they come)."""

    SUCCESS = "SUCCESS"
    PARTIAL_SUCCESS = "PARTIAL_SUCCESS"
