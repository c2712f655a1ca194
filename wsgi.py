"""Entry point: `gunicorn wsgi:app`, and `flask` finds `app` here on its own."""
import os

from api import create_app
from observability.logs import configure_logging

configure_logging(os.environ)
app = create_app()
