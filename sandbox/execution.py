"""An item's execution: login, MFA prompts, collection, outcome; each step ``step_delay`` apart.

An execution runs on its own thread and stops at WAITING_USER_INPUT; an MFA answer resumes it on a
new thread. ``ItemRecord.generation`` identifies the current execution: a PATCH or a DELETE bumps
it, and a thread that finds another generation stops without touching the item.

With ``step_delay=None`` no thread runs: an execution waits until the item is next read, and that
read answers the item as it was and then lets the execution run to its end or its next prompt. So
the first read after a PATCH sees UPDATING and the next one the outcome, whatever the machine's
speed (the in-process double of the tests).
"""

from __future__ import annotations

import threading
from datetime import timedelta

from . import data, events, ingest
from .data import Json
from .errors import PluggyApiError, bad_request
from .state import ItemRecord, World, cancel_timer

BUSY_STATUSES = {"UPDATING", "MERGING"}


def start(world: World, record: ItemRecord, triggered_by: str, execution_status: str) -> None:
    """Begin a new execution (under the lock)."""
    cancel_timer(record)
    record.generation += 1
    record.stage = "login"
    record.mfa_answered = 0
    record.triggered_by = triggered_by
    world.touch(
        record,
        status="UPDATING",
        executionStatus=execution_status,
        error=None,
        statusDetail=None,
        parameter=None,
    )
    _spawn(world, record)


def refuse_if_busy(record: ItemRecord) -> None:
    if record.json["status"] in BUSY_STATUSES:
        raise PluggyApiError(409, "Item is already updating", "ITEM_ALREADY_UPDATING")


def answer_mfa(world: World, record: ItemRecord, answer: Json) -> None:
    """Check the answer to the pending prompt (under the lock) and resume or fail the execution."""
    if record.json["status"] != "WAITING_USER_INPUT" or record.stage != "waiting":
        raise bad_request("Item is not waiting for user input", "ITEM_IS_NOT_WAITING_USER_INPUT")
    name = record.json["parameter"]["name"]
    if name not in answer:
        raise bad_request(f"Missing value for parameter '{name}'", "MISSING_MFA_PARAMETER", data={"parameter": name})
    cancel_timer(record)
    if str(answer[name]) != data.MFA_VALUE:
        _fail(world, record, "LOGIN_ERROR", "INVALID_CREDENTIALS_MFA")
        return
    record.mfa_answered += 1
    record.stage = "login"
    world.touch(record, status="UPDATING", executionStatus="LOGIN_MFA_IN_PROGRESS", parameter=None)
    _spawn(world, record)


def _spawn(world: World, record: ItemRecord) -> None:
    if world.step_delay is None:
        return  # run by the next read, see catch_up
    world.running_executions += 1
    thread = threading.Thread(
        target=_run,
        args=(world, record.id, record.generation),
        name=f"sandbox-execution-{record.id[:8]}",
        daemon=True,
    )
    thread.start()


def _run(world: World, item_id: str, generation: int) -> None:
    try:
        keep_going = True
        while keep_going:
            if world.stopping.wait(world.step_delay):
                return
            with world.lock:
                record = world.items.get(item_id)
                if record is None or record.generation != generation:
                    return
                keep_going = _advance(world, record)
    finally:
        with world.executions_changed:
            world.running_executions -= 1
            world.executions_changed.notify_all()


def catch_up(world: World, record: ItemRecord) -> None:
    """Without a step delay: run the item's pending execution up to its end or its next prompt."""
    if world.step_delay is None:
        while record.stage in ("login", "collect") and _advance(world, record):
            pass


def _advance(world: World, record: ItemRecord) -> bool:
    """Run the next step; True when another step follows at once."""
    if record.stage == "login":
        return _login(world, record)
    if record.stage == "collect":
        _collect(world, record)
    return False


def _login(world: World, record: ItemRecord) -> bool:
    outcome = data.outcome_for(record.parameters)
    if not outcome.login_ok:
        _fail(world, record, outcome.status, outcome.error_code)
        return False
    steps = data.CONNECTORS[record.json["connector"]["id"]].mfa_steps
    if record.mfa_answered < len(steps):
        _ask_for_input(world, record, steps[record.mfa_answered])
        return False
    record.stage = "collect"
    world.touch(record, executionStatus="ACCOUNTS_IN_PROGRESS")
    login = events.item_event(record.event_rng, "item/login_succeeded", record.json, record.triggered_by)
    world.publish(record, [login])
    return True


def _ask_for_input(world: World, record: ItemRecord, name: str) -> None:
    expires_at = world.now() + timedelta(seconds=world.mfa_timeout_s)
    record.stage = "waiting"
    world.touch(
        record,
        status="WAITING_USER_INPUT",
        executionStatus="WAITING_USER_INPUT",
        parameter=data.mfa_parameter(name, expires_at),
    )
    timer = threading.Timer(
        world.mfa_timeout_s, _expire_input, args=(world, record.id, record.generation, record.mfa_answered)
    )
    timer.daemon = True
    record.mfa_timer = timer
    timer.start()
    prompt = events.item_event(record.event_rng, "item/waiting_user_input", record.json, record.triggered_by)
    world.publish(record, [prompt])


def _expire_input(world: World, item_id: str, generation: int, answered: int) -> None:
    with world.lock:
        record = world.items.get(item_id)
        still_waiting = (
            record is not None
            and record.generation == generation
            and record.mfa_answered == answered
            and record.stage == "waiting"
        )
        if still_waiting:
            record.mfa_timer = None
            _fail(world, record, "OUTDATED", "USER_INPUT_TIMEOUT")


def _collect(world: World, record: ItemRecord) -> None:
    outcome = data.outcome_for(record.parameters)
    if not outcome.succeeds:
        _fail(world, record, outcome.status, outcome.error_code)
        return
    now = world.now()
    changes = ingest.Changes() if record.arranged else ingest.collect(world, record, outcome)
    partial = outcome.execution_status == "PARTIAL_SUCCESS"
    record.stage = "idle"
    world.touch(
        record,
        status="UPDATED",
        executionStatus=outcome.execution_status,
        statusDetail=data.partial_status_detail(now) if partial else None,
        lastUpdatedAt=data.iso(now),
        consecutiveFailedLoginAttempts=0,
    )
    payloads = changes.payloads(world, record, data.iso(now), record.triggered_by)
    payloads.append(events.item_event(record.event_rng, "item/updated", record.json, record.triggered_by))
    world.publish(record, payloads)


def _fail(world: World, record: ItemRecord, status: str, code: str) -> None:
    record.stage = "idle"
    failed_logins = record.json["consecutiveFailedLoginAttempts"]
    world.touch(
        record,
        status=status,
        executionStatus=code,
        error=data.item_error(code),
        parameter=None,
        consecutiveFailedLoginAttempts=failed_logins + 1 if status == "LOGIN_ERROR" else failed_logins,
    )
    error = {"code": code, "message": data.ERROR_MESSAGES.get(code, code)}
    world.publish(
        record,
        [events.item_event(record.event_rng, "item/error", record.json, record.triggered_by, error=error)],
    )
