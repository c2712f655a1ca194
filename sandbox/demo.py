"""`make run`: the whole service on this machine with no Pluggy keys.

Starts the local Pluggy stand-in, the web service and the worker; subscribes the webhooks; makes a
demo user with a connected sandbox item; prints where everything is and what to try. Ctrl-C stops
all three.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"
WEB_PORT = int(os.environ.get("PORT", "5000"))
SANDBOX_PORT = int(os.environ.get("SANDBOX_PORT", "8700"))
WEB = f"http://{HOST}:{WEB_PORT}"
SANDBOX = f"http://{HOST}:{SANDBOX_PORT}"
DEMO_EMAIL = "demo@example.com"
TIMEOUT = 5
# The web service and the worker share their metrics through this folder, so /metrics shows both.
METRICS_DIR = ROOT / "instance" / "prometheus"


def environment() -> dict[str, str]:
    """The sandbox's keys and URLs; anything already set in the environment wins."""
    return {
        "FLASK_DEBUG": "1",  # generates and keeps a SECRET_KEY in instance/
        "PLUGGY_BASE_URL": SANDBOX,
        "PLUGGY_CLIENT_ID": "sandbox-client-id",
        "PLUGGY_CLIENT_SECRET": "sandbox-client-secret",
        "PLUGGY_WEBHOOK_SECRET": "demo-webhook-secret",
        "PUBLIC_BASE_URL": WEB,
        "PROMETHEUS_MULTIPROC_DIR": str(METRICS_DIR),
        **os.environ,
    }


def start(name: str, *args: str, env: dict[str, str]) -> subprocess.Popen:
    print(f"starting {name}: {' '.join(args)}")
    return subprocess.Popen([sys.executable, *args], cwd=ROOT, env=env)


def flask(*args: str, env: dict[str, str]) -> str:
    """Run a `flask` command to the end; its output's last line."""
    done = subprocess.run(
        [sys.executable, "-m", "flask", *args], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    )
    return done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""


def wait_for(url: str, processes: list[subprocess.Popen], seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if any(p.poll() is not None for p in processes):
            raise SystemExit(f"a process exited while waiting for {url}")
        try:
            if requests.get(url, timeout=TIMEOUT).ok:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"{url} did not answer within {seconds:.0f} s")


def demo_token(env: dict[str, str]) -> str:
    try:
        return flask("users", "token", DEMO_EMAIL, env=env)
    except subprocess.CalledProcessError:
        return flask("users", "create", DEMO_EMAIL, env=env)


def connect_demo_item(token: str) -> None:
    """Do what the Connect widget does: take a connect token from the service, create an item at
    the sandbox with it, and register it. The stand-in keeps its data in memory, so this runs on
    every start; with the same seed the first item has the same id every time."""
    auth = {"Authorization": f"Bearer {token}"}
    connect = requests.post(f"{WEB}/api/banking/connect_token/", headers=auth, timeout=TIMEOUT).json()
    item = requests.post(
        f"{SANDBOX}/items",
        headers={"X-API-KEY": connect["access_token"]},
        json={"connectorId": 0, "parameters": {"user": "user-ok", "password": "password-ok"}},
        timeout=TIMEOUT,
    ).json()
    requests.post(f"{WEB}/api/banking/connections/", headers=auth, json={"item_id": item["id"]}, timeout=TIMEOUT)


def show(token: str) -> None:
    auth = f'-H "Authorization: Bearer {token}"'
    print(
        f"""
pluggy-sync is running at {WEB} (Pluggy stand-in at {SANDBOX}; Ctrl-C stops everything)

API token of {DEMO_EMAIL}:
{token}

Try:
  curl -s {WEB}/health
  curl -s {WEB}/health/ready
  curl -s {WEB}/metrics | grep ^pluggy_sync
  curl -s {WEB}/openapi.json
  curl -s {auth} {WEB}/api/banking/connections/
  curl -s -X POST {auth} '{WEB}/api/banking/connections/1/sync_transactions/?wait=30'
  curl -s {auth} '{WEB}/api/banking/connections/1/transactions/?page_size=5'
  curl -s {auth} {WEB}/api/banking/connections/1/check_status/
  curl -s {auth} {WEB}/api/banking/connections/1/sync_runs/
  curl -s -X POST {auth} {WEB}/api/banking/connect_token/

An item that asks for a one-time code (connector 4; the code is 123456):
  TOKEN=$(curl -s -X POST {auth} {WEB}/api/banking/connect_token/ | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
  curl -s -X POST {SANDBOX}/items -H "X-API-KEY: $TOKEN" -H 'Content-Type: application/json' \\
       -d '{{"connectorId": 4, "parameters": {{"user": "user-ok", "password": "password-ok"}}}}'
  curl -s {auth} {WEB}/api/banking/connections/          # the new one says MFA_REQUIRED
  curl -s -X POST {auth} {WEB}/api/banking/connections/2/send_mfa/ -H 'Content-Type: application/json' -d '{{"mfa_value": "123456"}}'
"""
    )


def interrupt(*_) -> None:
    raise KeyboardInterrupt


def fresh_metrics_dir(env: dict[str, str]) -> None:
    """Values left by processes of an earlier run would be added to this run's."""
    folder = Path(env["PROMETHEUS_MULTIPROC_DIR"])
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)


def main() -> None:
    env = environment()
    fresh_metrics_dir(env)
    processes = [start("the Pluggy stand-in", "-m", "sandbox", "--host", HOST, "--port", str(SANDBOX_PORT), env=env)]
    try:
        wait_for(f"{SANDBOX}/health", processes)
        processes.append(start("the web service", "-m", "flask", "run", "--no-reload", "--host", HOST, "--port", str(WEB_PORT), env=env))
        processes.append(start("the worker", "-m", "flask", "worker", "--poll-interval", "0.5", env=env))
        wait_for(f"{WEB}/health", processes)
        flask("webhooks", "register", f"{WEB}/webhooks/pluggy", env=env)
        token = demo_token(env)
        connect_demo_item(token)
        show(token)
        signal.signal(signal.SIGTERM, interrupt)
        while all(p.poll() is None for p in processes):
            time.sleep(0.5)
        print("a process stopped; stopping the others")
    except KeyboardInterrupt:
        print("\nstopping")
    finally:
        for process in processes:
            if process.poll() is None:
                process.terminate()
        for process in processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()


if __name__ == "__main__":
    main()
