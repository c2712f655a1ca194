"""`make run`'s demo (sandbox/demo.py) as real processes on free loopback ports: a second demo on
taken ports refuses, every run syncs its own item and prints its operator console's address and a
password of its own that signs in, and SIGTERM to `make run` stops every process it started."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import sys
from pathlib import Path

import pytest
import requests

from harness.ports import free_port
from harness.processes import STDOUT, start
from harness.waiting import wait_until

TIMEOUT = 10
STARTUP_S = 60


def descendants_of(pid: int) -> list[int]:
    children = children_of(pid)
    return children + [grandchild for child in children for grandchild in descendants_of(child)]


def children_of(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


class Demo:
    """One `python -m sandbox.demo` (or `make run`), in a session of its own so that everything it
    started can be killed at the end of the test whatever happened."""

    def __init__(self, folder: Path, name: str, web_port: int, sandbox_port: int, *, make: bool = False) -> None:
        self.web_port = web_port
        self.web = f"http://127.0.0.1:{web_port}"
        self.output_file = folder / f"{name}.out"
        ports = {"PORT": str(web_port), "SANDBOX_PORT": str(sandbox_port)}
        env = {**os.environ, **ports, "DEMO_DIR": str(folder / "demo"), "PYTHONUNBUFFERED": "1"}
        for variable in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL"):  # when the suite itself runs under `make test`
            env.pop(variable, None)
        # -o: the virtualenv is taken as installed, so the test never runs pip.
        make_run = ["make", "-s", "-o", ".venv/.installed", "run", *(f"{k}={v}" for k, v in ports.items())]
        command = make_run if make else [sys.executable, "-m", "sandbox.demo"]
        self.process = start(command, env=env, stdout=self.output_file, stderr=STDOUT, start_new_session=True)

    def output(self) -> str:
        return self.output_file.read_text()

    def printed(self) -> re.Match | None:
        assert self.process.poll() is None, self.output()
        return re.search(r"API token of \S+:\n(\S+)\n\nDemo connection: (\d+)\n", self.output())

    def wait_ready(self) -> tuple[str, int]:
        """The token and the connection id it printed."""
        found = wait_until(self.printed, timeout=STARTUP_S, what="the demo up")
        self.token, self.connection_id = found[1], int(found[2])
        return self.token, self.connection_id

    def api(self, path: str) -> dict:
        headers = {"Authorization": f"Bearer {self.token}"}
        answer = requests.get(f"{self.web}/api/banking{path}", headers=headers, timeout=TIMEOUT)
        answer.raise_for_status()
        return answer.json()

    def synced(self) -> bool:
        runs = self.api(f"/connections/{self.connection_id}/sync_runs/")["sync_runs"]
        return any(run["status"] == "success" for run in runs)

    def told_of_updates(self) -> bool:
        """The demo's event receiver verified and printed the sync's `sync.updates_available`."""
        told = f'[app] sync.updates_available {{"user_id": 1, "connection_id": {self.connection_id},'
        return told in self.output()

    def console(self) -> tuple[str, str]:
        """The operator console's address and password the demo printed."""
        line = re.compile(r"^Operator console: (http://\S+) \(password: (\S+)\)$", re.MULTILINE)
        found = wait_until(lambda: line.search(self.output()), timeout=TIMEOUT, what="the console's line printed")
        return found[1], found[2]

    def signs_in_to_console(self, password: str) -> bool:
        """Signs in as a browser does, over HTTP: the login form's CSRF token, then the password."""
        browser = requests.Session()
        login = browser.get(f"{self.web}/console/login", timeout=TIMEOUT)
        token = re.search(r'name="csrf_token" value="([^"]+)"', login.text)
        assert login.status_code == 200 and token, login.text
        form = {"csrf_token": token[1], "password": password}
        signed_in = browser.post(f"{self.web}/console/login", data=form, allow_redirects=False, timeout=TIMEOUT)
        if signed_in.status_code != 302:
            return False
        overview = browser.get(f"{self.web}/console/", allow_redirects=False, timeout=TIMEOUT)
        return overview.status_code == 200 and "Overview" in overview.text

    def transactions(self) -> int:
        return self.api(f"/connections/{self.connection_id}/transactions/?page_size=1")["total"]

    def terminate(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=30)

    def kill_everything(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()


@pytest.fixture
def demos(tmp_path):
    started: list[Demo] = []
    web_port, sandbox_port = free_port(), free_port()

    def start(name: str, *, make: bool = False) -> Demo:
        started.append(Demo(tmp_path, name, web_port, sandbox_port, make=make))
        return started[-1]

    yield start
    for demo in started:
        demo.kill_everything()


def test_a_second_demo_on_taken_ports_exits_non_zero_and_leaves_the_first_alone(demos):
    first = demos("first")
    first.wait_ready()

    second = demos("second")

    assert second.process.wait(timeout=STARTUP_S) != 0
    message = second.output().strip()
    assert len(message.splitlines()) == 1, message
    assert re.fullmatch(rf"port {first.web_port} on 127\.0\.0\.1 is in use .*make run PORT=\.\.\.", message)
    assert first.process.poll() is None
    assert [c["id"] for c in first.api("/connections/")["connections"]] == [first.connection_id]
    wait_until(first.synced, what="the first demo's item synced")


def test_every_run_of_the_demo_syncs_its_own_item(demos):
    passwords = set()
    for run in ("first", "second"):
        demo = demos(run)
        _, connection_id = demo.wait_ready()
        console, password = demo.console()
        assert console == f"{demo.web}/console/"
        assert demo.signs_in_to_console(password)
        assert not demo.signs_in_to_console(password + "x")
        passwords.add(password)

        wait_until(demo.synced, timeout=STARTUP_S, what=f"the {run} run's item synced")
        assert demo.transactions() > 0
        # The sync's outbound event reached the demo's receiver, which verified its signature.
        wait_until(demo.told_of_updates, timeout=STARTUP_S, what="the sync's event received")
        assert [c["id"] for c in demo.api("/connections/")["connections"]] == [connection_id]
        assert demo.terminate() == 0
    assert len(passwords) == 2, "each run has a password of its own"


def test_sigterm_to_make_run_stops_every_process_it_started(demos):
    demo = demos("make", make=True)
    _, connection_id = demo.wait_ready()
    assert [c["id"] for c in demo.api("/connections/")["connections"]] == [connection_id]  # on the ports given to make
    started = descendants_of(demo.process.pid)
    assert len(started) >= 4, started  # the demo, the stand-in, the web service, the worker

    demo.terminate()

    assert [pid for pid in started if alive(pid)] == []
