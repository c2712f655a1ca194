"""`flask webhooks register URL`, `flask webhooks list`, `flask webhooks unregister ID`."""

from __future__ import annotations

import click
from flask import current_app
from flask.cli import AppGroup

from config import ConfigError
from pluggy_client import PluggyError
from sync.cli import echo_table, pluggy
from sync.runtime import pluggy_client

from .subscriptions import register

webhooks_cli = AppGroup("webhooks", help="Pluggy's webhook subscriptions.")


@webhooks_cli.command("register")
@click.argument("url")
def register_command(url: str) -> None:
    """Create or update the subscriptions for every handled event, sending the first
    PLUGGY_WEBHOOK_SECRET as X-Webhook-Secret."""
    secrets = current_app.config["PLUGGY_WEBHOOK_SECRETS"]
    if not secrets:
        raise click.ClickException("set PLUGGY_WEBHOOK_SECRET: Pluggy must send it with every delivery")
    if not url.startswith(("https://", "http://")):
        raise click.ClickException(f"not a URL: {url}")
    try:
        done = register(pluggy_client(), url, secrets[0])
    except (ConfigError, PluggyError) as exc:
        raise click.ClickException(str(exc)) from None
    for event, what in done:
        click.echo(f"{event:<28} {what}")


@webhooks_cli.command("list")
def list_command() -> None:
    """Every webhook subscription of this application at Pluggy."""
    try:
        webhooks = pluggy().list_webhooks()
    except PluggyError as exc:
        raise click.ClickException(f"Pluggy: {exc}") from None
    if not webhooks:
        click.echo("no webhook subscriptions")
        return
    echo_table(["ID", "EVENT", "URL", "ENABLED"], [webhook_row(webhook) for webhook in webhooks])


def webhook_row(webhook: dict) -> list[str]:
    enabled = "no" if webhook.get("disabledAt") else "yes"
    return [str(webhook["id"]), webhook.get("event") or "-", webhook.get("url") or "-", enabled]


@webhooks_cli.command("unregister")
@click.argument("webhook_id")
def unregister_command(webhook_id: str) -> None:
    """Delete one webhook subscription at Pluggy, by the id `flask webhooks list` shows."""
    try:
        pluggy().delete_webhook(webhook_id)
    except PluggyError as exc:
        raise click.ClickException(f"Pluggy: {exc}") from None
    click.echo(f"webhook {webhook_id} unregistered")
