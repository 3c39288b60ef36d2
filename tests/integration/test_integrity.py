"""opsmon-backup check: injected foreign-key and rule violations are found; --fix fixes only the fixable."""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing

import pytest
import yaml

from opsmon import catalog
from tests.backup_helpers import demo_database, fingerprint, opsmon_backup

RULES = [
    {"name": "stuck_processing", "description": "A video in processing for over an hour lost its worker.",
     "query": "SELECT id FROM videos WHERE status = 'processing' AND updated_at < unixepoch() - 3600",
     "fix": "UPDATE videos SET status = 'queued' WHERE status = 'processing' AND updated_at < unixepoch() - 3600",
     "fixable": True},
    {"name": "monetized_without_approval", "description": "Only approved videos may earn money.",
     "query": "SELECT m.id FROM monetizations m LEFT JOIN approvals a ON a.video_id = m.video_id "
              "WHERE a.id IS NULL",
     "fix": "DELETE FROM monetizations WHERE video_id NOT IN (SELECT video_id FROM approvals)", "fixable": False},
]


@pytest.fixture
def setup(tmp_path):
    db = demo_database(tmp_path / "live.db")
    config = tmp_path / "opsmon.yml"
    config.write_text(yaml.safe_dump({"database": {"path": str(db)},
                                      "backups": {"directory": str(tmp_path / "backups")},
                                      "integrity": {"rules": RULES}}))
    return db, config, tmp_path / "backups"


def inject(db):
    with closing(sqlite3.connect(db, isolation_level=None)) as connection:  # foreign keys off: let it break
        connection.execute("INSERT INTO approvals (video_id, approved_at) VALUES (999999, 0)")
        connection.execute("UPDATE videos SET status = 'processing', updated_at = 0 WHERE id IN (1, 2, 3)")
        connection.execute("DELETE FROM approvals WHERE video_id = (SELECT video_id FROM monetizations LIMIT 1)")


def test_a_clean_database_passes(setup):
    db, config, directory = setup
    result = opsmon_backup("--config.file", config, "check", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["ok"] is True and report["foreign_key_violations"] == 0
    assert report["rule_violations"] == {"stuck_processing": 0, "monetized_without_approval": 0}


def test_injected_violations_are_found_and_recorded(setup):
    db, config, directory = setup
    inject(db)
    result = opsmon_backup("--config.file", config, "check")
    assert result.returncode == 3
    assert "foreign keys: 1 broken reference(s)" in result.stdout
    assert "approvals row" in result.stdout and "points at a missing row of videos" in result.stdout
    assert "rule stuck_processing: 3 violation(s)" in result.stdout
    assert "rule monetized_without_approval: 1 violation(s)" in result.stdout
    integrity = catalog.read_status(directory).integrity
    assert integrity.ok is False and integrity.foreign_key_violations == 1
    assert integrity.rule_violations == {"stuck_processing": 3, "monetized_without_approval": 1}


def test_fix_repairs_only_the_fixable_rules_after_a_safety_backup(setup):
    db, config, directory = setup
    inject(db)
    before = fingerprint(db)
    result = opsmon_backup("--config.file", config, "check", "--fix", "--json")
    assert result.returncode == 3  # the unfixable rule and the broken foreign key remain
    report = json.loads(result.stdout)
    assert report["fixed"] == {"stuck_processing": 3}
    assert report["rule_violations"] == {"stuck_processing": 0, "monetized_without_approval": 1}
    assert report["foreign_key_violations"] == 1
    assert report["safety_backup"].endswith("-safety")
    after = fingerprint(db)
    assert after["monetizations"] == before["monetizations"]  # not fixable: left for a person
    with closing(sqlite3.connect(db)) as connection:
        assert connection.execute("SELECT count(*) FROM videos WHERE status = 'processing'").fetchone()[0] == 0


def test_a_fix_that_breaks_foreign_keys_is_not_applied(setup, tmp_path):
    db, config, directory = setup
    rules = [{"name": "old_videos", "description": "Videos that should not be there.",
              "query": "SELECT id FROM videos WHERE id <= 2", "fix": "DELETE FROM videos WHERE id <= 2",
              "fixable": True}]
    config.write_text(yaml.safe_dump({"database": {"path": str(db)}, "backups": {"directory": str(directory)},
                                      "integrity": {"rules": rules}}))
    before = fingerprint(db)
    result = opsmon_backup("--config.file", config, "check", "--fix")
    assert result.returncode == 1
    assert "the fixes would break" in result.stderr and "nothing was changed" in result.stderr
    assert fingerprint(db) == before


def test_fixable_rule_without_fix_is_a_config_error(setup):
    db, config, directory = setup
    config.write_text(yaml.safe_dump({"database": {"path": str(db)}, "backups": {"directory": str(directory)},
                                      "integrity": {"rules": [{"name": "r", "description": "d",
                                                               "query": "SELECT 1", "fixable": True}]}}))
    result = opsmon_backup("--config.file", config, "check")
    assert result.returncode == 2
    assert result.stderr.strip() == f"opsmon-backup: {config}: integrity.rules[0]: a fixable rule needs a fix statement"
