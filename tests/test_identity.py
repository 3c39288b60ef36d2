"""One database's data never lands in another: identities in every backup and replica, no parts borrowed
from a config for another database, and the nearest source for a moment (issue 10)."""

from __future__ import annotations

import json
import shutil
import sqlite3
import time
from contextlib import closing

import pytest
import yaml

from backup_jobs import identity
from backup_jobs.jobs import Jobs
from opsmon import catalog
from tests.backup_helpers import backups_config, demo_database, fingerprint, opsmon_backup
from tests.conftest import free_port, wait_for
from tests.test_pitr import next_second, replicated_past

pytestmark = pytest.mark.slow


def ledger(path):
    """A database of another application: accounts and entries."""
    with closing(sqlite3.connect(path)) as connection:
        connection.executescript("""
            PRAGMA journal_mode = WAL;
            CREATE TABLE account (id INTEGER PRIMARY KEY, name TEXT);
            CREATE TABLE entry (id INTEGER PRIMARY KEY, account INTEGER REFERENCES account(id), cents INTEGER);
        """)
        connection.executemany("INSERT INTO account VALUES (?, ?)", [(i, f"a{i}") for i in range(1, 201)])
        connection.executemany("INSERT INTO entry (account, cents) VALUES (?, ?)",
                               [(i % 200 + 1, i) for i in range(5000)])
        connection.commit()
    return path


def execute(db, statement):
    with closing(sqlite3.connect(db, isolation_level=None)) as connection:
        connection.execute(statement)


def at(moment: float) -> str:
    return catalog.to_iso(moment)


@pytest.fixture
def project(tmp_path):
    """A project folder after `make run`: opsmon.yml for the demo, whose Litestream replica is in .run."""
    run = tmp_path / ".run"
    run.mkdir()
    demo = demo_database(run / "demo.db")
    (tmp_path / "opsmon.yml").write_text(yaml.safe_dump({
        "database": {"path": ".run/demo.db", "name": "demo"},
        "backups": {"directory": ".run/backups",
                    "litestream": {"enabled": True, "replica_directory": ".run/litestream-replica",
                                   "sync_interval_seconds": 0.2, "metrics_address": f"127.0.0.1:{free_port()}"}}}))
    config = backups_config(run, demo, litestream={
        "enabled": True, "replica_directory": str(run / "litestream-replica"), "sync_interval_seconds": 0.2,
        "metrics_address": f"127.0.0.1:{free_port()}"})
    jobs = Jobs(config)
    jobs.backup("daily")  # gives the demo its identity, which Litestream then replicates
    jobs.pitr.start()
    changed = time.time()
    wait_for(lambda: (w := jobs.pitr.window()) is not None and w[1] >= int(changed), timeout=30,
             what="the demo's replica")
    jobs.pitr.stop()
    return tmp_path


def test_the_session_of_the_report_cannot_cross_databases(project):
    book = ledger(project / "ledger.db")
    args = ("--database", "ledger.db", "--backup-dir", "backups")
    made = opsmon_backup(*args, "create", "--tier", "daily", cwd=project)
    assert made.returncode == 0, made.stderr
    assert "nothing of opsmon.yml applies to it" in made.stderr
    good = fingerprint(book)
    moment = next_second()  # Litestream and the backup ids keep whole seconds
    next_second()
    execute(book, "DELETE FROM entry WHERE id > 100")
    restored = opsmon_backup(*args, "restore", "--at", at(moment), cwd=project)
    assert restored.returncode == 0, restored.stderr
    assert fingerprint(book) == good  # the ledger's own backup, never the demo's replica
    assert "restored from backup" in restored.stdout and "no Litestream replica is configured" in restored.stdout
    assert "videos" not in restored.stdout


def test_a_replica_of_another_database_is_refused_by_pitr(project):
    book = ledger(project / "ledger.db")
    config = project / "ledger.yml"
    config.write_text(yaml.safe_dump({  # a config that points the ledger at the demo's replica by mistake
        "database": {"path": "ledger.db"},
        "backups": {"directory": "ledger-backups",
                    "litestream": {"enabled": True, "replica_directory": ".run/litestream-replica"}}}))
    before = fingerprint(book)  # no backup of the ledger yet: the replica is the only source for the moment
    next_second()  # the replica holds a moment from the second after its first point on
    refused = opsmon_backup("--config.file", config, "restore", "--at", at(time.time()), cwd=project)
    assert refused.returncode == 5, refused.stdout + refused.stderr
    assert "another database" in refused.stderr and "nothing was changed" in refused.stderr
    assert "account, entry" in refused.stderr and "videos" in refused.stderr  # both named
    assert fingerprint(book) == before
    own = identity.read_file(book).id
    forced = opsmon_backup("--config.file", config, "restore", "--at", at(time.time()), "--allow-other-database",
                           cwd=project)
    assert forced.returncode == 0, forced.stderr
    assert "restored on purpose" in forced.stdout
    assert identity.read_file(book).id == own  # the file keeps its identity


def test_a_foreign_backup_in_the_folder_is_refused_by_restore_and_named_by_verify(tmp_path):
    demo = demo_database(tmp_path / "demo.db")
    book = ledger(tmp_path / "ledger.db")
    demo_id = opsmon_backup("--database", demo, "--backup-dir", tmp_path / "demo-backups", "create",
                            check=True).stdout.strip()
    opsmon_backup("--database", book, "--backup-dir", tmp_path / "backups", "create", check=True)
    for suffix in (".db.gz", ".json"):  # someone copies the demo's backup into the ledger's folder
        shutil.copy(tmp_path / "demo-backups" / "daily" / f"{demo_id}{suffix}", tmp_path / "backups" / "daily")
    args = ("--database", book, "--backup-dir", tmp_path / "backups")
    before = fingerprint(book)
    refused = opsmon_backup(*args, "restore", demo_id)
    assert refused.returncode == 5 and "another database" in refused.stderr
    assert fingerprint(book) == before
    verified = opsmon_backup(*args, "verify", "--all")
    assert verified.returncode == 3 and demo_id in verified.stderr and "another database" in verified.stderr
    create = opsmon_backup(*args, "create")
    assert create.returncode == 1 and "holds backups of another database" in create.stderr
    table = opsmon_backup(*args, "restore", demo_id, "--tables", "account")
    assert table.returncode != 0 and fingerprint(book) == before


def test_restoring_into_a_missing_file_is_allowed_and_says_so(tmp_path):
    book = ledger(tmp_path / "ledger.db")
    args = ("--database", book, "--backup-dir", tmp_path / "backups")
    backup_id = opsmon_backup(*args, "create", check=True).stdout.strip()
    good, own = fingerprint(book), identity.read_file(book).id
    for part in tmp_path.glob("ledger.db*"):
        part.unlink()
    result = opsmon_backup(*args, "restore", backup_id)
    assert result.returncode == 0 and "did not exist" in result.stdout
    assert fingerprint(book) == good and identity.read_file(book).id == own


def test_pitr_takes_the_nearest_source_in_both_orders(tmp_path):
    db = demo_database(tmp_path / "live.db")
    jobs = Jobs(backups_config(tmp_path, db, litestream={
        "enabled": True, "replica_directory": str(tmp_path / "replica"), "sync_interval_seconds": 0.2,
        "metrics_address": f"127.0.0.1:{free_port()}"}))
    jobs.backup("daily")
    jobs.pitr.start()
    try:
        execute(db, "DELETE FROM monetizations")
        changed = time.time()
        wait_for(lambda: replicated_past(jobs, changed), timeout=30, what="the first change replicated")
        replicated_state, moment = fingerprint(db), next_second()
        next_second()
        execute(db, "DELETE FROM approvals")
        later = time.time()
        wait_for(lambda: replicated_past(jobs, later), timeout=30, what="the second change replicated")
        with jobs.locked("restore"):  # the replica holds the moment itself: nearer than the backup before it
            report = jobs.restore_moment(moment)
        assert report.source.startswith("the Litestream replica"), report.summary()
        assert fingerprint(db) == replicated_state
    finally:
        jobs.pitr.stop()
    execute(db, "DELETE FROM videos WHERE id > 250")
    next_second()
    later = jobs.backup("daily")  # taken after the replica's last point: Litestream has stopped
    after_backup = fingerprint(db)
    execute(db, "DELETE FROM videos WHERE id > 200")
    with jobs.locked("restore"):
        report = jobs.restore_moment(time.time())
    assert report.source == f"backup {later.id}" and fingerprint(db) == after_backup
    assert "the replica covers" in report.summary()


def test_opsmon_rows_are_not_the_apps_data(tmp_path):
    db = demo_database(tmp_path / "live.db")
    opsmon_backup("--database", db, "--backup-dir", tmp_path / "backups", "create", check=True)
    record = catalog.read_catalog(tmp_path / "backups").backups[0]
    assert "_opsmon" not in record.manifest.database.tables
    assert record.manifest.database.identity == identity.read_file(db).id
    assert json.loads(record.manifest_path.read_text())["database"]["schema_sha256"]
