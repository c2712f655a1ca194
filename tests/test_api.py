"""The HTTP API (/api/banking) over the Flask test client, with Pluggy faked behind `responses`."""

from __future__ import annotations

import re
import threading
from datetime import timedelta

import pytest
import sqlalchemy as sa

from api.schemas import SendMfa
from models import Account, Connection, Job, SyncRun, WebhookEvent
from models.base import utcnow
from sandbox import data as pf
from sync import runs, scheduling
from sync.item_state import apply_item
from sync.jobs import sync_worker
from sync.runtime import pluggy_client
from sync.tokens import issue_api_token, issue_webhook_token, webhook_token_is_valid
from sync.users import create_user, rotate_token
from tests.fake_pluggy import MFA_CONNECTOR, MFA_VALUE, now_iso

API = "/api/banking"


@pytest.fixture
def headers(app, user):
    return {"Authorization": f"Bearer {issue_api_token(app.config['SECRET_KEY'], user)}"}


@pytest.fixture
def stranger(app, session, fake_pluggy):
    """Another user with a connection of their own."""
    other = create_user(session, "bruno@example.com")
    item = fake_pluggy.add_item()
    connection = Connection(user_id=other.id, item_id=item["id"])
    apply_item(connection, item)
    session.add(connection)
    session.commit()
    return {
        "connection": connection,
        "headers": {"Authorization": f"Bearer {issue_api_token(app.config['SECRET_KEY'], other)}"},
    }


def url(connection, action: str = "") -> str:
    return f"{API}/connections/{connection.id}/{action + '/' if action else ''}"


def error_code(response) -> str:
    return response.get_json()["error"]["code"]


# Authentication -------------------------------------------------------------------------------

ENDPOINTS = [
    ("get", "/connections/"),
    ("post", "/connections/"),
    ("get", "/connections/1/"),
    ("delete", "/connections/1/"),
    ("post", "/connections/1/sync_transactions/"),
    ("post", "/connections/sync_all/"),
    ("post", "/connections/1/send_mfa/"),
    ("get", "/connections/1/check_status/"),
    ("get", "/connections/1/accounts/"),
    ("get", "/connections/1/transactions/"),
    ("get", "/connections/1/sync_runs/"),
    ("get", "/connections/1/identity/"),
    ("get", "/connections/1/loans/"),
    ("post", "/connect_token/"),
]


@pytest.mark.parametrize("method, path", ENDPOINTS)
@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer", "Bearer not-a-token", "Basic dXNlcjpwYXNz", "bearer {webhook_token}"],
    ids=["missing", "empty", "forged", "other scheme", "token of another purpose"],
)
def test_every_endpoint_needs_a_valid_token(app, client, connection, method, path, authorization):
    headers = {}
    if authorization:
        headers["Authorization"] = authorization.format(webhook_token=issue_webhook_token(app.config["SECRET_KEY"]))

    response = getattr(client, method)(API + path, headers=headers)

    assert response.status_code == 401
    assert error_code(response) == "unauthorized"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_a_rotated_token_is_revoked(client, session, user, headers, connection):
    assert client.get(f"{API}/connections/", headers=headers).status_code == 200

    rotate_token(session, user)

    assert client.get(f"{API}/connections/", headers=headers).status_code == 401


@pytest.mark.parametrize("method, path", [e for e in ENDPOINTS if "/1/" in e[1]])
def test_another_users_connection_is_as_absent_as_a_missing_one(client, headers, stranger, fake_pluggy, method, path):
    theirs = path.replace("/1/", f"/{stranger['connection'].id}/")
    missing = path.replace("/1/", "/999999/")

    for target in (theirs, missing):
        response = getattr(client, method)(API + target, headers=headers, json={"mfa_value": "1"})
        assert (response.status_code, error_code(response)) == (404, "connection_not_found")
    assert fake_pluggy.calls_to("DELETE", r"/items/.*") == []


# Connections ----------------------------------------------------------------------------------


def test_registering_an_item_answers_201_with_the_connection_then_200(client, headers, session, fake_pluggy):
    item = fake_pluggy.add_item()

    first = client.post(f"{API}/connections/", headers=headers, json={"item_id": item["id"]})
    second = client.post(f"{API}/connections/", headers=headers, json={"item_id": item["id"]})

    assert (first.status_code, second.status_code) == (201, 200)
    body = first.get_json()
    assert body == second.get_json()
    assert body["item_id"] == item["id"]
    assert body["connector"] == {"id": 0, "name": "Pluggy Bank"}
    assert (body["item_status"], body["sync_status"], body["error"], body["mfa"]) == ("UPDATED", "UPDATED", None, None)
    assert body["last_updated_at"] == "2024-05-10T09:15:42.118000+00:00"
    assert session.scalars(sa.select(Job)).one().kind == "initial_sync"


def test_an_item_pluggy_does_not_know_is_404(client, headers, fake_pluggy):
    response = client.post(f"{API}/connections/", headers=headers, json={"item_id": "no-such-item"})
    assert (response.status_code, error_code(response)) == (404, "item_not_found")


def test_an_item_of_another_user_is_answered_as_an_unknown_one(client, headers, stranger, fake_pluggy):
    """Nothing tells a caller that another user's item exists: not the answer, nor the time taken
    (both ask Pluggy)."""
    theirs = client.post(f"{API}/connections/", headers=headers, json={"item_id": stranger["connection"].item_id})
    unknown = client.post(f"{API}/connections/", headers=headers, json={"item_id": "no-such-item"})

    assert (theirs.status_code, error_code(theirs)) == (404, "item_not_found")
    assert (theirs.status_code, theirs.get_json()) == (unknown.status_code, unknown.get_json())
    assert fake_pluggy.count("GET", f"/items/{stranger['connection'].item_id}") == 1


def test_list_and_get_show_only_the_users_connections(client, headers, connection, stranger):
    listed = client.get(f"{API}/connections/", headers=headers).get_json()["connections"]
    assert [c["id"] for c in listed] == [connection.id]
    assert client.get(url(connection), headers=headers).get_json()["item_id"] == connection.item_id


def test_deleting_a_connection_deletes_the_item_at_pluggy_and_the_local_data(
    client, headers, session, connection, fake_pluggy
):
    scheduling.queue_initial_sync(session, connection)
    session.commit()
    sync_worker(client.application, pluggy_client()).run_one(session, "w")

    response = client.delete(url(connection), headers=headers)

    assert response.status_code == 204
    assert fake_pluggy.count("DELETE", f"/items/{connection.item_id}") == 1
    session.expire_all()
    assert session.scalar(sa.select(sa.func.count()).select_from(Account)) == 0
    # The connection stays as a tombstone (with its sync runs, the service's own record): it leaves the API.
    assert (connection.deleted_reason, connection.data_removed_at is not None) == ("user_request", True)
    assert session.scalar(sa.select(sa.func.count()).select_from(SyncRun)) == 1
    assert client.get(f"{API}/connections/", headers=headers).get_json() == {"connections": [], "next_cursor": None}


def test_deleting_a_connection_pluggy_already_forgot_still_deletes_ours(
    client, headers, session, connection, fake_pluggy
):
    fake_pluggy.remove_item(connection.item_id)

    assert client.delete(url(connection), headers=headers).status_code == 204
    session.expire_all()
    assert (connection.deleted_at is not None, connection.deleted_reason) == (True, "user_request")


def test_when_pluggy_fails_the_delete_nothing_is_deleted(client, headers, session, connection, fake_pluggy):
    fake_pluggy.refuse_next("DELETE", f"/items/{connection.item_id}", 500)

    response = client.delete(url(connection), headers=headers)

    assert (response.status_code, error_code(response)) == (502, "pluggy_unavailable")
    assert session.scalar(sa.select(sa.func.count()).select_from(Connection)) == 1
    session.expire_all()
    assert connection.deleted_at is None


# The sync table -------------------------------------------------------------------------------


def sync(client, headers, connection, **kwargs):
    return client.post(url(connection, "sync_transactions"), headers=headers, **kwargs)


def set_item(fake_pluggy, connection, **fields):
    fake_pluggy.set_item(connection.item_id, **fields)


def test_sync_started_is_202_with_the_run(client, headers, connection, fake_pluggy):
    response = sync(client, headers, connection)

    body = response.get_json()
    assert response.status_code == 202
    assert body["status"] == "SYNC_STARTED" and "error" not in body
    assert body["sync_run_id"] == 1
    assert body["connection"]["sync_status"] == "UPDATING"


def test_already_syncing_is_409_with_our_run(client, headers, connection):
    started = sync(client, headers, connection).get_json()

    response = sync(client, headers, connection)

    assert response.status_code == 409
    body = response.get_json()
    assert (body["status"], body["sync_run_id"], body["error"]["code"]) == (
        "ALREADY_SYNCING",
        started["sync_run_id"],
        "already_syncing",
    )


def test_mfa_required_is_409_with_the_prompt(client, headers, connection, fake_pluggy):
    set_item(
        fake_pluggy,
        connection,
        status="WAITING_USER_INPUT",
        parameter=pf.mfa_parameter(type="image", data="data:image/png;base64,AAA"),
    )

    response = sync(client, headers, connection)

    assert response.status_code == 409
    body = response.get_json()
    assert body["status"] == "MFA_REQUIRED"
    assert body["mfa"] == {
        "name": "token",
        "label": "Token",
        "type": "image",
        "expires_at": "2024-05-10T09:20:42.118Z",
        "data": "data:image/png;base64,AAA",
        "placeholder": "123456",
        "assistive_text": "Digite o token de 6 dígitos enviado por SMS",
        "validation": "^\\d{6}$",
        "validation_message": "O token deve ter 6 dígitos",
    }
    assert body["connection"]["mfa"]["name"] == "token"


def test_user_action_required_is_409_with_the_action(client, headers, connection, fake_pluggy):
    set_item(fake_pluggy, connection, status="WAITING_USER_ACTION", userAction={"instructions": "Aprove no app"})

    response = sync(client, headers, connection)

    assert (response.status_code, response.get_json()["user_action"]) == (409, {"instructions": "Aprove no app"})


def test_credentials_required_is_409_with_an_update_mode_token(client, headers, connection, fake_pluggy):
    set_item(fake_pluggy, connection, status="LOGIN_ERROR", error=pf.item_error())

    response = sync(client, headers, connection)

    body = response.get_json()
    assert (response.status_code, body["status"]) == (409, "CREDENTIALS_REQUIRED")
    assert body["connect_token"]["item_id"] == connection.item_id
    issued = fake_pluggy.world.authenticate(body["connect_token"]["access_token"], allow_connect=True)
    assert (issued.kind, issued.item_id) == ("connect", connection.item_id)  # Pluggy's update-mode token
    assert body["connection"]["error"] == {"code": "INVALID_CREDENTIALS", "message": "Credenciais inválidas"}


def test_rate_limited_is_429_with_retry_after(client, headers, connection, fake_pluggy):
    fake_pluggy.refuse_next("PATCH", f"/items/{connection.item_id}", 429, headers={"Retry-After": "60"})

    response = sync(client, headers, connection)

    assert response.status_code == 429
    assert (response.get_json()["retry_after"], response.headers["Retry-After"]) == (60, "60")


def test_error_is_502_with_the_error(client, headers, connection, fake_pluggy):
    fake_pluggy.refuse_next("PATCH", f"/items/{connection.item_id}", 500)

    response = sync(client, headers, connection)

    assert response.status_code == 502
    assert response.get_json()["error"]["code"] == "pluggy_unavailable"


@pytest.fixture
def running_worker(app, pluggy_api):
    """A worker in a background thread, as in production beside the web process."""
    app.config["SYNC_WATCH_INTERVAL_S"] = 0.05
    worker = sync_worker(app, pluggy_api, poll_interval=0.05)
    thread = threading.Thread(target=worker.run)
    thread.start()
    yield worker
    worker.request_stop()
    thread.join(10)


def test_success_is_200_when_the_run_finishes_within_wait(client, headers, connection, fake_pluggy, running_worker):
    account_id = fake_pluggy.accounts[connection.item_id][0]["id"]
    fake_pluggy.add_transaction(account_id, date=f"{utcnow().date()}T03:00:00.000Z")

    response = sync(client, headers, connection, query_string={"wait": "30"})

    body = response.get_json()
    assert response.status_code == 200, body
    assert body["status"] == "SUCCESS"
    assert (body["sync_run"]["status"], body["sync_run"]["created"], body["sync_run"]["accounts"]) == ("success", 1, 1)
    assert body["connection"]["sync_status"] == "UPDATED"


def test_wait_reports_how_a_sync_ended_when_it_needs_the_user(client, headers, connection, fake_pluggy, running_worker):
    fake_pluggy.set_connector(connection.item_id, MFA_CONNECTOR)  # the update asks for a code

    response = sync(client, headers, connection, query_string={"wait": "30"})

    assert (response.status_code, response.get_json()["status"]) == (409, "MFA_REQUIRED")
    assert response.get_json()["mfa"]["name"] == "token"


def test_without_trigger_update_only_what_pluggy_has_is_read(client, headers, connection, fake_pluggy, running_worker):
    response = sync(client, headers, connection, json={"trigger_update": False}, query_string={"wait": "30"})

    assert (response.status_code, response.get_json()["status"]) == (200, "SUCCESS")
    assert fake_pluggy.count("PATCH", r"/items/.*") == 0


@pytest.mark.parametrize(
    "kwargs, code",
    [
        ({"query_string": {"wait": "61"}}, "invalid_request"),
        ({"query_string": {"wait": "soon"}}, "invalid_request"),
        ({"query_string": {"wiat": "5"}}, "invalid_request"),
        ({"json": {"trigger_update": "yes"}}, "invalid_request"),
        ({"json": {"trigger_update": True, "force": True}}, "invalid_request"),
        ({"json": [True]}, "invalid_json"),
        ({"data": "{not json", "content_type": "application/json"}, "invalid_json"),
    ],
    ids=[
        "wait too long",
        "wait not a number",
        "unknown parameter",
        "wrong type",
        "unknown field",
        "not an object",
        "broken json",
    ],
)
def test_bad_sync_requests_are_400(client, headers, connection, fake_pluggy, kwargs, code):
    response = sync(client, headers, connection, **kwargs)

    assert (response.status_code, error_code(response)) == (400, code)
    assert fake_pluggy.count("PATCH", r"/items/.*") == 0


def test_parallel_requests_for_one_connection_send_one_patch(app, headers, connection, fake_pluggy):
    statuses, barrier = [], threading.Barrier(5, timeout=10)
    target = url(connection, "sync_transactions")

    def request() -> None:
        client = app.test_client()
        barrier.wait()
        statuses.append(client.post(target, headers=headers).status_code)

    threads = [threading.Thread(target=request) for _ in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert fake_pluggy.count("PATCH", r"/items/.*") == 1
    assert sorted(statuses) == [202, 409, 409, 409, 409]


def test_sync_all_updates_each_connection_once(client, headers, session, user, connection, fake_pluggy):
    fake_pluggy.add_account(connection.item_id, name="Poupança")
    locked = fake_pluggy.add_item(status="LOGIN_ERROR")
    other = Connection(user_id=user.id, item_id=locked["id"])
    apply_item(other, locked)
    session.add(other)
    session.commit()

    response = client.post(f"{API}/connections/sync_all/", headers=headers)

    results = response.get_json()["results"]
    assert response.status_code == 200
    assert [(r["connection_id"], r["status"]) for r in results] == [
        (connection.id, "SYNC_STARTED"),
        (other.id, "CREDENTIALS_REQUIRED"),
    ]
    assert "connect_token" in results[1]
    assert fake_pluggy.count("PATCH", r"/items/.*") == 1


# MFA and status -------------------------------------------------------------------------------


def test_the_mfa_round_trip_over_http(client, headers, connection, fake_pluggy, caplog, session):
    set_item(fake_pluggy, connection, status="WAITING_USER_INPUT", parameter=pf.mfa_parameter())
    assert sync(client, headers, connection).get_json()["status"] == "MFA_REQUIRED"

    response = client.post(url(connection, "send_mfa"), headers=headers, json={"mfa_value": MFA_VALUE})

    assert response.status_code == 200
    assert response.get_json()["status"] == "MFA_SENT"
    ((_, _, _, body),) = fake_pluggy.calls_to("POST", r"/items/[^/]+/mfa")
    assert body == {"token": MFA_VALUE}
    assert MFA_VALUE not in caplog.text and MFA_VALUE not in response.get_data(as_text=True)


def test_mfa_parameters_are_sent_as_given(client, headers, connection, fake_pluggy):
    set_item(fake_pluggy, connection, status="WAITING_USER_INPUT", parameter=pf.mfa_parameter(name="sms"))

    client.post(url(connection, "send_mfa"), headers=headers, json={"parameters": {"sms": MFA_VALUE}})

    ((_, _, _, body),) = fake_pluggy.calls_to("POST", r"/items/[^/]+/mfa")
    assert body == {"sms": MFA_VALUE}


@pytest.mark.parametrize("body", [{}, {"mfa_value": ""}, {"parameters": {}}])
def test_mfa_without_a_value_is_400(client, headers, connection, body):
    response = client.post(url(connection, "send_mfa"), headers=headers, json=body)
    assert (response.status_code, error_code(response)) == (400, "mfa_value_required")


def test_an_mfa_parameter_named_with_a_control_character_is_400(client, headers, connection):
    response = client.post(url(connection, "send_mfa"), headers=headers, json={"parameters": {"to\u0000ken": "1"}})
    assert (response.status_code, error_code(response)) == (400, "invalid_request")


def test_an_mfa_body_never_shows_its_values():
    for body in (SendMfa(mfa_value="123456"), SendMfa(parameters={"token": "654321"})):
        assert "123456" not in f"{body!r} {body}" and "654321" not in f"{body!r} {body}"


def test_mfa_with_a_wrong_type_is_400_without_echoing_it(client, headers, connection):
    response = client.post(url(connection, "send_mfa"), headers=headers, json={"mfa_value": 987654})
    assert (response.status_code, error_code(response)) == (400, "invalid_request")
    assert "987654" not in response.get_data(as_text=True)


def test_mfa_when_the_bank_is_not_waiting_is_409(client, headers, connection, fake_pluggy):
    response = client.post(url(connection, "send_mfa"), headers=headers, json={"mfa_value": MFA_VALUE})

    assert response.status_code == 409
    assert (response.get_json()["status"], error_code(response)) == ("MFA_NOT_REQUIRED", "mfa_not_required")
    assert fake_pluggy.calls_to("POST", r"/items/[^/]+/mfa") == []


def test_pluggys_refusal_of_an_mfa_value_is_passed_on(client, headers, connection, fake_pluggy):
    set_item(fake_pluggy, connection, status="WAITING_USER_INPUT", parameter=pf.mfa_parameter())
    fake_pluggy.refuse_next("POST", f"/items/{connection.item_id}/mfa", 400, "INVALID_MFA_PARAMETER")

    response = client.post(url(connection, "send_mfa"), headers=headers, json={"mfa_value": MFA_VALUE})

    assert (response.status_code, error_code(response)) == (400, "invalid_mfa_parameter")


def test_check_status_reads_pluggy_fresh_and_stores_it(client, headers, session, connection, fake_pluggy):
    set_item(
        fake_pluggy,
        connection,
        status="OUTDATED",
        executionStatus="SITE_NOT_AVAILABLE",
        error=pf.item_error("SITE_NOT_AVAILABLE"),
    )
    runs.close_run(session, runs.open_run(session, connection, "manual"), "error", error="down")

    body = client.get(url(connection, "check_status"), headers=headers).get_json()

    assert (body["status"], body["item_status"], body["execution_status"]) == (
        "OUTDATED",
        "OUTDATED",
        "SITE_NOT_AVAILABLE",
    )
    assert body["error"]["code"] == "SITE_NOT_AVAILABLE"
    assert body["last_sync_run"]["status"] == "error"
    assert body["connection"]["id"] == connection.id
    session.expire_all()
    assert session.get(Connection, connection.id).execution_status == "SITE_NOT_AVAILABLE"


def test_check_status_of_an_item_gone_from_pluggy_is_404(client, headers, connection, fake_pluggy):
    fake_pluggy.remove_item(connection.item_id)
    response = client.get(url(connection, "check_status"), headers=headers)
    assert (response.status_code, error_code(response)) == (404, "item_not_found")


# Stored data ----------------------------------------------------------------------------------


@pytest.fixture
def synced(app, session, connection, fake_pluggy, pluggy_api):
    """The connection after a first sync of 7 transactions on two accounts (one deleted since)."""
    checking = fake_pluggy.accounts[connection.item_id][0]
    card = fake_pluggy.add_account(connection.item_id, type="CREDIT", subtype="CREDIT_CARD", name="Cartão")
    today = utcnow().date()
    for n in range(5):
        fake_pluggy.add_transaction(
            checking["id"], date=f"{today - timedelta(days=n)}T03:00:00.000Z", amount=-(n + 1) * 10.5
        )
    fake_pluggy.add_transaction(card["id"], date=f"{today}T03:00:00.000Z", amount=-99.9, status="PENDING")
    gone = fake_pluggy.add_transaction(card["id"], date=f"{today - timedelta(days=1)}T03:00:00.000Z", amount=-1.0)
    scheduling.queue_initial_sync(session, connection)
    session.commit()
    worker = sync_worker(app, pluggy_api)
    worker.run_one(session, "w")
    fake_pluggy.remove_transaction(card["id"], gone["id"])
    fake_pluggy.set_item(connection.item_id, lastUpdatedAt=now_iso())  # Pluggy's next update found it gone
    scheduling.queue_fetch(session, connection, "webhook")
    session.commit()
    worker.run_one(session, "w")
    return {"checking": checking, "card": card, "today": today}


def transactions(client, headers, connection, **query):
    return client.get(url(connection, "transactions"), headers=headers, query_string=query)


def test_accounts(client, headers, connection, synced):
    accounts = client.get(url(connection, "accounts"), headers=headers).get_json()["accounts"]
    assert [(a["id"], a["type"], a["balance"], a["currency_code"]) for a in accounts] == [
        (synced["checking"]["id"], "BANK", 3210.55, "BRL"),
        (synced["card"]["id"], "CREDIT", 3210.55, "BRL"),
    ]


def test_transactions_newest_first_without_deleted_ones(client, headers, connection, synced):
    body = transactions(client, headers, connection).get_json()

    assert (body["page"], body["page_size"], body["total"]) == (1, 50, 6)
    first = body["transactions"][0]
    assert first["date"].startswith(str(synced["today"]))
    assert {t["amount"] for t in body["transactions"]} >= {-10.5, -52.5, -99.9}


def test_transactions_filters(client, headers, connection, synced):
    today = synced["today"]
    by_account = transactions(client, headers, connection, account_id=synced["card"]["id"]).get_json()
    assert [t["amount"] for t in by_account["transactions"]] == [-99.9]
    pending = transactions(client, headers, connection, status="PENDING").get_json()
    assert pending["total"] == 1
    window = transactions(
        client, headers, connection, date_from=str(today - timedelta(days=2)), date_to=str(today - timedelta(days=1))
    ).get_json()
    assert sorted(t["amount"] for t in window["transactions"]) == [-31.5, -21.0]
    with_deleted = transactions(client, headers, connection, include_deleted="true").get_json()
    assert with_deleted["total"] == 7
    assert sum(1 for t in with_deleted["transactions"] if t["deleted_at"]) == 1


def test_transactions_pagination(client, headers, connection, synced):
    pages = [transactions(client, headers, connection, page=n, page_size=4).get_json() for n in (1, 2, 3)]
    assert [len(p["transactions"]) for p in pages] == [4, 2, 0]
    assert {p["total"] for p in pages} == {6}
    ids = [t["id"] for p in pages for t in p["transactions"]]
    assert len(set(ids)) == 6


@pytest.mark.parametrize(
    "query, status, code",
    [
        ({"account_id": "not-this-connections"}, 404, "account_not_found"),
        ({"date_from": "yesterday"}, 400, "invalid_request"),
        ({"date_from": "0"}, 400, "invalid_request"),  # pydantic alone: the Unix epoch's day
        ({"date_to": "20240501"}, 400, "invalid_request"),
        ({"page_size": ["abc", "5"]}, 400, "invalid_request"),  # given twice
        ({"status": "SETTLED"}, 400, "invalid_request"),
        ({"page": "0"}, 400, "invalid_request"),
        ({"page_size": "501"}, 400, "invalid_request"),
        ({"include_deleted": "maybe"}, 400, "invalid_request"),
        ({"sort": "amount"}, 400, "invalid_request"),
    ],
)
def test_bad_transaction_queries(client, headers, connection, query, status, code):
    response = transactions(client, headers, connection, **query)
    assert (response.status_code, error_code(response)) == (status, code)


def test_date_from_after_date_to_is_400_naming_both(client, headers, connection):
    response = transactions(client, headers, connection, date_from="2024-05-02", date_to="2024-05-01")

    assert (response.status_code, error_code(response)) == (400, "invalid_request")
    message = response.get_json()["error"]["message"]
    assert message.startswith("query: ") and "date_from" in message and "date_to" in message


def test_one_day_as_date_from_and_date_to_is_answered(client, headers, connection, synced):
    today = str(synced["today"])
    body = transactions(client, headers, connection, date_from=today, date_to=today).get_json()
    assert body["total"] == 2


def test_another_connections_account_is_not_found(client, headers, connection, stranger, session):
    session.add(Account(connection_id=stranger["connection"].id, pluggy_id="theirs", type="BANK", name="x", raw={}))
    session.commit()
    response = transactions(client, headers, connection, account_id="theirs")
    assert response.status_code == 404


def test_sync_runs_newest_first(client, headers, connection, synced):
    body = client.get(url(connection, "sync_runs"), headers=headers).get_json()
    assert [(r["trigger"], r["status"]) for r in body["sync_runs"]] == [("webhook", "success"), ("initial", "success")]
    latest = body["sync_runs"][0]
    assert (latest["deleted"], latest["error"]) == (1, None)
    assert latest["started_at"].endswith("+00:00")


# Connect tokens -------------------------------------------------------------------------------


def test_a_connect_token_for_a_new_connection(client, headers, user, fake_pluggy):
    response = client.post(f"{API}/connect_token/", headers=headers)

    body = response.get_json()
    assert response.status_code == 200
    assert body["item_id"] is None and body["access_token"]
    assert body["expires_at"].endswith("+00:00")
    ((_, _, _, sent),) = fake_pluggy.calls_to("POST", "/connect_token")
    assert sent == {"options": {"clientUserId": str(user.id), "avoidDuplicates": True}}


def test_a_connect_token_in_update_mode_is_cached(client, headers, connection, fake_pluggy):
    first = client.post(f"{API}/connect_token/", headers=headers, json={"item_id": connection.item_id}).get_json()
    second = client.post(f"{API}/connect_token/", headers=headers, json={"item_id": connection.item_id}).get_json()

    assert first == second and first["item_id"] == connection.item_id
    assert fake_pluggy.count("POST", "/connect_token") == 1


def test_a_connect_token_for_an_unknown_or_another_users_item_is_item_not_found(client, headers, stranger, fake_pluggy):
    """The answer registering an unknown item gets, word for word."""
    theirs = client.post(f"{API}/connect_token/", headers=headers, json={"item_id": stranger["connection"].item_id})
    unknown = client.post(f"{API}/connect_token/", headers=headers, json={"item_id": "no-such-item"})
    registering = client.post(f"{API}/connections/", headers=headers, json={"item_id": "no-such-item"})

    assert (theirs.status_code, error_code(theirs)) == (404, "item_not_found")
    assert theirs.get_json() == unknown.get_json() == registering.get_json()
    assert theirs.status_code == unknown.status_code == registering.status_code
    assert fake_pluggy.count("POST", "/connect_token") == 0


def test_with_a_public_url_the_token_carries_a_signed_webhook_url(app, client, headers, fake_pluggy):
    app.config["PUBLIC_BASE_URL"] = "https://sync.example.com"

    client.post(f"{API}/connect_token/", headers=headers)

    ((_, _, _, sent),) = fake_pluggy.calls_to("POST", "/connect_token")
    webhook_url = sent["options"]["webhookUrl"]
    prefix = "https://sync.example.com/webhooks/pluggy/"
    assert webhook_url.startswith(prefix)
    assert webhook_token_is_valid(app.config["SECRET_KEY"], webhook_url[len(prefix) :])


def test_a_path_without_its_trailing_slash_answers_get_and_post(client, headers, fake_pluggy):
    item = fake_pluggy.add_item()

    created = client.post(f"{API}/connections", headers=headers, json={"item_id": item["id"]})
    listed = client.get(f"{API}/connections", headers=headers)
    shown = client.get(f"{API}/connections/{created.get_json()['id']}", headers=headers)

    assert (created.status_code, created.get_json()["item_id"]) == (201, item["id"])
    assert (listed.status_code, [c["item_id"] for c in listed.get_json()["connections"]]) == (200, [item["id"]])
    assert (shown.status_code, shown.get_json()["item_id"]) == (200, item["id"])


def test_without_pluggy_keys_the_api_says_so(app, client, headers, connection):
    app.config["PLUGGY_CLIENT_ID"] = None
    response = sync(client, headers, connection)
    assert (response.status_code, error_code(response)) == (503, "pluggy_not_configured")


# Malformed requests never get a 500 -----------------------------------------------------------

JUNK_BODIES = [
    {"data": b"\xff\xfe\x00", "content_type": "application/json"},
    {"data": "null", "content_type": "application/json"},
    {"data": "1e999", "content_type": "application/json"},
    {"data": '{"a": ' * 2000, "content_type": "application/json"},
    {"json": {"item_id": None, "mfa_value": None, "trigger_update": None, "parameters": None}},
    {"json": {"item_id": "x" * 5000, "mfa_value": "x" * 5000}},
    {"json": {"item_id": ["a"], "mfa_value": {"a": 1}, "parameters": ["token"], "trigger_update": 1}},
    {"json": {"parameters": {"token": 123}}},
    {"json": {"item_id": "../../etc/passwd"}},
    {"data": "item_id=1", "content_type": "application/x-www-form-urlencoded"},
]
JUNK_PATHS = [
    "/connections/0/",
    "/connections/-1/",
    "/connections/99999999999999999999/",
    "/connections/1.5/",
    "/connections/%00/",
]
JUNK_QUERIES = [
    {"wait": "nan"},
    {"wait": "-1"},
    {"wait": "1e309"},
    {"page": "1e3"},
    {"page": "99999999999999999999"},
    {"page_size": "-5"},
    {"date_from": "2026-02-30"},
    {"date_to": "0000-00-00"},
    {"account_id": "x" * 500},
    {"limit": "all"},
    {"status": ""},
]


@pytest.mark.parametrize("method, path", ENDPOINTS)
def test_malformed_requests_never_get_a_500(client, headers, connection, fake_pluggy, method, path):
    path = path.replace("/1/", f"/{connection.id}/")
    send = getattr(client, method)
    for body in JUNK_BODIES:
        assert send(API + path, headers=headers, **body).status_code < 500, body
    for query in JUNK_QUERIES:
        assert send(API + path, headers=headers, query_string=query).status_code < 500, query
    for junk in JUNK_PATHS:
        response = send(API + path.replace(f"/connections/{connection.id}/", junk), headers=headers)
        assert response.status_code < 500, junk


def test_a_body_over_a_mebibyte_is_refused_unread(client, headers):
    response = client.post(
        f"{API}/connections/", headers=headers, data=b"x" * (1024 * 1024 + 1), content_type="application/json"
    )
    assert (response.status_code, error_code(response)) == (413, "request_entity_too_large")


# Values no database column can hold are refused as bad requests, on either engine (PostgreSQL
# refuses a NUL character outright; answering 500 or 503 would be wrong). ----------------------


@pytest.mark.parametrize("path", ["/connections/", "/connect_token/"])
def test_an_item_id_with_a_control_character_is_400(client, headers, fake_pluggy, path):
    response = client.post(f"{API}{path}", json={"item_id": "item\u0000one"}, headers=headers)
    assert (response.status_code, error_code(response)) == (400, "invalid_request")


def test_an_account_id_with_a_control_character_is_400(client, headers, connection):
    response = client.get(url(connection, "transactions"), query_string={"account_id": "a\u0000b"}, headers=headers)
    assert (response.status_code, error_code(response)) == (400, "invalid_request")


def test_a_webhook_with_a_nul_character_is_400_and_not_stored(client, session):
    body = b'{"event": "item/updated", "itemId": "x", "note": "a\\u0000b"}'
    response = client.post(
        "/webhooks/pluggy",
        data=body,
        content_type="application/json",
        headers={"X-Webhook-Secret": "test-webhook-secret"},
    )
    assert (response.status_code, error_code(response)) == (400, "invalid_json")
    assert session.scalar(sa.select(sa.func.count()).select_from(WebhookEvent)) == 0


def test_a_query_sent_to_a_route_that_reads_none_is_400_before_anything_happens(app, client, headers, connection):
    response = client.delete(url(connection) + "?dry_run=true", headers=headers)

    assert (response.status_code, error_code(response)) == (400, "invalid_request")
    assert [problem["field"] for problem in response.get_json()["details"]] == ["dry_run"]
    assert client.get(url(connection), headers=headers).status_code == 200  # not deleted
    for rule in app.url_map.iter_rules():
        view = app.view_functions[rule.endpoint]
        if rule.rule.startswith("/api/banking/") and not getattr(view, "takes_query", False):
            path = re.sub(r"<id:[^>]+>", str(connection.id), rule.rule)
            for method in rule.methods - {"HEAD", "OPTIONS"}:
                answer = client.open(path + "?bogus=1", method=method, headers=headers, json={})
                assert (answer.status_code, error_code(answer)) == (400, "invalid_request"), (method, path)
