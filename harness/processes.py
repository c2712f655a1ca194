"""The service's processes, and the local Pluggy stand-in, as children of this one: the environment
they run with, starting them with their output where it is wanted, reading it, running commands to
their end, waiting for a server to answer, and stopping them (SIGTERM, then SIGKILL)."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from sandbox import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET

from .ports import HOST
from .waiting import NotMet, answers, wait_until

ROOT = Path(__file__).resolve().parents[1]
# The keys the stand-in (`python -m sandbox`) accepts unless told others.
STAND_IN_CLIENT_ID, STAND_IN_CLIENT_SECRET = DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET
TAIL = 5000  # characters of a process's output shown when it failed

PIPE, STDOUT, DEVNULL = subprocess.PIPE, subprocess.STDOUT, subprocess.DEVNULL
Output = Path | int | IO | None  # a file to append to, PIPE, STDOUT, DEVNULL, an open file, or inherited


class Exited(NotMet):
    """A process that was meant to be running, or to succeed, did not."""


class Child(subprocess.Popen):
    """A process started by `start`: a Popen that knows its name, where its output went (`log`) and,
    for the stand-in, its `url`."""

    name: str
    log: Path | None = None
    url: str = ""

    def said(self, last: int = TAIL) -> str:
        """The end of what it wrote to its log file, if it has one."""
        if self.log is None or not self.log.exists():
            return ""
        return self.log.read_text(errors="replace")[-last:]

    def check_running(self) -> None:
        """Fails (Exited, with the end of its log) if it has exited."""
        if self.poll() is not None:
            raise Exited(f"{self.name} exited with {self.returncode}:\n{self.said()}")


def python_m(module: str, *args: str) -> list[str]:
    """`python -m module args...` with this interpreter (the virtualenv's): `flask`, `gunicorn`,
    `sandbox` and the benchmarks' own modules."""
    return [sys.executable, "-m", module, *args]


def service_env(
    database_url: str,
    secret_key: str,
    *,
    pluggy_url: str | None = None,
    client_id: str = STAND_IN_CLIENT_ID,
    client_secret: str = STAND_IN_CLIENT_SECRET,
    webhook_secret: str | None = None,
    debug: bool = False,
    **settings: str | None,
) -> dict[str, str]:
    """The environment a process of the service (a `flask` command, the worker, gunicorn) runs with
    (the variables of docs/API.md "Configuration"): this process's environment without its FLASK_*
    variables, FLASK_APP=wsgi, the database and the key; Pluggy's URL and keys when `pluggy_url` is
    given (the stand-in's keys unless others are); the webhook secret when given. As deployed, with
    no debugger and no generated key, unless `debug` (FLASK_DEBUG=1). `settings` go over all of it;
    one given as None is taken out."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("FLASK_")}
    env.update(FLASK_APP="wsgi", DATABASE_URL=database_url, SECRET_KEY=secret_key)
    if pluggy_url is not None:
        env.update(PLUGGY_BASE_URL=pluggy_url, PLUGGY_CLIENT_ID=client_id, PLUGGY_CLIENT_SECRET=client_secret)
    if webhook_secret is not None:
        env["PLUGGY_WEBHOOK_SECRET"] = webhook_secret
    if debug:
        env["FLASK_DEBUG"] = "1"
    for name, value in settings.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


def start(
    command: Sequence[str],
    *,
    env: dict[str, str] | None = None,
    stdout: Output = None,
    stderr: Output = None,
    name: str | None = None,
    **popen,
) -> Child:
    """`command` in a process of its own, in the repository's folder. `stdout` and `stderr` are a
    Popen's (None inherits this process's), or a Path: a file appended to, which becomes the
    child's `log`. Output nobody reads must go to a file or DEVNULL, never to a PIPE: a full pipe
    stalls the process. Text mode."""
    files: list[IO] = []

    def opened(output: Output) -> int | IO | None:
        if isinstance(output, Path):
            files.append(output.open("a"))
            return files[-1]
        return output

    try:
        child = Child(command, cwd=ROOT, env=env, stdout=opened(stdout), stderr=opened(stderr), text=True, **popen)
    finally:
        for file in files:
            file.close()  # the child has its own copy
    command = list(command)
    child.name = name or " ".join(command[2:] if command[1:2] == ["-m"] else command)
    child.log = stderr if isinstance(stderr, Path) else stdout if isinstance(stdout, Path) else None
    return child


def finish(child: Child, timeout: float | None = 60, *, log: Path | None = None) -> str:
    """Waits for `child` to end; what it wrote to stdout (with stderr if that was sent there). A
    non-zero exit fails (Exited) with what it wrote; so does a child still running after `timeout`
    seconds, killed. `log` gets what it wrote to a piped stderr."""
    try:
        output, errors = child.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill(child)
        raise Exited(f"{child.name} still running after {timeout:g} s:\n{child.said()}") from None
    if log is not None and errors:
        with log.open("a") as file:
            file.write(errors)
    if child.returncode != 0:
        said = (errors or output or child.said()).strip()[-TAIL:]
        raise Exited(f"{child.name} exited with {child.returncode}:\n{said}")
    return output or ""


def run(
    *commands: Sequence[str], env: dict[str, str], timeout: float | None = None, log: Path | None = None
) -> list[str]:
    """Runs `commands` side by side to their end (each `flask` command is a new interpreter loading
    the whole app, about a second of CPU); what each wrote to stdout. One failing fails the lot
    (Exited, with its stderr), and whatever still runs is killed."""
    children = [start(command, env=env, stdout=PIPE, stderr=PIPE) for command in commands]
    try:
        return [finish(child, timeout, log=log) for child in children]
    finally:
        kill(*children)


def last_line(output: str) -> str:
    """The last line a command printed ("" if none): what `flask users create` and the like answer."""
    lines = output.strip().splitlines()
    return lines[-1] if lines else ""


@contextmanager
def reading(child: Child) -> Iterator[list[str]]:
    """The lines of `child`'s piped stdout as they come, read by a thread (an unread pipe would fill
    and stall it); at the end the child is killed if still running, and the reader ends with it."""
    lines: list[str] = []

    def read() -> None:
        for line in child.stdout:
            lines.append(line)

    reader = threading.Thread(target=read, name=f"{child.name} output", daemon=True)
    reader.start()
    try:
        yield lines
    finally:
        kill(child)
        reader.join(10)


def stop(*children: subprocess.Popen, timeout: float = 15) -> None:
    """Each in turn, in the order given: SIGTERM (servers finish what is in flight, workers the job
    in hand), then SIGKILL if it is still there after `timeout` seconds."""
    for child in children:
        if child.poll() is None:
            child.terminate()
        try:
            child.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def kill(*children: subprocess.Popen) -> None:
    """SIGKILL to those still running, and reaped."""
    for child in children:
        if child.poll() is None:
            child.kill()
        child.wait()


@contextmanager
def stopped_on_exit(child: Child, timeout: float = 15) -> Iterator[Child]:
    """`child`, stopped (`stop`) when the block ends, however it ends."""
    try:
        yield child
    finally:
        stop(child, timeout=timeout)


@contextmanager
def killed_on_exit(child: Child) -> Iterator[Child]:
    """`child`, killed when the block ends if it is still running: nothing outlives a failed test."""
    try:
        yield child
    finally:
        kill(child)


def wait_until_serving(
    url: str, *children: Child, timeout: float = 30, interval: float = 0.05, any_status: bool = False
) -> None:
    """Until GET `url` answers (`waiting.answers`); fails at once, with its log, when one of
    `children` (the server, and what it needs) has exited."""

    def serving() -> bool:
        for child in children:
            child.check_running()
        return answers(url, any_status=any_status)

    wait_until(serving, timeout, interval=interval, what=f"{url} answering")


def start_stand_in(*args: str, step_delay: float = 0, stderr: Output = DEVNULL) -> Child:
    """The local Pluggy stand-in (`python -m sandbox ... args`) in a process of its own, as Pluggy
    is a server of its own, on a loopback port it chose; answered once it has said its URL
    (`child.url`), and so is listening."""
    command = python_m("sandbox", "--port", "0", "--step-delay", str(step_delay), *args)
    child = start(command, stdout=PIPE, stderr=stderr, name="the stand-in")
    line = child.stdout.readline()
    listening = re.fullmatch(r"sandbox listening on (http://\S+)\n", line)
    if not listening:
        stop(child)
        raise Exited(f"the stand-in said {line!r} instead of its URL (exit {child.returncode}):\n{child.said()}")
    child.url = listening[1]
    return child


@contextmanager
def stand_in(*args: str, step_delay: float = 0, stderr: Output = DEVNULL) -> Iterator[Child]:
    """`start_stand_in`, stopped when the block ends."""
    with stopped_on_exit(start_stand_in(*args, step_delay=step_delay, stderr=stderr)) as child:
        yield child


@contextmanager
def gunicorn(
    env: dict[str, str],
    *options: str,
    app: str = "wsgi:app",
    port: int = 0,
    log: Path | None = None,
    any_status: bool = False,
    startup_timeout: float = 60,
    stop_timeout: float = 15,
) -> Iterator[int]:
    """gunicorn serving `app` with `options` on a loopback port (`port`, or one of its own), its
    output appended to `log`; yields the port once /health answers (`any_status`: any answer), and
    stops it at the end (gunicorn finishes the answers in flight). The socket is bound here and
    handed over, so the port is known and cannot be taken meanwhile."""
    listener = socket.create_server((HOST, port), backlog=2048)
    port = listener.getsockname()[1]
    command = python_m("gunicorn", *options, "--bind", f"fd://{listener.fileno()}", app)
    with listener:
        output = log or DEVNULL
        server = start(command, env=env, stdout=output, stderr=STDOUT, pass_fds=[listener.fileno()], name="gunicorn")
    with stopped_on_exit(server, timeout=stop_timeout):
        url = f"http://{HOST}:{port}/health"
        wait_until_serving(url, server, timeout=startup_timeout, any_status=any_status)
        yield port
