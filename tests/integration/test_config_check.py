"""`opsmon-exporter --config.check` as a process: valid or every problem named, exit 0 or 2, never a traceback."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys

from hypothesis import given

from tests.conftest import REPO, write_config
from tests.unit.test_properties import examples, yaml_texts


def run_check(path):
    return subprocess.run([sys.executable, "-m", "exporter", "--config.file", str(path), "--config.check"],
                          capture_output=True, text=True, timeout=60)


def test_config_check_flag(tmp_path):
    connection = sqlite3.connect(tmp_path / "app.db")
    connection.execute("PRAGMA journal_mode=WAL")
    connection.close()
    good = run_check(write_config(tmp_path / "good.yml", {"database": {"path": "app.db"}}))
    assert (good.returncode, good.stdout.strip()) == (0, f"{tmp_path}/good.yml: valid")
    bad = run_check(write_config(tmp_path / "bad.yml", {"database": {"path": "a.db"}, "exportr": {}}))
    assert bad.returncode == 2
    assert bad.stderr.strip() == f"{tmp_path}/bad.yml: exportr: unknown key"


@examples(6)
@given(yaml_texts)
def test_config_check_exits_0_or_2_and_never_shows_a_traceback(workdir, text):
    path = workdir / "check.yml"
    path.write_text(text, encoding="utf-8")
    result = subprocess.run([sys.executable, "-m", "exporter", "--config.check", "--config.file", str(path)],
                            capture_output=True, text=True, timeout=60, cwd=workdir,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.returncode in (0, 2), result.stderr
    assert "Traceback" not in result.stderr
    if result.returncode == 2:
        assert str(path) in result.stderr
