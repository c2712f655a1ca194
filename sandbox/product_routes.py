"""Pluggy's product routes: connectors, single accounts with their balance and statements, identity,
investments, loans, credit-card bills, categories and a transaction's category.

Data routes answer only what the item offers (``World.offers``); once its consent has expired or
been revoked (``World.withholds_data``) lists answer an empty page and single resources 404 with
their own code (identity included: IDENTITY_NOT_FOUND is how Pluggy answers an item without one).
"""

from __future__ import annotations

import copy
import math

from flask import Blueprint, current_app, jsonify, request

from . import data, products
from .data import Json
from .errors import PluggyApiError, bad_request, not_found
from .state import World
from .validation import body

# Pluggy's default page size for product lists (the SDKs' PageFilters), and its maximum.
DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 500

product_routes = Blueprint("pluggy_products", __name__)


def _world() -> World:
    return current_app.extensions["sandbox"]


def _authenticate(allow_connect: bool = False) -> World:
    world = _world()
    world.authenticate(request.headers.get("X-API-KEY"), allow_connect)
    return world


def _visible(world: World, item_id: str, product: str) -> bool:
    return world.offers(item_id, product) and not world.withholds_data(item_id)


def _required(name: str) -> str:
    value = request.args.get(name)
    if not value:
        raise bad_request(f"{name} is required", f"MISSING_{_snake(name).upper()}")
    return value


def _snake(name: str) -> str:
    return "".join(f"_{c}" if c.isupper() else c for c in name)


def _number(name: str, default: int, maximum: int | None = None) -> int:
    text = request.args.get(name)
    if text is None:
        return default
    if not text.isdigit() or int(text) < 1 or (maximum is not None and int(text) > maximum):
        limit = f" up to {maximum}" if maximum else ""
        raise bad_request(f"{name} must be a positive integer{limit}", f"INVALID_{_snake(name).upper()}")
    return int(text)


def _page(results: list[Json]) -> Json:
    """A numbered page of ``results`` by the ``page`` and ``pageSize`` the caller sent."""
    size = _number("pageSize", DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
    number = _number("page", 1)
    start = (number - 1) * size
    total_pages = max(1, math.ceil(len(results) / size))
    chosen = copy.deepcopy(results[start : start + size])
    return data.page(chosen, number=number, total_pages=total_pages, total=len(results))


# Connectors ----------------------------------------------------------------------------------


@product_routes.get("/connectors")
def list_connectors():
    # Pluggy Connect (the widget) lists connectors and checks its form with a connect token.
    world = _authenticate(allow_connect=True)
    query = products.connector_query(request.args.get, request.args.getlist)
    with world.lock:
        answers = [_connector(world, connector, query.health_details) for connector in data.CONNECTORS.values()]
    found = [answer for answer in answers if query.matches(answer)]
    return jsonify(data.page(found))


@product_routes.get("/connectors/<connector_id>")
def get_connector(connector_id: str):
    world = _authenticate(allow_connect=True)
    details = products.boolean(request.args.get("healthDetails"), "healthDetails") or False
    with world.lock:
        return jsonify(_connector(world, _connector_by_id(connector_id), details))


@product_routes.post("/connectors/<connector_id>/validate")
def validate_connector_parameters(connector_id: str):
    world = _authenticate(allow_connect=True)
    with world.lock:
        answer = _connector(world, _connector_by_id(connector_id), False)
    return jsonify(products.validate_parameters(answer, body()))


def _connector_by_id(connector_id: str) -> data.Connector:
    connector = data.CONNECTORS.get(int(connector_id)) if connector_id.isdigit() else None
    if connector is None:
        raise not_found("connector")
    return connector


def _connector(world: World, connector: data.Connector, with_details: bool) -> Json:
    details = products.health_details(world, connector.id) if with_details else None
    return products.connector_answer(connector, world.connector_health[connector.id], details)


# Accounts ------------------------------------------------------------------------------------


@product_routes.get("/accounts/<account_id>")
def get_account(account_id: str):
    world = _authenticate()
    with world.lock:
        account = _account(world, account_id)
        if world.withholds_data(account["itemId"]):
            raise not_found("account")
        return jsonify(copy.deepcopy(account))


@product_routes.get("/accounts/<account_id>/balance")
def get_account_balance(account_id: str):
    world = _authenticate()
    with world.lock:
        account = _account(world, account_id)
        if world.withholds_data(account["itemId"]):
            # The OpenAPI document's answer when the institution refuses for want of consent.
            message = "The financial institution denied access to the account balance. The consent may be expired."
            raise PluggyApiError(403, message, "BALANCE_CONSENT_ERROR")
        return jsonify(products.balance_answer(account, world.now()))


@product_routes.get("/accounts/<account_id>/statements")
def list_account_statements(account_id: str):
    world = _authenticate()
    with world.lock:
        item_id = _account(world, account_id)["itemId"]
        statements = products.products_of(world, item_id)["statements"].get(account_id, [])
        return jsonify(_page([] if world.withholds_data(item_id) else statements))


def _account(world: World, account_id: str) -> Json:
    account = world.accounts.get(account_id)
    if account is None:
        raise not_found("account")
    return account


# Identity ------------------------------------------------------------------------------------


@product_routes.get("/identity")
def identity_of_item():
    world = _authenticate()
    item_id = _required("itemId")
    with world.lock:
        identity = products.products_of(world, item_id)["identity"]
        if identity is None or not _visible(world, item_id, "IDENTITY"):
            raise not_found("identity")
        return jsonify(copy.deepcopy(identity))


@product_routes.get("/identity/<identity_id>")
def get_identity(identity_id: str):
    world = _authenticate()
    with world.lock:
        identity = products.find_identity(world, identity_id)
        if identity is None or not _visible(world, identity["itemId"], "IDENTITY"):
            raise not_found("identity")
        return jsonify(copy.deepcopy(identity))


# Investments ---------------------------------------------------------------------------------


@product_routes.get("/investments")
def list_investments():
    world = _authenticate()
    item_id = _required("itemId")
    kind = request.args.get("type")
    with world.lock:
        investments = products.products_of(world, item_id)["investments"]
        if not _visible(world, item_id, "INVESTMENTS"):
            investments = []
        return jsonify(_page([i for i in investments if kind in (None, i["type"])]))


@product_routes.get("/investments/<investment_id>")
def get_investment(investment_id: str):
    world = _authenticate()
    with world.lock:
        _, investment = _visible_resource(world, "investments", investment_id, "INVESTMENTS", "investment")
        return jsonify(copy.deepcopy(investment))


@product_routes.get("/investments/<investment_id>/transactions")
def list_investment_transactions(investment_id: str):
    world = _authenticate()
    with world.lock:
        found = products.find(world, "investments", investment_id)
        if found is None:
            raise not_found("investment")
        item_id = found[0]
        movements = world.products[item_id]["investmentTransactions"][investment_id]
        if not (_visible(world, item_id, "INVESTMENTS") and world.offers(item_id, "INVESTMENTS_TRANSACTIONS")):
            movements = []
        return jsonify(_page(movements))


def _visible_resource(world: World, kind: str, resource_id: str, product: str, what: str) -> tuple[str, Json]:
    found = products.find(world, kind, resource_id)
    if found is None or not _visible(world, found[0], product):
        raise not_found(what)
    return found


# Loans ---------------------------------------------------------------------------------------


@product_routes.get("/loans")
def list_loans():
    world = _authenticate()
    item_id = _required("itemId")
    with world.lock:
        loans = products.products_of(world, item_id)["loans"]
        return jsonify(_page(loans if _visible(world, item_id, "LOANS") else []))


@product_routes.get("/loans/<loan_id>")
def get_loan(loan_id: str):
    world = _authenticate()
    with world.lock:
        _, loan = _visible_resource(world, "loans", loan_id, "LOANS", "loan")
        return jsonify(copy.deepcopy(loan))


# Credit-card bills ---------------------------------------------------------------------------


@product_routes.get("/bills")
def list_bills():
    world = _authenticate()
    account_id = _required("accountId")
    with world.lock:
        item_id = _account(world, account_id)["itemId"]
        bills = [bill for bill in products.products_of(world, item_id)["bills"] if bill["accountId"] == account_id]
        return jsonify(_page(bills if _visible(world, item_id, "CREDIT_CARDS") else []))


@product_routes.get("/bills/<bill_id>")
def get_bill(bill_id: str):
    world = _authenticate()
    with world.lock:
        _, bill = _visible_resource(world, "bills", bill_id, "CREDIT_CARDS", "bill")
        return jsonify(copy.deepcopy(bill))


# Categories and a transaction's category ------------------------------------------------------


@product_routes.get("/categories")
def list_categories():
    _authenticate()
    parent_id = request.args.get("parentId")
    categories = [c for c in products.CATEGORIES.values() if parent_id in (None, c.get("parentId"))]
    # Both SDKs read a page here (PageResponse<Category>); the OpenAPI document says a bare array.
    return jsonify(data.page(categories))


@product_routes.get("/categories/<category_id>")
def get_category(category_id: str):
    _authenticate()
    category = products.CATEGORIES.get(category_id)
    if category is None:
        raise not_found("category")
    return jsonify(category)


@product_routes.patch("/transactions/<transaction_id>")
def update_transaction_category(transaction_id: str):
    world = _authenticate()
    payload = body()
    with world.lock:
        row = _row(world, transaction_id)
        if world.withholds_data(world.accounts[row["accountId"]]["itemId"]):
            raise not_found("transaction")
        return jsonify(copy.deepcopy(products.recategorised(row, payload.get("categoryId"), world.now())))


def _row(world: World, transaction_id: str) -> Json:
    for rows in world.rows.values():
        if transaction_id in rows:
            return rows[transaction_id]
    raise not_found("transaction")
