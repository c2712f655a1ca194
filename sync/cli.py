"""Command-line entry points (`flask ...`): the worker, the queue, users, connections, manual sync."""

from __future__ import annotations

import time
from datetime import timedelta

import click
import sqlalchemy as sa
from flask import Flask, current_app
from flask.cli import AppGroup, with_appcontext

from config import ConfigError
from jobqueue import MissingHandlers, WorkerThreadDied, queue
from models import (
    FETCHED_SYNC_STATUSES,
    OPEN_SYNC_STATUSES,
    Connection,
    Job,
    JobStatus,
    RunTrigger,
    SyncRun,
    User,
    db,
)
from observability import metrics
from pluggy_client import PluggyClient, PluggyError

from . import giving_up, scheduling
from .connections import BankConnectionService, ItemOwnedByAnotherUser
from .jobs import job_kinds, sync_worker
from .manual_sync import ManualSync
from .results import ManualSyncStatus
from .runtime import pluggy_client, sync_settings
from .tokens import issue_api_token
from .users import UserError, create_user, erase_user, find_user, rotate_token

jobs_cli = AppGroup("jobs", help="Inspect and retry jobs in the queue.")
users_cli = AppGroup("users", help="Manage the service's users.")
connections_cli = AppGroup("connections", help="Manage bank connections (Pluggy items).")


def app_object() -> Flask:
    """The app itself rather than the proxy bound to this context: the worker's threads push
    contexts of their own."""
    # Flask types current_app as a Flask so that its attributes check; it is a werkzeug LocalProxy,
    # whose _get_current_object mypy cannot see.
    return current_app._get_current_object()  # type: ignore[attr-defined]


def pluggy() -> PluggyClient:
    try:
        return pluggy_client()
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


def connection_service() -> BankConnectionService:
    return BankConnectionService(db.session, pluggy(), sync_settings())


def manual_sync() -> ManualSync:
    return ManualSync(db.session, pluggy(), sync_settings())


@click.command("worker")
@click.option("--burst", is_flag=True, help="Exit once no job is due.")
@click.option("--concurrency", default=1, show_default=True, type=click.IntRange(1, 32), help="Jobs run at once.")
@click.option(
    "--poll-interval",
    default=1.0,
    show_default=True,
    type=click.FloatRange(0.05, 60),
    help="Seconds between looks at an empty queue.",
)
@click.option(
    "--wake/--no-wake",
    default=True,
    show_default=True,
    help="Wake at once when a job is queued (LISTEN/NOTIFY on PostgreSQL; off behind a transaction-mode pooler).",
)
@click.option(
    "--lease",
    default=300,
    show_default=True,
    type=click.IntRange(1, 3600),
    help="Seconds a claimed job stays ours without a sign of life.",
)
@click.option(
    "--metrics-port", type=click.IntRange(1, 65535), help="Serve this worker's Prometheus metrics on this port."
)
@click.option(
    "--metrics-host", default="127.0.0.1", show_default=True, help="Address the metrics port listens on (0.0.0.0: all)."
)
@with_appcontext
def worker_command(
    burst: bool,
    concurrency: int,
    poll_interval: float,
    wake: bool,
    lease: int,
    metrics_port: int | None,
    metrics_host: str,
) -> None:
    """Run the job worker. Exits 0 once stopped (SIGTERM, Ctrl-C) or a burst is done, 1 if a worker
    thread ended abnormally, so that a supervisor restarting on failure brings it back."""
    app = app_object()
    if metrics_port is not None:
        serve_metrics(metrics_port, metrics_host)
    worker = sync_worker(
        app, pluggy(), concurrency=concurrency, poll_interval=poll_interval, wake=wake, lease=timedelta(seconds=lease)
    )
    try:
        worker.run(burst=burst)
    except (MissingHandlers, WorkerThreadDied) as exc:
        raise click.ClickException(str(exc)) from None


def serve_metrics(port: int, host: str) -> None:
    try:
        metrics.serve(port, host)
    except OSError as exc:
        raise click.ClickException(f"cannot serve metrics on {host}:{port}: {exc.strerror}") from None


@jobs_cli.command("list")
@click.option("--status", type=click.Choice([status.value for status in JobStatus]), help="Only jobs in this state.")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 10_000))
def jobs_list(status: str | None, limit: int) -> None:
    """The newest jobs, with their state and last error, then the queue's figures."""
    statement = sa.select(Job).order_by(Job.id.desc()).limit(limit)
    if status:
        statement = statement.where(Job.status == status)
    rows = [job_row(job) for job in db.session.scalars(statement)]
    if rows:
        echo_table(JOB_COLUMNS, rows)
    else:
        click.echo("no jobs")
    stats = queue.queue_stats(db.session)
    click.echo()
    echo_table([QUEUE_COLUMNS.get(name, name.upper()) for name in stats], [[str(value) for value in stats.values()]])


JOB_COLUMNS = ["ID", "KIND", "STATUS", "ATTEMPTS", "RUN AT", "ITEM", "LAST ERROR"]
QUEUE_COLUMNS = {"oldest_due_age_s": "OLDEST DUE (S)"}


def job_row(job: Job) -> list[str]:
    error = job.last_error.splitlines()[0][:80] if job.last_error else "-"
    run_at = f"{job.run_at:%Y-%m-%d %H:%M:%S}"
    return [str(job.id), job.kind, job.status, f"{job.attempts}/{job.max_attempts}", run_at, job.item_id or "-", error]


def echo_table(headers: list[str], rows: list[list[str]]) -> None:
    """Columns as wide as their widest cell, two spaces apart; the last one unpadded."""
    widths = [max(len(cell) for cell in column) for column in zip(headers, *rows, strict=True)]
    for row in (headers, *rows):
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


@jobs_cli.command("retry")
@click.argument("job_id", type=int)
def jobs_retry(job_id: int) -> None:
    """Run a dead or waiting job now."""
    job = db.session.get(Job, job_id)
    if job is None:
        raise click.ClickException(f"no job {job_id}")
    if job.status not in (JobStatus.DEAD, JobStatus.QUEUED):
        raise click.ClickException(f"job {job_id} is {job.status}: only a dead or queued job can be retried")
    if not giving_up.retry(db.session, job):
        raise click.ClickException(f"job {job_id} stays as it is: the same work is already queued")
    click.echo(f"job {job_id} queued")


@jobs_cli.command("retry-dead")
@click.option("--kind", type=click.Choice(job_kinds()), help="Only the dead jobs of this kind.")
def jobs_retry_dead(kind: str | None) -> None:
    """Queue every dead job again."""
    click.echo(f"{len(giving_up.retry_dead(db.session, kind))} dead job(s) queued again")


@users_cli.command("create")
@click.argument("email")
def users_create(email: str) -> None:
    """Create a user; the last line printed is the user's API token."""
    try:
        user = create_user(db.session, email)
    except UserError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"created user {user.email} (id {user.id}); API token:")
    click.echo(issue_api_token(current_app.config["SECRET_KEY"], user))


@users_cli.command("token")
@click.argument("email")
def users_token(email: str) -> None:
    """Print the user's current API token (the same until the token is rotated)."""
    click.echo(issue_api_token(current_app.config["SECRET_KEY"], user_by_email(email)))


@users_cli.command("rotate-token")
@click.argument("email")
def users_rotate_token(email: str) -> None:
    """Revoke every API token of a user; the last line printed is the new one."""
    user = user_by_email(email)
    rotate_token(db.session, user)
    click.echo(f"every earlier token of {user.email} is revoked; new API token:")
    click.echo(issue_api_token(current_app.config["SECRET_KEY"], user))


@users_cli.command("delete")
@click.argument("email")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def users_delete(email: str, yes: bool) -> None:
    """Erase a user: every item of theirs deleted at Pluggy, then everything stored about them."""
    user = user_by_email(email)
    if not yes:
        click.confirm(
            f"Erase {user.email} and everything stored about them, deleting their items at Pluggy?", abort=True
        )
    try:
        removed = erase_user(db.session, user, pluggy)
    except PluggyError as exc:
        raise click.ClickException(f"Pluggy: {exc}; nothing was deleted here, run the command again") from None
    click.echo(f"erased {email} ({removed.get('connections', 0)} connection(s))")


@connections_cli.command("add")
@click.argument("email")
@click.argument("item_id")
def connections_add(email: str, item_id: str) -> None:
    """Register an existing Pluggy item for a user and queue its first sync."""
    user = user_by_email(email)
    try:
        connection, created = connection_service().register(user, item_id)
    except ItemOwnedByAnotherUser:
        raise click.ClickException(f"item {item_id} belongs to another user") from None
    except PluggyError as exc:
        raise click.ClickException(f"Pluggy: {exc}") from None
    verb = "registered; first sync queued" if created else "already registered"
    click.echo(f"connection {connection.id} (item {connection.item_id}, {connection.item_status}) {verb}")


@click.command("test-manual-sync")
@click.option("--connection-id", type=int, help="One connection.")
@click.option("--item-id", help="The connection of one Pluggy item.")
@click.option("--user-email", help="Every connection of one user.")
@click.option(
    "--wait",
    "wait_s",
    type=click.FloatRange(0, 3600),
    help="Follow the sync up to this many seconds and print the counts.",
)
@with_appcontext
def test_manual_sync(
    connection_id: int | None, item_id: str | None, user_email: str | None, wait_s: float | None
) -> None:
    """Manual sync from the command line. Exits 1 unless every sync started (with --wait: succeeded)."""
    chosen = [value for value in (connection_id, item_id, user_email) if value is not None]
    if len(chosen) != 1:
        raise click.UsageError("give exactly one of --connection-id, --item-id, --user-email")
    service = manual_sync()
    failed = False
    for connection in selected_connections(connection_id, item_id, user_email):
        result = service.trigger_manual_sync(connection, trigger=RunTrigger.CLI)
        click.echo(f"connection {connection.id} (item {connection.item_id}): {result.status}{details(result)}")
        run = result.sync_run
        if (
            wait_s is not None
            and run is not None
            and result.status in (ManualSyncStatus.SYNC_STARTED, ManualSyncStatus.ALREADY_SYNCING)
        ):
            run = follow(connection, run, wait_s)
            click.echo(f"connection {connection.id}: run {run.id} {run.status}{counts(run)}")
            failed |= run.status not in FETCHED_SYNC_STATUSES
        else:
            failed |= result.status != ManualSyncStatus.SYNC_STARTED
    if failed:
        raise SystemExit(1)


def selected_connections(connection_id: int | None, item_id: str | None, user_email: str | None) -> list[Connection]:
    statement = sa.select(Connection).where(Connection.deleted_at.is_(None)).order_by(Connection.id)
    if connection_id is not None:
        statement = statement.where(Connection.id == connection_id)
    elif item_id is not None:
        statement = statement.where(Connection.item_id == item_id)
    else:
        assert user_email is not None  # the command takes exactly one of the three
        statement = statement.where(Connection.user_id == user_by_email(user_email).id)
    found = list(db.session.scalars(statement))
    if not found:
        raise click.ClickException("no such connection")
    return found


def follow(connection: Connection, run: SyncRun, wait_s: float) -> SyncRun:
    """Watch the run's item in this process until the run closes or time runs out, printing progress."""
    scheduling.queue_watch(db.session, run, connection)
    db.session.commit()
    worker = sync_worker(app_object(), pluggy(), progress=click.echo)
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        worked = worker.run_one(db.session, f"{worker.name}:cli", item_id=connection.item_id)
        db.session.refresh(run)
        if run.status not in OPEN_SYNC_STATUSES:
            return run
        if not worked:
            time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
    click.echo(f"connection {connection.id}: still {run.status} after {wait_s:.0f} s")
    return run


def details(result) -> str:
    parts = []
    if result.sync_run is not None:
        parts.append(f"run {result.sync_run.id}")
    if result.retry_after is not None:
        parts.append(f"retry after {result.retry_after:.0f} s")
    if result.mfa:
        parts.append(f"MFA asks for {result.mfa.get('label') or result.mfa.get('name')}")
    if result.user_action:
        parts.append(f"user action: {result.user_action.get('instructions', '')}")
    if result.connect_token is not None:
        parts.append("reconnect with an update-mode connect token (POST /api/banking/connect_token/)")
    if result.error:
        parts.append(f"{result.error['code']}: {result.error['message']}")
    return f" ({'; '.join(parts)})" if parts else ""


def counts(run: SyncRun) -> str:
    line = f": {run.accounts} account(s), {run.created} new, {run.updated} updated, {run.deleted} deleted"
    return line + (f" ({run.error})" if run.error else "")


def user_by_email(email: str) -> User:
    try:
        user = find_user(db.session, email)
    except UserError as exc:
        raise click.ClickException(str(exc)) from None
    if user is None:
        raise click.ClickException(f"no user with e-mail {email}")
    return user


def register_commands(app) -> None:
    for command in (worker_command, test_manual_sync, jobs_cli, users_cli, connections_cli):
        app.cli.add_command(command)
