"""A TCP forwarder on loopback that a test can cut, as when a database server goes away: every
connection through it is closed and new ones are refused, until the test restores it."""

from __future__ import annotations

import contextlib
import selectors
import socket
import struct
import threading

# SO_LINGER on with a zero timeout: close() sends a reset, as a refusing host does.
RESET_ON_CLOSE = struct.pack("ii", 1, 0)


class CuttableProxy:
    """Forwards 127.0.0.1:<port> to `target`, one thread per direction of each connection. Use it as
    a context manager: leaving it closes every connection and joins every thread it started."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.lock = threading.Lock()
        self.open: set[socket.socket] = set()
        self.pumps: list[threading.Thread] = []
        self.is_cut = False
        self.refused = 0
        self.stopping = threading.Event()
        self.acceptor = threading.Thread(target=self.accept_until_stopped, name="proxy-accept", daemon=True)

    def __enter__(self) -> CuttableProxy:
        self.acceptor.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stopping.set()
        self.acceptor.join(10)
        self.cut()
        self.listener.close()
        for pump in self.pumps:
            pump.join(10)

    def cut(self) -> None:
        """Close every connection through the proxy and refuse new ones until `restore`."""
        with self.lock:
            self.is_cut = True
            dropped, self.open = self.open, set()
        for sock in dropped:
            close(sock)

    def restore(self) -> None:
        with self.lock:
            self.is_cut = False

    def accept_until_stopped(self) -> None:
        with selectors.DefaultSelector() as selector:
            selector.register(self.listener, selectors.EVENT_READ)
            while not self.stopping.is_set():
                if selector.select(timeout=0.05):
                    client, _ = self.listener.accept()
                    self.forward(client)

    def forward(self, client: socket.socket) -> None:
        server = None if self.is_cut else connect(self.target)
        with self.lock:
            if self.is_cut or server is None:
                self.refused += 1
                refuse(client, server)
                return
            self.open |= {client, server}
        for source, sink in ((client, server), (server, client)):
            pump = threading.Thread(target=self.pump, args=(source, sink), name="proxy-pump", daemon=True)
            pump.start()
            self.pumps.append(pump)

    def pump(self, source: socket.socket, sink: socket.socket) -> None:
        """Copy one direction until either side goes; then drop both, as a lost connection does."""
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            with self.lock:
                self.open -= {source, sink}
            close(source)
            close(sink)


def connect(target: tuple[str, int]) -> socket.socket | None:
    try:
        server = socket.create_connection(target, timeout=5)
    except OSError:
        return None
    server.settimeout(None)
    return server


def refuse(client: socket.socket, server: socket.socket | None) -> None:
    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, RESET_ON_CLOSE)
    client.close()
    if server is not None:
        server.close()


def close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        # wakes the pump blocked in recv() on it (unless already closed, or the peer went first)
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()
