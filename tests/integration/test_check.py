"""`opsmon check`, `opsmon init` and `opsmon-exporter --config.check`: every problem a service would trip over
later, found at once against a real SQLite database, each named with file, key and cause."""

from __future__ import annotations

import sqlite3
import subprocess
import sys

import pytest
import requests
import yaml

from opsmon.checks import check_config
from opsmon.config import load_config
from tests.conftest import REPO, free_port, stop, wait_for, write_config

SCHEMA = """
CREATE TABLE customers (id INTEGER PRIMARY KEY, email TEXT NOT NULL);
CREATE TABLE orders (id INTEGER PRIMARY KEY, customer_id INTEGER NOT NULL REFERENCES customers(id),
                     state TEXT NOT NULL, total_cents INTEGER);
"""
BACKLOG = {"name": "shop_orders_open", "help": "Orders not shipped yet.",
           "query": "SELECT count(*) AS value FROM orders WHERE state = 'open'"}


@pytest.fixture
def shop(tmp_path):
    """A shop's database in WAL mode, its log, its metrics folder with one file: a config with nothing wrong."""
    database = tmp_path / "shop.db"
    connection = sqlite3.connect(database)
    connection.executescript(SCHEMA)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.close()
    (tmp_path / "shop.log").write_text("2026-12-03 10:00:00 INFO started\n")
    (tmp_path / "metrics").mkdir()
    (tmp_path / "metrics" / "counter_1.db").write_bytes(b"")
    return tmp_path


def shop_config(folder, **sections) -> dict:
    document = {
        "database": {"path": "shop.db"},
        "exporter": {"app_metrics_directory": "metrics", "logs": [{"source": "shop", "path": "shop.log"}]},
        "backups": {"directory": "backups"},
        "business": [BACKLOG],
        "integrity": {"rules": [{"name": "open_without_total", "description": "An open order has a total.",
                                 "query": "SELECT id FROM orders WHERE state = 'open' AND total_cents IS NULL"}]},
    }
    document.update(sections)
    return document


def findings_of(folder, document) -> list[str]:
    config = load_config(write_config(folder / "opsmon.yml", document))
    return [finding.line("opsmon.yml") for finding in check_config(config)]


def test_a_config_with_nothing_wrong_has_no_findings(shop):
    assert findings_of(shop, shop_config(shop)) == []


PROBLEMS = [
    ("a business query that does not compile names SQLite's message and the query",
     {"business": [{**BACKLOG, "query": "SELEC count(*) AS value FROM orders"}]},
     ['business[0].query: shop_orders_open: near "SELEC": syntax error']),
    ("a business query against a column the schema lacks",
     {"business": [{**BACKLOG, "query": "SELECT count(*) AS value FROM orders WHERE status = 'open'"}]},
     ["business[0].query: shop_orders_open: no such column: status"]),
    ("a business query without its value column",
     {"business": [{**BACKLOG, "query": "SELECT count(*) AS n FROM orders"}]},
     ["business[0].query: shop_orders_open: returns no column value (it returns n)"]),
    ("a business query without a label column",
     {"business": [{**BACKLOG, "labels": ["state"], "query": "SELECT count(*) AS value FROM orders"}]},
     ["business[0].query: shop_orders_open: returns no column state (it returns value)"]),
    ("two statements in one query",
     {"business": [{**BACKLOG, "query": "SELECT 1 AS value; DELETE FROM orders"}]},
     ["business[0].query: shop_orders_open: You can only execute one statement at a time."]),
    ("an integrity rule that writes instead of selecting",
     {"integrity": {"rules": [{"name": "r", "description": "d", "query": "DELETE FROM orders"}]}},
     ["integrity.rules[0].query: r: must be one SELECT statement that returns rows"]),
    ("an integrity rule's fix against a missing table",
     {"integrity": {"rules": [{"name": "r", "description": "d", "query": "SELECT id FROM orders",
                               "fix": "UPDATE order SET state = 'open'", "fixable": True}]}},
     ['integrity.rules[0].fix: r: near "order": syntax error']),
    ("a metrics folder that does not exist",
     {"exporter": {"app_metrics_directory": "nowhere"}},
     ["exporter.app_metrics_directory: {folder}/nowhere does not exist: create it, and start the app with "
      "PROMETHEUS_MULTIPROC_DIR={folder}/nowhere"]),
    ("a log path that is a folder",
     {"exporter": {"logs": [{"source": "shop", "path": "metrics"}]}},
     ["exporter.logs[0].path: {folder}/metrics is not a readable file"]),
    ("a log in a folder that does not exist",
     {"exporter": {"logs": [{"source": "shop", "path": "logs/shop.log"}]}},
     ["exporter.logs[0].path: {folder}/logs does not exist or is not a folder"]),
    ("a backup folder under a file",
     {"backups": {"directory": "shop.log/kept/backups"}},
     ["backups.directory: {folder}/shop.log is not a folder"]),
]


@pytest.mark.parametrize("case, sections, expected", PROBLEMS, ids=[case[0] for case in PROBLEMS])
def test_each_problem_is_named_with_its_key_and_cause(shop, case, sections, expected):
    document = shop_config(shop)
    for section, value in sections.items():
        document[section] = {**document[section], **value} if isinstance(value, dict) else value
    assert findings_of(shop, document) == [f"opsmon.yml: {line.format(folder=shop)}" for line in expected]


def test_a_missing_database_is_named_and_never_created(shop):
    document = shop_config(shop, database={"path": "shpo.db"})
    assert findings_of(shop, document) == [
        f"opsmon.yml: database.path: {shop}/shpo.db does not exist (opsmon never creates it: is the path right?)"]
    assert not (shop / "shpo.db").exists()


def test_a_file_that_is_not_sqlite_is_named(shop):
    (shop / "notes.db").write_text("not a database\n" * 10)
    [line] = findings_of(shop, shop_config(shop, database={"path": "notes.db"}))
    assert line == (f"opsmon.yml: database.path: {shop}/notes.db cannot be read as a SQLite database: "
                    "file is not a database")


def test_rollback_journal_mode_is_a_warning_that_recommends_wal(shop):
    connection = sqlite3.connect(shop / "shop.db")
    connection.execute("PRAGMA journal_mode=DELETE")
    connection.close()
    [line] = findings_of(shop, shop_config(shop))
    assert line.startswith(f"opsmon.yml: database.path: warning: {shop}/shop.db is in rollback-journal mode (delete)")
    assert "WAL" in line


def test_a_metrics_folder_without_files_is_a_warning(shop):
    (shop / "metrics" / "counter_1.db").unlink()
    assert findings_of(shop, shop_config(shop)) == [
        f"opsmon.yml: exporter.app_metrics_directory: warning: {shop}/metrics holds no metric files yet: the app is "
        f"not running, or runs without PROMETHEUS_MULTIPROC_DIR={shop}/metrics"]


def run(*args, cwd):
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=60,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)})


def test_opsmon_check_reports_every_problem_at_once_and_exits_2(shop):
    document = shop_config(shop, business=[{**BACKLOG, "query": "SELEC 1"}],
                           exporter={"app_metrics_directory": "nowhere"}, backups={"directory": "shop.log/b/c"})
    write_config(shop / "broken.yml", document)
    result = run("-m", "opsmon", "check", "--config.file", "broken.yml", cwd=shop)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        'broken.yml: business[0].query: shop_orders_open: near "SELEC": syntax error',
        f"broken.yml: exporter.app_metrics_directory: {shop}/nowhere does not exist: create it, and start the app "
        f"with PROMETHEUS_MULTIPROC_DIR={shop}/nowhere",
        f"broken.yml: backups.directory: {shop}/shop.log is not a folder",
    ]
    # The file given before the command, as the usage `opsmon [--config.file F] COMMAND` puts it, is the same file.
    before = run("-m", "opsmon", "--config.file", "broken.yml", "check", cwd=shop)
    assert (before.returncode, before.stderr) == (2, result.stderr)


def test_the_exporter_config_check_runs_the_same_checks(shop):
    write_config(shop / "opsmon.yml", shop_config(shop, database={"path": "missing.db"}))
    result = run("-m", "exporter", "--config.check", cwd=shop)
    assert (result.returncode, result.stderr.strip()) == (
        2, f"opsmon.yml: database.path: {shop}/missing.db does not exist (opsmon never creates it: is the path right?)")
    write_config(shop / "opsmon.yml", shop_config(shop))
    result = run("-m", "exporter", "--config.check", cwd=shop)
    assert (result.returncode, result.stdout.strip()) == (0, "opsmon.yml: valid")


def test_the_backup_service_logs_the_findings_at_start(shop):
    """Logged, not fatal: a broken integrity rule must not stop the backups."""
    document = shop_config(shop, integrity={"rules": [{"name": "r", "description": "d", "query": "SELEC 1"}]})
    write_config(shop / "opsmon.yml", document)
    port = free_port()
    with open(shop / "service.log", "ab") as log:
        service = subprocess.Popen([sys.executable, "-m", "backup_jobs", "--config.file", "opsmon.yml", "serve",
                                    "--web.listen-address", f"127.0.0.1:{port}"], cwd=shop, stdout=log,
                                   stderr=subprocess.STDOUT, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)})
    try:
        wait_for(lambda: requests.get(f"http://127.0.0.1:{port}/-/healthy", timeout=1).ok, what="the backup service")
        lines = (shop / "service.log").read_text().splitlines()
        assert [line.split(" ", 2)[2] for line in lines if "opsmon.yml:" in line] == [
            'ERROR backup_jobs.service: opsmon.yml: integrity.rules[0].query: r: near "SELEC": syntax error']
    finally:
        stop(service)


def test_init_writes_a_starter_config_that_passes_check_unchanged(shop):
    result = run("-m", "opsmon", "init", "--database", "shop.db", "--log", "shop.log",
                 "--health-url", "http://127.0.0.1:8765/health", "--out", "starter.yml", cwd=shop)
    assert result.returncode == 0, result.stderr
    text = (shop / "starter.yml").read_text()
    config = load_config(shop / "starter.yml")
    assert config.database.path == shop / "shop.db"
    assert config.backups.directory == shop / "shop-backups"
    assert (config.backups.schedule.daily, config.backups.retention.daily) == ("0 2 * * *", 7)
    assert [(s.source, s.path, s.format) for s in config.exporter.logs] == [("app", shop / "shop.log", "text")]
    assert [str(p.url) for p in config.exporter.probes] == ["http://127.0.0.1:8765/health"]
    assert not any(word in text.lower() for word in ("video", "approval", "monetiz", "demo"))
    check = run("-m", "opsmon", "check", "--config.file", "starter.yml", cwd=shop)
    assert (check.returncode, check.stdout.strip()) == (0, "starter.yml: valid"), check.stderr


def test_the_starter_configs_examples_are_written_against_the_real_tables_and_pass_check(shop):
    assert run("-m", "opsmon", "init", "--database", "shop.db", "--out", "starter.yml", cwd=shop).returncode == 0
    text = (shop / "starter.yml").read_text()
    # The examples, uncommented in place of the empty lists, as the file tells.
    document = yaml.safe_load(text)
    examples = {key: yaml.safe_load(uncommented(text, key))[key] for key in ("business", "rules")}
    assert examples["business"] == [{"name": "business_customers", "help": "Rows in customers of shop now.",
                                     "query": 'SELECT count(*) AS value FROM "customers"'}]
    document["business"] = examples["business"]
    document["integrity"]["rules"] = examples["rules"]
    assert examples["rules"][0]["query"] == 'SELECT * FROM "customers" WHERE "email" IS NULL'
    assert findings_of(shop, document) == []


def uncommented(text: str, key: str) -> str:
    """The commented block that starts with `# key:`, without its comment marks."""
    lines = text.splitlines()
    start = next(n for n, line in enumerate(lines) if line.strip() == f"# {key}:")
    prefix = lines[start][:lines[start].index("#") + 2]
    block = [lines[start]]
    for line in lines[start + 1:]:
        if not line.startswith(prefix + "  "):
            break
        block.append(line)
    return "\n".join(line[len(prefix):] for line in block)


def test_init_never_overwrites(shop):
    (shop / "opsmon.yml").write_text("database: {path: mine.db}\n")
    result = run("-m", "opsmon", "init", "--database", "shop.db", cwd=shop)
    assert result.returncode == 2
    assert "--out opsmon.yml: the file exists; opsmon init never overwrites" in result.stderr
    assert (shop / "opsmon.yml").read_text() == "database: {path: mine.db}\n"


def test_init_names_a_database_that_does_not_exist_and_writes_nothing(shop):
    result = run("-m", "opsmon", "init", "--database", "shpo.db", "--out", "starter.yml", cwd=shop)
    assert result.returncode == 2
    assert "--database shpo.db: no such file" in result.stderr
    assert not (shop / "starter.yml").exists() and not (shop / "shpo.db").exists()


def test_init_names_a_file_that_is_not_sqlite_and_writes_nothing(shop):
    result = run("-m", "opsmon", "init", "--database", "shop.log", "--out", "starter.yml", cwd=shop)
    assert result.returncode == 2
    assert "--database shop.log: cannot be read as a SQLite database: file is not a database" in result.stderr
    assert not (shop / "starter.yml").exists()


def test_init_quotes_whatever_names_the_database_and_its_tables_have(tmp_path):
    """A file name with '?' and '#', a table and a column with spaces, quotes and a colon: the starter config and
    its examples still load, and still pass check."""
    folder = tmp_path / "odd: folder"
    folder.mkdir()
    connection = sqlite3.connect(folder / "shop #1?.db")
    connection.execute('CREATE TABLE "2 order: items" (id INTEGER PRIMARY KEY, "e-mail ""x"": y" TEXT)')
    connection.execute("PRAGMA journal_mode=WAL")
    connection.close()
    assert run("-m", "opsmon", "init", "--database", "shop #1?.db", "--out", "starter.yml", cwd=folder).returncode == 0
    text = (folder / "starter.yml").read_text()
    document = yaml.safe_load(text)
    assert findings_of(folder, document) == []
    document["business"] = yaml.safe_load(uncommented(text, "business"))["business"]
    document["integrity"]["rules"] = yaml.safe_load(uncommented(text, "rules"))["rules"]
    assert [rule["name"] for rule in document["integrity"]["rules"]] == ["_2_order__items_without_e_mail__x___y"]
    assert findings_of(folder, document) == []
