"""Loopback ports for processes started on this machine."""

from __future__ import annotations

import socket

HOST = "127.0.0.1"


def free_port(host: str = HOST) -> int:
    """A port nothing listens on now. Another process may take it before the caller binds it; where
    that matters, bind a socket here and hand it over instead (`processes.gunicorn` does)."""
    with socket.socket() as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def port_taken(port: int, host: str = HOST) -> bool:
    """Whether a server could not bind `port` now."""
    with socket.socket() as probe:
        # As the servers themselves bind: connections of an earlier run still closing do not count.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return True
    return False
