"""Integrity rules: an item names its owner (clientUserId), connect tokens carry the options Pluggy
needs, a deleted item's copied data goes after its retention while the connection stays as a
tombstone."""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from pathlib import Path

import pytest
import requests
import sqlalchemy as sa
from jsonschema import Draft202012Validator
from prometheus_client import REGISTRY

from config import ConfigError, read_setting
from models import Account, Connection, Job, SyncRun, Transaction
from models.base import utcnow
from sandbox import data as pf
from sync import removal, scheduling
from sync.jobs import sync_worker
from sync.scheduling import JobKind
from sync.tokens import client_user_id, issue_api_token, user_id_named_by
from sync.users import create_user
from tests.fake_pluggy import OPEN_FINANCE_CONNECTOR

API = "/api/banking"
SECRET = {"X-Webhook-Secret": "test-webhook-secret"}


@pytest.fixture
def headers(app, user):
    return {"Authorization": f"Bearer {issue_api_token(app.config['SECRET_KEY'], user)}"}


@pytest.fixture
def bruno(session):
    return create_user(session, "bruno@example.com")


def error(response) -> tuple[int, dict]:
    return response.status_code, response.get_json()


def count(session, model) -> int:
    session.expire_all()
    return session.scalar(sa.select(sa.func.count()).select_from(model))


def drain(worker, session) -> None:
    while worker.run_one(session, "test-worker"):
        pass


# Who may register an item: its clientUserId -------------------------------------------------


def test_the_client_user_id_this_service_hands_out_names_one_user(user):
    assert client_user_id(user) == str(user.id)
    assert user_id_named_by(client_user_id(user)) == user.id
    for foreign in (None, "", "007", "1e3", "+1", "ana@example.com", "٣", 3):
        assert user_id_named_by(foreign) is None


def test_an_item_naming_another_user_is_answered_as_an_unknown_one(client, headers, session, bruno, fake_pluggy):
    item = fake_pluggy.add_item(clientUserId=client_user_id(bruno))

    theirs = client.post(f"{API}/connections/", headers=headers, json={"item_id": item["id"]})
    unknown = client.post(f"{API}/connections/", headers=headers, json={"item_id": "no-such-item"})

    assert error(theirs) == error(unknown) == (404, {"error": {"code": "item_not_found", "message": "No such item."}})
    assert fake_pluggy.count("GET", f"/items/{item['id']}") == 1  # asked Pluggy, as for an unknown item
    assert count(session, Connection) == 0
    assert count(session, Job) == 0


def test_the_user_an_item_names_registers_it(app, client, session, bruno, fake_pluggy):
    item = fake_pluggy.add_item(clientUserId=client_user_id(bruno))
    theirs = {"Authorization": f"Bearer {issue_api_token(app.config['SECRET_KEY'], bruno)}"}

    response = client.post(f"{API}/connections/", headers=theirs, json={"item_id": item["id"]})

    assert response.status_code == 201
    assert session.scalars(sa.select(Connection)).one().user_id == bruno.id


@pytest.mark.parametrize(
    "client_user_id_value",
    [None, "ana@example.com", "user-42", "007", "999999"],
    ids=["none", "an e-mail", "another system's", "not canonical", "naming no user"],
)
def test_an_item_naming_no_user_of_this_service_may_be_registered(
    client, headers, session, bruno, fake_pluggy, client_user_id_value
):
    """Items made without a connect token of ours (the Pluggy dashboard, another system) name no owner
    here: the rule refuses only a clientUserId this service hands out that names someone else."""
    item = fake_pluggy.add_item(clientUserId=client_user_id_value)

    response = client.post(f"{API}/connections/", headers=headers, json={"item_id": item["id"]})

    assert response.status_code == 201


def test_a_deleted_connection_of_the_user_is_revived_only_if_the_item_is_still_theirs(
    client, headers, session, user, bruno, connection, fake_pluggy
):
    connection.deleted_at = utcnow()
    connection.deleted_reason = "item_not_found"
    session.commit()
    fake_pluggy.set_item(connection.item_id, clientUserId=client_user_id(bruno))

    response = client.post(f"{API}/connections/", headers=headers, json={"item_id": connection.item_id})

    assert error(response)[0] == 404
    session.expire_all()
    assert connection.deleted_at is not None


def test_the_command_line_refuses_an_item_naming_another_user(runner, session, user, bruno, fake_pluggy):
    item = fake_pluggy.add_item(clientUserId=client_user_id(bruno))

    result = runner.invoke(args=["connections", "add", user.email, item["id"]])

    assert result.exit_code == 1
    assert f"item {item['id']} belongs to another user" in result.output
    assert count(session, Connection) == 0


def test_the_command_line_registers_an_item_naming_its_user(runner, session, user, fake_pluggy):
    item = fake_pluggy.add_item(clientUserId=client_user_id(user))

    result = runner.invoke(args=["connections", "add", user.email, item["id"]])

    assert result.exit_code == 0, result.output
    assert session.scalars(sa.select(Connection)).one().user_id == user.id


# Connect tokens: avoidDuplicates, oauthRedirectUri -------------------------------------------


def test_connect_tokens_avoid_duplicates_and_carry_no_redirect_unless_set(client, headers, user, fake_pluggy):
    client.post(f"{API}/connect_token/", headers=headers)

    ((_, _, _, sent),) = fake_pluggy.calls_to("POST", "/connect_token")
    assert sent["options"]["avoidDuplicates"] is True
    assert "oauthRedirectUri" not in sent["options"]


def test_the_oauth_redirect_reaches_pluggy_and_the_item_it_makes(app, client, headers, user, fake_pluggy):
    """The widget makes an Open Finance item with our token; its OAuth page sends the user back to
    PLUGGY_OAUTH_REDIRECT_URI, and the item names our user."""
    app.config["PLUGGY_OAUTH_REDIRECT_URI"] = "https://app.example.com/pluggy/oauth"

    token = client.post(f"{API}/connect_token/", headers=headers).get_json()["access_token"]

    ((_, _, _, sent),) = fake_pluggy.calls_to("POST", "/connect_token")
    assert sent["options"]["oauthRedirectUri"] == "https://app.example.com/pluggy/oauth"
    made = requests.post(
        f"{fake_pluggy.base_url}/items",
        json={"connectorId": OPEN_FINANCE_CONNECTOR, "parameters": {"cpf": "76109277673"}},
        headers={"X-API-KEY": token},
        timeout=5,
    )
    assert made.status_code == 200, made.text
    item = made.json()
    assert item["clientUserId"] == str(user.id)
    item = fake_pluggy.finish_update(item["id"])
    assert item["status"] == "WAITING_USER_INPUT"
    back = requests.get(item["parameter"]["data"], allow_redirects=False, timeout=5)
    assert (back.status_code, back.headers["Location"]) == (302, "https://app.example.com/pluggy/oauth")


@pytest.mark.parametrize(
    "value",
    ["https://app.example.com/oauth", "https://app.example.com", "myapp://oauth/callback", "com.example.app:/oauth"],
)
def test_the_oauth_redirect_takes_an_https_url_or_a_deep_link(value):
    assert read_setting({"PLUGGY_OAUTH_REDIRECT_URI": value}, "PLUGGY_OAUTH_REDIRECT_URI") == value


@pytest.mark.parametrize(
    "value",
    [
        "http://app.example.com/oauth",
        "https://",
        "app.example.com/oauth",
        "javascript:alert(1)",
        "myapp://",
        "my app://x",
    ],
)
def test_anything_else_stops_start_up_naming_the_setting(value):
    with pytest.raises(ConfigError, match="^PLUGGY_OAUTH_REDIRECT_URI must be an https:// URL or an app's deep link"):
        read_setting({"PLUGGY_OAUTH_REDIRECT_URI": value}, "PLUGGY_OAUTH_REDIRECT_URI")


def test_the_retention_is_a_whole_number_of_days_from_zero():
    assert read_setting({}, "DELETED_ITEM_RETENTION_DAYS") == 0
    assert read_setting({"DELETED_ITEM_RETENTION_DAYS": "30"}, "DELETED_ITEM_RETENTION_DAYS") == 30
    for bad in ("-1", "1.5", "a week"):
        with pytest.raises(ConfigError, match="^DELETED_ITEM_RETENTION_DAYS must be a whole number of days, 0 or more"):
            read_setting({"DELETED_ITEM_RETENTION_DAYS": bad}, "DELETED_ITEM_RETENTION_DAYS")


# item/deleted: the tombstone and the removal of the copied data ------------------------------


@pytest.fixture
def synced(session, connection, fake_pluggy, worker):
    """The connection after its first sync: one account with two transactions, one run."""
    (account,) = fake_pluggy.accounts[connection.item_id]
    for _ in range(2):
        fake_pluggy.add_transaction(account["id"], date=f"{utcnow().date()}T03:00:00.000Z")
    scheduling.queue_initial_sync(session, connection)
    session.commit()
    drain(worker, session)
    assert (count(session, Account), count(session, Transaction)) == (1, 2)
    return connection


def retention_worker(app, pluggy_api, days: int):
    app.config["DELETED_ITEM_RETENTION_DAYS"] = days
    return sync_worker(app, pluggy_api)


def item_deleted(client, connection) -> None:
    event = pf.webhook_event("item/deleted", itemId=connection.item_id)
    response = client.post("/webhooks/pluggy", data=json.dumps(event), headers=SECRET, content_type="application/json")
    assert response.status_code == 200


def removed_total(reason: str) -> float:
    return REGISTRY.get_sample_value("pluggy_sync_deleted_item_data_removed_total", {"reason": reason}) or 0


def test_with_no_retention_item_deleted_removes_the_copied_data_at_once(
    app, client, headers, session, synced, pluggy_api, caplog
):
    worker = retention_worker(app, pluggy_api, 0)
    before = removed_total("item_deleted")

    item_deleted(client, synced)
    with caplog.at_level(logging.INFO, logger="sync.removal"):
        drain(worker, session)

    session.expire_all()
    assert (count(session, Account), count(session, Transaction)) == (0, 0)
    assert count(session, SyncRun) == 1  # the service's own record stays with the tombstone
    assert synced.deleted_reason == "item_deleted"
    assert synced.deleted_at is not None and synced.data_removed_at >= synced.deleted_at
    assert removed_total("item_deleted") == before + 1
    (line,) = [r for r in caplog.records if r.getMessage() == "deleted item's data removed"]
    assert line.fields["rows"] == {"accounts": 1, "transactions": 2} | {
        name: 0 for name in line.fields["rows"] if name not in ("accounts", "transactions")
    }
    assert line.fields["reason"] == "item_deleted"


def test_the_api_shows_the_tombstone(app, client, headers, session, synced, pluggy_api):
    drain(retention_worker(app, pluggy_api, 0), session)
    item_deleted(client, synced)
    drain(retention_worker(app, pluggy_api, 0), session)

    answer = client.get(f"{API}/connections/{synced.id}/", headers=headers)

    status, body = error(answer)
    assert (status, body["error"]["code"]) == (410, "connection_deleted")
    tombstone = body["connection"]
    assert (tombstone["id"], tombstone["item_id"], tombstone["deleted_reason"]) == (
        synced.id,
        synced.item_id,
        "item_deleted",
    )
    assert tombstone["deleted_at"] and tombstone["data_removed_at"] and tombstone["data_removal_due_at"] is None
    document = json.loads((Path(__file__).parents[1] / "api" / "openapi.json").read_text())
    schema = {"$ref": "#/components/schemas/ConnectionDeleted", "components": document["components"]}
    Draft202012Validator(schema).validate(body)
    assert client.get(f"{API}/connections/", headers=headers).get_json() == {"connections": [], "next_cursor": None}
    accounts = client.get(f"{API}/connections/{synced.id}/accounts/", headers=headers)
    assert (accounts.status_code, accounts.get_json()["error"]["code"]) == (404, "connection_not_found")


def test_another_users_tombstone_is_as_absent_as_a_missing_connection(app, client, session, synced, bruno):
    synced.deleted_at = utcnow()
    synced.deleted_reason = "item_deleted"
    session.commit()
    theirs = {"Authorization": f"Bearer {issue_api_token(app.config['SECRET_KEY'], bruno)}"}

    answer = client.get(f"{API}/connections/{synced.id}/", headers=theirs)

    assert error(answer) == (404, {"error": {"code": "connection_not_found", "message": "No such connection."}})


def test_with_a_retention_the_data_stays_until_it_is_over(app, client, headers, session, synced, pluggy_api):
    worker = retention_worker(app, pluggy_api, 3)

    item_deleted(client, synced)
    drain(worker, session)

    session.expire_all()
    assert synced.deleted_reason == "item_deleted" and synced.data_removed_at is None
    assert (count(session, Account), count(session, Transaction)) == (1, 2)
    job = session.scalars(sa.select(Job).where(Job.kind == JobKind.REMOVE_ITEM_DATA)).one()
    assert (job.status, job.item_id) == ("queued", synced.item_id)
    assert job.run_at == synced.deleted_at + timedelta(days=3)
    tombstone = client.get(f"{API}/connections/{synced.id}/", headers=headers).get_json()["connection"]
    assert tombstone["data_removed_at"] is None
    assert tombstone["data_removal_due_at"] == (synced.deleted_at + timedelta(days=3)).isoformat()

    # Run early (the job made due by hand): the handler checks the clock itself and waits again.
    job.run_at = utcnow()
    session.commit()
    drain(worker, session)
    session.expire_all()
    assert (count(session, Account), count(session, Transaction)) == (1, 2)
    assert (job.status, job.attempts) == ("queued", 0)  # waiting does not spend an attempt
    assert job.run_at > utcnow() + timedelta(days=2, hours=23)

    # Three days later (the deletion moved back in time rather than the clock forward).
    synced.deleted_at = utcnow() - timedelta(days=3, seconds=1)
    job.run_at = utcnow()
    session.commit()
    drain(worker, session)
    session.expire_all()
    assert (count(session, Account), count(session, Transaction)) == (0, 0)
    assert synced.data_removed_at is not None and job.status == "done"


def test_a_connection_revived_during_its_retention_keeps_its_data(
    app, client, headers, session, synced, pluggy_api, fake_pluggy
):
    worker = retention_worker(app, pluggy_api, 3)
    item_deleted(client, synced)
    drain(worker, session)

    # Pluggy knows the item again (deleted by mistake and restored): registering it revives ours.
    response = client.post(f"{API}/connections/", headers=headers, json={"item_id": synced.item_id})
    assert response.status_code == 201
    # The removal job comes due all the same (made due by hand): it finds the connection live.
    session.execute(sa.update(Job).where(Job.kind == JobKind.REMOVE_ITEM_DATA).values(run_at=utcnow()))
    session.commit()
    drain(worker, session)

    session.expire_all()
    assert (synced.deleted_at, synced.deleted_reason, synced.data_removed_at) == (None, None, None)
    assert (count(session, Account), count(session, Transaction)) == (1, 2)


def test_the_sweep_tombstones_an_item_pluggy_forgot_and_removes_its_data(
    app, session, synced, pluggy_api, fake_pluggy, settings
):
    worker = retention_worker(app, pluggy_api, 0)
    fake_pluggy.remove_item(synced.item_id)
    synced.last_synced_at = utcnow() - timedelta(days=1)
    session.commit()
    scheduling.queue_sweep(session)
    session.commit()

    worker.run_one(session, "w")  # the sweep
    worker.run_one(session, "w")  # the removal it queued

    session.expire_all()
    assert synced.deleted_reason == "item_not_found"
    assert (count(session, Account), count(session, Transaction)) == (0, 0)


def test_the_sweep_removes_the_data_of_a_tombstone_no_job_waits_for(app, session, synced, pluggy_api):
    """A connection deleted before the removal existed (or whose removal job went dead)."""
    worker = retention_worker(app, pluggy_api, 2)
    synced.deleted_at = utcnow() - timedelta(days=2, minutes=1)
    synced.deleted_reason = "item_deleted"
    session.commit()
    scheduling.queue_sweep(session)
    session.commit()

    drain(worker, session)

    session.expire_all()
    assert synced.data_removed_at is not None
    assert (count(session, Account), count(session, Transaction)) == (0, 0)


def test_the_sweep_leaves_a_tombstone_within_its_retention(app, session, synced, pluggy_api):
    worker = retention_worker(app, pluggy_api, 2)
    synced.deleted_at = utcnow() - timedelta(days=1)
    synced.deleted_reason = "item_deleted"
    session.commit()
    scheduling.queue_sweep(session)
    session.commit()

    drain(worker, session)

    assert session.scalars(sa.select(Job).where(Job.kind == JobKind.REMOVE_ITEM_DATA)).all() == []
    assert (count(session, Account), count(session, Transaction)) == (1, 2)


def test_a_users_delete_removes_the_data_at_once_whatever_the_retention(
    app, client, headers, session, synced, fake_pluggy
):
    app.config["DELETED_ITEM_RETENTION_DAYS"] = 30
    before = removed_total("user_request")

    assert client.delete(f"{API}/connections/{synced.id}/", headers=headers).status_code == 204

    session.expire_all()
    assert (count(session, Account), count(session, Transaction)) == (0, 0)
    assert (synced.deleted_reason, synced.data_removed_at is not None) == ("user_request", True)
    assert removed_total("user_request") == before + 1
    # A removal job also runs under the item's lock, after any fetch of it still writing.
    job = session.scalars(sa.select(Job).where(Job.kind == JobKind.REMOVE_ITEM_DATA)).one()
    assert job.run_at <= utcnow()


def test_the_copied_data_is_every_table_hung_off_the_connection_but_its_runs():
    tables = {table.name for table, _ in removal.connection_data_tables(Connection.metadata)}
    assert "accounts" in tables
    assert "sync_runs" not in tables and "connections" not in tables
    dependents = {t.name for t, _, _ in removal.dependent_tables(Connection.metadata, list(_data_tables()))}
    assert "transactions" in dependents


def _data_tables():
    return [table for table, _ in removal.connection_data_tables(Connection.metadata)]


def test_every_table_hung_off_the_copied_data_goes_with_it_by_cascade():
    """A product table added later must not block the removal: every foreign key to the connection
    or to its copied data deletes with it."""
    data = _data_tables()
    for table, column, parent in removal.dependent_tables(Connection.metadata, data):
        (fk,) = [fk for fk in column.foreign_keys if fk.column.table is parent]
        assert fk.ondelete == "CASCADE", f"{table.name}.{column.name}"
    for table, column in removal.connection_data_tables(Connection.metadata):
        (fk,) = column.foreign_keys
        assert fk.ondelete == "CASCADE", f"{table.name}.{column.name}"


def test_a_product_table_added_later_is_removed_without_a_change(session, synced):
    """A table with a connection_id foreign key (and one hung off it) that the removal code has never
    heard of, made in the database for this test."""
    metadata = sa.MetaData()
    for table in Connection.metadata.sorted_tables:
        table.to_metadata(metadata)
    products = sa.Table(
        "test_later_products",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("connection_id", sa.ForeignKey("connections.id", ondelete="CASCADE"), nullable=False),
    )
    rows = sa.Table(
        "test_later_product_rows",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("product_id", sa.ForeignKey("test_later_products.id", ondelete="CASCADE"), nullable=False),
    )
    bind = session.get_bind()
    metadata.create_all(bind, tables=[products, rows])
    try:
        session.execute(products.insert(), [{"id": 1, "connection_id": synced.id}])
        session.execute(rows.insert(), [{"id": 1, "product_id": 1}, {"id": 2, "product_id": 1}])
        session.commit()
        synced.deleted_at = utcnow()
        synced.deleted_reason = "item_deleted"
        session.commit()

        removed = removal.remove_copied_data(session, synced, metadata=metadata)

        assert removed["test_later_products"] == 1 and removed["test_later_product_rows"] == 2
        assert session.scalar(sa.select(sa.func.count()).select_from(rows)) == 0
        assert (count(session, Account), count(session, Transaction)) == (0, 0)
    finally:
        session.rollback()
        metadata.drop_all(bind, tables=[rows, products])


def test_removal_is_due_after_the_retention_except_on_the_users_request(settings):
    deleted = utcnow()
    connection = Connection(item_id="i", user_id=1, deleted_at=deleted, deleted_reason="item_deleted")
    assert removal.removal_due(connection, settings) == deleted  # the default: 0 days
    week = type(settings)(**{**settings.__dict__, "deleted_item_retention_days": 7})
    assert removal.removal_due(connection, week) == deleted + timedelta(days=7)
    connection.deleted_reason = "user_request"
    assert removal.removal_due(connection, week) == deleted
