"""Point-in-time restore from a real Litestream replica, and the fallback to backups before its window."""

from __future__ import annotations

import sqlite3
import time
from contextlib import closing

import pytest

from backup_jobs.jobs import Jobs
from tests.backup_helpers import backups_config, demo_database, fingerprint
from tests.conftest import free_port, wait_for


def execute(db, statement):
    with closing(sqlite3.connect(db, isolation_level=None)) as connection:
        connection.execute(statement)


@pytest.fixture
def replicated(tmp_path):
    db = demo_database(tmp_path / "live.db")
    config = backups_config(tmp_path, db, litestream={
        "enabled": True, "replica_directory": str(tmp_path / "replica"), "sync_interval_seconds": 0.2,
        "metrics_address": f"127.0.0.1:{free_port()}"})
    jobs = Jobs(config)
    yield jobs
    jobs.pitr.stop()


def replicated_past(jobs, moment: float) -> bool:
    window = jobs.pitr.window()
    return window is not None and window[1] >= int(moment)  # the replica's times are whole seconds


def next_second() -> float:
    """Litestream keeps whole seconds: step past the current one so two states never share a second."""
    start = int(time.time())
    wait_for(lambda: time.time() >= start + 1.05, timeout=5, interval=0.02, what="the next second")
    return time.time()


def test_restore_to_a_moment_between_two_changes(replicated):
    jobs = replicated
    db = jobs.store.database
    before_backup = jobs.backup("daily")  # the fallback, taken before replication starts
    jobs.pitr.start()
    execute(db, "DELETE FROM monetizations")
    changed = time.time()
    wait_for(lambda: replicated_past(jobs, changed), timeout=30, what="the first change to be replicated")
    state_a = fingerprint(db)
    moment = next_second()
    next_second()
    execute(db, "DELETE FROM approvals")
    later = time.time()
    wait_for(lambda: replicated_past(jobs, later), timeout=30, what="the second change to be replicated")
    assert fingerprint(db) != state_a

    with jobs.locked("restore"):
        report = jobs.restore_moment(moment)
    assert fingerprint(db) == state_a
    assert report.source.startswith("the Litestream replica at")
    assert "the replica covers" in report.summary()
    assert report.safety_backup is not None

    # Before the replica's first moment, the newest backup before it is used, and the report says so.
    with jobs.locked("restore"):
        report = jobs.restore_moment(before_backup.started_at + 0.5)
    assert report.source == f"backup {before_backup.id}"
    assert f"restored from backup {before_backup.id}" in report.summary() and "the replica covers" in report.summary()
    assert fingerprint(db)["monetizations"][0] > 0
