"""The app API (/api/app/): the app key, provisioning users and their tokens, and erasing a user
with everything stored about them (LGPD's right to erasure)."""

from __future__ import annotations

import json
import logging
import random
from datetime import timedelta

import pytest
import sqlalchemy as sa

from config import ConfigError, read_setting
from models import Connection, User, db
from models.base import utcnow
from sandbox import data as pf
from sandbox.products import new_products
from sync import scheduling
from sync.item_state import apply_item
from sync.jobs import sync_worker
from sync.runtime import pluggy_client
from sync.tokens import issue_api_token
from sync.users import create_user
from tests.conftest import drain, fresh_app, make_app
from tests.test_logs import MARK, leaks

APP = "/api/app"
KEY = f"app-key-{MARK}-5f0c2e9a7b3d41c8a6e2"
OLD_KEY = f"app-key-{MARK}-old-9d3b5a1c7e2f4086"
WRONG_KEY = f"app-key-{MARK}-wrong-0b7e4c2a9d1f58"
SECRET = {"X-Webhook-Secret": "test-webhook-secret"}


@pytest.fixture
def app(migrated_database):
    """The app with two app keys configured: the new one and the one being retired."""
    yield from fresh_app(migrated_database, APP_API_KEYS=(KEY, OLD_KEY))


def key_headers(key: str = KEY) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def create(client, email: str, key: str = KEY):
    return client.post(f"{APP}/users/", json={"email": email}, headers=key_headers(key))


# The app key -------------------------------------------------------------------------------------


@pytest.mark.parametrize("keys", [None, ()])
def test_without_the_setting_every_app_path_is_as_absent_as_an_unknown_one(migrated_database, keys):
    app = make_app(migrated_database, APP_API_KEYS=keys)
    client = app.test_client()
    unknown = client.get("/api/nothing-here/")
    for method, path in [
        ("POST", f"{APP}/users/"),
        ("GET", f"{APP}/users/1/"),
        ("DELETE", f"{APP}/users/1"),
        ("POST", f"{APP}/users/1/token/"),
        ("PUT", f"{APP}/users/"),
    ]:
        response = client.open(path, method=method, json={"email": "ana@example.com"}, headers=key_headers())
        assert response.status_code == 404, (method, path)
        assert response.get_json() == unknown.get_json()


def test_a_missing_or_wrong_key_is_401_in_the_one_error_shape(app, client):
    for headers in (
        {},
        key_headers(WRONG_KEY),
        {"Authorization": KEY},
        {"Authorization": "Bearer "},
        key_headers(KEY[:-1]),
    ):
        response = client.post(f"{APP}/users/", json={"email": "ana@example.com"}, headers=headers)
        assert response.status_code == 401, headers
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        assert set(response.get_json()) == {"error"} and response.get_json()["error"]["code"] == "unauthorized"
        assert KEY not in response.get_data(as_text=True)
    assert count_rows(app, User) == 0


def test_a_users_api_token_is_not_an_app_key(app, client):
    token = create(client, "ana@example.com").get_json()["token"]
    assert client.get(f"{APP}/users/1/", headers={"Authorization": f"Bearer {token}"}).status_code == 401


def test_every_configured_key_is_accepted_while_rotating(client):
    assert create(client, "ana@example.com", KEY).status_code == 201
    assert create(client, "bruno@example.com", OLD_KEY).status_code == 201


def test_the_setting_is_read_as_comma_separated_keys_of_32_characters_or_more():
    assert read_setting({"APP_API_KEY": f" {KEY} , {OLD_KEY} ,"}, "APP_API_KEY") == (KEY, OLD_KEY)
    assert read_setting({}, "APP_API_KEY") == ()
    short = "x" * 31
    with pytest.raises(ConfigError, match="APP_API_KEY") as refused:
        read_setting({"APP_API_KEY": f"{KEY},{short}"}, "APP_API_KEY")
    assert short not in str(refused.value) and KEY not in str(refused.value)


# Provisioning ------------------------------------------------------------------------------------


def count_rows(app, model) -> int:
    with app.app_context():
        return db.session.scalar(sa.select(sa.func.count()).select_from(model))


def test_create_answers_201_with_the_user_and_a_token_that_works_on_the_banking_api(app, client):
    response = create(client, "  Ana@Example.COM ")
    assert response.status_code == 201
    body = response.get_json()
    user = body["user"]
    assert user["email"] == "ana@example.com" and user["connections"] == []
    assert set(user) == {"id", "email", "created_at", "connections"}
    with app.app_context():
        stored = db.session.get(User, user["id"])
        assert body["token"] == issue_api_token(app.config["SECRET_KEY"], stored)  # what `flask users token` prints
    banking = client.get("/api/banking/connections/", headers={"Authorization": f"Bearer {body['token']}"})
    assert (banking.status_code, banking.get_json()) == (200, {"connections": [], "next_cursor": None})


def test_create_of_an_existing_user_answers_200_with_the_same_user_and_token(app, client, runner):
    created = create(client, "ana@example.com").get_json()
    again = create(client, "ANA@example.com")
    assert again.status_code == 200
    assert again.get_json() == created
    # The command line sees the same user.
    with app.app_context():
        assert runner.invoke(args=["users", "token", "ana@example.com"]).output.strip() == created["token"]
    assert runner.invoke(args=["users", "create", "ana@example.com"]).exit_code == 1


def test_a_user_the_command_line_created_is_the_apps_too(app, client, runner):
    output = runner.invoke(args=["users", "create", "ana@example.com"]).output
    response = create(client, "ana@example.com")
    assert response.status_code == 200
    assert response.get_json()["token"] == output.strip().splitlines()[-1]


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"email": "not-an-address"},
        {"email": 7},
        {"email": "a@b.c", "name": "Ana"},
        {"email": "x" * 400 + "@b.co"},
        {"email": "a\u0000@b.co"},  # PostgreSQL would refuse the NUL: a 500, not a 400
        {"email": "a\u007f@b.co"},
    ],
)
def test_a_bad_email_is_400_without_echoing_it(app, client, body):
    response = client.post(f"{APP}/users/", json=body, headers=key_headers())
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "invalid_request"
    if isinstance(body.get("email"), str):
        assert body["email"] not in response.get_data(as_text=True)
    assert count_rows(app, User) == 0


def test_rotating_revokes_the_old_token_and_answers_the_new_one(client):
    created = create(client, "ana@example.com").get_json()
    old = created["token"]
    response = client.post(f"{APP}/users/{created['user']['id']}/token/", headers=key_headers())
    assert response.status_code == 200
    new = response.get_json()["token"]
    assert new != old and response.get_json()["user"] == created["user"]
    assert client.get("/api/banking/connections/", headers={"Authorization": f"Bearer {old}"}).status_code == 401
    assert client.get("/api/banking/connections/", headers={"Authorization": f"Bearer {new}"}).status_code == 200
    # Asking for the user again hands out the current token, not the revoked one.
    assert create(client, "ana@example.com").get_json()["token"] == new


def test_get_shows_the_user_and_their_live_connections(app, client, fake_pluggy):
    created = create(client, "ana@example.com").get_json()
    user_id = created["user"]["id"]
    with app.app_context():
        live = add_connection(db.session, user_id, fake_pluggy)
        gone = add_connection(db.session, user_id, fake_pluggy)
        gone.deleted_at, gone.deleted_reason = utcnow(), "item_deleted"
        db.session.commit()
        live_id, live_item = live.id, live.item_id
    response = client.get(f"{APP}/users/{user_id}", headers=key_headers())
    assert response.status_code == 200
    body = response.get_json()
    assert (body["id"], body["email"], body["created_at"]) == (
        user_id,
        "ana@example.com",
        created["user"]["created_at"],
    )
    assert body["connections"] == [
        {"id": live_id, "item_id": live_item, "sync_status": "UPDATED", "last_synced_at": None}
    ]


@pytest.mark.parametrize("method, suffix", [("GET", "/"), ("DELETE", "/"), ("POST", "/token/")])
def test_an_unknown_user_is_404(client, method, suffix):
    for user_id in (1, 2**31, 99):
        response = client.open(f"{APP}/users/{user_id}{suffix}", method=method, headers=key_headers())
        assert response.status_code == 404
        assert response.get_json()["error"]["code"] in ("user_not_found", "not_found")


# Erasure -----------------------------------------------------------------------------------------


def add_connection(session, user_id: int, fake, **item_fields) -> Connection:
    item = fake.add_item(**item_fields)
    connection = Connection(user_id=user_id, item_id=item["id"])
    apply_item(connection, item)
    session.add(connection)
    session.commit()
    return connection


def synced_connection(session, worker, user_id: int, fake) -> Connection:
    """An Open Finance item with every product: accounts, a card with a bill, transactions,
    investments and their movements, identity, loans; after its first sync and one webhook."""
    connection = add_connection(session, user_id, fake)
    fake.set_connector(connection.item_id, pf.OPEN_FINANCE_CONNECTOR)
    fake.set_credentials(connection.item_id, cpf=pf.OWNER_CPF)
    fake.world.products[connection.item_id] = new_products(
        random.Random(connection.item_id), connection.item_id, bool, utcnow()
    )
    checking = fake.add_account(connection.item_id)
    card = fake.add_account(connection.item_id, type="CREDIT", subtype="CREDIT_CARD", name="Cartão", number=None)
    today = utcnow().date()
    for n in range(3):
        fake.add_transaction(checking["id"], date=f"{today - timedelta(days=n)}T03:00:00.000Z", amount=-(n + 1) * 10.5)
    fake.add_investments(connection.item_id)
    bill = fake.add_bill(card["id"])
    fake.add_transaction(
        card["id"], date=f"{today}T03:00:00.000Z", amount=-50.0, creditCardMetadata={"billId": bill["id"]}
    )
    scheduling.queue_initial_sync(session, connection)
    session.commit()
    drain(worker, session)
    return connection


def webhook(client, event: str, item_id: str) -> None:
    body = json.dumps(pf.webhook_event(event, itemId=item_id))
    response = client.post("/webhooks/pluggy", data=body, headers=SECRET, content_type="application/json")
    assert response.status_code == 200


@pytest.fixture
def two_users(app, client, fake_pluggy):
    """Ana (to be erased) with a synced connection, a tombstone and a job still queued, and Bruno
    with a synced connection of his own that must stay exactly as it is."""
    with app.app_context():
        session = db.session
        ana = create_user(session, "ana@example.com")
        bruno = create_user(session, "bruno@example.com")
        worker = sync_worker(app, pluggy_client())
        ana_synced = synced_connection(session, worker, ana.id, fake_pluggy)
        ana_gone = synced_connection(session, worker, ana.id, fake_pluggy)
        bruno_synced = synced_connection(session, worker, bruno.id, fake_pluggy)
        for connection in (ana_synced, bruno_synced):
            webhook(client, "item/updated", connection.item_id)
        fake_pluggy.remove_item(ana_gone.item_id)
        webhook(client, "item/deleted", ana_gone.item_id)
        drain(worker, session)
        scheduling.queue_fetch(session, ana_synced, "webhook")  # still queued when she is erased
        session.commit()
        ids = {
            "ana": ana.id,
            "bruno": bruno.id,
            "ana_items": [ana_synced.item_id, ana_gone.item_id],
            "bruno_item": bruno_synced.item_id,
        }
    return ids


def primary_key(table: sa.Table) -> sa.Column:
    (column,) = table.primary_key.columns
    return column


def owned_rows(user_id: int, item_ids: list[str]) -> dict[str, set]:
    """Every row that is the user's or hangs off one (through any chain of foreign keys, found in the
    models' metadata), plus the rows naming one of their items (jobs, webhook events: no foreign key)."""
    owned: dict[str, set] = {"users": {user_id}}
    for table in db.metadata.sorted_tables:  # parents before children
        key = primary_key(table)
        found: set = set()
        for fk in table.foreign_keys:
            parents = owned.get(fk.column.table.name)
            if parents:
                found |= set(db.session.scalars(sa.select(key).where(fk.parent.in_(parents))))
        if "item_id" in table.c:
            found |= set(db.session.scalars(sa.select(key).where(table.c.item_id.in_(item_ids))))
        if found:
            owned[table.name] = owned.get(table.name, set()) | found
    return owned


# The change feed's log and clock: her entries stay as removals, the clock moves on.
FEED_TABLES = {"changes", "change_clock"}


def every_row() -> dict[str, list[dict]]:
    db.session.expire_all()
    return {
        table.name: [dict(row) for row in db.session.execute(sa.select(table).order_by(primary_key(table))).mappings()]
        for table in db.metadata.sorted_tables
    }


def test_delete_erases_every_row_of_the_user_and_deletes_their_items_at_pluggy(app, client, two_users, fake_pluggy):
    ana, items = two_users["ana"], two_users["ana_items"]
    with app.app_context():
        owned = owned_rows(ana, items)
        before = every_row()
    # The seed reached every table a user's data lives in.
    assert {
        "users",
        "connections",
        "accounts",
        "transactions",
        "bills",
        "investments",
        "investment_transactions",
        "identities",
        "loans",
        "sync_runs",
        "jobs",
        "webhook_events",
    } <= set(owned)

    response = client.delete(f"{APP}/users/{ana}/", headers=key_headers())

    assert (response.status_code, response.get_data()) == (204, b"")
    for item_id in items:
        assert fake_pluggy.count("DELETE", f"/items/{item_id}") == 1
    assert fake_pluggy.count("DELETE", f"/items/{two_users['bruno_item']}") == 0
    with app.app_context():
        after = every_row()
        for table in db.metadata.sorted_tables:
            if table.name in FEED_TABLES:
                continue
            key = primary_key(table).name
            left = {row[key] for row in after[table.name]}
            assert not left & owned.get(table.name, set()), f"{table.name} keeps rows of the erased user"
            # Nobody else's row went, and none changed.
            others = [row for row in before[table.name] if row[key] not in owned.get(table.name, set())]
            assert after[table.name] == others, table.name
        # The change feed still tells her objects' removal (kinds and Pluggy ids, nothing personal);
        # nobody else's entry moved.
        assert len([row for row in after["changes"] if row["user_id"] == ana]) == len(
            [row for row in before["changes"] if row["user_id"] == ana]
        )
        assert [row for row in after["changes"] if row["user_id"] != ana] == [
            row for row in before["changes"] if row["user_id"] != ana
        ]
        # Nothing anywhere names her or her items any more.
        text = json.dumps(after, default=str)
        assert "ana@example.com" not in text
        assert not [item for item in items if item in text]
    assert client.get(f"{APP}/users/{ana}/", headers=key_headers()).status_code == 404
    assert client.get(f"{APP}/users/{two_users['bruno']}/", headers=key_headers()).status_code == 200


def test_an_erased_users_token_stops_working_and_the_email_can_start_afresh(app, client):
    created = create(client, "ana@example.com").get_json()
    token = created["token"]
    assert client.delete(f"{APP}/users/{created['user']['id']}", headers=key_headers()).status_code == 204
    assert client.get("/api/banking/connections/", headers={"Authorization": f"Bearer {token}"}).status_code == 401
    again = create(client, "ana@example.com")
    assert again.status_code == 201 and again.get_json()["user"]["id"] != created["user"]["id"]
    assert client.get("/api/banking/connections/", headers={"Authorization": f"Bearer {token}"}).status_code == 401


def test_a_user_without_connections_is_erased_without_asking_pluggy(app, client, fake_pluggy):
    created = create(client, "ana@example.com").get_json()
    app.config["PLUGGY_CLIENT_ID"] = None  # Pluggy not even configured
    assert client.delete(f"{APP}/users/{created['user']['id']}", headers=key_headers()).status_code == 204
    assert fake_pluggy.calls == [] and count_rows(app, User) == 0


@pytest.mark.parametrize(
    "status, answer",
    [(500, (502, "pluggy_unavailable")), (429, (429, "rate_limited")), (403, (502, "pluggy_unavailable"))],
)
def test_a_pluggy_failure_leaves_everything_in_place_and_a_retry_finishes(
    app, client, two_users, fake_pluggy, status, answer
):
    ana, items = two_users["ana"], two_users["ana_items"]
    with app.app_context():
        before = every_row()
    for _ in range(2 if status == 403 else 1):  # a 403 is tried again with a new API key
        fake_pluggy.refuse_next("DELETE", f"/items/{items[1]}", status)

    response = client.delete(f"{APP}/users/{ana}/", headers=key_headers())

    assert (response.status_code, response.get_json()["error"]["code"]) == answer
    with app.app_context():
        assert every_row() == before
    # Repeated, it goes through: the item Pluggy already deleted answers 404, which is fine.
    assert client.delete(f"{APP}/users/{ana}/", headers=key_headers()).status_code == 204
    assert fake_pluggy.count("DELETE", f"/items/{items[0]}") == 2
    with app.app_context():
        assert db.session.get(User, ana) is None


def test_without_pluggy_keys_a_user_with_items_is_503_and_kept(app, client, two_users):
    app.config["PLUGGY_CLIENT_ID"] = None
    app.extensions.pop("pluggy_client", None)  # the one the seed built
    response = client.delete(f"{APP}/users/{two_users['ana']}/", headers=key_headers())
    assert (response.status_code, response.get_json()["error"]["code"]) == (503, "pluggy_not_configured")
    with app.app_context():
        assert db.session.get(User, two_users["ana"]) is not None


def test_the_command_line_erases_a_user_the_same_way(app, runner, two_users, fake_pluggy):
    refused = runner.invoke(args=["users", "delete", "ana@example.com"], input="n\n")
    assert refused.exit_code == 1
    result = runner.invoke(args=["users", "delete", "ana@example.com", "--yes"])
    assert result.exit_code == 0, result.output
    assert all(fake_pluggy.count("DELETE", f"/items/{item}") == 1 for item in two_users["ana_items"])
    with app.app_context():
        assert db.session.get(User, two_users["ana"]) is None
        assert db.session.get(User, two_users["bruno"]) is not None


# The key in logs -----------------------------------------------------------------------------------


def test_the_app_key_reaches_no_log_line(app, client, caplog, fake_pluggy):
    caplog.set_level(logging.DEBUG)
    for name in ("sqlalchemy", "werkzeug", "urllib3"):
        caplog.set_level(logging.DEBUG, logger=name)
    created = create(client, "ana@example.com", OLD_KEY).get_json()
    user_id = created["user"]["id"]
    client.get(f"{APP}/users/{user_id}/", headers=key_headers())
    client.post(f"{APP}/users/{user_id}/token/", headers=key_headers())
    client.get(f"{APP}/users/{user_id}/", headers=key_headers(WRONG_KEY))
    client.post(f"{APP}/users/", json={"email": "bad"}, headers=key_headers())
    client.delete(f"{APP}/users/{user_id}/", headers=key_headers())
    assert caplog.records, "the requests were logged"
    assert leaks(caplog.records, [MARK, KEY, OLD_KEY, WRONG_KEY]) == []
    assert {r.getMessage() for r in caplog.records} >= {"request", "user erased"}


def test_a_query_sent_to_a_route_that_reads_none_is_400(client):
    user = client.post(f"{APP}/users/?notify=1", json={"email": "ana@example.com"}, headers=key_headers())
    assert (user.status_code, user.get_json()["error"]["code"]) == (400, "invalid_request")
