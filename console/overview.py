"""The overview: is the service keeping up?"""

from __future__ import annotations

from flask import render_template

from models import db
from sync.operations.overview import read_overview

from .blueprint import bp


@bp.get("/")
def overview():
    return render_template("console/overview.html", overview=read_overview(db.session))
