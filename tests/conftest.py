"""Fixtures: an app on a clean database for every test, on SQLite or on TEST_DATABASE_URL.

The schema is built once per session by the migrations themselves (not create_all), so every test
also exercises them; each test then starts from empty tables.
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from flask import Flask
from flask_migrate import upgrade

from api import create_app
from models import db

TEST_SECRETS = {
    "SECRET_KEY": "test-secret-key-0123456789abcdef",
    "PLUGGY_CLIENT_ID": "test-client-id",
    "PLUGGY_CLIENT_SECRET": "test-client-secret-do-not-log",
    "PLUGGY_WEBHOOK_SECRETS": ("test-webhook-secret",),
}


LOOPBACK = {"127.0.0.1", "localhost", "::1"}


@pytest.fixture(autouse=True)
def no_network_beyond_loopback(monkeypatch):
    """A test that forgot to fake Pluggy fails at once instead of reaching out (or waiting on DNS)."""
    resolve = socket.getaddrinfo

    def loopback_only(host, *args, **kwargs):
        if host not in LOOPBACK:
            raise OSError(f"tests may not reach {host!r}: only loopback is allowed")
        return resolve(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", loopback_only)


@pytest.fixture(scope="session")
def database_url(tmp_path_factory) -> str:
    url = os.environ.get("TEST_DATABASE_URL")
    if not url:
        return f"sqlite:///{tmp_path_factory.mktemp('db') / 'test.db'}"
    # A configured database that cannot be reached is a failure, never a reason to skip.
    engine = sa.create_engine(url, connect_args={"connect_timeout": 5})
    try:
        with engine.connect():
            pass
    except sa.exc.OperationalError as exc:
        pytest.exit(f"TEST_DATABASE_URL is set but the database cannot be reached: {exc.orig}", returncode=3)
    finally:
        engine.dispose()
    return url


def make_app(database_url: str, **overrides):
    return create_app(
        {
            "TESTING": True,
            "SQLALCHEMY_DATABASE_URI": database_url,
            "PLUGGY_BASE_URL": "https://pluggy.test",
            **TEST_SECRETS,
            **overrides,
        }
    )


@pytest.fixture(scope="session")
def migrated_database(database_url: str) -> str:
    app = make_app(database_url)
    with app.app_context():
        drop_everything()
        upgrade()
        db.engine.dispose()
    return database_url


def drop_everything() -> None:
    db.metadata.drop_all(db.engine)
    with db.engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE IF EXISTS alembic_version"))


def empty_all_tables() -> None:
    tables = [table.name for table in db.metadata.sorted_tables]
    with db.engine.begin() as conn:
        if db.engine.dialect.name == "postgresql":
            conn.execute(sa.text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
        else:
            for name in reversed(tables):
                conn.execute(sa.text(f"DELETE FROM {name}"))
            # AUTOINCREMENT tables (users, connections) count on from here: ids restart like PostgreSQL's.
            if conn.execute(sa.text("SELECT 1 FROM sqlite_master WHERE name = 'sqlite_sequence'")).first():
                conn.execute(sa.text("DELETE FROM sqlite_sequence"))


def fresh_app(database_url: str, **config) -> Iterator[Flask]:
    """An app on emptied tables, its connections closed afterwards: the `app` fixture's body, for
    fixtures that need other settings at creation (blueprints registered only when configured)."""
    app = make_app(database_url, **config)
    with app.app_context():
        empty_all_tables()
    yield app
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


@pytest.fixture
def app(migrated_database: str):
    yield from fresh_app(migrated_database)


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


@pytest.fixture
def session(app):
    """The app's database session, inside an app context."""
    with app.app_context():
        yield db.session


# Sync layer fixtures: a fake Pluggy behind `responses`, a user, a registered connection. ------


@pytest.fixture
def fake_pluggy():
    """Pluggy (the sandbox, in process); every outgoing `requests` call to its base URL goes to it."""
    import responses

    from tests.fake_pluggy import FakePluggy

    fake = FakePluggy()
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        fake.install(mock)
        yield fake
    fake.close()


@pytest.fixture
def served_pluggy():
    """The same Pluggy, served over HTTP on loopback, for tests that run the service's own processes."""
    from tests.fake_pluggy import FakePluggy

    fake = FakePluggy()
    with fake.serve() as base_url:
        fake.base_url = base_url
        yield fake
    fake.close()


@pytest.fixture
def pluggy_api(session):
    """The app's Pluggy client, inside the same app context (and so the same session) as `session`."""
    from sync.runtime import pluggy_client

    return pluggy_client()


@pytest.fixture
def settings(app):
    from config import Settings

    return Settings.from_config(app.config)


@pytest.fixture
def user(session):
    from sync.users import create_user

    return create_user(session, "ana@example.com")


@pytest.fixture
def connection(session, user, fake_pluggy):
    """A connection to an UPDATED item with one checking account, registered without a sync yet."""
    from models import Connection
    from sync.item_state import apply_item

    item = fake_pluggy.add_item()
    fake_pluggy.add_account(item["id"])
    connection = Connection(user_id=user.id, item_id=item["id"])
    apply_item(connection, item)
    session.add(connection)
    session.commit()
    return connection


@pytest.fixture
def worker(app, pluggy_api):
    """A worker in this process whose watchers look again at once instead of in 5 s."""
    from sync.jobs import sync_worker

    app.config["SYNC_WATCH_INTERVAL_S"] = 0
    return sync_worker(app, pluggy_api)


def drain(worker, session, limit: int = 50) -> int:
    """Run jobs until none is due; returns how many ran."""
    for ran in range(limit):
        if not worker.run_one(session, "test-worker"):
            return ran
    raise AssertionError("the queue never drained")


# Operator console fixtures: an app with an operator password, a signed-in browser-like client. ----

OPERATOR_PASSWORD = "operator-password-for-tests"


@pytest.fixture
def console_app(migrated_database: str):
    yield from fresh_app(migrated_database, OPERATOR_PASSWORD=OPERATOR_PASSWORD)


def form_token(html: str) -> str:
    """The CSRF token a console page put in its forms."""
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "the page has no form with a CSRF token"
    return match.group(1)


class Operator:
    """A test client signed in to the console, posting forms with the CSRF token as a browser does."""

    def __init__(self, client) -> None:
        self.client = client
        self.token = ""

    def get(self, path: str, **kwargs):
        response = self.client.get(path, **kwargs)
        if 'name="csrf_token"' in response.text:
            self.token = form_token(response.text)
        return response

    def post(self, path: str, data: dict | None = None, **kwargs):
        return self.client.post(path, data={"csrf_token": self.token, **(data or {})}, **kwargs)

    def sign_in(self, password: str = OPERATOR_PASSWORD):
        self.get("/console/login")
        return self.post("/console/login", {"password": password})


@pytest.fixture
def operator(console_app) -> Operator:
    signed_in = Operator(console_app.test_client())
    assert signed_in.sign_in().status_code == 302
    signed_in.get("/console/")
    return signed_in
