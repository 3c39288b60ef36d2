"""A person in a real browser (Debian's headless Chromium, driven by selenium): log in, pick a backup,
restore it with one click and a confirmation, see the verified result."""

from __future__ import annotations

import os
import shutil
import sqlite3
from contextlib import closing

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ready
from selenium.webdriver.support.ui import WebDriverWait

from backup_jobs.users import Users
from tests.backup_helpers import demo_database, fingerprint, start_console
from tests.conftest import stop

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


def test_restore_a_chosen_backup_with_one_click_and_a_confirmation(browser, console):
    url, db = console
    good = fingerprint(db)
    with closing(sqlite3.connect(db)) as connection:  # yesterday's mistake, to be undone
        connection.execute("DELETE FROM monetizations")
        connection.commit()
    wait = WebDriverWait(browser, 30)

    browser.get(url)
    wait.until(ready.presence_of_element_located((By.ID, "username"))).send_keys("admin")
    browser.find_element(By.ID, "password").send_keys(PASSWORD)
    browser.find_element(By.ID, "login").click()
    table = wait.until(ready.presence_of_element_located((By.ID, "backups")))
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
