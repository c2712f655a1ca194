"""Pluggy's routes as the service uses them, over the in-memory world."""

from __future__ import annotations

import copy
import math
from typing import Any
from urllib.parse import urlsplit

from flask import Blueprint, Flask, current_app, jsonify, request
from werkzeug.exceptions import HTTPException

from . import data, execution, queries
from .control import control
from .data import Json
from .errors import DEFAULT_RETRY_AFTER_S, PluggyApiError, bad_request, limit_of, rate_limit_headers, validation_error
from .product_routes import product_routes
from .state import Token, World, served_products
from .validation import body, credential_errors, optional_bool, optional_products, optional_string, string_map

# Pluggy's WebhookEventType (the OAS and both SDKs list the same events), plus `item/all`, which
# the OAS's GET /webhooks example shows. Payment events are accepted but never sent here.
WEBHOOK_EVENTS = frozenset(
    {
        "all",
        "item/all",
        "item/created",
        "item/updated",
        "item/error",
        "item/deleted",
        "item/waiting_user_input",
        "item/waiting_user_action",
        "item/login_succeeded",
        "connector/status_updated",
        "transactions/created",
        "transactions/updated",
        "transactions/deleted",
        "payment_intent/created",
        "payment_intent/completed",
        "payment_intent/waiting_payer_authorization",
        "payment_intent/error",
        "payment_request/updated",
        "scheduled_payment/created",
        "scheduled_payment/completed",
        "scheduled_payment/error",
        "scheduled_payment/canceled",
        "scheduled_payment/all_completed",
        "scheduled_payment/all_created",
        "boleto/updated",
        "automatic_pix_payment/created",
        "automatic_pix_payment/completed",
        "automatic_pix_payment/error",
        "automatic_pix_payment/canceled",
        "smart_transfer_preauthorization/completed",
        "smart_transfer_preauthorization/error",
        "smart_transfer_payment/completed",
        "smart_transfer_payment/error",
    }
)

api = Blueprint("pluggy", __name__)


def create_app(world: World) -> Flask:
    app = Flask("sandbox")
    app.extensions["sandbox"] = world
    app.json.sort_keys = False
    app.register_blueprint(api)
    app.register_blueprint(control)
    app.register_blueprint(product_routes)
    app.before_request(_scripted_failure)
    app.register_error_handler(PluggyApiError, _pluggy_error)
    app.register_error_handler(HTTPException, _http_error)
    return app


def world_of(app: Flask | None = None) -> World:
    return (app or current_app).extensions["sandbox"]


# Plumbing --------------------------------------------------------------------------------


def _scripted_failure():
    world = world_of()
    if world.base_url is None:
        world.base_url = request.host_url.rstrip("/")
    if request.path.startswith("/sandbox/") or request.path == "/health":
        return None
    rule = world.take_failure(request.method, request.path)
    if rule is None:
        return None
    headers = {}
    if rule.status == 429:
        retry_after = rule.retry_after if rule.retry_after is not None else DEFAULT_RETRY_AFTER_S
        headers = rate_limit_headers(limit_of(request.method, request.path), retry_after)
    code_description = rule.code_description or _code_for(rule.status)
    message = f"Scripted failure {rule.status} {code_description}"
    raise PluggyApiError(rule.status, message, code_description, rule.data, headers=headers)


def _code_for(status: int) -> str:
    return {429: "RATE_LIMIT_EXCEEDED", 500: "INTERNAL_SERVER_ERROR", 503: "SERVICE_UNAVAILABLE"}.get(
        status, "SCRIPTED_FAILURE"
    )


def _pluggy_error(error: PluggyApiError):
    response = jsonify(error.body())
    response.status_code = error.status
    response.headers.update(error.headers)
    return response


def _http_error(error: HTTPException):
    """Werkzeug's own refusals (unknown route, wrong method, an unhandled exception's 500...) in
    Pluggy's error body, never werkzeug's HTML; its headers (a 405's Allow) are kept."""
    status = error.code or 500
    name = error.name if error.code else "Internal Server Error"
    headers = {k: v for k, v in error.get_headers() if k.lower() != "content-type"}
    code_description = name.upper().replace(" ", "_").replace("'", "")
    return _pluggy_error(PluggyApiError(status, name, code_description, headers=headers))


def caller(allow_connect: bool = False) -> Token:
    return world_of().authenticate(request.headers.get("X-API-KEY"), allow_connect)


def paged(results: list[Json], page_size: int) -> Json:
    page_text = request.args.get("page", "1")
    if not page_text.isdigit() or int(page_text) < 1:
        raise bad_request("page must be a positive integer", "INVALID_PAGE")
    number = int(page_text)
    start = (number - 1) * page_size
    total_pages = max(1, math.ceil(len(results) / page_size))
    return data.page(results[start : start + page_size], number=number, total_pages=total_pages, total=len(results))


@api.get("/health")
def health():
    return jsonify(status="ok")


# Authentication --------------------------------------------------------------------------


@api.post("/auth")
def auth():
    credentials = body()
    key = world_of().issue_api_key(credentials.get("clientId"), credentials.get("clientSecret"))
    return jsonify(data.auth_response(key))


@api.post("/connect_token")
def connect_token():
    caller()
    payload = body()
    options = payload.get("options") or {}
    if not isinstance(options, dict):
        raise bad_request("options must be an object", "INVALID_PARAMETERS")
    for name in ("clientUserId", "webhookUrl", "oauthRedirectUri"):
        optional_string(options, name)
    for name in ("avoidDuplicates", "connectorSortAlphabetically"):
        optional_bool(options, name)
    optional_products(options)
    token = world_of().issue_connect_token(optional_string(payload, "itemId"), dict(options))
    return jsonify(data.connect_token_response(token))


# Items -----------------------------------------------------------------------------------


@api.post("/items")
def create_item():
    token = caller(allow_connect=True)
    payload = body()
    connector = data.CONNECTORS.get(payload.get("connectorId"))
    if connector is None or isinstance(payload.get("connectorId"), bool):
        raise bad_request("Connector not found", "INVALID_CONNECTOR")
    parameters = _credentials(data.connector_json(connector), payload.get("parameters"))
    for name in ("clientUserId", "webhookUrl", "oauthRedirectUri"):
        optional_string(payload, name)
    optional_products(payload)
    world = world_of()
    with world.lock:
        # No item/created yet: Pluggy sends it once the item has finished connecting (execution.py).
        record = world.new_item(connector, parameters, token, payload)
        execution.start(world, record, token.triggered_by, "CREATING")
        return jsonify(copy.deepcopy(record.json))


def _credentials(connector: Json, parameters: Any, *, partial: bool = False) -> dict[str, str]:
    errors = credential_errors(connector.get("credentials") or [], parameters, partial=partial)
    if errors:
        raise validation_error(errors)
    return dict(parameters or {})


@api.get("/items/<item_id>")
def get_item(item_id: str):
    token = caller(allow_connect=True)
    world = world_of()
    with world.lock:
        answer = world.item_json(item_id, token)
        execution.catch_up(world, world.record_for(item_id))
    return jsonify(answer)


@api.patch("/items/<item_id>")
def update_item(item_id: str):
    token = caller(allow_connect=True)
    payload = body()
    changes = {name: optional_string(payload, name) for name in ("webhookUrl", "clientUserId")}
    changes.update({k: v for k, v in token.options.items() if k in changes and v is not None})
    products = optional_products(payload) or optional_products(token.options)
    world = world_of()
    with world.lock:
        world.count_patch()
        record = world.record_for(item_id, token)
        parameters = payload.get("parameters")
        if parameters is not None:
            parameters = _credentials(record.json["connector"], parameters, partial=True)
        execution.refuse_if_busy(record)
        if parameters:
            record.parameters.update(parameters)
        if products:
            changes["products"] = served_products(record.connector, products)
        world.touch(record, **{k: v for k, v in changes.items() if v is not None})
        execution.start(world, record, token.triggered_by, "LOGIN_IN_PROGRESS")
        return jsonify(copy.deepcopy(record.json))


@api.post("/items/<item_id>/mfa")
def send_mfa(item_id: str):
    token = caller(allow_connect=True)
    answer = body()
    world = world_of()
    with world.lock:
        record = world.record_for(item_id, token)
        execution.answer_mfa(world, record, answer)
        return jsonify(copy.deepcopy(record.json))


@api.delete("/items/<item_id>")
def delete_item(item_id: str):
    caller()
    world_of().delete_item(item_id)
    return jsonify(data.count_response(1))


# Accounts and transactions ---------------------------------------------------------------


@api.get("/accounts")
def list_accounts():
    caller()
    item_id = request.args.get("itemId")
    if not item_id:
        raise bad_request("itemId is required", "MISSING_ITEM_ID")
    account_type = request.args.get("type")
    world = world_of()
    with world.lock:
        world.record_for(item_id)
        accounts = [
            copy.deepcopy(world.accounts[aid])
            for aid in world.account_ids(item_id)
            if account_type in (None, world.accounts[aid]["type"]) and not world.withholds_data(item_id)
        ]
    return jsonify(paged(accounts, world.page_size))


@api.get("/v2/transactions")
def list_transactions():
    caller()
    world = world_of()
    query = queries.parse(request.args, world.page_size)
    return jsonify(queries.page(world, query))


@api.get("/transactions")
def list_transactions_by_page():
    """The deprecated page-numbered list (both SDKs still call it), newest first as in the OpenAPI
    document's example."""
    caller()
    world = world_of()
    query = queries.parse_numbered(request.args, world.page_size)
    with world.lock:
        rows = queries.selected_rows(world, query)[::-1]
        answer = paged(rows, query.page_size)
        answer["results"] = copy.deepcopy(answer["results"])
    return jsonify(answer)


@api.get("/transactions/<transaction_id>")
def get_transaction(transaction_id: str):
    caller()
    return jsonify(world_of().find_row(transaction_id))


# Consents (Open Finance) -----------------------------------------------------------------


@api.get("/consents")
def list_consents():
    caller()
    item_id = request.args.get("itemId")
    if not item_id:
        raise bad_request("itemId is required", "MISSING_ITEM_ID")
    world = world_of()
    return jsonify(paged(world.consents_of(item_id), world.page_size))


@api.get("/consents/<consent_id>")
def get_consent(consent_id: str):
    caller()
    return jsonify(world_of().find_consent(consent_id))


# Webhooks --------------------------------------------------------------------------------


@api.post("/webhooks")
def create_webhook():
    caller()
    payload = body()
    webhook = world_of().add_webhook(_event(payload.get("event")), _url(payload.get("url")), _headers(payload))
    # The OAS says 201; the live API answers 200, and the Node SDK refuses any other status.
    return jsonify(webhook)


@api.get("/webhooks")
def list_webhooks():
    caller()
    world = world_of()
    return jsonify(paged(world.webhooks_json(), world.page_size))


@api.get("/webhooks/<webhook_id>")
def get_webhook(webhook_id: str):
    caller()
    return jsonify(world_of().webhook_json(webhook_id))


@api.patch("/webhooks/<webhook_id>")
def update_webhook(webhook_id: str):
    caller()
    payload = body()
    changes: Json = {}
    if "url" in payload:
        changes["url"] = _url(payload["url"])
    if "event" in payload:
        changes["event"] = _event(payload["event"])
    if "headers" in payload:
        changes["headers"] = _headers(payload)
    if "enabled" in payload:
        if not isinstance(payload["enabled"], bool):
            raise bad_request("enabled must be a boolean", "INVALID_PARAMETERS")
        changes["enabled"] = payload["enabled"]
    return jsonify(world_of().change_webhook(webhook_id, changes))


@api.delete("/webhooks/<webhook_id>")
def delete_webhook(webhook_id: str):
    caller()
    world_of().remove_webhook(webhook_id)
    return jsonify(data.count_response(1))


def _headers(payload: Json) -> dict[str, str] | None:
    headers = payload.get("headers")
    return None if headers is None else string_map(headers, "headers")


def _event(value: Any) -> str:
    if not isinstance(value, str) or value not in WEBHOOK_EVENTS:
        raise bad_request(f"Invalid event type '{value}' for webhook", "INVALID_EVENT")
    return value


def _url(value: Any) -> str:
    # Unlike Pluggy, http:// and loopback hosts are accepted: the sandbox runs beside its receivers.
    parts = urlsplit(value) if isinstance(value, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise bad_request("url must be an http(s) URL", "INVALID_URL")
    return value
