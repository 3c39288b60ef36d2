"""The backup folder as an adversary leaves it: planted links, files opsmon did not write, a clock set
back, odd names, a file-size limit and a reader that goes away, each through the real command."""

from __future__ import annotations

import json
import os
import re
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from backup_jobs.jobs import Jobs
from backup_jobs.store import BackupStore
from exporter.health import database_check
from opsmon.catalog import to_timestamp
from tests.backup_helpers import backups_config, demo_database, fingerprint, opsmon_backup
from tests.fakes import FakeClock

YEAR = 365 * 86400


def kit(tmp_path: Path, videos: int = 300) -> tuple[Path, Path, tuple]:
    """A live database, its backup folder, and the arguments that point opsmon-backup at both."""
    database = demo_database(tmp_path / "live.db", videos)
    backups = tmp_path / "backups"
    return database, backups, ("--database", database, "--backup-dir", backups)


def contents(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` (links not followed) and its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and not p.is_symlink()}


# ---- links ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("link", ["symbolic", "hard"])
@pytest.mark.parametrize("command", [["prune"], ["create"], ["verify", "--all"]])
def test_a_job_lock_linked_to_the_live_database_is_refused_and_the_database_left_as_it_is(tmp_path, command, link):
    database, backups, args = kit(tmp_path)
    opsmon_backup(*args, "create", check=True)
    lock = backups / ".job.lock"
    lock.unlink()
    lock.symlink_to(database) if link == "symbolic" else lock.hardlink_to(database)
    before = database.read_bytes()
    result = opsmon_backup(*args, *command)
    assert result.returncode == 1, result.stderr
    said = f"a symbolic link to {database}" if link == "symbolic" else "a file with 2 names (hard links)"
    assert f"{lock} is {said}" in result.stderr and "Traceback" not in result.stderr
    assert database.read_bytes() == before


@pytest.mark.parametrize("planted", ["link", "file"])
def test_a_tmp_that_is_a_link_or_a_file_is_refused_and_never_emptied(tmp_path, planted):
    database, backups, args = kit(tmp_path)
    opsmon_backup(*args, "create", check=True)
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "drill-local").mkdir(parents=True)
    # Names a scratch file of opsmon's could have, and others: none of them is opsmon's to remove here.
    for name in ("snapshot-1.db", "verify-x.db", "dry-run.db", "notes.txt", "drill-local/inside.db"):
        (elsewhere / name).write_text(f"the user's {name}")
    kept = contents(elsewhere)
    tmp = backups / ".tmp"
    tmp.rmdir()
    if planted == "link":
        tmp.symlink_to(elsewhere)
    else:
        tmp.write_text("not a folder")
    for command in (["create"], ["prune"], ["verify", "--all"], ["drill"]):
        result = opsmon_backup(*args, *command)
        assert result.returncode == 1, (command, result.stderr)
        assert f"{tmp} is {'a symbolic link to ' if planted == 'link' else 'a regular file'}" in result.stderr
    assert contents(elsewhere) == kept
    assert len(json.loads(opsmon_backup(*args, "list", "--json", check=True).stdout)) == 1


def test_links_planted_at_opsmon_names_are_removed_as_links_and_never_written_through(tmp_path):
    database, backups, args = kit(tmp_path)
    backup_id = opsmon_backup(*args, "create", check=True).stdout.strip()
    before = database.read_bytes()
    victim = tmp_path / "victim.txt"
    victim.write_text("not opsmon's")
    # The scratch file verify writes next, and the lock of status.json.
    (backups / ".tmp" / f"verify-{backup_id}.db").symlink_to(database)
    (backups / ".tmp" / "pitr.db").symlink_to(victim)
    opsmon_backup(*args, "verify", "--all", check=True)
    assert not list((backups / ".tmp").iterdir())
    assert database.read_bytes() == before and victim.read_text() == "not opsmon's"
    status_lock = backups / ".status.lock"
    status_lock.unlink()
    status_lock.symlink_to(victim)
    result = opsmon_backup(*args, "create")
    assert result.returncode == 1 and f"{status_lock} is a symbolic link to {victim}" in result.stderr
    assert victim.read_text() == "not opsmon's"


def test_a_link_planted_where_a_restore_stages_its_copy_is_never_written_through(tmp_path):
    database, _, args = kit(tmp_path)
    backup_id = opsmon_backup(*args, "create", check=True).stdout.strip()
    victim = tmp_path / "victim.txt"
    victim.write_text("not opsmon's")
    (tmp_path / f".{database.name}.restoring").symlink_to(victim)
    database.write_bytes(os.urandom(8192))  # beyond SQLite: the restore stages a whole copy beside it
    opsmon_backup(*args, "restore", backup_id, check=True)
    assert victim.read_text() == "not opsmon's"
    assert not (tmp_path / f".{database.name}.restoring").is_symlink()
    assert opsmon_backup(*args, "check").returncode == 0


def test_a_tier_folder_that_is_a_link_is_never_cleaned_nor_written_over(tmp_path):
    """`daily` linked to a folder of the user's holding a file of the very name the next backup would take."""
    clock = FakeClock(to_timestamp("2026-11-26T02:00:00Z"))
    store = BackupStore(demo_database(tmp_path / "live.db"), tmp_path / "backups", clock=clock)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    theirs = elsewhere / "20261126T020000Z-daily.db.gz"
    theirs.write_bytes(b"the user's file, of opsmon's name")
    (tmp_path / "backups").mkdir()
    (tmp_path / "backups" / "daily").symlink_to(elsewhere)
    store.remove_leftovers()
    assert store.create("daily").id == "20261126T020000Z-daily-2"
    assert theirs.read_bytes() == b"the user's file, of opsmon's name"


# ---- files opsmon did not write -------------------------------------------------------------------

def test_files_opsmon_did_not_write_survive_every_job(tmp_path):
    database, backups, args = kit(tmp_path)
    opsmon_backup(*args, "create", check=True)
    foreign = {"manual/x.db.gz": b"a hand-made copy", "daily/x.db.gz": b"not of the id pattern",
               "daily/20260101T000000Z-weekly.db.gz": b"an id of another tier", "stray.db.gz": b"at the top",
               ".tmp/notes.txt": b"the user's notes", ".keep.tmp": b"a dot file of the user's"}
    for name, data in foreign.items():
        (backups / name).parent.mkdir(parents=True, exist_ok=True)
        (backups / name).write_bytes(data)
    # What a job killed between the backup's rename and its manifest leaves: opsmon's own name, no manifest.
    crashed = backups / "daily" / "20260102T020000Z-daily.db.gz"
    crashed.write_bytes(b"half a backup")
    for command in (["create"], ["prune"], ["verify", "--all"], ["drill"]):
        result = opsmon_backup(*args, *command)
        assert result.returncode == 0, (command, result.stderr)
        assert {name: (backups / name).read_bytes() for name in foreign} == foreign, command
    assert not crashed.exists()


def test_files_of_someone_else_in_the_second_folder_survive_the_copies(tmp_path):
    database = demo_database(tmp_path / "live.db")
    second = tmp_path / "second-disk"
    config = backups_config(tmp_path, database, retention={"daily": 1}, secondary_directory=str(second))
    clock = FakeClock(to_timestamp("2026-11-25T02:00:00Z"))
    jobs = Jobs(config, clock=clock)
    first = jobs.backup("daily")
    foreign = {"daily/hand-made.db.gz": b"a copy by hand", "daily/notes.txt": b"notes", "manual/x.db.gz": b"mine",
               "daily/20260101T000000Z-weekly.db.gz": b"an id of another tier"}
    for name, data in foreign.items():
        (second / name).parent.mkdir(parents=True, exist_ok=True)
        (second / name).write_bytes(data)
    victim = tmp_path / "victim.txt"
    victim.write_text("not opsmon's")
    # The name the next copy writes first, planted as a link.
    (second / "daily" / ".20261126T020000Z-daily.db.gz.partial").symlink_to(victim)
    clock.now = to_timestamp("2026-11-26T02:00:00Z")
    newer = jobs.backup("daily")  # copies the new backup, and prunes the first here and there
    assert newer.id == "20261126T020000Z-daily" and not first.path.exists()
    assert {name: (second / name).read_bytes() for name in foreign} == foreign
    assert sorted(p.name for p in (second / "daily").glob("2026112*")) == [f"{newer.id}.db.gz", f"{newer.id}.json"]
    assert victim.read_text() == "not opsmon's"


# ---- a clock set back -----------------------------------------------------------------------------

def test_a_clock_set_back_never_prunes_the_backup_just_made(tmp_path):
    database = demo_database(tmp_path / "live.db")
    config = backups_config(tmp_path, database, retention={"daily": 2})
    now = time.time()
    clock = FakeClock(now + YEAR)  # a clock that ran a year ahead...
    jobs = Jobs(config, clock=clock)
    for _ in range(3):
        jobs.backup("daily")
    clock.now = now  # ...then was set right
    made = jobs.backup("daily")
    assert made.id in [r.id for r in jobs.store.records()], "the backup just made was pruned"
    # Retention goes by the order backups were made: new ones push the future-dated ones out.
    later = [jobs.backup("daily").id for _ in range(2)]
    assert [r.id for r in jobs.store.records()] == sorted(later)

    clock.now = now + YEAR  # ahead again: the status names the backup it stamps
    future = jobs.backup("daily")
    result = opsmon_backup("--database", database, "--backup-dir", config.backups.directory, "status")
    assert result.returncode == 3
    assert re.search(rf"^WARNING +clock +1 backup stamped in the future: {future.id}, up to 364d", result.stdout,
                     re.MULTILINE), result.stdout
    status = json.loads(opsmon_backup("--database", database, "--backup-dir", config.backups.directory, "status",
                                      "--json").stdout)
    assert status["future_dated"] == [future.id]


# ---- odd names and limits -------------------------------------------------------------------------

def test_a_database_path_with_hash_question_mark_and_percent_opens_that_file(tmp_path):
    folder = tmp_path / "data dir"
    folder.mkdir()
    database = demo_database(folder / "we#ird?x%20y.db")
    args = ("--database", database, "--backup-dir", tmp_path / "backups")
    state = fingerprint(database)
    backup_id = opsmon_backup(*args, "create", check=True).stdout.strip()
    opsmon_backup(*args, "verify", backup_id, check=True)
    opsmon_backup(*args, "restore", backup_id, check=True)
    assert fingerprint(database) == state
    assert database_check(database)["status"] == "ok"
    own = {database.name + suffix for suffix in ("", "-wal", "-shm", "-journal")}
    assert {p.name for p in folder.iterdir()} - own == set()  # no stray `we` or `we#ird`


def _file_size_limit(limit: int):
    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG, not a signal
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


def test_a_file_size_limit_is_named_and_no_backup_is_recorded(tmp_path):
    database, backups, args = kit(tmp_path, videos=2000)
    first = opsmon_backup(*args, "create", check=True).stdout.strip()
    limit = database.stat().st_size // 2
    result = subprocess.run([sys.executable, "-m", "backup_jobs", *map(str, args), "create"], capture_output=True,
                            text=True, timeout=120, preexec_fn=_file_size_limit(limit))
    assert result.returncode == 1
    assert f"the file-size limit was hit writing {backups / '.tmp'}/snapshot-" in result.stderr
    assert f"(ulimit -f: {limit} bytes)" in result.stderr
    assert "disk I/O error" not in result.stderr and "Traceback" not in result.stderr
    assert [b["id"] for b in json.loads(opsmon_backup(*args, "list", "--json", check=True).stdout)] == [first]
    assert "file-size limit" in json.loads((backups / "status.json").read_text())["tiers"]["daily"]["last_error"]
    # A check cut short by the limit is no damage of the backup: named, and the backup stays verified.
    result = subprocess.run([sys.executable, "-m", "backup_jobs", *map(str, args), "verify", first],
                            capture_output=True, text=True, timeout=120, preexec_fn=_file_size_limit(limit))
    assert result.returncode == 1
    assert f"the file-size limit was hit writing {backups / '.tmp' / f'verify-{first}.db'}" in result.stderr
    assert f"backup {first} was not checked" in result.stderr and "Traceback" not in result.stderr
    assert json.loads(opsmon_backup(*args, "list", "--json", check=True).stdout)[0]["verified"] is True


@pytest.mark.parametrize("command", [["status"], ["list"], ["list", "--json"]])
def test_output_into_a_closed_pipe_stops_quietly(tmp_path, command):
    _, _, args = kit(tmp_path)
    opsmon_backup(*args, "create", check=True)
    read_end, write_end = os.pipe()
    os.close(read_end)  # `| head -1` that has read its line and gone
    try:
        result = subprocess.run([sys.executable, "-m", "backup_jobs", *map(str, args), *command], stdout=write_end,
                                stderr=subprocess.PIPE, text=True, timeout=60, cwd=tmp_path)
    finally:
        os.close(write_end)
    assert result.stderr == ""
    assert result.returncode == 1
