"""`flask webhooks register URL`."""
from __future__ import annotations

import click
from flask import current_app
from flask.cli import AppGroup

from api.config import ConfigError
from pluggy_client import PluggyError
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
