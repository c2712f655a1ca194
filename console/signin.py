"""Signing in and out of the console."""

from __future__ import annotations

import logging

from flask import g, redirect, render_template, request, url_for

from observability.logs import event

from .blueprint import bp
from .operators import matching_secret, sign_in, sign_out

log = logging.getLogger("console")


def safe_next(target: str | None) -> str:
    """Back to the console page that sent the operator here; never to another site."""
    if target and target.startswith("/console/") and not target.startswith("//") and "\\" not in target:
        return target
    return url_for("console.overview")


@bp.route("/login", methods=["GET", "POST"])
def login():
    if request.method == "GET":
        if g.operator:
            return redirect(safe_next(request.args.get("next")))
        return render_template("console/login.html", next=request.args.get("next", ""))
    secret = matching_secret(request.form.get("password", ""))
    if secret is None:
        event(log, "console sign-in refused", level=logging.WARNING, remote_addr=request.remote_addr)
        return render_template("console/login.html", next=request.form.get("next", ""), refused=True), 401
    sign_in(secret)
    return redirect(safe_next(request.form.get("next")))


@bp.post("/logout")
def logout():
    sign_out()
    return redirect(url_for("console.login"))
