"""Restores: by id, by moment, by tables; checked, rolled back on failure, safe when killed midway."""

from __future__ import annotations

import json
import os
import pty
import random
import re
import select
import signal
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

import pytest

from backup_jobs import cli, sqlitefile
from backup_jobs.inputs import restore_request
from backup_jobs.jobs import Jobs
from backup_jobs.restore import BadRequest, RestoreFailed
from backup_jobs.store import BackupStore
from tests.backup_helpers import backups_config, demo_database, fingerprint, opsmon_backup
from tests.conftest import wait_for
from tests.fakes import FakeClock


@pytest.fixture
def jobs(tmp_path):
    db = demo_database(tmp_path / "live.db")
    return Jobs(backups_config(tmp_path, db))


def execute(db, *statements):
    with closing(sqlite3.connect(db, isolation_level=None)) as connection:
        for statement in statements:
            connection.execute(statement)


def test_restore_by_id_brings_the_data_back_and_keeps_a_safety_backup(jobs):
    live = jobs.store.database
    backup = jobs.backup("daily")
    before = fingerprint(live)
    execute(live, "DELETE FROM monetizations", "DELETE FROM approvals")
    damaged = fingerprint(live)
    with jobs.locked("restore"):
        report = jobs.restore_backup(backup.id)
    assert fingerprint(live) == before
    assert report.changes()["monetizations"] == before["monetizations"][0]
    safety = jobs.store.find(report.safety_backup)
    assert safety.tier == "safety" and safety.verified
    assert json.loads(safety.manifest_path.read_text())["database"]["tables"]["monetizations"] == 0
    assert damaged != before
    with closing(sqlite3.connect(live)) as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_dry_run_changes_nothing(jobs):
    live = jobs.store.database
    backup = jobs.backup("daily")
    execute(live, "DELETE FROM monetizations")
    before = fingerprint(live)
    with jobs.locked("restore"):
        report = jobs.restore_backup(backup.id, dry_run=True)
    assert fingerprint(live) == before
    assert report.dry_run and report.safety_backup is None
    assert report.changes() == {"monetizations": report.row_counts_after["monetizations"]}
    assert "would restore backup" in report.summary()


def test_restore_chosen_tables_only(jobs):
    live = jobs.store.database
    backup = jobs.backup("daily")
    execute(live, "DELETE FROM monetizations", "INSERT INTO videos (title, status, created_at, updated_at) "
                                               "VALUES ('new', 'queued', 0, 0)")
    with jobs.locked("restore"):
        jobs.restore_backup(backup.id, tables=["monetizations"])
    after = fingerprint(live)
    assert after["monetizations"][0] > 0  # restored
    assert after["videos"][0] == 301  # untouched: the new video stays


def test_restore_of_tables_that_would_break_foreign_keys_is_refused(jobs):
    live = jobs.store.database
    backup = jobs.backup("daily")
    execute(live, "DELETE FROM monetizations", "DELETE FROM approvals", "DELETE FROM processed_videos",
            "DELETE FROM videos")
    before = fingerprint(live)
    with jobs.locked("restore"), pytest.raises(RestoreFailed, match="foreign_key_check finds"):
        jobs.restore_backup(backup.id, tables=["approvals"])  # approvals of videos that are gone
    assert fingerprint(live) == before


def test_unknown_table_is_a_bad_request(jobs):
    backup = jobs.backup("daily")
    with jobs.locked("restore"), pytest.raises(BadRequest, match="no table nope in both"):
        jobs.restore_backup(backup.id, tables=["nope"])


def test_restore_by_moment_uses_the_newest_backup_before_it(tmp_path):
    clock = FakeClock(1_795_000_000.0)
    db = demo_database(tmp_path / "live.db")
    jobs = Jobs(backups_config(tmp_path, db), clock=clock)
    first = jobs.backup("daily")
    state_at_first = fingerprint(db)
    clock.advance(3600)
    execute(db, "DELETE FROM monetizations")
    jobs.backup("daily")
    clock.advance(3600)
    execute(db, "DELETE FROM approvals")
    with jobs.locked("restore"):
        report = jobs.restore_moment(first.started_at + 1800)  # half an hour after the first backup
    assert fingerprint(db) == state_at_first
    assert report.source == f"backup {first.id}"
    assert "30m 0s before" in report.summary() and "no Litestream replica is configured" in report.summary()


def test_a_restore_whose_check_fails_is_rolled_back(jobs, monkeypatch):
    live = jobs.store.database
    backup = jobs.backup("daily")
    execute(live, "DELETE FROM monetizations")
    before = fingerprint(live)
    # The application writes between the copy and its proof, so the live database is checked with
    # integrity_check; that check fails (a disk that corrupts writes, say): the safety backup must go back in.
    from backup_jobs import restore

    calls = []

    def failing_check(connection, allowed_fk, quick=False):
        calls.append(1)
        raise RestoreFailed("integrity_check fails: page 7 is never used")

    after(monkeypatch, "write_over", lambda: execute(live, "UPDATE videos SET status = 'failed' WHERE id = 1"))
    monkeypatch.setattr(restore, "_check_live", failing_check)
    with jobs.locked("restore"), pytest.raises(RestoreFailed) as raised:
        jobs.restore_backup(backup.id)
    assert calls
    assert fingerprint(live) == before
    assert "the database was rolled back, as it was before (safety backup " in str(raised.value)
    assert "integrity_check fails: page 7 is never used" in str(raised.value)


def after(monkeypatch, step: str, action) -> None:
    """Run `action` right after the restore's step `step` of sqlitefile: write_over (the copy has committed),
    or checkpoint (the database file holds the copy, and its pages are about to be compared)."""
    original = getattr(sqlitefile, step)

    def step_then_act(*args):
        done = original(*args)
        action()
        return done

    monkeypatch.setattr(sqlitefile, step, step_then_act)


def change_a_title(db) -> None:
    """One byte of one row's value, in the database file: integrity_check, foreign_key_check and row counts
    cannot see it. (No other process uses the database in these tests, so closing this file, which drops
    the locks of this process's SQLite connections to it, harms nobody.)"""
    with open(db, "r+b") as file:
        at = file.read().index(b"video 123")
        file.seek(at + len("video 12"))
        file.write(b"9")


def scribble_over_a_page(db) -> None:
    with open(db, "r+b") as file:
        file.seek(4096 * 4)
        file.write(b"\xa5" * 4096)


@pytest.mark.parametrize("fault", [change_a_title, scribble_over_a_page])
def test_a_database_changed_between_the_copy_and_its_proof_is_rolled_back(tmp_path, monkeypatch, capsys, fault):
    db = demo_database(tmp_path / "live.db")
    args = ["--database", str(db), "--backup-dir", str(tmp_path / "backups")]
    assert cli.main([*args, "create"]) == 0
    backup_id = capsys.readouterr().out.strip()
    execute(db, "DELETE FROM monetizations")
    before = fingerprint(db)
    after(monkeypatch, "checkpoint", lambda: fault(db))
    assert cli.main([*args, "restore", backup_id]) == 5
    failed = capsys.readouterr().err
    assert f"restoring backup {backup_id}" in failed
    assert "page(s) of the database differ from the verified copy" in failed
    assert "the database was rolled back, as it was before" in failed
    assert fingerprint(db) == before
    with closing(sqlite3.connect(db)) as connection:
        assert connection.execute("SELECT title FROM videos WHERE id = 123").fetchone() == ("video 123",)
        assert sqlitefile.integrity_problems(connection) == []


@pytest.mark.parametrize("step, note", [("write_over", "the application wrote during the restore"),
                                        ("checkpoint", None)])
def test_an_application_write_during_the_restore_stays_and_the_restore_is_proven(jobs, monkeypatch, step, note):
    """Written after the copy, before its checkpoint: the file's pages differ from the backup's, so
    integrity_check proves the restore. Written after the checkpoint: it stays in the WAL, and the file's
    pages prove the restore."""
    live = jobs.store.database
    backup = jobs.backup("daily")
    restored = fingerprint(live)
    execute(live, "DELETE FROM monetizations")
    after(monkeypatch, step, lambda: execute(live, "INSERT INTO videos (title, status, created_at, updated_at) "
                                                   "VALUES ('during', 'queued', 0, 0)"))
    with jobs.locked("restore"):
        report = jobs.restore_backup(backup.id)
    if note is None:  # proven page by page
        assert not [n for n in report.notes if "application" in n]
    else:
        assert note in report.summary()
    after_restore = fingerprint(live)
    assert after_restore["monetizations"] == restored["monetizations"]
    assert after_restore["videos"][0] == restored["videos"][0] + 1


def test_a_reader_that_holds_the_checkpoint_back_leaves_the_proof_to_integrity_check(jobs, monkeypatch):
    live = jobs.store.database
    backup = jobs.backup("daily")
    restored = fingerprint(live)
    execute(live, "DELETE FROM monetizations")
    monkeypatch.setattr(sqlitefile, "CHECKPOINT_PATIENCE_MS", 50)
    with closing(sqlite3.connect(live, isolation_level=None)) as reader:
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM videos").fetchone()  # reads the database as it was before the restore
        with jobs.locked("restore"):
            report = jobs.restore_backup(backup.id)
        reader.execute("COMMIT")
    assert "kept the WAL from being checkpointed" in report.summary()
    assert fingerprint(live) == restored


def test_a_damaged_backup_is_never_written_into_the_database(jobs):
    live = jobs.store.database
    backup = jobs.backup("daily")
    execute(live, "DELETE FROM monetizations")
    before = fingerprint(live)
    backup.path.write_bytes(backup.path.read_bytes()[:100])
    result = opsmon_backup("--database", live, "--backup-dir", jobs.directory, "restore", backup.id)
    assert result.returncode == 5
    assert f"backup {backup.id}: the file is 100 bytes" in result.stderr and "nothing was changed" in result.stderr
    assert fingerprint(live) == before


def test_restore_killed_midway_leaves_the_database_as_it_was(tmp_path):
    db = demo_database(tmp_path / "live.db", videos=40_000)
    directory = tmp_path / "backups"
    backup_id = opsmon_backup("--database", db, "--backup-dir", directory, "create", check=True).stdout.strip()
    restored = fingerprint(db)
    started = time.monotonic()
    opsmon_backup("--database", db, "--backup-dir", directory, "restore", backup_id, check=True)
    duration = time.monotonic() - started
    execute(db, "DELETE FROM monetizations", "DELETE FROM approvals")
    original = fingerprint(db)
    marker = directory / "restore-in-progress.json"  # written once the safety snapshot is taken
    rng = random.Random(11)
    seen = []
    for attempt in range(14):
        process = subprocess.Popen([sys.executable, "-m", "backup_jobs", "--database", str(db), "--backup-dir",
                                    str(directory), "restore", backup_id],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if attempt % 2:  # every other kill lands after the safety snapshot, however busy the machine is
            deadline = time.monotonic() + 10 * duration
            while not marker.exists() and process.poll() is None and time.monotonic() < deadline:
                time.sleep(0.005)
            time.sleep(rng.uniform(0, 0.2) * duration)
        else:  # the rest at any moment: the earlier part verifies and takes the safety backup
            time.sleep(rng.uniform(0.3, 1.0) * duration)
        process.send_signal(signal.SIGKILL)
        process.wait()
        midway = marker.exists()  # killed between the safety backup and the end of the checks
        # The next job that takes the lock finishes the rollback of an interrupted restore.
        opsmon_backup("--database", db, "--backup-dir", directory, "prune", check=True)
        with closing(sqlite3.connect(db)) as connection:
            assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        state = fingerprint(db)
        if midway:
            assert state == original, "a restore killed midway must leave the database as it was"
        else:  # killed before it changed anything, or after it had finished and checked everything
            assert state in (original, restored)
        seen.append("midway" if midway else "before" if state == original else "finished")
        if state == restored:
            execute(db, "DELETE FROM monetizations", "DELETE FROM approvals")
    assert seen.count("midway") >= 3, seen


def test_drill_restores_the_newest_backup_and_records_it(jobs):
    backup = jobs.backup("daily")
    with jobs.locked("drill"):
        results = jobs.drill()
    assert [(r.location, r.ok, r.source) for r in results] == [("local", True, f"backup {backup.id}")]
    status = json.loads((jobs.directory / "status.json").read_text())
    assert status["drill"]["backup"] == f"backup {backup.id}" and status["drill"]["last_success_at"] > 0
    assert status["drills"]["local"]["rto_seconds"] > 0


def test_restore_into_a_lost_database_needs_no_safety_backup(jobs):
    backup = jobs.backup("daily")
    before = fingerprint(jobs.store.database)
    jobs.store.database.unlink()
    for sidecar in ("-wal", "-shm"):
        jobs.store.database.with_name(jobs.store.database.name + sidecar).unlink(missing_ok=True)
    with jobs.locked("restore"):
        report = jobs.restore_backup(backup.id)
    assert fingerprint(jobs.store.database) == before
    assert report.safety_backup is None and "did not exist: no safety backup was needed" in report.summary()
    assert BackupStore(jobs.store.database, jobs.directory).records()[-1].id == backup.id


def test_a_damaged_live_database_can_be_restored_and_its_safety_backup_kept(jobs):
    live = jobs.store.database
    backup = jobs.backup("daily")
    good = fingerprint(live)
    with closing(sqlite3.connect(live)) as connection:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        page_size = connection.execute("PRAGMA page_size").fetchone()[0]
    with open(live, "r+b") as file:  # scribble over an index page: the file opens, integrity_check fails
        file.seek(page_size * 5 + 100)
        file.write(b"\xff" * 64)
    with closing(sqlite3.connect(live)) as connection:
        assert sqlitefile.integrity_problems(connection) != []
    with jobs.locked("restore"):
        report = jobs.restore_backup(backup.id)
    assert fingerprint(live) == good
    safety = jobs.store.find(report.safety_backup)  # kept although the database it holds is damaged
    assert safety.tier == "safety" and jobs.store.manifest(safety).database.integrity_checked is False


def app_database(path, *statements):
    """A database of the test's own schema and rows, as an app of a user's would have."""
    execute(path, *statements)
    return path


def backed_up(tmp_path, capsys, database):
    """The CLI's arguments for `database`, and the id of its first backup."""
    args = ["--database", str(database), "--backup-dir", str(tmp_path / "backups")]
    assert cli.main([*args, "create"]) == 0
    return args, capsys.readouterr().out.strip()


def rows(database, query):
    with closing(sqlite3.connect(database)) as connection:
        return connection.execute(query).fetchall()


def test_a_table_restore_from_an_older_schema_leaves_the_new_column_at_its_default(tmp_path, capsys):
    db = app_database(tmp_path / "app.db", "CREATE TABLE videos (id INTEGER PRIMARY KEY, title TEXT NOT NULL)",
                      "INSERT INTO videos (title) VALUES ('a'), ('b'), ('c')")
    args, backup_id = backed_up(tmp_path, capsys, db)
    execute(db, "ALTER TABLE videos ADD COLUMN status TEXT DEFAULT 'queued'", "UPDATE videos SET status = 'done'",
            "DELETE FROM videos WHERE id = 2")

    assert cli.main([*args, "restore", backup_id, "--tables", "videos"]) == 0
    assert rows(db, "SELECT id, title, status FROM videos ORDER BY id") == [
        (1, "a", "queued"), (2, "b", "queued"), (3, "c", "queued")]
    assert "videos: column(s) status are not in the backup: they took their default" in capsys.readouterr().out


@pytest.mark.parametrize("live_schema, live_row, named", [
    ("CREATE TABLE videos (id INTEGER PRIMARY KEY, title TEXT NOT NULL, owner TEXT NOT NULL)",
     "INSERT INTO videos VALUES (7, 'z', 'me')",
     "table videos: column(s) owner of the database are NOT NULL without a default"),
    ("CREATE TABLE videos (id INTEGER PRIMARY KEY, title BLOB NOT NULL)", "INSERT INTO videos VALUES (7, x'07')",
     "table videos: column(s) title (TEXT in the backup, BLOB now) changed type"),
])
def test_a_table_restore_into_a_schema_it_cannot_fill_is_refused_naming_the_columns(tmp_path, capsys, live_schema,
                                                                                     live_row, named):
    db = app_database(tmp_path / "app.db", "CREATE TABLE videos (id INTEGER PRIMARY KEY, title TEXT NOT NULL)",
                      "INSERT INTO videos (title) VALUES ('a'), ('b')")
    args, backup_id = backed_up(tmp_path, capsys, db)
    execute(db, "DROP TABLE videos", live_schema, live_row)
    before = rows(db, "SELECT * FROM videos")

    assert cli.main([*args, "restore", backup_id, "--tables", "videos"]) == 5
    failed = capsys.readouterr().err
    assert named in failed and "nothing was changed" in failed
    assert rows(db, "SELECT * FROM videos") == before


def test_a_table_restore_fires_no_trigger_and_no_cascade_and_changes_no_other_table(tmp_path, capsys):
    db = app_database(
        tmp_path / "app.db",
        "CREATE TABLE videos (id INTEGER PRIMARY KEY, title TEXT NOT NULL)",
        "CREATE TABLE approvals (id INTEGER PRIMARY KEY, video_id INTEGER NOT NULL)",
        "CREATE TABLE comments (id INTEGER PRIMARY KEY, "
        "video_id INTEGER NOT NULL REFERENCES videos (id) ON DELETE CASCADE)",
        "CREATE TRIGGER videos_cleanup AFTER DELETE ON videos BEGIN DELETE FROM approvals WHERE video_id = old.id; END",
        "INSERT INTO videos (id, title) VALUES (1, 'a'), (2, 'b'), (3, 'c'), (4, 'd')",
        "INSERT INTO approvals (video_id) VALUES (1), (2), (3), (4)",
        "INSERT INTO comments (video_id) VALUES (1), (2), (3)")
    args, backup_id = backed_up(tmp_path, capsys, db)
    execute(db, "UPDATE videos SET title = 'renamed'")
    others = fingerprint(db)
    del others["videos"]

    assert cli.main([*args, "restore", backup_id, "--tables", "videos"]) == 0
    out = capsys.readouterr().out
    assert rows(db, "SELECT count(*) FROM approvals") == [(4,)] and rows(db, "SELECT count(*) FROM comments") == [(3,)]
    assert {t: v for t, v in fingerprint(db).items() if t != "videos"} == others
    assert rows(db, "SELECT title FROM videos ORDER BY id") == [("a",), ("b",), ("c",), ("d",)]
    assert "the app's triggers did not fire, foreign key actions were off" in out
    assert "every other table was checked unchanged" in out
    assert rows(db, "SELECT name FROM sqlite_master WHERE type = 'trigger'") == [("videos_cleanup",)]


def test_tables_whose_names_need_quoting_are_restored_from_the_command_line_and_the_console(tmp_path, capsys):
    names = ["my table", 'say "hi"', "비디오"]
    db = app_database(tmp_path / "app.db", *(f"CREATE TABLE {sqlitefile.quote(n)} (id INTEGER PRIMARY KEY, "
                                             f"{sqlitefile.quote(n + ' col')} TEXT)" for n in names),
                      *(f"INSERT INTO {sqlitefile.quote(n)} VALUES (1, 'one'), (2, 'two')" for n in names))
    args, backup_id = backed_up(tmp_path, capsys, db)
    for name in names:
        execute(db, f"DELETE FROM {sqlitefile.quote(name)}")

    assert cli.main([*args, "restore", backup_id, "--tables", ",".join(names[:2])]) == 0
    jobs = Jobs(backups_config(tmp_path, db))
    with jobs.locked("restore"):  # as the console asks for it
        jobs.restore(restore_request({"backup": backup_id, "tables": names[2]}, known_tables=names))
    assert all(rows(db, f"SELECT * FROM {sqlitefile.quote(n)} ORDER BY 1") == [(1, "one"), (2, "two")] for n in names)


def test_safety_backups_are_kept_by_age_so_restores_in_a_row_keep_the_state_before_the_first(tmp_path):
    clock = FakeClock(1_795_000_000.0)
    db = demo_database(tmp_path / "live.db")
    jobs = Jobs(backups_config(tmp_path, db), clock=clock)
    backup = jobs.backup("daily")
    with jobs.locked("restore"):
        aged = jobs.restore_backup(backup.id).safety_backup  # of a restore long ago
    clock.advance(8 * 86400)  # beyond the week safety backups are kept
    execute(db, "DELETE FROM monetizations")
    before_first = fingerprint(db)
    taken = []
    for _ in range(3):
        clock.advance(60)
        with jobs.locked("restore"):
            taken.append(jobs.restore_backup(backup.id).safety_backup)

    with jobs.locked("restore"):
        jobs.restore_backup(taken[0])  # back to the state before the first of them
    assert fingerprint(db) == before_first
    kept = {r.id for r in jobs.store.records() if r.tier == "safety"}
    assert set(taken) <= kept and aged not in kept


def on_a_terminal(args, answer: bytes | None) -> tuple[int, str]:
    """opsmon-backup --database DB ... (in DB's folder) with a pseudo-terminal for stdin, stdout and stderr, as a
    person runs it, typing `answer` once its question is shown (None: no question is awaited); its exit status
    and all it wrote."""
    leader, follower = pty.openpty()
    process = subprocess.Popen([sys.executable, "-m", "backup_jobs", "--quiet", *map(str, args)],
                               stdin=follower, stdout=follower, stderr=follower, cwd=Path(args[1]).parent)
    os.close(follower)
    written = bytearray()

    def read_more() -> bool:
        """Read what is there; true once the process has closed the terminal."""
        if not select.select([leader], [], [], 0.1)[0]:
            return False
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # EIO: nobody holds the terminal any more
            return True
        written.extend(chunk)
        return not chunk

    try:
        if answer is not None:
            wait_for(lambda: read_more() or b"Restore? [y/N]" in written, timeout=60, interval=0,
                     what=lambda: f"the question, in {bytes(written)!r}")
            os.write(leader, answer)
        wait_for(read_more, timeout=60, interval=0, what="the end of its output")
        return process.wait(timeout=30), written.decode().replace("\r\n", "\n")
    finally:
        os.close(leader)
        if process.poll() is None:
            process.kill()


@pytest.mark.parametrize("answer", [b"n\n", b"\x04"], ids=["no", "end of input"])
def test_restore_on_a_terminal_answered_no_changes_nothing_and_shows_what_it_would_replace(jobs, answer):
    live = jobs.store.database
    backup = jobs.backup("daily")
    in_backup = fingerprint(live)["monetizations"][0]
    execute(live, "DELETE FROM monetizations")
    before = fingerprint(live)
    with closing(sqlite3.connect(live, isolation_level=None)) as app:
        app.execute("BEGIN IMMEDIATE")  # the app in the middle of a write while the person is asked

        status, shown = on_a_terminal(["--database", live, "--backup-dir", jobs.directory, "restore", backup.id],
                                      answer)
        app.execute("ROLLBACK")
    assert status == 5 and "not restored; nothing was changed" in shown
    assert f"This restore replaces all of {live}" in shown and f"backup {backup.id} (taken" in shown
    assert "the app is writing now: a writer holds the write lock" in shown
    assert re.search(rf"\n +monetizations +0 -> {in_backup}\n", shown), shown
    assert fingerprint(live) == before
    assert not [r for r in jobs.store.records() if r.tier == "safety"]


@pytest.mark.parametrize("extra, answer", [([], b"y\n"), (["--yes"], None)])
def test_restore_on_a_terminal_goes_ahead_on_yes_or_with_yes_given(jobs, extra, answer):
    live = jobs.store.database
    backup = jobs.backup("daily")
    restored = fingerprint(live)
    execute(live, "DELETE FROM monetizations")

    status, shown = on_a_terminal(["--database", live, "--backup-dir", jobs.directory, "restore", backup.id, *extra],
                                  answer)
    assert status == 0, shown
    assert fingerprint(live) == restored
    assert ("Restore? [y/N]" in shown) == (answer is not None)
    assert f"restored backup {backup.id}" in shown
