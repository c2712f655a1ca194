"""The operator console's door: who gets in, how long, and what every form must carry."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime, timedelta

import pytest
from conftest import OPERATOR_PASSWORD, Operator, fresh_app

from console.formatting import ago, mask_cpf, mask_email
from console.operators import SESSION_LIFETIME
from sync.operations.redaction import redacted

APP_KEY = "an-app-key-long-enough-0123456789abcdef"


def test_without_an_operator_secret_there_is_no_console(client):
    for path in ("/console/", "/console/login", "/console/static/console.css"):
        response = client.get(path)
        assert response.status_code == 404
        assert response.json["error"]["code"] == "not_found"


def test_a_page_sends_a_stranger_to_the_login_page(console_app):
    response = console_app.test_client().get("/console/?since=1h")
    assert response.status_code == 302
    assert response.headers["Location"] == "/console/login?next=/console/?since%3D1h"


def test_the_operator_password_signs_in_and_the_cookie_is_guarded(console_app):
    visitor = Operator(console_app.test_client())
    response = visitor.sign_in()
    assert response.status_code == 302 and response.headers["Location"] == "/console/"
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/console" in cookie
    assert OPERATOR_PASSWORD not in cookie
    page = visitor.get("/console/")
    assert page.status_code == 200 and "Overview" in page.text
    assert page.headers["Cache-Control"] == "no-store"


def test_sign_in_goes_back_to_the_page_asked_for_and_never_off_the_console(console_app):
    visitor = Operator(console_app.test_client())
    visitor.get("/console/login")
    back = visitor.post("/console/login", {"password": OPERATOR_PASSWORD, "next": "/console/?x=1"})
    assert back.headers["Location"] == "/console/?x=1"
    for elsewhere in ("https://evil.example/", "//evil.example/console/", "/api/banking/"):
        visitor = Operator(console_app.test_client())
        visitor.get("/console/login")
        response = visitor.post("/console/login", {"password": OPERATOR_PASSWORD, "next": elsewhere})
        assert response.headers["Location"] == "/console/"


def test_a_wrong_password_is_refused_and_logged_without_itself(console_app, caplog):
    caplog.set_level(logging.INFO, logger="console")
    visitor = Operator(console_app.test_client())
    visitor.get("/console/login")
    response = visitor.post("/console/login", {"password": "not-the-password-at-all"})
    assert response.status_code == 401
    assert "not the operator password" in response.text
    assert visitor.get("/console/").status_code == 302
    assert "console sign-in refused" in caplog.text
    assert "not-the-password-at-all" not in caplog.text


def test_a_form_without_its_csrf_token_is_refused(operator):
    response = operator.client.post("/console/logout")
    assert response.status_code == 400
    assert "CSRF token is missing" in response.text
    assert operator.client.post("/console/logout", data={"csrf_token": "forged"}).status_code == 400
    assert operator.get("/console/").status_code == 200  # still signed in


def test_the_login_form_needs_its_token_too(console_app):
    response = console_app.test_client().post("/console/login", data={"password": OPERATOR_PASSWORD})
    assert response.status_code == 400


def test_logout_ends_the_session(operator, caplog):
    caplog.set_level(logging.INFO, logger="console")
    response = operator.post("/console/logout")
    assert response.status_code == 302 and response.headers["Location"] == "/console/login"
    assert operator.get("/console/").status_code == 302
    assert "console sign-out" in caplog.text


def test_logout_signs_this_browser_out_but_a_copied_cookie_lives_to_its_end(console_app):
    visitor = Operator(console_app.test_client())
    visitor.sign_in()
    cookie = visitor.client.get_cookie("pluggy_sync_console", path="/console").value
    visitor.get("/console/")
    visitor.post("/console/logout")
    # The cookie is the whole session: a copy kept from before the logout is still signed, so it
    # signs in until its lifetime ends. What logout guarantees is that this browser is signed out.
    other = console_app.test_client()
    other.set_cookie("pluggy_sync_console", cookie, path="/console")
    assert other.get("/console/").status_code == 200


def test_a_session_ends_after_its_lifetime(operator, monkeypatch):
    later = time.time() + SESSION_LIFETIME.total_seconds() + 1
    monkeypatch.setattr(time, "time", lambda: later)
    assert operator.get("/console/").status_code == 302


def test_changing_the_password_ends_its_sessions(migrated_database):
    apps = fresh_app(migrated_database, OPERATOR_PASSWORD=OPERATOR_PASSWORD)
    app = next(apps)
    visitor = Operator(app.test_client())
    visitor.sign_in()
    assert visitor.get("/console/").status_code == 200
    app.config["OPERATOR_PASSWORD"] = "a-new-operator-password"
    assert visitor.get("/console/").status_code == 302
    apps.close()


@pytest.fixture
def keyed_app(migrated_database):
    yield from fresh_app(migrated_database, APP_API_KEYS=(APP_KEY,))


def test_an_app_key_signs_in_when_there_is_no_password(keyed_app):
    visitor = Operator(keyed_app.test_client())
    assert visitor.sign_in(APP_KEY).status_code == 302
    assert visitor.get("/console/").status_code == 200


def test_masks_keep_enough_to_tell_records_apart():
    assert mask_email("joao.silva@example.com") == "j•••@example.com"
    assert mask_email("") == ""
    assert mask_cpf("123.456.789-09") == "•••.456.789-••"
    assert mask_cpf("12345678909") == "•••.456.789-••"
    assert mask_cpf("garbage") == "•••"


def test_ages_read_in_the_largest_unit():

    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert ago(now - timedelta(seconds=45), now) == "45 s"
    assert ago(now - timedelta(minutes=12), now) == "12 min"
    assert ago(now - timedelta(hours=3), now) == "3 h"
    assert ago(None, now) == "never"


def test_redaction_reaches_every_depth_and_the_keys_a_page_adds():
    payload = {"a": 1, "list": [{"api_key": "k", "b": [{"Authorization": "Bearer x"}]}], "otp": "1", "data": "d"}
    assert redacted(payload) == {
        "a": 1,
        "list": [{"api_key": "[redacted]", "b": [{"Authorization": "[redacted]"}]}],
        "otp": "[redacted]",
        "data": "d",
    }
    assert redacted(payload, also=frozenset({"data"}))["data"] == "[redacted]"
