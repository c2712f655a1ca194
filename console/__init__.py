"""The operator console at /console/: server-rendered pages for the people who run the service.

`blueprint` holds the sign-in guard, CSRF and the HTML error pages; `signin` the login and logout
views; each page is a module of its own that adds its views to the blueprint and asks the service
layer (`sync/operations/`) for what it shows. Without an operator secret (OPERATOR_PASSWORD or
APP_API_KEY) the console is not registered and its paths answer 404, like any unknown path.
"""

from __future__ import annotations

from flask import Flask

from . import connections, jobs, overview, signin, webhooks
from .blueprint import bp, csrf
from .operators import configure_session, operator_secrets


def init_console(app: Flask) -> None:
    if not operator_secrets(app.config):
        return
    configure_session(app)
    csrf.init_app(app)
    app.register_blueprint(bp)


__all__ = ["connections", "init_console", "jobs", "overview", "signin", "webhooks"]
