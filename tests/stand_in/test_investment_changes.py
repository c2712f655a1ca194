"""The stand-in's control routes that change an item's investments: a purchase today
(`/sandbox/items/<id>/investments/add_movement`) and a restated movement (`.../investments/restate`)."""

from __future__ import annotations

import pytest

from tests.oas import validate_response
from tests.stand_in.test_products import STEPPED, new_item, ok, refused

__all__ = ["app"]


@pytest.fixture
def app(sandbox_factory):
    return sandbox_factory(**STEPPED)


@pytest.fixture
def item_id(client, key) -> str:
    return new_item(client, key)


def movements_of(client, key, investment_id: str) -> list[dict]:
    return ok(client, key, f"/investments/{investment_id}/transactions", pageSize=500)["results"]


@pytest.mark.parametrize("kind", ["FIXED_INCOME", "EQUITY"])
def test_a_purchase_adds_a_movement_and_moves_the_position(client, key, item_id, kind):
    before = next(i for i in ok(client, key, "/investments", itemId=item_id)["results"] if i["type"] == kind)
    earlier = movements_of(client, key, before["id"])

    answer = client.post(f"/sandbox/items/{item_id}/investments/add_movement", json={"investmentId": before["id"]})

    assert answer.status_code == 200
    movement = answer.json
    assert (movement["type"], movement["movementType"], movement["investmentId"]) == ("BUY", "CREDIT", before["id"])
    assert movements_of(client, key, before["id"]) == [*earlier, movement]
    after = ok(client, key, f"/investments/{before['id']}")
    validate_response("GET", "/investments/{id}", after)
    assert after["amountOriginal"] == round(before["amountOriginal"] + movement["amount"], 2)
    assert after["balance"] == round(before["balance"] + movement["amount"], 2)
    if kind == "EQUITY":
        assert after["quantity"] == round(before["quantity"] + movement["quantity"], 6)
    else:
        assert after["quantity"] == before["quantity"]


def test_a_restatement_replaces_the_newest_movement_under_a_new_id(client, key, item_id):
    investment = ok(client, key, "/investments", itemId=item_id)["results"][0]  # the first, when none is named
    earlier = movements_of(client, key, investment["id"])

    answer = client.post(f"/sandbox/items/{item_id}/investments/restate")

    assert answer.status_code == 200
    [deleted], [created] = answer.json["deleted"], answer.json["created"]
    assert deleted == earlier[-1]["id"] and created["id"] != deleted
    assert {**created, "id": deleted} == earlier[-1]
    now = movements_of(client, key, investment["id"])
    validate_response("GET", "/investments/{id}/transactions", {"results": now, "page": 1, "total": 1, "totalPages": 1})
    assert now == [*earlier[:-1], created]
    assert ok(client, key, f"/investments/{investment['id']}") == investment  # the position did not move


def test_refusals(client, key, item_id):
    assert client.post(f"/sandbox/items/{item_id}/investments/restate", json={"investmentId": 1}).status_code == 400
    answer = client.post(f"/sandbox/items/{item_id}/investments/add_movement", json={"investmentId": "nope"})
    assert (answer.status_code, answer.json["codeDescription"]) == (404, "INVESTMENT_NOT_FOUND")
    assert client.post("/sandbox/items/nope/investments/restate").status_code == 404
    refused(client, key, f"/sandbox/items/{item_id}/investments/sell", 404, method="POST")


def test_older_history_comes_before_what_the_item_had_and_moves_no_position(client, key, item_id):
    investments = ok(client, key, "/investments", itemId=item_id)["results"]
    earlier = {investment["id"]: movements_of(client, key, investment["id"]) for investment in investments}
    card = next(a for a in ok(client, key, "/accounts", itemId=item_id)["results"] if a["type"] == "CREDIT")
    bills = ok(client, key, "/bills", accountId=card["id"])["results"]

    answer = client.post(f"/sandbox/items/{item_id}/products/history", json={"investmentTransactions": 31, "bills": 5})

    assert answer.status_code == 200
    added = answer.json
    assert len(added["investmentTransactions"]) == 31 and len(added["bills"]) == 5
    for investment in investments:
        old = [m for m in added["investmentTransactions"] if m["investmentId"] == investment["id"]]
        assert len(old) in (31 // len(investments), 31 // len(investments) + 1)
        assert movements_of(client, key, investment["id"]) == [*old, *earlier[investment["id"]]]
        page = ok(client, key, f"/investments/{investment['id']}/transactions")
        validate_response("GET", "/investments/{id}/transactions", page)
    assert ok(client, key, "/investments", itemId=item_id)["results"] == investments
    listed = ok(client, key, "/bills", accountId=card["id"])
    validate_response("GET", "/bills", listed)
    assert listed["results"] == [*added["bills"], *bills]
    assert max(bill["billClosingDate"] for bill in added["bills"]) < min(bill["billClosingDate"] for bill in bills)
    refused(client, key, "/sandbox/items/nope/products/history", 404, method="POST", json={"bills": 1})
