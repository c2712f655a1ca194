"""A stand-in for the app's webhook endpoint (`make run`): an HTTP server on loopback, in a thread,
that verifies each outbound event with the `standardwebhooks` package, as an app would, and prints
its type and data."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError


class EventReceiver:
    """Serves on 127.0.0.1 (a free port unless given) from `start()` to `stop()`. `secret` must be set
    (the one the endpoint's registration answered) before events arrive; until then, and for any
    event whose signature does not verify, it answers 401."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, say: Callable[[str], None] = print) -> None:
        self.secret: str | None = None
        self.say = say
        self.received: list[dict] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                self.send_response(receiver.take(body, dict(self.headers)))
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        self.url = f"http://{host}:{self.server.server_address[1]}/events"

    def take(self, body: bytes, headers: dict[str, str]) -> int:
        if self.secret is None:
            return 401
        try:
            event = Webhook(self.secret).verify(body, headers)
        except WebhookVerificationError as refused:
            self.say(f"[app] refused an event: {refused}")
            return 401
        self.received.append(event)
        self.say(f"[app] {event['type']} {json.dumps(event['data'])}")
        return 204

    def start(self) -> EventReceiver:
        threading.Thread(target=self.server.serve_forever, name="event-receiver", daemon=True).start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
