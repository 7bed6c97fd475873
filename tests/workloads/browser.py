"""Headless Chromium (Debian's chromium + chromium-driver) driven by Selenium."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
    "--window-size=1280,2000",
)


@contextlib.contextmanager
def chromium() -> Iterator[WebDriver]:
    if not (shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER)):
        pytest.skip("headless Chromium is not installed (make browser)")
    profile = tempfile.mkdtemp(prefix="cotenant-chromium-")
    options = Options()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    try:
        driver.set_page_load_timeout(30)
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def wait_text(driver: WebDriver, element_id: str, predicate, timeout: float = 30.0) -> str:
    """Wait until the element's text satisfies ``predicate``; return the text."""
    WebDriverWait(driver, timeout).until(
        expected_conditions.presence_of_element_located((By.ID, element_id))
    )

    def ready(d: WebDriver) -> str | bool:
        text = d.find_element(By.ID, element_id).text
        return text if predicate(text) else False

    return WebDriverWait(driver, timeout).until(ready)


def table_rows(driver: WebDriver, selector: str) -> list[list[str]]:
    """The text of every body row of the table matching the CSS ``selector``."""
    return [
        [cell.text for cell in row.find_elements(By.TAG_NAME, "td")]
        for row in driver.find_elements(By.CSS_SELECTOR, f"{selector} tbody tr")
    ]
