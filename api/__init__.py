"""The application factory."""

from __future__ import annotations

import os
from collections.abc import Mapping

from flask import Flask
from werkzeug.routing import BaseConverter

from config import ensure_secret_key, read_environment
from console import init_console
from models import db, engine_options, migrate
from web.errors import register_error_handlers

from .requestlog import init_request_logging

MAX_ID = 2**31 - 1  # the id columns are 32-bit on PostgreSQL


class IdConverter(BaseConverter):
    """A database id in a URL. Digits too large for the column are read as 0, an id no row has, so
    the view answers 404 like any unknown id. (Refusing them in the converter instead makes
    werkzeug answer 405 when another method's rule has the same path.)"""

    regex = r"[0-9]{1,20}"
    weight = 50

    def to_python(self, value: str) -> int:
        number = int(value)
        return number if number <= MAX_ID else 0

    def to_url(self, value: int) -> str:
        return str(int(value))


def create_app(config: Mapping | None = None) -> Flask:
    """Build the app from the environment; `config` overrides it (tests pass theirs here)."""
    app = Flask(__name__, static_folder=None)
    app.config.update(read_environment(os.environ, app.instance_path))
    if config:
        app.config.update(config)
    ensure_secret_key(app.config, app.instance_path, debug=app.debug, testing=app.testing)
    app.config.setdefault("SQLALCHEMY_ENGINE_OPTIONS", engine_options(app.config["SQLALCHEMY_DATABASE_URI"]))
    if app.config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite:///"):
        os.makedirs(app.instance_path, exist_ok=True)

    app.url_map.converters["id"] = IdConverter
    # A path without its trailing slash, or with a doubled one, is served or refused as it is: werkzeug
    # would answer a 308 HTML page (no error handler sees it), which a client not following it takes as the answer.
    app.url_map.strict_slashes = False
    app.url_map.merge_slashes = False
    db.init_app(app)
    migrate.init_app(app, db, directory=os.path.join(app.root_path, os.pardir, "migrations"))
    register_error_handlers(app)
    init_request_logging(app)

    from sync.cli import register_commands
    from sync.outbound import events as outbound
    from webhooks import receiver
    from webhooks.cli import webhooks_cli

    from . import app as app_api
    from . import banking, health, metrics, openapi

    app.register_blueprint(health.bp)
    app.register_blueprint(metrics.bp)
    app.register_blueprint(openapi.bp)
    app.register_blueprint(banking.bp)
    if app.config.get("APP_API_KEYS"):
        # Without an app key the app API does not exist: its paths answer as any unknown path does.
        app.register_blueprint(app_api.bp)
    app.register_blueprint(receiver.bp)
    init_console(app)
    register_commands(app)
    outbound.watch()
    app.cli.add_command(webhooks_cli)
    return app
