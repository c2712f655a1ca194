"""`make run`: the whole service on this machine with no Pluggy keys.

Starts the local Pluggy stand-in, the web service and the worker; subscribes the webhooks; registers
a webhook endpoint of a stand-in app (a receiver in this process that verifies and prints every
outbound event); makes a demo user with a connected sandbox item; prints where everything is and
what to try, with the operator console's address and its password for this run. Ctrl-C or SIGTERM
stops all three.

Every run starts from an empty database of its own (DEMO_DIR, default instance/demo): the stand-in
keeps nothing between runs and repeats its ids, so rows of an earlier run would name items it no
longer has and its webhooks would look like duplicates.
"""

from __future__ import annotations

import fcntl
import os
import secrets
import shutil
import signal
import time
from pathlib import Path
from typing import IO

import requests

from harness.ports import port_taken
from harness.processes import Child, Exited, last_line, python_m, run, service_env, start, stop, wait_until_serving
from harness.waiting import NotMet

from .event_receiver import EventReceiver

ROOT = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"
WEB_PORT = int(os.environ.get("PORT", "5000"))
SANDBOX_PORT = int(os.environ.get("SANDBOX_PORT", "8700"))
WEB = f"http://{HOST}:{WEB_PORT}"
SANDBOX = f"http://{HOST}:{SANDBOX_PORT}"
DEMO_EMAIL = "demo@example.com"
TIMEOUT = 5
DEMO_DIR = Path(os.environ.get("DEMO_DIR") or ROOT / "instance" / "demo").resolve()
DATABASE = DEMO_DIR / "demo.db"
# The web service and the worker share their metrics through this folder, so /metrics shows both.
METRICS_DIR = DEMO_DIR / "prometheus"
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
# The app API's key for this run: the demo registers its event receiver with it.
APP_KEY = secrets.token_urlsafe(32)
# The operator console's password for this run (/console/), printed with the rest.
OPERATOR_PASSWORD = secrets.token_urlsafe(18)


def environment() -> dict[str, str]:
    """The demo's database, a key for this run, the stand-in's keys and URLs, over the environment:
    the processes must agree with the stand-in and the ports this demo checked."""
    return service_env(
        f"sqlite:///{DATABASE}",
        secrets.token_hex(32),  # the database is new, so no earlier token must stay valid
        pluggy_url=SANDBOX,
        webhook_secret="demo-webhook-secret",
        debug=True,
        PUBLIC_BASE_URL=WEB,
        PROMETHEUS_MULTIPROC_DIR=str(METRICS_DIR),
        APP_API_KEY=APP_KEY,
        OPERATOR_PASSWORD=OPERATOR_PASSWORD,
        # The demo's event receiver is http:// on loopback.
        ALLOW_PRIVATE_WEBHOOK_URLS="1",
    )


def refuse_taken_ports() -> None:
    """Checked before anything starts: a second demo must not talk to the first one's processes."""
    if WEB_PORT == SANDBOX_PORT:
        raise SystemExit(f"PORT and SANDBOX_PORT are both {WEB_PORT}; give them different values")
    for port, variable in ((WEB_PORT, "PORT"), (SANDBOX_PORT, "SANDBOX_PORT")):
        if port_taken(port, HOST):
            raise SystemExit(
                f"port {port} on {HOST} is in use (another make run?): choose a free one with make run {variable}=..."
            )


def hold_demo_dir() -> IO:
    """One demo per folder: a second one on other ports would empty the first one's database."""
    DEMO_DIR.mkdir(parents=True, exist_ok=True)
    lock = open(DEMO_DIR / "lock", "w")  # noqa: SIM115 - the caller holds it (and the lock) for the whole demo
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        raise SystemExit(f"another demo runs from {DEMO_DIR}: stop it, or set DEMO_DIR to another folder") from None
    return lock


def empty_demo_dir() -> None:
    """Values left by processes of an earlier run would be added to this run's, and its rows would
    name items the new stand-in does not have."""
    for path in DEMO_DIR.glob(f"{DATABASE.name}*"):  # with SQLite's -wal and -shm files
        path.unlink()
    shutil.rmtree(METRICS_DIR, ignore_errors=True)
    METRICS_DIR.mkdir()


def launch(name: str, processes: list[Child], *args: str, env: dict[str, str]) -> None:
    """`python -m args...`, its output on the demo's own."""
    print(f"starting {name}: {' '.join(args)}", flush=True)
    processes.append(start(python_m(*args), env=env, name=name))


def flask(*commands: tuple[str, ...], env: dict[str, str]) -> list[str]:
    """Run `flask` commands side by side to the end; the last line each printed."""
    try:
        return [last_line(output) for output in run(*(python_m("flask", *args) for args in commands), env=env)]
    except Exited as failure:
        raise SystemExit(str(failure)) from None


def wait_for(url: str, processes: list[Child]) -> None:
    """Until `url` answers; a process exiting meanwhile, or 30 s, ends the demo."""
    try:
        wait_until_serving(url, *processes, timeout=30, interval=0.2)
    except NotMet as failure:  # Exited too
        raise SystemExit(f"while waiting for {url}: {failure}") from None


def connect_demo_item(token: str) -> int:
    """Do what the Connect widget does: take a connect token from the service, create an item at
    the sandbox with it, and register it. Answers the new connection's id."""
    auth = {"Authorization": f"Bearer {token}"}
    connect = requests.post(f"{WEB}/api/banking/connect_token/", headers=auth, timeout=TIMEOUT).json()
    item = requests.post(
        f"{SANDBOX}/items",
        headers={"X-API-KEY": connect["access_token"]},
        json={"connectorId": 0, "parameters": {"user": "user-ok", "password": "password-ok"}},
        timeout=TIMEOUT,
    ).json()
    registered = requests.post(
        f"{WEB}/api/banking/connections/", headers=auth, json={"item_id": item["id"]}, timeout=TIMEOUT
    )
    registered.raise_for_status()
    return registered.json()["id"]


def register_receiver(receiver: EventReceiver) -> None:
    """Register the receiver as the app's webhook endpoint; it verifies with the secret answered."""
    registered = requests.post(
        f"{WEB}/api/app/webhook_endpoints/",
        headers={"Authorization": f"Bearer {APP_KEY}"},
        json={"url": receiver.url},
        timeout=TIMEOUT,
    )
    registered.raise_for_status()
    receiver.secret = registered.json()["secret"]


def show(token: str, connection_id: int, receiver: EventReceiver) -> None:
    auth = f'-H "Authorization: Bearer {token}"'
    connection = f"{WEB}/api/banking/connections/{connection_id}"
    print(
        f"""
pluggy-sync is running at {WEB} (Pluggy stand-in at {SANDBOX}; Ctrl-C stops everything)
Its database, new for this run: {DATABASE}

API token of {DEMO_EMAIL}:
{token}

Demo connection: {connection_id}

Operator console: {WEB}/console/ (password: {OPERATOR_PASSWORD})

Outbound events land at {receiver.url} (a stand-in for the app, in this process): each one is
verified with the standardwebhooks package and printed as "[app] <type> <data>".
App API key: {APP_KEY}
  curl -s -H "Authorization: Bearer {APP_KEY}" {WEB}/api/app/webhook_deliveries/

Try:
  curl -s {WEB}/health
  curl -s {WEB}/health/ready
  curl -s {WEB}/metrics | grep ^pluggy_sync
  curl -s {WEB}/openapi.json
  curl -s {auth} {WEB}/api/banking/connections/
  curl -s -X POST {auth} '{connection}/sync_transactions/?wait=30'
  curl -s {auth} '{connection}/transactions/?page_size=5'
  curl -s {auth} {connection}/check_status/
  curl -s {auth} {connection}/sync_runs/
  curl -s -X POST {auth} {WEB}/api/banking/connect_token/

An item that asks for a one-time code (connector 4; the code is 123456), its ids kept in ITEM and ID:
  field() {{ python3 -c "import json, sys; print(json.load(sys.stdin)['$1'])"; }}
  TOKEN=$(curl -s -X POST {auth} {WEB}/api/banking/connect_token/ | field access_token)
  ITEM=$(curl -s -X POST {SANDBOX}/items -H "X-API-KEY: $TOKEN" -H 'Content-Type: application/json' \\
       -d '{{"connectorId": 4, "parameters": {{"user": "user-ok", "password": "password-ok"}}}}' | field id)
  ID=$(curl -s -X POST {auth} {WEB}/api/banking/connections/ -H 'Content-Type: application/json' \\
       -d "{{\\"item_id\\": \\"$ITEM\\"}}" | field id)
  curl -s {auth} {WEB}/api/banking/connections/$ID/   # MFA_REQUIRED once the bank asks
  curl -s -X POST {auth} {WEB}/api/banking/connections/$ID/send_mfa/ -H 'Content-Type: application/json' \\
       -d '{{"mfa_value": "123456"}}'
""",
        flush=True,
    )


def interrupt(*_) -> None:
    raise KeyboardInterrupt


def run_demo(processes: list[Child]) -> None:
    empty_demo_dir()
    env = environment()
    launch("the Pluggy stand-in", processes, "sandbox", "--host", HOST, "--port", str(SANDBOX_PORT), env=env)
    flask(("db", "upgrade"), env=env)
    web = ("flask", "run", "--no-reload", "--host", HOST, "--port", str(WEB_PORT))
    launch("the web service", processes, *web, env=env)
    launch("the worker", processes, "flask", "worker", "--poll-interval", "0.5", env=env)
    wait_for(f"{SANDBOX}/health", processes)
    _, token = flask(("webhooks", "register", f"{WEB}/webhooks/pluggy"), ("users", "create", DEMO_EMAIL), env=env)
    wait_for(f"{WEB}/health", processes)
    receiver = EventReceiver(HOST).start()
    try:
        register_receiver(receiver)
        show(token, connect_demo_item(token), receiver)
        while all(p.poll() is None for p in processes):
            time.sleep(0.5)
    finally:
        receiver.stop()
    raise SystemExit("a process stopped; stopping the others")


def run_until_stopped() -> None:
    processes: list[Child] = []
    try:
        run_demo(processes)
    finally:
        stop_all(processes)


def stop_all(processes: list[Child]) -> None:
    # A second Ctrl-C or SIGTERM must not cut the stopping short and leave a process behind; on a
    # terminal Ctrl-C reaches the processes themselves anyway.
    for stop_signal in STOP_SIGNALS:
        signal.signal(stop_signal, signal.SIG_IGN)
    # Newest first: the worker finishes its jobs in hand while the stand-in is still there to answer
    # (gone, it would make the worker retry its calls for seconds before giving up).
    stop(*reversed(processes))


def main() -> None:
    # Before anything starts, so a signal at any moment still stops every process started.
    for stop_signal in STOP_SIGNALS:
        signal.signal(stop_signal, interrupt)
    try:
        refuse_taken_ports()
        with hold_demo_dir():
            run_until_stopped()
    except KeyboardInterrupt:
        print("\nstopped", flush=True)


if __name__ == "__main__":
    main()
