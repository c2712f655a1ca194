"""PluggyRetry's decisions, checked directly on urllib3 responses."""

from __future__ import annotations

from email.utils import formatdate

import pytest
import requests
from urllib3 import HTTPResponse
from urllib3.exceptions import MaxRetryError

from pluggy_client import PluggyClient, PluggyRetry
from pluggy_client.retry import retry_after_seconds


def rate_limited(retry_after: str | None) -> HTTPResponse:
    headers = {} if retry_after is None else {"Retry-After": retry_after}
    return HTTPResponse(status=429, headers=headers)


@pytest.mark.parametrize(
    ("method", "status", "has_retry_after", "expected"),
    [
        ("GET", 500, False, True),
        ("GET", 504, False, True),
        ("PATCH", 500, False, False),
        ("POST", 503, True, False),
        ("PATCH", 429, True, True),
        ("POST", 429, True, True),
        ("GET", 429, False, False),
        ("GET", 404, False, False),
    ],
)
def test_what_is_worth_retrying(method, status, has_retry_after, expected):
    assert PluggyRetry().is_retry(method, status, has_retry_after) is expected


@pytest.mark.parametrize("retry_after", ["60", "soon"])
def test_a_long_or_unreadable_429_ends_the_retries(retry_after):
    with pytest.raises(MaxRetryError):
        PluggyRetry().increment("PATCH", "/items/1", response=rate_limited(retry_after))


def test_a_429_within_the_limit_is_retried():
    assert PluggyRetry().increment("PATCH", "/items/1", response=rate_limited("5")).total == 2


def test_the_wait_limit_survives_each_retry():
    retry = PluggyRetry(retry_after_max=90).increment("GET", "/items/1", response=rate_limited("60"))

    assert retry.retry_after_max == 90
    assert retry.increment("GET", "/items/1", response=rate_limited("60")).total == 1


def test_retries_run_out_after_three():
    retry = PluggyRetry()
    for _ in range(3):
        retry = retry.increment("GET", "/items/1", response=HTTPResponse(status=503))

    with pytest.raises(MaxRetryError):
        retry.increment("GET", "/items/1", response=HTTPResponse(status=503))


NOW = 1_800_000_000.0


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("60", 60),
        (" 7 ", 7),
        (formatdate(NOW + 120, usegmt=True), 120),
        (formatdate(NOW - 120, usegmt=True), 0),
    ],
    ids=["seconds", "padded", "future date", "past date"],
)
def test_retry_after_seconds_reads_both_forms(monkeypatch, header, expected):
    monkeypatch.setattr("pluggy_client.retry.time.time", lambda: NOW)
    assert retry_after_seconds(header) == expected


@pytest.mark.parametrize("header", [None, "", "later", "-5", "\u00b2"])  # "²" passes str.isdigit()
def test_retry_after_seconds_is_none_when_unreadable(header):
    assert retry_after_seconds(header) is None


def test_a_given_session_gets_the_retry_adapter_for_pluggy_only():
    session = requests.Session()
    PluggyClient("https://api.pluggy.test/", "client-id", "client-secret", session=session)

    assert isinstance(session.get_adapter("https://api.pluggy.test/items/1").max_retries, PluggyRetry)
    assert not isinstance(session.get_adapter("https://example.com/").max_retries, PluggyRetry)
