"""Entry point: `gunicorn wsgi:app`, and `flask` finds `app` here on its own."""
from api import create_app

app = create_app()
