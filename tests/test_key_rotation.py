"""SECRET_KEY rotates without downtime: tokens signed with a key in SECRET_KEY_FALLBACKS are still
accepted, new ones are signed with SECRET_KEY, and a key dropped from the fallbacks is refused."""

from __future__ import annotations

import json

from config import read_environment
from sandbox import data as pf
from sync.tokens import issue_api_token, issue_webhook_token, webhook_token_is_valid

OLD, NEW = (
    "old-secret-key-0123456789abcdef-32",
    "new-secret-key-0123456789abcdef-32",
)  # 32 bytes or more, as outside tests


def rotate(app, *, fallbacks: tuple[str, ...]) -> None:
    app.config.update(SECRET_KEY=NEW, SECRET_KEY_FALLBACKS=fallbacks)


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def deliver(client, token: str):
    return client.post(
        f"/webhooks/pluggy/{token}", data=json.dumps(pf.webhook_event("item/updated")), content_type="application/json"
    )


def test_tokens_of_the_retiring_key_are_accepted_while_it_is_a_fallback(app, client, user):
    old_api_token, old_url_token = issue_api_token(OLD, user), issue_webhook_token(OLD)
    rotate(app, fallbacks=(OLD,))
    assert client.get("/api/banking/connections/", headers=bearer(old_api_token)).status_code == 200
    assert deliver(client, old_url_token).status_code == 200
    assert client.get("/api/banking/connections/", headers=bearer(issue_api_token(NEW, user))).status_code == 200


def test_tokens_of_a_dropped_key_are_refused(app, client, user):
    old_api_token, old_url_token = issue_api_token(OLD, user), issue_webhook_token(OLD)
    rotate(app, fallbacks=())
    assert client.get("/api/banking/connections/", headers=bearer(old_api_token)).status_code == 401
    assert deliver(client, old_url_token).status_code == 401


def test_new_tokens_are_signed_with_the_new_key_only(app, client, runner, user):
    rotate(app, fallbacks=(OLD,))
    token = runner.invoke(args=["users", "token", user.email]).output.strip().splitlines()[-1]
    app.config.update(SECRET_KEY=OLD, SECRET_KEY_FALLBACKS=())
    assert client.get("/api/banking/connections/", headers=bearer(token)).status_code == 401
    assert not webhook_token_is_valid([OLD], issue_webhook_token(NEW))


def test_fallbacks_are_read_comma_separated_from_the_environment(tmp_path):
    config = read_environment({"SECRET_KEY": NEW, "SECRET_KEY_FALLBACKS": f" {OLD} , older "}, str(tmp_path))
    assert config["SECRET_KEY_FALLBACKS"] == (OLD, "older")
    assert read_environment({}, str(tmp_path))["SECRET_KEY_FALLBACKS"] == ()
