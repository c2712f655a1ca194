"""gunicorn's logger class for this service (`gunicorn.conf.py` names it).

gunicorn's own lines (starting, booting a worker, a worker timing out) go through the service's
handler, so a web process writes one format. It writes no access lines: the app logs each request
itself, with the route instead of the raw path, which for a webhook URL holds its signed token.
"""

from __future__ import annotations

import os

from gunicorn.glogging import Logger as GunicornLogger

from .logs import make_handler


class Logger(GunicornLogger):
    def setup(self, cfg) -> None:
        super().setup(cfg)
        for handler in list(self.error_log.handlers):
            self.error_log.removeHandler(handler)
        self.error_log.addHandler(make_handler(os.environ))
        self.error_log.propagate = False  # the app's root handler would print each line again

    def access(self, resp, req, environ, request_time) -> None:
        """No access lines (see above)."""
