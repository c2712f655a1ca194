"""The jobs pages: the queue by state and kind, one job, and retrying or discarding jobs."""

from __future__ import annotations

import json

from flask import abort, flash, g, redirect, render_template, request, url_for

from models import db
from sync.operations import jobs

from .blueprint import bp
from .operators import log_action
from .paging import next_page_url, window


@bp.get("/jobs", endpoint="jobs")
def jobs_list():
    filters = jobs.parse_filter(request.args.get("state"), request.args.get("kind"))
    order, scope = jobs.order_of(filters), filters.scope()
    page = jobs.jobs_page(db.session, filters, window(order, scope))
    next_url = next_page_url("console.jobs", order, page.next_key, scope, state=filters.state, kind=filters.kind)
    return render_template(
        "console/jobs.html",
        filters=filters,
        states=list(jobs.JobState),
        kinds=jobs.job_kinds(),
        figures=jobs.queue_figures(db.session),
        jobs=[row[0] for row in page.rows],
        next_url=next_url,
        short_error=jobs.short_error,
    )


@bp.get("/jobs/<id:job_id>")
def job(job_id: int):
    found = jobs.find_job(db.session, job_id) or abort(404, f"There is no job {job_id}.")
    payload = json.dumps(jobs.shown_payload(found.payload), indent=2, sort_keys=True, ensure_ascii=False)
    return render_template("console/job.html", job=found, payload=payload, actionable=found.status in jobs.RETRYABLE)


@bp.post("/jobs/<id:job_id>/retry")
def retry_job(job_id: int):
    found = jobs.find_job(db.session, job_id) or abort(404, f"There is no job {job_id}.")
    result = jobs.retry_job(db.session, found)
    if result.outcome == jobs.Outcome.DONE:
        log_action(g.operator, "retry job", job_id=job_id, kind=found.kind, was=result.status)
        flash(f"Job {job_id} is queued to run now.")
    elif result.outcome == jobs.Outcome.ALREADY_QUEUED:
        where = f" (job {result.other_job_id})" if result.other_job_id else ""
        flash(f"Job {job_id} stays as it is: the same work is already queued{where}.", "error")
    else:
        flash(f"Job {job_id} is {result.status}: only a dead or queued job can be retried.", "error")
    return redirect(url_for("console.job", job_id=job_id))


@bp.post("/jobs/<id:job_id>/discard")
def discard_job(job_id: int):
    found = jobs.find_job(db.session, job_id) or abort(404, f"There is no job {job_id}.")
    result = jobs.discard_job(db.session, found)
    if result.outcome == jobs.Outcome.DONE:
        log_action(g.operator, "discard job", job_id=job_id, kind=found.kind, was=result.status)
        flash(f"Job {job_id} is discarded: it will not run.")
    else:
        flash(f"Job {job_id} is {result.status}: only a dead or queued job can be discarded.", "error")
    return redirect(url_for("console.job", job_id=job_id))


@bp.post("/jobs/retry-dead")
def retry_dead_jobs():
    kind = request.form.get("kind", "")
    if kind not in jobs.job_kinds():
        abort(400, "Choose the kind of the dead jobs to retry.")
    retried = jobs.retry_dead_of_kind(db.session, kind)
    log_action(g.operator, "retry dead jobs", kind=kind, job_ids=retried)
    flash(f"{len(retried)} dead {kind} job(s) queued again.")
    return redirect(url_for("console.jobs", state=jobs.JobState.DEAD, kind=kind))
