"""A person in a real browser (Debian's headless Chromium, driven by selenium): log in, pick a backup,
restore it with one click and a confirmation, see the verified result."""

from __future__ import annotations

import os
import shutil
import sqlite3
from contextlib import closing
from datetime import datetime, timezone

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ready
from selenium.webdriver.support.ui import WebDriverWait

from backup_jobs.users import Users
from tests.backup_helpers import demo_database, fingerprint, start_console
from tests.conftest import stop

pytestmark = pytest.mark.browser

PASSWORD = "a long password for the browser"


@pytest.fixture
def browser(tmp_path):
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    # Headless, and quiet: this machine reaches no network but loopback.
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--no-first-run", "--window-size=1280,900", f"--user-data-dir={tmp_path / 'profile'}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(shutil.which("chromedriver")))
    yield driver
    driver.quit()


@pytest.fixture
def console(tmp_path):
    db = demo_database(tmp_path / "live.db")
    Users(tmp_path / "users.json").add("admin", PASSWORD, "admin")
    url, process = start_console(tmp_path, db, tmp_path / "users.json")
    yield url, db
    stop(process)


def log_in(browser, url: str):
    """Log in as the admin; returns the front page's table of backups."""
    wait = WebDriverWait(browser, 30)
    browser.get(url)
    wait.until(ready.presence_of_element_located((By.ID, "username"))).send_keys("admin")
    browser.find_element(By.ID, "password").send_keys(PASSWORD)
    browser.find_element(By.ID, "login").click()
    return wait.until(ready.presence_of_element_located((By.ID, "backups")))


def test_restore_a_chosen_backup_with_one_click_and_a_confirmation(browser, console):
    url, db = console
    good = fingerprint(db)
    with closing(sqlite3.connect(db)) as connection:  # yesterday's mistake, to be undone
        connection.execute("DELETE FROM monetizations")
        connection.commit()
    wait = WebDriverWait(browser, 30)

    table = log_in(browser, url)
    assert "never" not in browser.find_element(By.CLASS_NAME, "grid").text.split("newest verified")[0]
    if os.environ.get("OPSMON_SCREENSHOT"):  # how docs/console.png is made
        browser.save_screenshot(os.environ["OPSMON_SCREENSHOT"])

    row = next(r for r in table.find_elements(By.TAG_NAME, "tr")[1:] if "daily" in r.text)
    backup_id = row.get_attribute("data-id")
    row.find_element(By.CLASS_NAME, "restore").click()  # the one click

    confirm = wait.until(ready.presence_of_element_located((By.ID, "confirm")))
    page = browser.find_element(By.TAG_NAME, "main").text
    assert f"backup {backup_id}" in page
    assert "A safety backup of the database as it is now is taken first" in page
    assert "row change(s) since then will be undone" in page and "monetizations" in page
    confirm.click()

    status = wait.until(ready.text_to_be_present_in_element((By.ID, "status"), "Done and verified."))
    assert status
    assert "safety backup of the database as it was" in browser.find_element(By.ID, "result").text
    assert fingerprint(db) == good


def test_on_a_phone_the_front_page_fits_names_its_database_and_offers_now(browser, console, tmp_path):
    url, db = console
    # As a phone shows it (an iPhone's 390 CSS pixels): the page's viewport meta is honoured.
    browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                            {"width": 390, "height": 844, "deviceScaleFactor": 1, "mobile": True})
    log_in(browser, url)
    browser.save_screenshot(str(tmp_path / "phone.png"))
    assert (tmp_path / "phone.png").read_bytes().startswith(b"\x89PNG")
    scrolled, width = browser.execute_script("return [document.documentElement.scrollWidth, window.innerWidth]")
    assert scrolled <= width == 390  # a page wider than the phone widens the viewport: nothing runs off it

    log_out = browser.find_element(By.XPATH, "//header//button[text()='Log out']")
    right = browser.execute_script("return arguments[0].getBoundingClientRect().right", log_out)
    assert log_out.is_displayed() and 0 < right <= width
    needs_a_look = browser.find_element(By.CSS_SELECTOR, "#status table")
    assert browser.execute_script("const r = arguments[0].getBoundingClientRect(); return r.right", needs_a_look) \
        <= width
    assert browser.execute_script("return arguments[0].scrollWidth <= arguments[0].clientWidth", needs_a_look)

    assert db.name in browser.title and str(db) in browser.title
    heading = browser.find_element(By.TAG_NAME, "h1").text
    assert db.name in heading and str(db) in heading
    placeholder = browser.find_element(By.NAME, "at").get_attribute("placeholder")
    shown = datetime.fromisoformat(placeholder.replace("Z", "+00:00"))
    assert abs((datetime.now(timezone.utc) - shown).total_seconds()) < 120
