"""Drills that prove every copy: the backup folder, the second folder, a real S3-compatible bucket
(moto on loopback) and a real Litestream replica, each restored and checked, with its RTO and RPO; one
location broken at a time fails alone and is named."""

from __future__ import annotations

import shutil
import time

import pytest
import yaml

from backup_jobs.jobs import Jobs
from exporter.collectors.backup import BackupCollector
from opsmon import catalog
from opsmon.config import load_config
from tests.backup_helpers import demo_database
from tests.conftest import exposition, free_port, new_bucket, wait_for

pytestmark = pytest.mark.slow
LOCATIONS = ["local", "offsite", "replica", "secondary"]


@pytest.fixture
def kit(tmp_path, s3):
    client, bucket = new_bucket(s3, tmp_path)
    demo_database(tmp_path / "live.db")
    (tmp_path / "opsmon.yml").write_text(yaml.safe_dump({
        "database": {"path": "live.db", "name": "demo"},
        "backups": {"directory": "backups", "secondary_directory": "second-disk",
                    "offsite": {"bucket": bucket, "prefix": "demo", "endpoint_url": s3,
                                "access_key_id_file": "key-id", "secret_access_key_file": "secret"},
                    "litestream": {"enabled": True, "replica_directory": "replica", "sync_interval_seconds": 0.2,
                                   "metrics_address": f"127.0.0.1:{free_port()}"},
                    "drill": {"canary": True, "replica_wait_seconds": 8},
                    "objectives": {"rpo_seconds": 3600, "rto_seconds": 600}}}))
    config = load_config(tmp_path / "opsmon.yml")
    jobs = Jobs(config)
    jobs.backup("daily")  # made, verified, and copied to the second folder and the bucket
    jobs.pitr.start()
    yield jobs, client, bucket, config
    jobs.pitr.stop()


def drill(jobs) -> dict:
    with jobs.locked("drill"):
        return {r.location: r for r in jobs.drill()}


def test_every_location_is_restored_proved_and_measured(kit):
    jobs, _, _, config = kit
    time.sleep(1)
    results = drill(jobs)
    assert sorted(results) == LOCATIONS
    assert all(r.ok for r in results.values()), [r.line() for r in results.values()]
    # The canary written by this drill reached the replica: its RPO is seconds; the backups are older.
    assert results["replica"].rpo_seconds < 30
    assert all(results[name].rpo_seconds >= 1 for name in ("local", "secondary", "offsite"))
    assert all(r.rto_seconds > 0 for r in results.values())
    text = exposition(BackupCollector(config.backups.directory, "demo", policy=config))
    for location in LOCATIONS:
        assert f'opsmon_restore_drill_rpo_seconds{{database="demo",location="{location}"}}' in text
        assert f'opsmon_restore_drill_rto_seconds{{database="demo",location="{location}"}}' in text
    assert 'opsmon_backup_objective_rpo_seconds{database="demo"} 3600.0' in text
    # A second drill finds the first drill's canary in nothing newer than its backups, and still passes.
    assert all(r.ok for r in drill(jobs).values())


def break_local(jobs, client, bucket):
    record = jobs.store.records()[-1]
    data = bytearray(record.path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    record.path.write_bytes(bytes(data))


def break_secondary(jobs, client, bucket):
    for path in (jobs.config.backups.secondary_directory / "daily").glob("*.db.gz"):
        path.write_bytes(path.read_bytes()[:100])


def break_offsite(jobs, client, bucket):
    for item in client.list_objects_v2(Bucket=bucket)["Contents"]:
        if item["Key"].endswith(".db.gz"):
            client.delete_object(Bucket=bucket, Key=item["Key"])


def break_replica(jobs, client, bucket):
    wait_for(jobs.pitr.window, timeout=30, what="the replica to hold something")
    jobs.pitr.stop()
    shutil.rmtree(jobs.config.backups.litestream.replica_directory)


@pytest.mark.parametrize("broken, damage", [("local", break_local), ("secondary", break_secondary),
                                            ("offsite", break_offsite), ("replica", break_replica)])
def test_one_broken_location_fails_alone_and_is_named(kit, broken, damage):
    jobs, client, bucket, config = kit
    damage(jobs, client, bucket)
    results = drill(jobs)
    assert not results[broken].ok and results[broken].error
    assert all(r.ok for name, r in results.items() if name != broken), [r.line() for r in results.values()]
    status = catalog.read_status(config.backups.directory)
    assert status.drills[broken].last_failure_at and status.drills[broken].last_error
    assert broken in status.drill.last_error  # the drill as a whole names the failing location
