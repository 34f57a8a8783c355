"""The operator's story through `/console` in a real browser (Debian's chromium, headless,
driven by Selenium through chromium-driver) against the real local stack in its production
shape: payments for an account that does not exist land in dead letters; the operator signs
in, sees them, creates the account, replays with a dry run and then for real, watches the
progress reach 100 %, and sees the balance and the audit entries.

A screenshot of each step (1366x768) goes to `HOOKYARD_CONSOLE_SCREENSHOTS` (default: the
test's tmp_path); `docs/console/` holds a committed run. `tools/ensure-chromium` (run by
`make test`) installs the browser where it can; elsewhere this test is skipped, saying why.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from hookyard.stack import LocalStack
from tests.support.postgres import TestServer
from tests.support.stack import (
    ADMIN_TOKEN,
    admin,
    module_stack,
    signed_stripe,
    stripe_event,
    wait_for,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.common.exceptions import StaleElementReferenceException as StaleElement  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.remote.webdriver import WebDriver  # noqa: E402
from selenium.webdriver.remote.webelement import WebElement  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

ACCOUNT = "acct_console"
AMOUNTS = (1500, 2500)
HOSTILE = '<img src=x id=pwned onerror="document.title=1">'
WAIT_S = 120
"""Only a bound against a hang: every wait below is for a condition, never for time."""


def _browser() -> tuple[str, str]:
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if chromium is None or driver is None:
        pytest.skip(
            "Debian's chromium and chromium-driver are not installed: `tools/ensure-chromium` "
            "installs them (as root, with apt-get); `make test` runs it"
        )
    return chromium, driver


@pytest.fixture(scope="module")
def live(pg_server: TestServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    _browser()
    with module_stack(pg_server, tmp_path_factory.mktemp("console-e2e"), dev_processes=True) as s:
        yield s


@pytest.fixture
def browser() -> Iterator[WebDriver]:
    chromium, driver_path = _browser()
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                     "--disable-gpu", "--window-size=1366,768", "--no-first-run",
                     "--disable-extensions", "--disable-background-networking"):  # fmt: skip
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    try:
        driver.set_window_size(1366, 768)
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def shots(tmp_path: Path) -> Callable[[WebDriver, str], None]:
    directory = Path(os.environ.get("HOOKYARD_CONSOLE_SCREENSHOTS") or tmp_path / "screenshots")
    directory.mkdir(parents=True, exist_ok=True)
    taken: list[str] = []

    def shot(driver: WebDriver, name: str) -> None:
        taken.append(name)
        path = directory / f"{len(taken):02d}-{name}.png"
        assert driver.save_screenshot(str(path)), path

    return shot


def test_an_operator_replays_dead_letters_from_the_console(
    live: LocalStack, browser: WebDriver, shots: Callable[[WebDriver, str], None]
) -> None:
    with admin(httpx.Client(base_url=live.url, timeout=60)) as client:
        for n, amount in enumerate(AMOUNTS):
            _pay(client, f"evt_console_{n}", ACCOUNT, amount)
        _pay(client, "evt_console_hostile", HOSTILE, 1)
        wait_for(lambda: len(_pending(client, ACCOUNT)) == len(AMOUNTS), timeout=WAIT_S)
        wait_for(lambda: len(_pending(client, "pwned")) == 1, timeout=WAIT_S)

    page = Page(browser, live.url)
    page.open("/console")
    page.wait_text("h1", "Sign in")
    shots(browser, "sign-in")
    token = browser.find_element(By.ID, "token")
    browser.find_element(By.ID, "operator").send_keys("Ada")
    token.send_keys(ADMIN_TOKEN, Keys.ENTER)  # the keyboard signs in: a real form
    page.wait_text("h1", "Overview")
    page.wait_text(".cards", "dead letters pending")
    assert page.find_text(".cards .card", "dead letters pending").startswith("3")
    page.assert_fits_the_screen()
    shots(browser, "overview")

    page.follow("Dead letters")
    page.wait_text("h1", "Dead letters")
    skip = page.keyboard_first_stop()
    assert skip.text == "Skip to content"
    skip.send_keys(Keys.ENTER)
    assert browser.switch_to.active_element.get_attribute("id") == "main"
    hostile = page.wait_text("main table", HOSTILE)
    assert hostile is not None
    assert browser.find_elements(By.ID, "pwned") == [], "a reason was rendered as markup"
    assert browser.title == "Dead letters · Hookyard console"
    reason = browser.find_element(By.ID, "filter-reason")
    reason.send_keys(ACCOUNT, Keys.ENTER)
    page.wait(lambda d: len(page.rows("main table")) == len(AMOUNTS))
    page.assert_fits_the_screen()
    shots(browser, "dead-letters")

    page.follow("Accounts")
    page.wait_text("h1", "Accounts")
    browser.find_element(By.ID, "account-id").send_keys(ACCOUNT)
    browser.find_element(By.ID, "save-account").click()
    page.wait_text("h1", f"Account {ACCOUNT}")
    assert browser.find_element(By.ID, "balance-available").text == "0"
    shots(browser, "account-created")

    page.open(f"/console/dead-letters?reason={ACCOUNT}&state=pending")
    page.wait(lambda d: len(page.rows("main table")) == len(AMOUNTS))
    browser.find_element(By.ID, "action-reason").send_keys("the account exists now")
    browser.find_element(By.ID, "dry-run").click()
    page.wait_text("#status", f"Dry run: {len(AMOUNTS)} dead letters would be replayed.")
    shots(browser, "dry-run")

    browser.find_element(By.ID, "replay").click()
    page.wait(lambda d: "/console/replays/" in d.current_url)
    page.wait_text("#replay-progress-text", f"{len(AMOUNTS)} of {len(AMOUNTS)} (100 %)")
    page.wait_text("dl.facts", "done")
    progress = browser.find_element(By.ID, "replay-progress")
    assert progress.get_attribute("value") == progress.get_attribute("max") == str(len(AMOUNTS))
    shots(browser, "replay-done")

    page.follow("Accounts")
    page.wait_text("main table", ACCOUNT)
    page.follow(ACCOUNT)
    page.wait(lambda d: d.find_element(By.ID, "balance-available").text == str(sum(AMOUNTS)))
    page.wait(lambda d: len(page.rows("main table")) >= len(AMOUNTS))
    page.assert_fits_the_screen()
    shots(browser, "balance")

    page.follow("Audit log")
    page.wait_text("h1", "Audit log")
    entries = page.rows("main table")
    actions = [(row[1], row[2], row[3]) for row in entries]
    assert ("Ada", "replay.start", "the account exists now") in actions, actions
    assert ("Ada", "replay.dry-run", "the account exists now") in actions, actions
    page.assert_fits_the_screen()
    shots(browser, "audit-log")

    page.follow("Events")
    page.wait_text("h1", "Events")
    page.follow("evt_console_1")
    page.wait_text("h1", "Event stripe / evt_console_1")
    page.wait_text("main pre", '"amount_received": 2500')
    page.wait_text("main table", "applied")
    shots(browser, "event")


class Page:
    """The browser as an operator uses it: links followed by their text, explicit waits."""

    def __init__(self, driver: WebDriver, base: str) -> None:
        self.driver, self.base = driver, base

    def open(self, path: str) -> None:
        self.driver.get(self.base + path)

    def wait(self, condition: Callable[[WebDriver], Any]) -> Any:
        def checked(driver: WebDriver) -> Any:
            alert = driver.find_elements(By.ID, "alert")
            if alert and alert[0].text:
                raise AssertionError(f"the console shows an error: {alert[0].text}")
            return condition(driver)

        # A page being replaced by the next one leaves stale elements behind: look again.
        waiting = WebDriverWait(self.driver, WAIT_S, ignored_exceptions=[StaleElement])
        return waiting.until(checked)

    def wait_text(self, selector: str, text: str) -> WebElement:
        found: WebElement = self.wait(lambda d: self._with_text(selector, text))
        return found

    def find_text(self, selector: str, text: str) -> str:
        element = self._with_text(selector, text)
        assert element is not None, (selector, text)
        return str(element.text)

    def _with_text(self, selector: str, text: str) -> WebElement | None:
        for element in self.driver.find_elements(By.CSS_SELECTOR, selector):
            if text in element.text:
                return element
        return None

    def follow(self, text: str) -> None:
        self.wait(lambda d: d.find_elements(By.LINK_TEXT, text))
        self.driver.find_element(By.LINK_TEXT, text).click()

    def rows(self, selector: str) -> list[list[str]]:
        tables = self.driver.find_elements(By.CSS_SELECTOR, selector)
        if not tables:
            return []
        return [
            [cell.text for cell in row.find_elements(By.TAG_NAME, "td")]
            for row in tables[0].find_elements(By.CSS_SELECTOR, "tbody tr")
        ]

    def keyboard_first_stop(self) -> WebElement:
        """Where the first Tab on a freshly loaded page lands."""
        from selenium.webdriver.common.action_chains import ActionChains

        ActionChains(self.driver).send_keys(Keys.TAB).perform()
        focused: WebElement = self.driver.switch_to.active_element
        return focused

    def assert_fits_the_screen(self) -> None:
        """Readable on a 1366x768 laptop: nothing scrolls sideways."""
        overflow = self.driver.execute_script(
            "return document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0, f"{self.driver.current_url} scrolls sideways by {overflow}px"


def _pay(client: httpx.Client, event_id: str, account: str, amount: int) -> None:
    body = stripe_event(event_id, "payment_intent.succeeded", account, amount_received=amount)
    sent = client.post("/webhooks/stripe", content=body, headers=signed_stripe(body))
    assert sent.status_code == 202, sent.text


def _pending(client: httpx.Client, reason: str) -> list[dict[str, Any]]:
    page = client.get("/admin/dead-letters", params={"reason": reason, "state": "pending"})
    assert page.status_code == 200, page.text
    items: list[dict[str, Any]] = page.json()["items"]
    return items
