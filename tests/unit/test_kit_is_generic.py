"""The kit speaks of no app: its rules, boards, renderer and starter config carry none of the demo's words (videos,
approvals, monetization); the demo's own rules and board live with it (demo/rules/, demo/dashboards/)."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

from opsmon.starter import starter_config
from tests.conftest import REPO

DEMO_WORDS = re.compile(r"video|approv|monetiz", re.IGNORECASE)


def kit_files() -> list[Path]:
    """The rules, the boards and the code that makes them and the stack, but for the demo's own board module."""
    files = [*(REPO / "prometheus/rules").glob("*"), REPO / "prometheus/prometheus.yml",
             *(REPO / "grafana/dashboards").glob("*"), *(REPO / "grafana/provisioning").rglob("*.yml"),
             *(REPO / "grafana/boards").glob("*.py"), *(REPO / "opsmon").glob("*.py")]
    return [path for path in files if not path.name.startswith("demo")]


def test_no_kit_file_speaks_of_the_demo_s_videos():
    found = [f"{path.relative_to(REPO)}:{number}: {line.strip()}" for path in kit_files()
             for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
             if DEMO_WORDS.search(line)]
    assert not found, "\n".join(found)


def test_the_starter_config_for_an_app_speaks_of_its_own_tables_only(tmp_path):
    database = tmp_path / "shop.db"
    with sqlite3.connect(database) as connection:
        connection.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, placed_at TEXT NOT NULL)")
    text = starter_config(tmp_path / "opsmon.yml", database, None, None)
    assert "orders" in text and not DEMO_WORDS.search(text)
