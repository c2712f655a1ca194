"""The console's blueprint: every page needs a signed-in operator, every form a CSRF token, and
errors are pages, not the APIs' JSON."""

from __future__ import annotations

from flask import Blueprint, current_app, g, redirect, render_template, request, url_for
from flask_wtf.csrf import CSRFError, CSRFProtect
from werkzeug.exceptions import HTTPException

from web.errors import ApiError

from . import formatting
from .operators import current_operator

bp = Blueprint(
    "console",
    __name__,
    url_prefix="/console",
    template_folder="templates",
    static_folder="static",
)
csrf = CSRFProtect()

OPEN_ENDPOINTS = {"console.login", "console.static"}
# The navigation, in order; a page module not registered is not linked.
PAGES = (
    ("console.overview", "Overview"),
    ("console.connections", "Connections"),
    ("console.jobs", "Jobs"),
    ("console.webhooks", "Webhooks"),
    ("console.deliveries", "Deliveries"),
)


@bp.app_template_global()
def nav_links() -> list[tuple[str, str, bool]]:
    """(url, label, whether it is the current section) for each page the console has."""
    links = []
    for endpoint, label in PAGES:
        if endpoint in current_app.view_functions:
            url = url_for(endpoint)
            current = request.path == url if endpoint == "console.overview" else request.path.startswith(url)
            links.append((url, label, current))
    return links


@bp.before_request
def require_operator():
    operator = current_operator()
    if operator is None and request.endpoint not in OPEN_ENDPOINTS:
        return redirect(url_for("console.login", next=request.full_path.rstrip("?")))
    g.operator = operator
    csrf.protect()  # POST, PUT, PATCH and DELETE only
    return None


@bp.after_request
def no_caching(response):
    # Pages show live state and personal data: a shared cache or the back button must not keep them.
    response.headers.setdefault("Cache-Control", "no-store")
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    response.headers.setdefault(
        "Content-Security-Policy", "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'"
    )
    return response


def error_page(status: int, title: str, message: str):
    return render_template("console/error.html", status=status, title=title, message=message), status


@bp.errorhandler(CSRFError)
def csrf_refused(error: CSRFError):
    return error_page(400, "Form refused", f"{error.description} Go back, reload the page and try again.")


@bp.errorhandler(ApiError)
def api_error(error: ApiError):
    return error_page(error.http_status, error.code.replace("_", " ").capitalize(), error.message)


@bp.errorhandler(HTTPException)
def http_error(error: HTTPException):
    return error_page(error.code or 500, error.name, error.description or error.name)


formatting.register(bp)
