"""An item's execution: login, prompts, collection, merge, outcome; each step ``step_delay`` apart.

Steps: CREATING becomes LOGIN_IN_PROGRESS; the login either fails (LOGIN_ERROR) or asks what the
connector needs (an MFA code: WAITING_USER_INPUT; the user's approval in the bank's app:
WAITING_USER_ACTION; an Open Finance authorization at the institution: WAITING_USER_INPUT whose
``parameter.data`` is the OAuth URL); collection either fails (OUTDATED) or moves on to MERGING,
whose end writes the data and leaves the item UPDATED.

An execution runs on its own thread and stops at a prompt; an answer resumes it on a new thread.
``ItemRecord.generation`` identifies the current execution: a PATCH or a DELETE bumps it, and a
thread that finds another generation stops without touching the item.

With ``step_delay=None`` no thread runs: an execution waits until the item is next read, and that
read answers the item as it was and then lets the execution run to its end or its next prompt. So
the first read after a PATCH sees UPDATING and the next one the outcome, whatever the machine's
speed (the in-process double of the tests). ``advance`` runs one step, for tests that look at each.
"""

from __future__ import annotations

import threading
from datetime import datetime, timedelta

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
    record.authorized = False
    record.triggered_by = triggered_by
    record.next_fresh = None
    world.touch(
        record,
        status="UPDATING",
        executionStatus=execution_status,
        error=None,
        statusDetail=None,
        parameter=None,
        userAction=None,
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
        _fail(world, record, data.WRONG_MFA)
        return
    record.mfa_answered += 1
    record.stage = "login"
    world.touch(record, status="UPDATING", executionStatus="LOGIN_MFA_IN_PROGRESS", parameter=None)
    _spawn(world, record)


def authorize(world: World, record: ItemRecord, granted: bool) -> None:
    """The user approved (or refused) the access at the institution, in its app or through the
    OAuth URL (under the lock); an approved Open Finance login gets a new consent."""
    if record.stage != "authorizing":
        raise bad_request("Item is not waiting for the user's authorization", "ITEM_IS_NOT_WAITING_AUTHORIZATION")
    cancel_timer(record)
    if not granted:
        _fail(world, record, data.AUTHORIZATION_NOT_GRANTED)
        return
    record.authorized = True
    if record.connector.open_finance:
        world.grant_consent(record)
    record.stage = "login"
    world.touch(record, status="UPDATING", executionStatus="LOGIN_IN_PROGRESS", parameter=None, userAction=None)
    _spawn(world, record)


def oauth_url(world: World, record: ItemRecord) -> str:
    return f"{world.link_base()}/sandbox/oauth/{record.id}"


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
                keep_going = advance(world, record)
    finally:
        with world.executions_changed:
            world.running_executions -= 1
            world.executions_changed.notify_all()


def catch_up(world: World, record: ItemRecord) -> None:
    """Without a step delay: run the item's pending execution up to its end or its next prompt."""
    if world.step_delay is None:
        while advance(world, record):
            pass


def advance(world: World, record: ItemRecord) -> bool:
    """Run the execution's next step (under the lock); True when another step follows without
    waiting for anyone."""
    step = {"login": _login, "collect": _collect, "merge": _merge}.get(record.stage)
    return step is not None and step(world, record)


def _login(world: World, record: ItemRecord) -> bool:
    if record.json["executionStatus"] == "CREATING":
        world.touch(record, executionStatus="LOGIN_IN_PROGRESS")
        return True
    outcome = data.outcome_for(record.parameters, record.connector)
    if not outcome.login_ok:
        _fail(world, record, outcome)
        return False
    steps = record.connector.mfa_steps
    if record.mfa_answered < len(steps):
        _ask_for_input(world, record, data.mfa_parameter(steps[record.mfa_answered], _prompt_expiry(world)))
        return False
    if _needs_authorization(world, record, outcome):
        _ask_to_authorize(world, record)
        return False
    record.stage = "collect"
    world.touch(record, executionStatus="ACCOUNTS_IN_PROGRESS")
    login = events.item_event(record.event_rng, "item/login_succeeded", record.json, record.triggered_by)
    world.publish(record, [login])
    return True


def _needs_authorization(world: World, record: ItemRecord, outcome: data.Outcome) -> bool:
    if record.authorized:
        return False
    if record.connector.open_finance:
        # A live consent lets Pluggy refresh the item without its user.
        return record.consent is None or world.withholds_data(record.id)
    return outcome.asks_for_approval


def _prompt_expiry(world: World) -> datetime:
    return world.now() + timedelta(seconds=world.mfa_timeout_s)


def _ask_for_input(world: World, record: ItemRecord, parameter: Json, stage: str = "waiting") -> None:
    record.stage = stage
    world.touch(record, status="WAITING_USER_INPUT", executionStatus="WAITING_USER_INPUT", parameter=parameter)
    _expire_unanswered(world, record, data.INPUT_TIMEOUT)
    prompt = events.item_event(record.event_rng, "item/waiting_user_input", record.json, record.triggered_by)
    world.publish(record, [prompt])


def _ask_to_authorize(world: World, record: ItemRecord) -> None:
    """Open Finance: the OAuth URL, as a prompt; otherwise the bank asks for an approval in its app
    and a prompt left unanswered ends as USER_AUTHORIZATION_PENDING."""
    if record.connector.open_finance:
        parameter = data.oauth_parameter(oauth_url(world, record), _prompt_expiry(world))
        _ask_for_input(world, record, parameter, stage="authorizing")
        return
    record.stage = "authorizing"
    world.touch(
        record,
        status="WAITING_USER_ACTION",
        executionStatus="WAITING_USER_ACTION",
        userAction=data.user_action(_prompt_expiry(world)),
    )
    _expire_unanswered(world, record, data.AUTHORIZATION_PENDING)
    action = events.item_event(record.event_rng, "item/waiting_user_action", record.json, record.triggered_by)
    world.publish(record, [action])


def _expire_unanswered(world: World, record: ItemRecord, outcome: data.Outcome) -> None:
    prompt = (record.generation, record.mfa_answered, record.authorized)
    timer = threading.Timer(world.mfa_timeout_s, _expire, args=(world, record.id, prompt, outcome))
    timer.daemon = True
    record.mfa_timer = timer
    timer.start()


def _expire(world: World, item_id: str, prompt: tuple[int, int, bool], outcome: data.Outcome) -> None:
    with world.lock:
        record = world.items.get(item_id)
        still_waiting = (
            record is not None
            and (record.generation, record.mfa_answered, record.authorized) == prompt
            and record.stage in ("waiting", "authorizing")
        )
        if still_waiting:
            record.mfa_timer = None
            _fail(world, record, outcome)


def _collect(world: World, record: ItemRecord) -> bool:
    outcome = data.outcome_for(record.parameters, record.connector)
    if not outcome.succeeds:
        _fail(world, record, outcome)
        return False
    # Pluggy's MERGING: what was collected is being merged with what the item had (busy, like UPDATING).
    record.stage = "merge"
    world.touch(record, status="MERGING", executionStatus="TRANSACTIONS_IN_PROGRESS")
    return True


def _merge(world: World, record: ItemRecord) -> bool:
    outcome = data.outcome_for(record.parameters, record.connector)
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
    # item/created tells that the item finished connecting: its first good execution, once.
    finished = "item/updated" if record.announced else "item/created"
    record.announced = True
    payloads.append(events.item_event(record.event_rng, finished, record.json, record.triggered_by))
    world.publish(record, payloads)
    return False


def _fail(world: World, record: ItemRecord, outcome: data.Outcome) -> None:
    code = outcome.error_code or outcome.execution_status
    record.stage = "idle"
    failed_logins = record.json["consecutiveFailedLoginAttempts"]
    login_error = outcome.status == "LOGIN_ERROR"
    world.touch(
        record,
        status=outcome.status,
        executionStatus=code,
        error=data.item_error(code),
        parameter=None,
        userAction=None,
        consecutiveFailedLoginAttempts=failed_logins + 1 if login_error else failed_logins,
    )
    error = {"code": code, "message": data.ERROR_MESSAGES.get(code, code)}
    world.publish(
        record,
        [events.item_event(record.event_rng, "item/error", record.json, record.triggered_by, error=error)],
    )
