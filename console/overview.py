"""The overview: is the service keeping up? The queue, the webhooks of the last hour, the sync runs
of the last day, the connections by sync_status and the connectors Pluggy reports unhealthy."""

from __future__ import annotations

from flask import render_template
from markupsafe import Markup

from models import RunStatus, db
from sync.operations.overview import HOURS, MINUTES, Overview, read_overview

from .blueprint import bp
from .charts import Series, bar_chart, stacked_bar_chart

# Fetched runs in greens, open ones in blue and grey, the user's turn in ambers, errors in red.
RUN_COLORS: dict[str, str] = {
    RunStatus.SUCCESS: "#1f7a3a",
    RunStatus.PARTIAL: "#7fb069",
    RunStatus.PENDING: "#9aa5b1",
    RunStatus.RUNNING: "#0b5cad",
    RunStatus.MFA_REQUIRED: "#d9a400",
    RunStatus.USER_ACTION_REQUIRED: "#e07b39",
    RunStatus.CREDENTIALS_REQUIRED: "#a55f00",
    RunStatus.ERROR: "#b3261e",
}
UNKNOWN_COLOR = "#5b6670"


@bp.get("/")
def overview():
    figures = read_overview(db.session)
    return render_template(
        "console/overview.html",
        overview=figures,
        webhooks_chart=webhooks_chart(figures),
        runs_chart=runs_chart(figures),
    )


def webhooks_chart(figures: Overview) -> Markup:
    busiest = max(figures.webhooks_per_minute, key=lambda minute: minute[1])
    summary = f"{figures.webhooks_last_hour:,} webhooks received in the last {MINUTES} minutes"
    if busiest[1]:
        summary += f"; the busiest minute, {busiest[0]:%H:%M} UTC, had {busiest[1]:,}"
    return bar_chart(
        [(f"{minute:%H:%M}", count) for minute, count in figures.webhooks_per_minute],
        chart_id="webhooks-per-minute",
        title="Webhooks received per minute, last hour (UTC)",
        description=summary + ".",
        unit="webhooks",
        label_every=10,
    )


def runs_chart(figures: Overview) -> Markup:
    outcomes = ", ".join(f"{count:,} {status}" for status, count in figures.runs_by_status.items() if count)
    return stacked_bar_chart(
        [(f"{hour:%H:00}", by_status) for hour, by_status in figures.runs_per_hour],
        [Series(status, RUN_COLORS.get(status, UNKNOWN_COLOR)) for status in figures.runs_by_status],
        chart_id="runs-per-hour",
        title=f"Sync runs started per hour by outcome, last {HOURS} hours (UTC)",
        description=f"{figures.runs_last_day:,} sync runs started in the last {HOURS} hours"
        + (f": {outcomes}." if outcomes else "."),
        label_every=3,
    )
