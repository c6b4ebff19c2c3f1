"""Headless Debian Chromium driven by Selenium through Debian's chromedriver: the Airflow UI as a person sees it."""

from __future__ import annotations

import contextlib
import os
import time
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.service import Service as DriverService
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement

from etl.airflow_tasks import APPROVAL_TASK
from tests.support.monitoring_tools import require_tool
from tests.support.processes import Processes, wait_until

T = TypeVar("T")


CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                  "--no-first-run", "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--window-size=1600,1000")
APPROVAL_OPTIONS = "button[data-testid^='hitl-option-']"  # the option buttons of Airflow 3.3's HITL form
APPROVAL_RECEIVED, APPROVAL_FAILED = "Response received at", "Response failed"  # the UI's English texts
APPROVAL_SECONDS = 300.0  # how long open_approval waits for the task to await an answer
APPROVAL_RELOAD_SECONDS = 10.0  # open_approval loads the tab again after this long without the buttons
# Airflow 3.3 marks the task failed when it is answered within about a second of its pause (the scheduler sees the
# paused process's exit after the answer re-queued the task): a reviewer reads first, and so does open_approval
REVIEW_SECONDS = 10.0
QUIT_GRACE_SECONDS = 15.0  # Chromium's renderer and GPU processes exit asynchronously after the driver's quit()


@contextlib.contextmanager
def chromium(processes: Processes, profile: Path) -> Iterator[webdriver.Chrome]:
    """Headless Debian Chromium driven by Debian's chromedriver, with a new empty profile; quit on exit, then
    wait up to QUIT_GRACE_SECONDS for Chromium's processes (marked by `processes`) to be gone: quit() returns once
    chromedriver stops, and Chromium's own processes exit a moment later. Naming the driver in the Service makes
    Selenium skip Selenium Manager, which would otherwise download one."""
    require_tool(CHROMIUM)
    require_tool(CHROMEDRIVER)
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    env = processes.tagged({"PATH": os.environ["PATH"], "HOME": str(profile)})
    service = DriverService(CHROMEDRIVER, log_output=str(processes.log_dir / "chromedriver.log"), env=env)
    driver = webdriver.Chrome(service=service, options=options)
    try:
        driver.set_page_load_timeout(60)
        yield driver
    finally:
        driver.quit()
        wait_until(lambda: not processes.strays(), QUIT_GRACE_SECONDS, "Chromium to exit after quit()",
                   raise_on_timeout=False)  # what is still there after that is a stray: the caller's check


def page_text(driver: webdriver.Chrome) -> str:
    """The visible text of the page's body."""
    return driver.find_element(By.TAG_NAME, "body").text


def wait_for_page(driver: webdriver.Chrome, check: Callable[[webdriver.Chrome], T], what: str,
                  timeout: float = 60.0) -> T:
    """Poll the page until `check(driver)` is true (the UI renders after the HTML has loaded)."""
    def attempt() -> T | None:
        try:
            return check(driver)
        except WebDriverException:
            return None

    return wait_until(attempt, timeout, what, details=lambda: f"page {driver.current_url}:\n{page_text(driver)[:2000]}")


def ui_login(driver: webdriver.Chrome, base_url: str, username: str, password: str) -> None:
    """Open the UI and sign in through SimpleAuthManager's login form."""
    driver.get(f"{base_url}/")
    wait_for_page(driver, lambda d: d.find_elements(By.NAME, "username"), "the login form")
    driver.find_element(By.NAME, "username").send_keys(username)
    driver.find_element(By.NAME, "password").send_keys(password)
    driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait_for_page(driver, lambda d: "/auth/login" not in d.current_url and "Dags" in page_text(d), "the home page")


def run_url(base_url: str, dag_id: str, run_id: str) -> str:
    """The UI address of a DAG run's page (the run id holds ':' and '+')."""
    return f"{base_url}/dags/{urllib.parse.quote(dag_id)}/runs/{urllib.parse.quote(run_id, safe='')}"


def open_run(driver: webdriver.Chrome, base_url: str, dag_id: str, run_id: str, shows: tuple[str, ...]) -> str:
    """Open a DAG run's page and wait until its text shows every string of `shows`; returns the text."""
    driver.get(run_url(base_url, dag_id, run_id))

    def showing(d: webdriver.Chrome) -> str | None:
        text = page_text(d)
        return text if all(part in text for part in shows) else None

    return wait_for_page(driver, showing, f"the page of run {run_id} to show {shows}")


def graph_nodes(driver: webdriver.Chrome, count: int) -> dict[str, str]:
    """Switch the run's page to the graph view; task id -> the text of its node, once `count` nodes show."""
    driver.find_element(By.CSS_SELECTOR, "button[aria-label^='Show Graph']").click()

    def nodes(d: webdriver.Chrome) -> dict[str, str] | None:
        found = {node.get_attribute("data-id"): node.text for node in d.find_elements(By.CSS_SELECTOR,
                                                                                       ".react-flow__node")}
        return found if len(found) == count and all(found.values()) else None

    return wait_for_page(driver, nodes, f"the graph to show {count} tasks")


def iframe_text(driver: webdriver.Chrome, title: str, shows: tuple[str, ...]) -> str:
    """The text of the page in the iframe titled `title` (how Airflow's UI shows a plugin's external view), once
    it shows every string of `shows`; the driver is back on the outer page afterwards."""
    def showing(d: webdriver.Chrome) -> str | None:
        d.switch_to.default_content()
        d.switch_to.frame(d.find_element(By.CSS_SELECTOR, f"iframe[title='{title}']"))
        try:
            text = page_text(d)
        finally:
            d.switch_to.default_content()
        return text if all(part in text for part in shows) else None

    return wait_for_page(driver, showing, f"the view {title!r} to show {shows}")


def open_run_tab(driver: webdriver.Chrome, name: str, shows: tuple[str, ...]) -> str:
    """On an open run's page, click the plugin tab `name` and return its view's text once it shows `shows`."""
    tab = wait_for_page(driver, lambda d: next((link for link in d.find_elements(By.CSS_SELECTOR, "a, button")
                                                if link.text.strip() == name), None), f"the tab {name!r}")
    tab.click()
    return iframe_text(driver, name, shows)


def open_plugin_page(driver: webdriver.Chrome, base_url: str, name: str, shows: tuple[str, ...]) -> str:
    """Open the plugin page `name` from the navigation bar (its own button, or an entry of the Plugins menu when
    plugins add several pages) and return its text once it shows `shows`."""
    driver.get(f"{base_url}/")

    def entry(d: webdriver.Chrome, names: tuple[str, ...], css: str) -> object | None:
        return next((found for found in d.find_elements(By.CSS_SELECTOR, css)
                     if found.is_displayed() and {found.text.strip(), found.get_attribute("title")} & set(names)),
                    None)

    nav = "[data-testid=nav-sidebar] a, [data-testid=nav-sidebar] button"
    wait_for_page(driver, lambda d: entry(d, (name, "Plugins"), nav), f"{name!r} or Plugins in the navigation")
    button = entry(driver, (name,), nav)
    if button is None:
        entry(driver, ("Plugins",), nav).click()
        button = wait_for_page(driver, lambda d: entry(d, (name,), "[role=menuitem], [role=menu] a"),
                               f"the Plugins menu entry {name!r}")
    button.click()
    return iframe_text(driver, name, shows)


def approval_options(driver: webdriver.Chrome) -> dict[str, WebElement]:
    """Option -> its button on an open Required Actions tab (Airflow's HITL form), once every button is enabled:
    the task awaits input and nobody has answered yet; {} before that."""
    buttons = {button.text.strip(): button for button in driver.find_elements(By.CSS_SELECTOR, APPROVAL_OPTIONS)}
    return buttons if buttons and all(button.is_enabled() for button in buttons.values()) else {}


def open_approval(driver: webdriver.Chrome, base_url: str, dag_id: str, run_id: str,
                  task_id: str = APPROVAL_TASK, review_seconds: float = REVIEW_SECONDS) -> str:
    """Open the Required Actions tab of the run's approval task, where a reviewer answers it, wait until the task
    awaits the answer and `review_seconds` more (the reviewer reads), and return the tab's text: the subject and
    the review text (the HITL body, rendered from Markdown). The tab is loaded again until the task awaits input:
    opened earlier, Airflow's UI moves to the task's Logs tab, or keeps its buttons disabled, and stays there."""
    url = f"{run_url(base_url, dag_id, run_id)}/tasks/{urllib.parse.quote(task_id)}/required_actions"

    def loaded(d: webdriver.Chrome) -> dict[str, WebElement]:
        d.get(url)
        return wait_until(lambda: approval_options(d), APPROVAL_RELOAD_SECONDS, "the approval's buttons",
                          raise_on_timeout=False)

    wait_for_page(driver, loaded, f"run {run_id}'s {task_id} to await an answer", timeout=APPROVAL_SECONDS)
    time.sleep(review_seconds)
    return page_text(driver)


def answer_approval(driver: webdriver.Chrome, choice: str) -> str:
    """On an approval opened by open_approval, click the option `choice` (Approve or Reject: the answer is sent at
    once, there is no confirmation step) and wait until the tab shows that it was received; returns that line,
    "Response received at <time> from <user>"."""
    def clicked(d: webdriver.Chrome) -> bool:  # found again on each try: the tab re-renders as it refreshes
        button = approval_options(d).get(choice)
        if button is not None:
            button.click()
        return button is not None

    wait_for_page(driver, clicked, f"the option {choice!r} to be clicked")

    def received(d: webdriver.Chrome) -> str | None:
        text = page_text(d)
        if APPROVAL_FAILED in text:
            raise AssertionError(f"the UI did not take the answer {choice!r}:\n{text[:2000]}")
        return next((line for line in text.splitlines() if line.startswith(APPROVAL_RECEIVED)), None)

    return wait_for_page(driver, received, f"the answer {choice!r} to be received")
