"""Faults an adversarial sweep found (issue 13), each kept as a test that failed before its fix."""

from __future__ import annotations

import subprocess
import sys
import time
from contextlib import contextmanager

import pytest

from exporter.collectors.database import DatabaseCollector
from opsmon import catalog
from tests.backup_helpers import demo_database, fingerprint, opsmon_backup
from tests.conftest import exposition

pytestmark = pytest.mark.slow


def damage_pages(path, start_page: int = 3, pages: int = 4) -> None:
    """Overwrite a few pages past the header: SQLite opens the file, then finds it malformed."""
    with open(path, "r+b") as file:
        file.seek(4096 * start_page)
        file.write(b"\xa5" * 4096 * pages)


def test_7_check_on_a_malformed_database_records_the_failure_and_exits_3(tmp_path):
    db = demo_database(tmp_path / "live.db", videos=2000)
    damage_pages(db)
    result = opsmon_backup("--database", db, "--backup-dir", tmp_path / "backups", "check")
    assert result.returncode == 3, result.stderr
    assert "Traceback" not in result.stderr and "integrity:" in result.stdout
    status = catalog.read_status(tmp_path / "backups").integrity
    assert status is not None and status.ok is False and status.integrity_problems
    assert 'opsmon_db_integrity_check_success{database="demo"} 0.0' in exposition(
        DatabaseCollector(db, "demo", tmp_path / "backups"))


@contextmanager
def small_filesystem(path, size: str):
    path.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", str(path)], check=True)


def test_11_a_backup_folder_smaller_than_the_database_still_takes_the_backup(tmp_path):
    db = demo_database(tmp_path / "live.db", videos=60_000)
    with small_filesystem(tmp_path / "small", "5m") as backups:
        assert db.stat().st_size > 5 * 2**20  # the snapshot cannot go to the backup folder
        made = opsmon_backup("--database", db, "--backup-dir", backups, "create")
        assert made.returncode == 0, made.stderr
        assert opsmon_backup("--database", db, "--backup-dir", backups, "verify", "--all").returncode == 0
        assert not list(tmp_path.glob(".live.db.opsmon-snapshot-*"))  # nothing left beside the database


def test_11_when_space_really_runs_out_the_message_says_where_and_nothing_is_left(tmp_path):
    db = demo_database(tmp_path / "live.db", videos=60_000)
    with small_filesystem(tmp_path / "tiny", "1m") as backups:
        failed = opsmon_backup("--database", db, "--backup-dir", backups, "create")
        assert failed.returncode == 1 and "Traceback" not in failed.stderr
        assert "ran out of space" in failed.stderr and str(backups) in failed.stderr
        leftovers = [p for p in backups.rglob("*") if p.is_file() and p.suffix in (".gz", ".db")]
        assert leftovers == []
        assert catalog.read_catalog(backups).backups == []
        assert not list(tmp_path.glob(".live.db.opsmon-snapshot-*"))


def test_12_a_live_file_destroyed_beyond_sqlite_is_kept_aside_and_restored(tmp_path):
    db = demo_database(tmp_path / "live.db")
    args = ("--database", db, "--backup-dir", tmp_path / "backups")
    backup_id = opsmon_backup(*args, "create", check=True).stdout.strip()
    good = fingerprint(db)
    garbage = bytes(range(256)) * 400
    db.write_bytes(garbage)
    result = opsmon_backup(*args, "restore", backup_id)
    assert result.returncode == 0, result.stderr
    assert "kept as it was in" in result.stdout
    assert fingerprint(db) == good
    kept = list((tmp_path / "backups" / "damaged").glob("*/live.db"))
    assert len(kept) == 1 and kept[0].read_bytes() == garbage


def test_14_a_file_that_is_not_sqlite_gets_a_message_not_a_traceback(tmp_path):
    not_a_db = tmp_path / "notes.db"
    not_a_db.write_text("these are my notes, not a database\n" * 200)
    for command in (("create",), ("check",), ("restore", "--at", "2020-01-01T00:00:00Z")):
        result = opsmon_backup("--database", not_a_db, "--backup-dir", tmp_path / "backups", *command)
        assert result.returncode != 0 and "Traceback" not in result.stderr, (command, result.stderr)
        assert "opsmon-backup" in result.stderr or "integrity" in result.stdout, command


def test_14_a_0_byte_database_gets_no_verified_backup(tmp_path):
    empty = tmp_path / "empty.db"
    empty.write_bytes(b"")
    result = opsmon_backup("--database", empty, "--backup-dir", tmp_path / "backups", "create")
    assert result.returncode == 1 and "holds no tables" in result.stderr
    assert catalog.read_catalog(tmp_path / "backups").backups == []


def test_14_safety_backups_of_killed_restores_stay_within_their_retention(tmp_path):
    db = demo_database(tmp_path / "live.db", videos=20_000)
    directory = tmp_path / "backups"
    args = ("--database", str(db), "--backup-dir", str(directory))
    backup_id = opsmon_backup(*args, "create", check=True).stdout.strip()
    marker = directory / "restore-in-progress.json"
    for _ in range(5):
        process = subprocess.Popen([sys.executable, "-m", "backup_jobs", *args, "restore", backup_id],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while not marker.exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.002)
        process.kill()
        process.wait()
        opsmon_backup(*args, "verify", "--all")  # the next command rolls back and prunes
    safety = [b for b in catalog.read_catalog(directory).backups if b.tier == "safety"]
    assert len(safety) <= 3, [b.id for b in safety]


def test_14_a_moment_in_the_future_is_refused_with_a_reason(tmp_path):
    db = demo_database(tmp_path / "live.db")
    result = opsmon_backup("--database", db, "--backup-dir", tmp_path / "backups", "restore", "--at",
                           "2099-01-01T00:00:00Z")
    assert result.returncode == 2 and "in the future" in result.stderr

