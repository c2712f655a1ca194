"""PluggyClient's investments: the item's list and an investment's movements, page by page, with
the stand-in's payloads, against a mocked Pluggy (responses)."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest
from responses import matchers

from pluggy_client import PluggyNotFound
from sandbox import data as pf
from sandbox import products
from tests.oas import validate_response
from tests.test_pluggy_client import BASE_URL, ITEM_ID, api_client, clock, expect_auth, pluggy, with_key

__all__ = ["api_client", "clock", "pluggy"]  # fixtures, used by name

NOW = datetime(2024, 5, 10, 12, 0, tzinfo=UTC)


@pytest.fixture
def investments() -> list[tuple[dict, list[dict]]]:
    return products.new_investments(random.Random(7), ITEM_ID, NOW)


def test_investments_come_a_page_at_a_time_each_fetched_when_asked_for(api_client, pluggy, investments):
    listed = [investment for investment, _ in investments]
    first = pf.page(listed[:4], number=1, total_pages=2, total=len(listed))
    second = pf.page(listed[4:], number=2, total_pages=2, total=len(listed))
    validate_response("GET", "/investments", first)
    expect_auth(pluggy)
    for page, number in ((first, "1"), (second, "2")):
        pluggy.get(
            f"{BASE_URL}/investments",
            json=page,
            match=[with_key(), matchers.query_param_matcher({"itemId": ITEM_ID, "page": number, "pageSize": "500"})],
        )

    pages = api_client.iter_investments(ITEM_ID)
    assert len(pluggy.calls) == 0  # nothing asked yet
    assert next(pages) == listed[:4]
    assert len(pluggy.calls) == 2  # the key, and the first page only
    assert list(pages) == [listed[4:]]


def test_investments_of_one_type(api_client, pluggy, investments):
    equities = [investment for investment, _ in investments if investment["type"] == "EQUITY"]
    expect_auth(pluggy)
    pluggy.get(
        f"{BASE_URL}/investments",
        json=pf.page(equities),
        match=[matchers.query_param_matcher({"itemId": ITEM_ID, "type": "EQUITY", "page": "1", "pageSize": "500"})],
    )

    assert list(api_client.iter_investments(ITEM_ID, type="EQUITY")) == [equities]


def test_an_empty_list_is_one_empty_page(api_client, pluggy):
    expect_auth(pluggy)
    pluggy.get(f"{BASE_URL}/investments", json={"results": [], "page": 1, "total": 0, "totalPages": 0})

    assert list(api_client.iter_investments(ITEM_ID)) == [[]]


def test_movements_by_page_number_without_a_date_filter(api_client, pluggy, investments):
    investment, movements = max(investments, key=lambda pair: len(pair[1]))
    half = len(movements) // 2
    pages = [pf.page(movements[:half], number=1, total_pages=2), pf.page(movements[half:], number=2, total_pages=2)]
    validate_response("GET", "/investments/{id}/transactions", pages[0])
    expect_auth(pluggy)
    for page, number in zip(pages, ("1", "2"), strict=True):
        pluggy.get(
            f"{BASE_URL}/investments/{investment['id']}/transactions",
            json=page,
            match=[with_key(), matchers.query_param_matcher({"page": number, "pageSize": "500"})],
        )

    assert [m for page in api_client.iter_investment_transactions(investment["id"]) for m in page] == movements


def test_a_page_that_comes_back_empty_ends_the_list(api_client, pluggy):
    """A list that shrank while it was read: the pages announced are not asked for in vain."""
    expect_auth(pluggy)
    pluggy.get(f"{BASE_URL}/investments/inv-1/transactions", json=pf.page([], number=1, total_pages=5))

    assert list(api_client.iter_investment_transactions("inv-1")) == [[]]


def test_an_unknown_investment_is_not_found(api_client, pluggy):
    expect_auth(pluggy)
    pluggy.get(
        f"{BASE_URL}/investments/a%2Fb/transactions",
        status=404,
        json=pf.error_body(404, "INVESTMENT_NOT_FOUND", "investment not found"),
    )

    with pytest.raises(PluggyNotFound):
        next(api_client.iter_investment_transactions("a/b"))
