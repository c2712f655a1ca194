"""Routes under /sandbox/ that tests and demos use to steer the sandbox; no authentication."""

from __future__ import annotations

import copy
from typing import Any

from flask import Blueprint, current_app, jsonify, redirect, request

from . import execution, ingest, products
from .errors import bad_request
from .state import FailRule, World
from .validation import body

DEFAULT_IDLE_TIMEOUT_S = 10.0
MAX_IDLE_TIMEOUT_S = 120.0
CONNECTOR_STATUSES = {"ONLINE", "OFFLINE", "UNSTABLE"}

control = Blueprint("sandbox_control", __name__, url_prefix="/sandbox")


def _world() -> World:
    return current_app.extensions["sandbox"]


def _count(payload: dict[str, Any], name: str, default: int) -> int:
    value = payload.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise bad_request(f"{name} must be a non-negative integer", "INVALID_PARAMETERS")
    return value


def _faults_json(world: World) -> dict[str, Any]:
    return {**world.deliverer.current_faults(), "fail": world.fail_rules()}


@control.get("/faults")
def get_faults():
    return jsonify(_faults_json(_world()))


@control.post("/faults")
def set_faults():
    payload = body()
    world = _world()
    changes: dict[str, Any] = {}
    for name in ("drop", "duplicate"):
        if name in payload:
            changes[name] = _count(payload, name, 0)
    if "reorder" in payload:
        if not isinstance(payload["reorder"], bool):
            raise bad_request("reorder must be a boolean", "INVALID_PARAMETERS")
        changes["reorder"] = payload["reorder"]
    if "delay_s" in payload:
        delay = payload["delay_s"]
        if isinstance(delay, bool) or not isinstance(delay, int | float) or delay < 0:
            raise bad_request("delay_s must be a non-negative number", "INVALID_PARAMETERS")
        changes["delay_s"] = float(delay)
    rules = [_fail_rule(rule) for rule in payload.get("fail", [])] if "fail" in payload else None
    world.deliverer.set_faults(**changes)
    if rules is not None:
        world.set_fail_rules(rules)
    return jsonify(_faults_json(world))


def _fail_rule(rule: Any) -> FailRule:
    if not isinstance(rule, dict) or not isinstance(rule.get("path"), str):
        raise bad_request("each fail rule needs method, path, status and count", "INVALID_PARAMETERS")
    status = rule.get("status")
    if isinstance(status, bool) or not isinstance(status, int) or not 400 <= status <= 599:
        raise bad_request("fail status must be an HTTP error status", "INVALID_PARAMETERS")
    retry_after = rule.get("retry_after")
    if retry_after is not None:
        retry_after = _count(rule, "retry_after", 0)
    code_description, data = rule.get("codeDescription"), rule.get("data")
    if code_description is not None and not isinstance(code_description, str):
        raise bad_request("codeDescription must be a string", "INVALID_PARAMETERS")
    if data is not None and not isinstance(data, dict):
        raise bad_request("data must be an object", "INVALID_PARAMETERS")
    return FailRule(
        method=str(rule.get("method", "GET")).upper(),
        path=rule["path"],
        status=status,
        count=_count(rule, "count", 1),
        retry_after=retry_after,
        code_description=code_description,
        data=data,
    )


@control.post("/items/<item_id>/restate")
def restate(item_id: str):
    payload = body()
    delete = _count(payload, "delete", 1)
    post_pending = payload.get("post_pending", False)
    if not isinstance(post_pending, bool):
        raise bad_request("post_pending must be a boolean", "INVALID_PARAMETERS")
    world = _world()
    with world.lock:
        record = world.record_for(item_id)
        return jsonify(ingest.restate(world, record, delete, post_pending))


@control.post("/items/<item_id>/add_transactions")
def add_transactions(item_id: str):
    payload = body()
    count = _count(payload, "count", 1)
    account_id = payload.get("accountId")
    world = _world()
    with world.lock:
        record = world.record_for(item_id)
        return jsonify(ingest.add_transactions(world, record, count, account_id))


@control.post("/items/<item_id>/investments/<any(add_movement, restate):change>")
def change_investment(item_id: str, change: str):
    """A purchase today in one of the item's investments (``add_movement``: the movement, and the
    position it moves), or its newest movement restated under a new id (``restate``).
    ``{"investmentId"}`` names the investment; without it, the item's first one."""
    investment_id = body().get("investmentId")
    if investment_id is not None and not isinstance(investment_id, str):
        raise bad_request("investmentId must be a string", "INVALID_PARAMETERS")
    world = _world()
    with world.lock:
        record = world.record_for(item_id)
        if change == "add_movement":
            return jsonify(copy.deepcopy(products.add_investment_movement(world, record, investment_id)))
        return jsonify(copy.deepcopy(products.restate_investment_movement(world, record, investment_id)))


@control.post("/items/<item_id>/loans/pay")
def pay_loans(item_id: str):
    """Each of the item's loans pays its next installment today."""
    world = _world()
    with world.lock:
        record = world.record_for(item_id)
        return jsonify(loans=copy.deepcopy(products.pay_loan_installments(world, record)))


@control.post("/items/<item_id>/products/history")
def add_product_history(item_id: str):
    """Older history the institution reports: ``{"investmentTransactions": N}`` old movements spread
    over the item's investments (purchases and their redemptions: the positions do not move) and
    ``{"bills": M}`` older bills of its card; answers what was added."""
    payload = body()
    movements, bills = _count(payload, "investmentTransactions", 0), _count(payload, "bills", 0)
    world = _world()
    with world.lock:
        record = world.record_for(item_id)
        return jsonify(products.add_history(world, record, movements, bills))  # serialised under the lock


@control.post("/items/<item_id>/auto_sync")
def auto_sync(item_id: str):
    """An execution started by Pluggy's own scheduler (triggeredBy SYNC; not rate-limited).
    ``{"transactions": N}``: the bank has N new transactions on each of the item's accounts for
    it (by default a few); they arrive as Pluggy's do, with the execution that moves
    ``lastUpdatedAt``."""
    payload = body()
    fresh = _count(payload, "transactions", 0) if "transactions" in payload else None
    world = _world()
    with world.lock:
        record = world.record_for(item_id)
        execution.refuse_if_busy(record)
        execution.start(world, record, "SYNC", "LOGIN_IN_PROGRESS")
        record.next_fresh = fresh  # under the lock: the execution's thread has not run yet
        return jsonify(copy.deepcopy(record.json))


@control.post("/items/<item_id>/authorize")
def authorize(item_id: str):
    """The user approves (``{"grant": true}``, the default) or refuses the access the item waits
    for: in the bank's app (WAITING_USER_ACTION) or at the institution (Open Finance OAuth)."""
    grant = body().get("grant", True)
    if not isinstance(grant, bool):
        raise bad_request("grant must be a boolean", "INVALID_PARAMETERS")
    world = _world()
    with world.lock:
        record = world.record_for(item_id)
        execution.authorize(world, record, grant)
        return jsonify(copy.deepcopy(record.json))


@control.get("/oauth/<item_id>")
def oauth(item_id: str):
    """The OAuth URL of an Open Finance item's prompt: opening it stands for the user's login and
    consent at the institution; the browser goes back to the connect token's oauthRedirectUri."""
    world = _world()
    with world.lock:
        record = world.record_for(item_id)
        execution.authorize(world, record, True)
        answer = copy.deepcopy(record.json)
    if record.oauth_redirect_uri:
        return redirect(record.oauth_redirect_uri, code=302)
    return jsonify(answer)


@control.post("/items/<item_id>/consent/<any(expire, revoke):how>")
def end_consent(item_id: str, how: str):
    """The Open Finance consent expires now, or the user revokes it at the institution: the item's
    data routes answer empty data from then on (World.withholds_data)."""
    return jsonify(_world().end_consent(item_id, how))


@control.post("/connectors/<int:connector_id>/status")
def connector_status(connector_id: int):
    status = body().get("status")
    if status not in CONNECTOR_STATUSES:
        raise bad_request(f"status must be one of {sorted(CONNECTOR_STATUSES)}", "INVALID_PARAMETERS")
    return jsonify(_world().set_connector_status(connector_id, status))


@control.get("/state")
def state():
    return jsonify(_world().snapshot())


@control.get("/deliveries")
def deliveries():
    return jsonify(deliveries=_world().deliverer.log())


@control.post("/idle")
def idle():
    try:
        timeout = float(request.args.get("timeout", DEFAULT_IDLE_TIMEOUT_S))
    except ValueError:
        raise bad_request("timeout must be a number of seconds", "INVALID_PARAMETERS") from None
    timeout = min(max(timeout, 0.0), MAX_IDLE_TIMEOUT_S)
    return jsonify(idle=_world().wait_idle(timeout))
