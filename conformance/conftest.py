"""The conformance suite (`make conformance`): the local Pluggy stand-in (`python -m sandbox`) in a
process of its own, driven with Pluggy's official SDKs, and a receiver for its webhook deliveries.

Pluggy's SDKs are installed when the suite runs (conformance/requirements.txt, conformance/node),
never kept in the repository."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from harness.ports import HOST
from harness.processes import start_stand_in, stopped_on_exit

# Pluggy's client ids are UUIDs (the Python SDK refuses anything else before sending).
CLIENT_ID = "0b5c3f8e-7a1d-4e2b-9c6f-2d8a4b1e3f70"
CLIENT_SECRET = "conformance-client-secret"
# Pluggy's default page size: lists span several pages, so the SDKs' paging is exercised.
PAGE_SIZE = "20"
STEP_DELAY = 0.05  # seconds per step of an item's execution: short, and still observable


@pytest.fixture(scope="module")
def stand_in(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A stand-in of its own for each test module; its URL."""
    log = tmp_path_factory.mktemp("stand-in") / "stand-in.log"
    options = ("--client-id", CLIENT_ID, "--client-secret", CLIENT_SECRET, "--page-size", PAGE_SIZE)
    with stopped_on_exit(start_stand_in(*options, step_delay=STEP_DELAY, stderr=log)) as child:
        yield child.url


@dataclass
class Delivery:
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class Receiver:
    """What the stand-in posted to it, in order."""

    url: str
    deliveries: list[Delivery] = field(default_factory=list)


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    """An HTTP server on a loopback port that answers every POST with 200 and keeps what it got."""
    deliveries: list[Delivery] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            text = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            try:
                body = json.loads(text)
            except ValueError:
                body = {"unparsable": text.decode(errors="replace")}
            deliveries.append(Delivery(self.path, dict(self.headers), body))
            self.send_response(200)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer((HOST, 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield Receiver(f"http://{HOST}:{server.server_port}", deliveries)
    finally:
        server.shutdown()
        server.server_close()
