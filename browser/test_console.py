"""The operator console in a real browser, over the real processes and the stand-in: the door (a
wrong password, a form without its CSRF token), the overview (and its screenshot for the README), a
connection stuck in CREDENTIALS_REQUIRED found with the filters, a dead job retried until it is
done, and logging out.

The pages are found by the element contract the console's pages keep (ids and form fields named in
the brief), never by layout. The tests share one browser and one stack, in the order written; each
signs in first if it needs to, so any one of them also runs alone. Every wait polls with a
deadline and says what it waited for."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlsplit

import pytest
from conftest import OPERATOR_PASSWORD, SCREENSHOT, WINDOW, health_queue, settled
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException, WebDriverException
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import Select, WebDriverWait

from harness.waiting import wait_until
from tests.e2e.test_end_to_end import Stack

# Each test may wait on the stack (a sync, a job retried): more than the suite's default 120 s.
pytestmark = pytest.mark.timeout(300)

WAIT_S = 60


# Finding things the way a person does: by the form's fields and the buttons' words. -----------


def path_of(browser: WebDriver) -> str:
    return urlsplit(browser.current_url).path


def open_page(browser: WebDriver, stack: Stack, path: str) -> None:
    """GET a console page; an answer that is an error, or not a console page at all (a page not in
    this build answers the service's JSON 404), fails saying what came instead."""
    browser.get(f"{stack.web}{path}")
    errors = browser.find_elements(By.CSS_SELECTOR, "section.error h1")
    assert not errors, f"{path} answered {errors[0].text}"
    came = browser.find_element(By.TAG_NAME, "body").text[:300]
    assert browser.find_elements(By.CSS_SELECTOR, "header.top"), f"{path} is not a console page: {came}"


def button(scope: WebDriver | WebElement, words: str) -> WebElement:
    return scope.find_element(By.XPATH, f".//button[@type='submit'][normalize-space()='{words}']")


def click_and_load(browser: WebDriver, element: WebElement) -> None:
    """Click a link or a form's button and wait for the page it leads to. A click returns before the
    next page has arrived: reading, or going elsewhere, too soon would see the old page or cut the
    request short (a POST never sent)."""
    label = element.text
    old_page = browser.find_element(By.TAG_NAME, "html")
    element.click()
    WebDriverWait(browser, WAIT_S).until(detached(old_page), f"no new page within {WAIT_S} s of clicking {label!r}")
    WebDriverWait(browser, WAIT_S).until(
        lambda driver: driver.execute_script("return document.readyState") == "complete",
        f"the page after clicking {label!r} not loaded within {WAIT_S} s",
    )


def detached(element: WebElement) -> Callable[[WebDriver], bool]:
    """Whether the element has left the document (its page replaced). Chromium reports a node
    detached mid-navigation either as a stale reference or as an inspector error ("Node with given
    id does not belong to the document"): both mean gone."""

    def gone(_driver: WebDriver) -> bool:
        try:
            element.is_enabled()
        except (StaleElementReferenceException, WebDriverException):
            return True
        return False

    return gone


def sign_in(browser: WebDriver, stack: Stack, password: str = OPERATOR_PASSWORD) -> None:
    open_page(browser, stack, "/console/login")
    if path_of(browser) != "/console/login":
        return  # already signed in: the login page sends an operator on
    field = browser.find_element(By.ID, "password")
    field.send_keys(password)
    click_and_load(browser, button(browser, "Sign in"))


def signed_in(browser: WebDriver, stack: Stack) -> None:
    sign_in(browser, stack)
    assert path_of(browser) == "/console/", browser.page_source


def fill_filter(browser: WebDriver, **fields: str) -> None:
    """Set the filter form's fields (a select, radio buttons or a text box, whichever the page
    uses) and submit it as a person would."""
    form = None
    for name, value in fields.items():
        elements = browser.find_elements(By.NAME, name)
        assert elements, f"no filter field named {name!r} on {browser.current_url}"
        field = elements[0]
        form = field.find_element(By.XPATH, "./ancestor::form")
        if field.tag_name == "select":
            Select(field).select_by_value(value)
        elif field.get_attribute("type") == "radio":
            next(e for e in elements if e.get_attribute("value") == value).click()
        else:
            field.clear()
            field.send_keys(value)
    assert form is not None and (form.get_attribute("method") or "get").lower() == "get"
    submits = form.find_elements(By.XPATH, ".//button[not(@type) or @type='submit'] | .//input[@type='submit']")
    assert submits, f"the filter form on {browser.current_url} has no submit button"
    click_and_load(browser, submits[0])


def first_link_in(browser: WebDriver, table_id: str, text: str | None = None) -> WebElement:
    """The link in the first cell of a row of the table (the first row, or the one whose link says
    `text`)."""
    links = browser.find_elements(By.CSS_SELECTOR, f"table#{table_id} tr td:first-child a")
    if text is not None:
        links = [link for link in links if link.text.strip() == text]
    assert links, f"no row{f' for {text}' if text else ''} in #{table_id} on {browser.current_url}"
    return links[0]


def text_of(browser: WebDriver, element_id: str) -> str:
    try:
        return browser.find_element(By.ID, element_id).text.strip()
    except (NoSuchElementException, StaleElementReferenceException):
        return ""


def fit_window_to_page(browser: WebDriver) -> None:
    """A page area WINDOW wide and at least as tall, tall enough for the whole page: a screenshot
    holds only what the window shows."""
    chrome = browser.get_window_size()["height"] - browser.execute_script("return window.innerHeight")
    page = browser.execute_script("return document.documentElement.scrollHeight")
    browser.set_window_size(WINDOW[0], max(WINDOW[1], page) + chrome)


def error_heading(browser: WebDriver) -> str:
    return browser.find_element(By.CSS_SELECTOR, "section.error h1").text


# Data made for real: items connected through the stand-in, their webhooks handled by the worker. --


@pytest.fixture(scope="module")
def seeded(stack: Stack) -> dict[str, str]:
    """Items of several connectors and outcomes, one of them stuck in CREDENTIALS_REQUIRED by the
    bank refusing its credentials (a webhook's LOGIN_ERROR), and a connector Pluggy reports as
    unstable; answers the item ids by what became of them."""
    items = {
        "updated": stack.connect_item(0),
        "personal": stack.connect_item(2),
        "partial": stack.connect_item(0, user="user-ok-account-error"),
        "refused": stack.connect_item(0),
    }
    connections = {}
    for name, item_id in items.items():
        registered = stack.api("POST", "/connections/", json={"item_id": item_id})
        assert registered.status_code in (200, 201), registered.text
        connections[name] = registered.json()["id"]
    settled(stack, "the first syncs done")

    # The user changes their password at the bank: the item's next login fails.
    update_token = stack.api("POST", "/connect_token/", json={"item_id": items["refused"]}).json()["access_token"]
    stack.reconnect(items["refused"], update_token, "user-ok", "wrong-password")
    wait_until(
        lambda: stack.connection(connections["refused"])["sync_status"] == "CREDENTIALS_REQUIRED",
        WAIT_S,
        what="the login error reaching the connection by webhook",
    )
    stack.control("connectors/2/status", status="UNSTABLE")
    settled(stack, "the login error and the connector's status handled")
    return items


@pytest.fixture
def dead_job(stack: Stack, seeded: dict[str, str]) -> None:
    """A job given up for real: the stand-in answers 500 to every read of an item while Pluggy's own
    schedule updates it, the worker's job for it fails its one attempt, and the fault is cleared."""
    item_id = seeded["updated"]
    dead_before = health_queue(stack)["dead"]
    stack.control("faults", fail=[{"method": "GET", "path": f"/items/{item_id}", "status": 500, "count": 1000}])
    try:
        stack.control(f"items/{item_id}/auto_sync")
        wait_until(lambda: health_queue(stack)["dead"] > dead_before, WAIT_S, interval=0.1, what="a job dead")
        settled(stack, "the failed update's jobs over")
    finally:
        stack.control("faults", fail=[])


# The flows ----------------------------------------------------------------------------------


def test_a_wrong_password_is_refused(browser, stack):
    open_page(browser, stack, "/console/")
    assert path_of(browser) == "/console/login", "a stranger is sent to the login page"

    sign_in(browser, stack, password="not-the-operator-password")

    refusal = browser.find_element(By.CSS_SELECTOR, "[role=alert]")
    assert "not the operator password" in refusal.text
    assert path_of(browser) == "/console/login"
    open_page(browser, stack, "/console/")
    assert path_of(browser) == "/console/login", "still not signed in"


def test_a_form_without_its_csrf_token_is_refused(browser, stack):
    # The login form: the right password, but no token.
    open_page(browser, stack, "/console/login")
    browser.execute_script("document.querySelector('input[name=csrf_token]').remove()")
    browser.find_element(By.ID, "password").send_keys(OPERATOR_PASSWORD)
    click_and_load(browser, button(browser, "Sign in"))
    assert error_heading(browser) == "400 · Form refused"
    open_page(browser, stack, "/console/")
    assert path_of(browser) == "/console/login", "a refused sign-in signs nobody in"

    # The logout form of a signed-in operator: refused, and the session goes on.
    signed_in(browser, stack)
    logout = browser.find_element(By.CSS_SELECTOR, "form.logout")
    browser.execute_script("arguments[0].querySelector('input[name=csrf_token]').remove()", logout)
    click_and_load(browser, button(logout, "Log out"))
    assert error_heading(browser) == "400 · Form refused"
    assert "The CSRF token is missing." in browser.page_source
    open_page(browser, stack, "/console/")
    assert path_of(browser) == "/console/", "still signed in"


def test_the_overview_shows_and_is_photographed(browser, stack, seeded):
    signed_in(browser, stack)

    assert browser.find_element(By.TAG_NAME, "h1").text == "Overview"
    queue = {state: browser.find_element(By.CSS_SELECTOR, f"[data-queue={state}]").text for state in ("due", "dead")}
    assert all(figure.isdigit() for figure in queue.values()), queue
    fit_window_to_page(browser)
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    assert browser.save_screenshot(str(SCREENSHOT)), f"no screenshot written to {SCREENSHOT}"


def test_a_connection_stuck_in_credentials_required_is_found(browser, stack, seeded):
    signed_in(browser, stack)
    open_page(browser, stack, "/console/connections")

    fill_filter(browser, sync_status="CREDENTIALS_REQUIRED")

    listed = {
        link.text.strip() for link in browser.find_elements(By.CSS_SELECTOR, "table#connections tr td:first-child a")
    }
    assert seeded["refused"] in listed and seeded["updated"] not in listed, listed
    click_and_load(browser, first_link_in(browser, "connections", seeded["refused"]))
    assert browser.find_element(By.CSS_SELECTOR, "dl.record dd#sync-status").text.strip() == "CREDENTIALS_REQUIRED"


def test_a_dead_job_is_retried_and_runs(browser, stack, dead_job):
    signed_in(browser, stack)
    open_page(browser, stack, "/console/jobs")

    fill_filter(browser, state="dead")
    click_and_load(browser, first_link_in(browser, "jobs"))
    job_page = path_of(browser)
    assert text_of(browser, "job-status") == "dead"
    click_and_load(browser, button(browser, "Retry"))

    seen = []

    def done() -> bool:
        open_page(browser, stack, job_page)
        seen.append(text_of(browser, "job-status"))
        return seen[-1] == "done"

    try:
        wait_until(done, WAIT_S, interval=0.2, what=f"{job_page} saying done after Retry")
    except AssertionError as failure:
        raise AssertionError(f"{failure}; it said {sorted(set(seen))}, last {seen[-1:]}") from None


def test_logging_out_ends_the_session(browser, stack):
    signed_in(browser, stack)

    click_and_load(browser, button(browser.find_element(By.CSS_SELECTOR, "form.logout"), "Log out"))

    assert path_of(browser) == "/console/login"
    open_page(browser, stack, "/console/")
    assert path_of(browser) == "/console/login", "a console page sends a signed-out operator to log in"
