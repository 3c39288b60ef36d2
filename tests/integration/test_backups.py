"""Backups of a live database: consistent, crash-safe, verified, pruned by tier."""

from __future__ import annotations

import gzip
import json
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from contextlib import closing
from datetime import datetime, timezone

import pytest
from croniter import croniter

from opsmon import catalog
from backup_jobs.store import BackupStore, VerifyFailed
from tests.backup_helpers import demo_database, opsmon_backup
from tests.conftest import wait_for
from tests.fakes import FakeClock


@pytest.fixture
def store(tmp_path):
    return BackupStore(demo_database(tmp_path / "live.db"), tmp_path / "backups")


def test_backup_is_standard_gzip_with_a_full_manifest(store):
    record = store.create("daily")
    assert subprocess.run(["gzip", "-t", str(record.path)]).returncode == 0
    manifest = json.loads(record.manifest_path.read_text())
    assert manifest["tier"] == "daily" and manifest["verification"]["ok"] is True
    assert manifest["database"]["tables"] == {"approvals": manifest["database"]["tables"]["approvals"],
                                              "monetizations": manifest["database"]["tables"]["monetizations"],
                                              "processed_videos": 300, "videos": 300}
    assert manifest["database"]["page_size"] == 4096 and manifest["database"]["page_count"] > 0
    assert manifest["backup"]["size_bytes"] == record.path.stat().st_size
    assert manifest["sqlite_version"] == sqlite3.sqlite_version
    assert manifest["started_at"].endswith("Z") and manifest["finished_at"] >= manifest["started_at"]
    inside = gzip.decompress(record.path.read_bytes())
    assert inside[:16] == b"SQLite format 3\x00"


def test_backup_during_four_writers_is_a_consistent_prefix(tmp_path):
    db = tmp_path / "live.db"
    with closing(sqlite3.connect(db)) as connection:
        connection.execute("PRAGMA journal_mode = WAL")
        connection.execute("CREATE TABLE writes (writer INTEGER, seq INTEGER, PRIMARY KEY (writer, seq))")
    stop = threading.Event()
    written = [0] * 4

    def write(writer: int) -> None:
        with closing(sqlite3.connect(db, timeout=30, isolation_level=None)) as connection:
            while not stop.is_set():
                connection.execute("INSERT INTO writes VALUES (?, ?)", (writer, written[writer] + 1))
                written[writer] += 1

    writers = [threading.Thread(target=write, args=(n,)) for n in range(4)]
    for thread in writers:
        thread.start()
    try:
        # The backup happens under load; on a busy machine a writer may wait its turn for a while.
        wait_for(lambda: min(written) >= 50, timeout=60, what="every writer to be writing")
        record = BackupStore(db, tmp_path / "backups").create("daily")
        during = list(written)
    finally:
        stop.set()
        for thread in writers:
            thread.join()
    assert min(written) > min(during), "the writers went on during the backup"
    restored = tmp_path / "restored.db"
    restored.write_bytes(gzip.decompress(record.path.read_bytes()))
    with closing(sqlite3.connect(restored)) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        per_writer = connection.execute("SELECT writer, count(*), max(seq) FROM writes GROUP BY writer").fetchall()
    assert len(per_writer) == 4
    for writer, count, highest in per_writer:
        assert count == highest > 0, f"writer {writer}: {count} rows up to seq {highest}: not a prefix"


def test_kill_9_at_random_moments_never_leaves_a_partial_backup(tmp_path):
    db = demo_database(tmp_path / "live.db", videos=60_000)
    directory = tmp_path / "backups"
    started = time.monotonic()
    opsmon_backup("--database", db, "--backup-dir", directory, "create", check=True)
    duration = time.monotonic() - started
    rng = random.Random(7)
    for _ in range(24):
        process = subprocess.Popen([sys.executable, "-m", "backup_jobs", "--database", str(db), "--backup-dir",
                                    str(directory), "create", "--tier", "weekly"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0, duration * 1.2))
        process.send_signal(signal.SIGKILL)
        process.wait()
        status_file = directory / catalog.STATUS_FILE
        if status_file.exists():
            json.loads(status_file.read_text())  # the status file is never half-written
        store = BackupStore(db, directory)
        for record in store.records():  # every backup in the catalog is whole and sound
            store.check(record)
        assert store.unreadable_manifests() == []
    result = opsmon_backup("--database", db, "--backup-dir", directory, "verify", "--all")
    assert result.returncode == 0, result.stderr
    assert not list((directory / ".tmp").iterdir())  # the next job cleaned what the killed ones left


@pytest.mark.parametrize("damage, message", [
    ("flip", "the file's sha256 does not match the manifest (it changed after it was written)"),
    ("truncate", "the file is {half} bytes, the manifest says {size} (truncated or replaced)"),
    ("missing", "the file {path} is missing"),
    ("manifest", "row counts"),
    ("manifest-json", "{manifest}: not valid JSON"),
])
def test_verify_names_the_backup_and_the_damage(tmp_path, damage, message):
    store = BackupStore(demo_database(tmp_path / "live.db"), tmp_path / "backups")
    record = store.create("daily")
    size = record.size_bytes
    manifest_path = record.manifest_path
    if damage == "flip":
        data = bytearray(record.path.read_bytes())
        data[size // 2] ^= 0x01
        record.path.write_bytes(bytes(data))
    elif damage == "truncate":
        record.path.write_bytes(record.path.read_bytes()[: size // 2])
    elif damage == "missing":
        record.path.unlink()
    elif damage == "manifest":
        manifest = json.loads(manifest_path.read_text())
        manifest["database"]["tables"]["videos"] += 1
        manifest_path.write_text(json.dumps(manifest))
    elif damage == "manifest-json":
        manifest_path.write_text("{broken")
    result = opsmon_backup("--database", tmp_path / "live.db", "--backup-dir", tmp_path / "backups", "verify", "--all")
    assert result.returncode == 3
    expected = message.format(half=size // 2, size=size, path=record.path, manifest=manifest_path)
    assert expected in result.stderr
    if damage != "manifest-json":
        assert f"backup {record.id}: " in result.stderr
        assert BackupStore(tmp_path / "live.db", tmp_path / "backups").find(record.id).verified is False


def test_wrong_sha_in_manifest_is_found(store):
    record = store.create("daily")
    manifest = json.loads(record.manifest_path.read_text())
    manifest["backup"]["sha256"] = "0" * 64
    record.manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(VerifyFailed, match=f"backup {record.id}: the file's sha256 does not match"):
        store.check(store.find(record.id))


def test_retention_over_two_simulated_years(tmp_path):
    """Every scheduled run of two years, at its cron time, each followed by the prune."""
    clock = FakeClock()
    store = BackupStore(demo_database(tmp_path / "live.db", videos=5), tmp_path / "backups", clock=clock)
    schedule = {"daily": "0 2 * * *", "weekly": "0 3 * * 0", "monthly": "0 4 1 * *"}
    keep = {"daily": 7, "weekly": 4, "monthly": 12}
    start, end = datetime(2025, 1, 1, tzinfo=timezone.utc), datetime(2026, 12, 31, 12, tzinfo=timezone.utc)
    runs = []
    for tier, expression in schedule.items():
        times = croniter(expression, start)
        while (moment := times.get_next(datetime)) <= end:
            runs.append((moment, tier))
    for moment, tier in sorted(runs):
        clock.now = moment.timestamp()
        store.create(tier)
        store.prune({tier: keep[tier]})

    def kept(tier):
        return [r.id for r in store.records() if r.tier == tier]

    assert kept("daily") == [f"202612{d}T020000Z-daily" for d in range(25, 32)]
    assert kept("weekly") == [f"202612{d:02d}T030000Z-weekly" for d in (6, 13, 20, 27)]
    assert kept("monthly") == [f"2026{m:02d}01T040000Z-monthly" for m in range(1, 13)]


def test_prune_spares_the_last_verified_backup(store):
    good = store.create("daily")
    later = [store.create("daily") for _ in range(3)]
    for record in later:
        store.verify(record)
        record.path.write_bytes(b"damaged")
        assert store.verify(store.find(record.id)) is not None
    deleted = store.prune({"daily": 2})
    remaining = [r.id for r in store.records()]
    assert good.id in remaining, "the only verified backup of the tier must stay"
    assert [r.id for r in deleted] == [later[0].id]


def test_a_second_job_is_refused_with_the_holder_named(tmp_path):
    db = demo_database(tmp_path / "live.db")
    from backup_jobs.locks import job_lock

    with job_lock(tmp_path / "backups", "create --tier daily"):
        result = opsmon_backup("--database", db, "--backup-dir", tmp_path / "backups", "create")
    assert result.returncode == 4
    assert "'create --tier daily' (pid " in result.stderr and "is running; try again" in result.stderr


def test_bad_input_is_named(tmp_path):
    db = demo_database(tmp_path / "live.db")
    args = ("--database", db, "--backup-dir", tmp_path / "backups")
    missing = opsmon_backup("--database", tmp_path / "nope.db", "--backup-dir", tmp_path / "backups", "create")
    assert missing.returncode == 1 and f"database {tmp_path}/nope.db does not exist" in missing.stderr
    unknown = opsmon_backup(*args, "restore", "../../etc/passwd")
    assert unknown.returncode == 2 and "'../../etc/passwd' is not a backup id" in unknown.stderr
    naive = opsmon_backup(*args, "restore", "--at", "2026-11-26T10:00:00")
    assert naive.returncode == 2 and "give the time zone too" in naive.stderr
    garbage = opsmon_backup(*args, "restore", "--at", "yesterday")
    assert garbage.returncode == 2 and "not an ISO 8601 moment" in garbage.stderr
    no_config = opsmon_backup("list", cwd=tmp_path)
    assert no_config.returncode == 2 and "give --config.file, or both --database and --backup-dir" in no_config.stderr
    assert not (tmp_path / "backups").exists() or not list((tmp_path / "backups").glob("*/*.db.gz"))
