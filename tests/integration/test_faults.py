"""Faults an adversarial sweep found, each kept as a test that failed before its fix."""

from __future__ import annotations

import subprocess
import sys
import time
from contextlib import closing, contextmanager

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
    assert len(safety) <= 5, [b.id for b in safety]  # at most one per restore; they are kept by age


def test_14_a_moment_in_the_future_is_refused_with_a_reason(tmp_path):
    db = demo_database(tmp_path / "live.db")
    result = opsmon_backup("--database", db, "--backup-dir", tmp_path / "backups", "restore", "--at",
                           "2099-01-01T00:00:00Z")
    assert result.returncode == 2 and "in the future" in result.stderr



def fill(folder, leave_bytes: int) -> None:
    """Fill the filesystem of `folder` until about `leave_bytes` are free."""
    import os

    free = os.statvfs(folder).f_bavail * os.statvfs(folder).f_frsize
    (folder / "filler").write_bytes(b"\0" * max(0, free - leave_bytes))


@pytest.mark.parametrize("leave", [1_200_000, 20_000])
def test_chaos_a_b_a_restore_on_a_full_disk_changes_nothing_and_leaves_nothing_to_roll_back(tmp_path, leave):
    """Chaos faults A and B: a restore that runs out of room left its rollback marker (the next command
    then threw away what the app wrote since), or took a healthy database for one beyond SQLite."""
    import sqlite3

    with small_filesystem(tmp_path / "disk", "5m") as disk:
        db = demo_database(disk / "live.db", videos=15_000)
        args = ("--database", db, "--backup-dir", tmp_path / "backups")
        backup_id = opsmon_backup(*args, "create", check=True).stdout.strip()
        with closing(sqlite3.connect(db, isolation_level=None)) as connection:
            connection.execute("DELETE FROM monetizations WHERE id % 2 = 0")
            connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        before = fingerprint(db)  # (with 20 KB left, even reading needs room for the -shm file)
        fill(disk, leave)
        failed = opsmon_backup(*args, "restore", backup_id)
        assert failed.returncode == 5, failed.stderr
        assert "nothing was changed" in failed.stderr or "nothing was written" in failed.stderr
        assert not (tmp_path / "backups" / "restore-in-progress.json").exists()
        assert not list(disk.glob(".live.db.*")) and not (tmp_path / "backups" / "damaged").exists()
        (disk / "filler").unlink()
        with closing(sqlite3.connect(db, isolation_level=None)) as connection:  # the app goes on writing
            connection.execute("INSERT INTO videos (title, status, created_at, updated_at) "
                               "VALUES ('after', 'queued', 0, 0)")
        after = fingerprint(db)
        assert after != before
        assert opsmon_backup(*args, "verify", "--all").returncode == 0
        assert fingerprint(db) == after  # nothing rolled back over the app's write


def test_chaos_c_a_write_killed_before_its_rename_leaves_no_temporary_file_for_long(tmp_path):
    import os

    db = demo_database(tmp_path / "live.db")
    args = ("--database", db, "--backup-dir", tmp_path / "backups")
    backup_id = opsmon_backup(*args, "create", check=True).stdout.strip()
    stale = tmp_path / "backups" / "daily" / f".{backup_id}.json.k2j3h4.tmp"
    stale.write_text("{")
    os.utime(stale, (time.time() - 3600, time.time() - 3600))
    status_tmp = tmp_path / "backups" / ".status.json.abc123.tmp"  # written under the status lock
    status_tmp.write_text("{")
    fresh = tmp_path / "backups" / ".console-secret.x1y2z3.tmp"  # another writer may still be on this one
    fresh.write_text("{")
    assert opsmon_backup(*args, "verify", "--all").returncode == 0
    assert not stale.exists() and not status_tmp.exists() and fresh.exists()


def test_chaos_d_a_replicator_left_by_a_killed_service_is_stopped_before_the_next_starts(tmp_path):
    from backup_jobs.litestream import Litestream
    from opsmon.config import parse_config
    from tests.conftest import free_port

    db = demo_database(tmp_path / "live.db")
    config = parse_config({"database": {"path": str(db)}, "backups": {
        "directory": str(tmp_path / "backups"), "litestream": {
            "enabled": True, "replica_directory": str(tmp_path / "replica"),
            "metrics_address": f"127.0.0.1:{free_port()}"}}}, "t.yml", tmp_path).backups
    first = Litestream(config.litestream, db, config.directory)
    first.start()  # the service that starts it is then killed -9: nobody stops it
    second = Litestream(config.litestream, db, config.directory)
    try:
        second.start()
        first.process.wait(15)
        assert second.running
    finally:
        second.stop()
        first.stop()
