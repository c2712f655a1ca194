"""Entry point: `gunicorn wsgi:app`, and `flask` finds `app` here on its own."""

import os
import sys

from api import create_app
from config import ConfigError
from observability.logs import configure_logging

try:
    configure_logging(os.environ)
    app = create_app()
except ConfigError as exc:
    # The message names the setting to fix; a traceback would only bury it. Exit status 4 is
    # gunicorn's "App failed to load", on which it stops instead of starting workers again.
    print(f"Error: {exc}", file=sys.stderr)
    raise SystemExit(4) from None
