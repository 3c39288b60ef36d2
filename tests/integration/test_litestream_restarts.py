"""Litestream started again after it was killed -9 while the app wrote and checkpointed: the replica must
still give back every committed row. The real binary, a real SQLite database, loopback only."""

from __future__ import annotations

import logging
import sqlite3
import time
from contextlib import closing

import pytest

from backup_jobs.jobs import Jobs
from backup_jobs.sqlitefile import file_integrity
from tests.backup_helpers import backups_config, demo_database, fingerprint
from tests.conftest import free_port, wait_for
from tests.integration.test_pitr import next_second

pytestmark = pytest.mark.slow


@pytest.fixture
def app(tmp_path):
    """The app's connection, which checkpoints only when a test says so (SQLite's autocheckpoint, at a
    moment the test chooses)."""
    database = demo_database(tmp_path / "live.db")
    with closing(sqlite3.connect(database, isolation_level=None)) as connection:
        connection.execute("PRAGMA journal_mode = WAL")
        connection.execute("PRAGMA wal_autocheckpoint = 0")
        yield connection


@pytest.fixture
def litestream(tmp_path, app):
    config = backups_config(tmp_path, tmp_path / "live.db", litestream={
        "enabled": True, "replica_directory": str(tmp_path / "replica"), "sync_interval_seconds": 0.2,
        "metrics_address": f"127.0.0.1:{free_port()}"})
    pitr = Jobs(config).pitr
    yield pitr
    pitr.stop()


def commit_videos(app, count: int) -> float:
    """`count` new videos, each in its own transaction as the app writes them; when the last committed."""
    for _ in range(count):
        app.execute("INSERT INTO videos (title, status, created_at, updated_at) "
                    "VALUES ('restart', 'queued', unixepoch(), unixepoch())")
    return time.time()


def replicated_past(litestream, moment: float) -> bool:
    window = litestream.window()
    return window is not None and window[1] >= int(moment)  # the replica's times are whole seconds


def kill(litestream) -> None:
    litestream.process.kill()
    litestream.process.wait()


def started_again(litestream) -> None:
    """The service's own supervision brings it back, after its back-off."""
    wait_for(lambda: litestream.supervise() or litestream.running, timeout=30, interval=0.2,
             what="Litestream started again by its supervisor")


def newest_restore(litestream, last_write: float, directory):
    wait_for(lambda: replicated_past(litestream, last_write), timeout=30, what="the last write replicated")
    restored = litestream.restore_to(next_second(), directory)
    assert restored is not None, "Litestream could not restore its replica"
    return restored


def killed_while_the_app_restarts_the_wal(app, litestream) -> None:
    litestream.start()
    # A long WAL first: Litestream's last copy ends far into it, beyond what the app writes after the restart.
    replicated = commit_videos(app, 150)
    wait_for(lambda: replicated_past(litestream, replicated), timeout=30, what="the first rows replicated")
    kill(litestream)
    commit_videos(app, 150)  # committed while nothing copies them
    # The app's checkpoint (no Litestream holds it back now) moves them into the database file, and its
    # next commit starts the WAL again from its beginning.
    assert app.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()[0] == 0
    commit_videos(app, 1)


def assert_the_replica_holds_every_row(litestream, last_write: float, tmp_path) -> None:
    """Its newest point restores to a sound database with every video the app committed."""
    restored = newest_restore(litestream, last_write, tmp_path / "restored")
    assert file_integrity(restored) == []
    assert fingerprint(restored)["videos"] == fingerprint(tmp_path / "live.db")["videos"]


def test_a_restart_after_the_app_checkpointed_and_restarted_the_wal_keeps_every_committed_row(
        tmp_path, app, litestream):
    killed_while_the_app_restarts_the_wal(app, litestream)
    started_again(litestream)
    last_write = commit_videos(app, 5)

    assert_the_replica_holds_every_row(litestream, last_write, tmp_path)


def test_litestream_waits_while_a_reader_keeps_a_restarted_wal_from_being_emptied(tmp_path, app, litestream):
    killed_while_the_app_restarts_the_wal(app, litestream)
    with closing(sqlite3.connect(tmp_path / "live.db", isolation_level=None)) as reader:
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM videos").fetchone()  # a read mark in the new WAL
        waiting_until = time.monotonic() + 4
        while time.monotonic() < waiting_until:
            litestream.supervise()
            assert not litestream.running, "Litestream started on a WAL it would copy with a gap"
            time.sleep(0.2)
        reader.execute("COMMIT")
    started_again(litestream)
    last_write = commit_videos(app, 5)

    assert_the_replica_holds_every_row(litestream, last_write, tmp_path)


def test_two_kills_in_quick_succession_while_the_app_writes_keep_the_replica_whole(tmp_path, app, litestream):
    """The chaos suite's case: killed twice a few seconds apart while the app writes and checkpoints."""
    litestream.start()
    for _ in range(2):
        written = commit_videos(app, 100)
        wait_for(lambda: replicated_past(litestream, written), timeout=30, what="the rows replicated")
        kill(litestream)
        commit_videos(app, 100)
        app.execute("PRAGMA wal_checkpoint(PASSIVE)")
        commit_videos(app, 1)
        started_again(litestream)
    last_write = commit_videos(app, 5)

    assert_the_replica_holds_every_row(litestream, last_write, tmp_path)


def commit_beyond_litestreams_checkpoint(app) -> None:
    """One transaction of more than the 1000 WAL pages after which Litestream checkpoints."""
    app.execute("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 12000) "
                "INSERT INTO videos (title, status, created_at, updated_at) "
                "SELECT 'after the restore ' || hex(randomblob(200)), 'queued', unixepoch(), unixepoch() FROM n")


@pytest.fixture
def jobs(tmp_path, app, caplog):
    """The jobs of a database replicated by Litestream, whose lines the test reads."""
    caplog.set_level(logging.INFO, logger="litestream")
    jobs = Jobs(backups_config(tmp_path, tmp_path / "live.db", litestream={
        "enabled": True, "replica_directory": str(tmp_path / "replica"), "sync_interval_seconds": 0.2,
        "metrics_address": f"127.0.0.1:{free_port()}"}))
    yield jobs
    jobs.pitr.stop()


def litestream_errors(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == "litestream" and ("no such table" in r.getMessage() or "level=ERROR" in r.getMessage())]


def test_a_restore_keeps_litestreams_tables_so_litestream_never_works_without_them(tmp_path, app, jobs, caplog):
    backup = jobs.backup("daily")  # taken before Litestream ran: its tables are not in it
    jobs.pitr.start()
    replicated = commit_videos(app, 10)
    wait_for(lambda: replicated_past(jobs.pitr, replicated), timeout=30, what="the first rows replicated")
    with jobs.locked("restore"):
        jobs.restore_backup(backup.id)
    litestreams = "SELECT name FROM sqlite_master WHERE name LIKE '\\_litestream\\_%' ESCAPE '\\' ORDER BY name"
    assert app.execute(litestreams).fetchall() == [("_litestream_lock",), ("_litestream_seq",)]
    jobs.pitr.stop()  # Litestream checkpoints as it stops, with its tables
    assert litestream_errors(caplog) == []


def test_after_a_restore_litestream_starts_again_on_the_restored_database_and_pitr_holds_later_writes(
        tmp_path, app, jobs, caplog):
    litestream = jobs.pitr
    backup = jobs.backup("daily")  # taken before Litestream ran: its tables are not in it
    litestream.start()
    replicated = commit_videos(app, 10)
    wait_for(lambda: replicated_past(litestream, replicated), timeout=30, what="the first rows replicated")
    first = litestream.process.pid
    with jobs.locked("restore"):
        jobs.restore_backup(backup.id)
    wait_for(lambda: litestream.supervise() or (litestream.running and litestream.process.pid != first),
             timeout=30, interval=0.2, what="Litestream started again on the restored database")

    commit_beyond_litestreams_checkpoint(app)
    next_second()
    marker = commit_videos(app, 1)  # replicated in a later second, so after the big write: it is all there
    wait_for(lambda: replicated_past(litestream, marker), timeout=30, what="the writes after the restore")
    written = fingerprint(tmp_path / "live.db")
    moment = next_second()
    app.execute("DELETE FROM videos WHERE title LIKE 'after the restore %' OR title = 'restart'")
    with jobs.locked("restore"):
        report = jobs.restore_moment(moment)
    assert report.source.startswith("the Litestream replica at")
    assert fingerprint(tmp_path / "live.db") == written
    litestream.stop()
    assert litestream_errors(caplog) == []
