"""The browser suite (`make browser`): the operator console driven by Debian's chromium, headless,
through its chromedriver, over the real processes (the web service, the worker) and the local Pluggy
stand-in, as tests/e2e runs them.

Selenium is told where both binaries are, so its Selenium Manager never runs (it would try to
download a browser). Without them the suite fails, naming the packages to install: a browser test
skipped in CI would be a browser test nobody runs."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

from harness.processes import ROOT, python_m, run, service_env
from harness.waiting import wait_until
from tests.conftest import TEST_SECRETS
from tests.e2e.test_end_to_end import Stack

CHROMIUM = Path(os.environ.get("BROWSER_CHROMIUM", "/usr/bin/chromium"))
CHROMEDRIVER = Path(os.environ.get("BROWSER_CHROMEDRIVER", "/usr/bin/chromedriver"))
OPERATOR_PASSWORD = "browser-operator-password"
WINDOW = (1280, 900)
# Where the overview's screenshot goes: the README shows it.
SCREENSHOT = Path(os.environ.get("CONSOLE_SCREENSHOT") or ROOT / "docs" / "console-overview.png")
CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


def missing_browser() -> list[str]:
    return [str(path) for path in (CHROMIUM, CHROMEDRIVER) if not (path.is_file() and os.access(path, os.X_OK))]


@pytest.fixture(scope="session", autouse=True)
def browser_installed() -> None:
    """Checked before any process starts: the suite fails, never skips, without a browser."""
    if missing := missing_browser():
        pytest.fail(
            f"the browser tests need Debian's chromium and its chromedriver; missing: {', '.join(missing)}. "
            "Install them with: apt-get install chromium chromium-driver",
            pytrace=False,
        )


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The stand-in, the web service and the worker on a new SQLite database, the console on with
    OPERATOR_PASSWORD. A job fails once and is dead (JOB_MAX_ATTEMPTS=1), so that a test can make
    one by having the stand-in answer errors."""
    folder = tmp_path_factory.mktemp("stack")
    database_url = f"sqlite:///{folder / 'console.db'}"
    run(python_m("flask", "db", "upgrade"), env=service_env(database_url, TEST_SECRETS["SECRET_KEY"]), timeout=120)
    stack = Stack(database_url, folder, OPERATOR_PASSWORD=OPERATOR_PASSWORD, JOB_MAX_ATTEMPTS="1")
    try:
        stack.start()
        yield stack
    finally:
        stack.stop()


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[webdriver.Chrome]:
    """Headless chromium with a profile of its own, shared by a module's tests in order."""
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    options.add_argument(f"--window-size={WINDOW[0]},{WINDOW[1]}")
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    driver.set_window_size(*WINDOW)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def health_queue(stack: Stack) -> dict:
    return requests.get(f"{stack.web}/health", timeout=10).json()["queue"]


def settled(stack: Stack, what: str, timeout: float = 60) -> None:
    """Until the stand-in has delivered everything and the service's queue has nothing due or running."""
    stack.idle()

    def queue_empty() -> bool:
        queue = health_queue(stack)
        return queue["due"] == 0 and queue["running"] == 0

    wait_until(queue_empty, timeout, interval=0.1, what=what)
