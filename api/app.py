"""/api/app: the server-to-server API of the app built on this service, authenticated by the app
key (`Authorization: Bearer <APP_API_KEY>`): provisioning users, their API tokens, and erasing a
user with everything stored about them. Without APP_API_KEY it does not exist (every path 404).

Views parse, look up, call one service (sync/users.py, shared with `flask users ...`) and render.
"""

from __future__ import annotations

from flask import Blueprint, current_app

from config import ConfigError
from models import User, db
from pluggy_client import PluggyError
from sync import listing, users
from sync.runtime import pluggy_client
from web.errors import ApiError

from . import feed, schemas
from .auth import authenticate_app
from .banking import not_configured, pluggy_error
from .serializers import app_user_json
from .validation import parse_body

bp = Blueprint("app_api", __name__, url_prefix="/api/app")
bp.before_request(authenticate_app)
bp.register_error_handler(ConfigError, not_configured)
bp.register_error_handler(PluggyError, pluggy_error)


def user_or_404(user_id: int) -> User:
    user = db.session.get(User, user_id)
    if user is None:
        raise ApiError(404, "user_not_found", "No such user.")
    return user


def render_user(user: User) -> dict:
    connections = users.user_connections(db.session, user)
    return app_user_json(user, connections, listing.open_runs(db.session, connections))


def with_token(user: User) -> dict:
    return {"user": render_user(user), "token": users.api_token(current_app.config["SECRET_KEY"], user)}


@bp.post("/users/")
def create_user():
    body = parse_body(schemas.CreateAppUser)
    user, created = users.ensure_user(db.session, body.email)
    return with_token(user), 201 if created else 200


@bp.get("/users/<id:user_id>/")
def get_user(user_id: int):
    return render_user(user_or_404(user_id))


@bp.post("/users/<id:user_id>/token/")
def rotate_token(user_id: int):
    user = user_or_404(user_id)
    users.rotate_token(db.session, user)
    return with_token(user)


@bp.delete("/users/<id:user_id>/")
def erase_user(user_id: int):
    users.erase_user(db.session, user_or_404(user_id), pluggy_client)
    return "", 204


@bp.get("/changes/")
def app_changes():
    """What changed in every user's data since the cursor (sync/changes.py)."""
    return feed.changes_page({"app": True}, personal=False)
