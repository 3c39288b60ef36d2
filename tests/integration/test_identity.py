"""One database's data never lands in another: identities in every backup and replica, no parts borrowed
from a config for another database, and the nearest source for a moment."""

from __future__ import annotations

import hashlib
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
from tests.backup_helpers import backups_config, demo_database, fingerprint, opsmon_backup, start_console
from tests.conftest import free_port, wait_for
from tests.integration.test_pitr import next_second, replicated_past

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
    assert identity.read_file(book).id is None  # nothing was changed: not even an identity was written
    forced = opsmon_backup("--config.file", config, "restore", "--at", at(time.time()), "--allow-other-database",
                           cwd=project)
    assert forced.returncode == 0, forced.stderr
    assert "restored on purpose" in forced.stdout
    own = identity.read_file(book).id  # given to it before the write, and kept: never the demo's
    assert own and own != identity.read_file(project / ".run" / "demo.db").id


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


def test_restoring_into_a_missing_file_needs_create_database_and_says_so(tmp_path):
    book = ledger(tmp_path / "ledger.db")
    args = ("--database", book, "--backup-dir", tmp_path / "backups")
    backup_id = opsmon_backup(*args, "create", check=True).stdout.strip()
    good, own = fingerprint(book), identity.read_file(book).id
    for part in tmp_path.glob("ledger.db*"):
        part.unlink()
    refused = opsmon_backup(*args, "restore", backup_id)
    assert refused.returncode == 2 and "--create-database" in refused.stderr, refused.stderr
    assert f"database {book} does not exist" in refused.stderr and not book.exists()
    result = opsmon_backup(*args, "restore", backup_id, "--create-database")
    assert result.returncode == 0 and "did not exist" in result.stdout
    assert fingerprint(book) == good and identity.read_file(book).id == own


def sha256(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_typo_in_the_database_path_never_adopts_the_backups_of_the_file_meant(tmp_path):
    shop = demo_database(tmp_path / "shop.db")
    right, typo = tmp_path / "shop.yml", tmp_path / "typo.yml"
    for config, name in ((right, "shop.db"), (typo, "shopp.db")):
        config.write_text(yaml.safe_dump({"database": {"path": name}, "backups": {"directory": "backups"}}))
    backup_id = opsmon_backup("--config.file", right, "create", cwd=tmp_path, check=True).stdout.strip()
    manifest = catalog.read_catalog(tmp_path / "backups").backups[0].manifest
    assert manifest.database.path == str(shop.resolve())  # recorded absolute and resolved
    before = sha256(shop)
    said = (f"database {tmp_path / 'shopp.db'} does not exist; backups in {tmp_path / 'backups'} were taken "
            f"from {shop}: did you mean it?")
    for command in (["status"], ["create"], ["restore", backup_id], ["restore", "--at", at(time.time())]):
        result = opsmon_backup("--config.file", typo, *command, cwd=tmp_path)
        assert result.returncode != 0, (command, result.stdout)
        assert said in result.stdout + result.stderr, (command, result.stdout + result.stderr)
        assert not (tmp_path / "shopp.db").exists(), command
    status = opsmon_backup("--config.file", typo, "status", cwd=tmp_path).stdout
    assert "restore the newest verified backup" not in status and "daily backup" not in status
    assert sha256(shop) == before
    assert [r.id for r in catalog.read_catalog(tmp_path / "backups").backups] == [backup_id]


def test_the_console_api_refuses_to_create_a_missing_database_unless_asked(tmp_path):
    from backup_jobs.users import Users
    from tests.conftest import stop
    from tests.integration.test_console import login

    db = demo_database(tmp_path / "live.db")
    Users(tmp_path / "users.json").add("root", "a very long admin password", "admin")
    url, process = start_console(tmp_path, db, tmp_path / "users.json")
    try:
        session, csrf = login(url, ("root", "a very long admin password"))
        backup_id = session.get(f"{url}/api/backups", timeout=5).json()[-1]["id"]
        for part in tmp_path.glob("live.db*"):
            part.unlink()
        answer = session.post(f"{url}/api/restore", json={"backup": backup_id}, headers={"X-CSRF-Token": csrf},
                              timeout=5)
        assert answer.status_code == 400 and "create_database" in answer.text, answer.text
        assert not db.exists()
        made = session.post(f"{url}/api/restore", json={"backup": backup_id, "create_database": True},
                            headers={"X-CSRF-Token": csrf}, timeout=5)
        assert made.status_code == 202, made.text
        job = made.json()["job"]
        done = wait_for(lambda: (r := session.get(f"{url}/api/jobs/{job}", timeout=5).json())["status"] != "running"
                        and r, timeout=60, what="the restore")
        assert done["status"] == "succeeded", done
        assert db.exists()
    finally:
        stop(process)


def test_a_refused_create_leaves_the_database_byte_identical(tmp_path):
    demo = demo_database(tmp_path / "demo.db")
    opsmon_backup("--database", demo, "--backup-dir", tmp_path / "backups", "create", check=True)
    book = ledger(tmp_path / "ledger.db")  # another database on the demo's folder
    empty = tmp_path / "empty.db"
    empty.write_bytes(b"")
    for database in (book, empty):
        before = sha256(database)
        refused = opsmon_backup("--database", database, "--backup-dir", tmp_path / "backups", "create")
        assert refused.returncode == 1 and "nothing was changed" in refused.stderr, refused.stderr
        assert sha256(database) == before, database
    with closing(sqlite3.connect(f"file:{book}?mode=ro", uri=True)) as connection:
        assert connection.execute("SELECT count(*) FROM sqlite_master WHERE name = '_opsmon'").fetchone() == (0,)


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
