"""The dashboard end to end in a real browser: ``streamlit run`` (the command ``mlfactory
dashboard`` runs) against a real API process with data, driven by headless Chromium through
Selenium: sign in, open every page, check its title and that no Streamlit exception or error
box shows, and keep a screenshot of each (in the test's temporary directory).

Needs Debian's ``chromium`` and ``chromium-driver`` and the ``selenium`` package.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path

import httpx
import pytest

from conftest import service_missing
from mlfactory.dashboard.app import PAGES
from mlfactory.dashboard.launch import dashboard_command
from test_dashboard import PASSWORD, Live, live_api, seed, store_settings

try:
    from selenium import webdriver
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.remote.webdriver import WebDriver
    from selenium.webdriver.support.expected_conditions import presence_of_element_located
    from selenium.webdriver.support.ui import WebDriverWait
except ImportError:  # the browser fixture says what to install
    webdriver = None

pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
WAIT = 60.0  # seconds for a page to load and run


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def api(
    tmp_path_factory: pytest.TempPathFactory, mlflow_uri: str, datasets_dir: Path
) -> Iterator[Live]:
    folder = tmp_path_factory.mktemp("browser-api")
    settings = store_settings(folder, mlflow_uri, datasets_dir)
    seed(settings, folder)
    with live_api(settings, folder / "serve.log") as live:
        yield live


@pytest.fixture
def dashboard(api: Live, tmp_path: Path) -> Iterator[str]:
    """``streamlit run`` of the dashboard on a free port, reading ``api``; its URL."""
    port = free_port()
    env = {**os.environ, "MLF_API_URL": api.url}
    log = tmp_path / "streamlit.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            dashboard_command("127.0.0.1", port),
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + WAIT
        while True:
            with suppress(httpx.TransportError):
                if httpx.get(f"{url}/_stcore/health", timeout=2).text == "ok":
                    break
            assert process.poll() is None, log.read_text(errors="replace")
            assert time.monotonic() < deadline, log.read_text(errors="replace")
            time.sleep(0.2)
        yield url
    finally:
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)


@pytest.fixture
def browser() -> Iterator[WebDriver]:
    """Headless Chromium without sandbox (the tests run as root in a container)."""
    if webdriver is None:
        service_missing("selenium is not installed: pip install selenium")
    if not (shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER)):
        service_missing("no Chromium: apt-get install chromium chromium-driver")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage"):
        options.add_argument(argument)
    options.add_argument("--window-size=1400,3000")  # tall enough for a whole page
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    driver.set_page_load_timeout(WAIT)
    try:
        yield driver
    finally:
        driver.quit()


def settled(driver: WebDriver, title: str) -> None:
    """Wait until the page's heading is ``title``, its script has finished and every chart
    is drawn."""

    def ready(driver: WebDriver) -> bool:
        app = driver.find_elements(By.CSS_SELECTOR, '[data-testid="stApp"]')
        if not app or app[0].get_attribute("data-test-script-state") != "notRunning":
            return False
        headings = [heading.text for heading in driver.find_elements(By.TAG_NAME, "h1")]
        # A chart is a placeholder (skeleton) until its code has loaded, then an empty frame
        # until Vega has drawn it.
        loading = driver.find_elements(By.CSS_SELECTOR, '[data-testid^="stSkeleton"]')
        charts = driver.find_elements(By.CSS_SELECTOR, '[data-testid="stVegaLiteChart"]')
        drawn = all(chart.find_elements(By.CSS_SELECTOR, "canvas, svg") for chart in charts)
        return title in headings and not loading and drawn

    # Streamlit replaces elements as it renders: one found may be gone a moment later.
    wait = WebDriverWait(
        driver, WAIT, poll_frequency=0.2, ignored_exceptions=(StaleElementReferenceException,)
    )
    wait.until(ready)


def boxes(driver: WebDriver) -> list[str]:
    """The text of every exception and error box on the page."""
    found = driver.find_elements(
        By.CSS_SELECTOR, '[data-testid="stException"], [data-testid="stAlertContentError"]'
    )
    return [box.text for box in found]


def test_every_page_opens_in_a_real_browser(
    dashboard: str, browser: WebDriver, tmp_path: Path
) -> None:
    browser.get(dashboard)
    username = WebDriverWait(browser, WAIT).until(
        presence_of_element_located((By.CSS_SELECTOR, 'input[aria-label="User name"]'))
    )
    username.send_keys("admin")
    browser.find_element(By.CSS_SELECTOR, 'input[aria-label="Password"]').send_keys(PASSWORD)
    browser.find_element(By.CSS_SELECTOR, '[data-testid*="FormSubmit"]').click()

    shots = tmp_path / "screenshots"
    shots.mkdir()
    for index, (_, title, _) in enumerate(PAGES):
        if index:  # the first page opens after signing in
            links = browser.find_elements(By.CSS_SELECTOR, '[data-testid="stSidebarNavLink"]')
            next(link for link in links if link.text.strip().endswith(title)).click()
        settled(browser, title)
        shot = shots / f"{index + 1}-{title.lower()}.png"
        assert browser.save_screenshot(str(shot)), title
        assert shot.stat().st_size > 10_000, title  # a rendered page, not a blank one
        assert boxes(browser) == [], title
