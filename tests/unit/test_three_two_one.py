"""The 3-2-1 rule (opsmon.three_two_one), which the exporter publishes as opsmon_backup_rule_321_satisfied: three
fresh copies (the live database among them), on two media, one offsite; a stale copy does not count."""

from __future__ import annotations

import time

import yaml

from backup_jobs.jobs import Jobs
from exporter.collectors.backup import BackupCollector
from opsmon import catalog
from opsmon.config import load_config
from opsmon.three_two_one import three_two_one
from tests.backup_helpers import demo_database
from tests.conftest import exposition

DAY = 86400


def kit(tmp_path, **backups):
    demo_database(tmp_path / "live.db")
    (tmp_path / "opsmon.yml").write_text(yaml.safe_dump({
        "database": {"path": "live.db", "name": "demo"},
        "backups": {"directory": "backups", "secondary_directory": "second-disk", **backups}}))
    config = load_config(tmp_path / "opsmon.yml")
    Jobs(config).backup("daily")  # made, verified, copied to the second folder
    return config


def rule(config, now: float | None = None):
    return three_two_one(catalog.read_catalog(config.backups.directory), config, now or time.time())


def published(config) -> str:
    text = exposition(BackupCollector(config.backups.directory, "demo", policy=config))
    return next(line for line in text.splitlines() if line.startswith("opsmon_backup_rule_321_satisfied{"))


def test_copies_on_one_disk_are_three_but_not_two_media_nor_offsite(tmp_path):
    config = kit(tmp_path)
    found = rule(config)
    assert (found.copies, found.media, found.offsite, found.satisfied) == (3, 1, False, False)
    assert found.text() == "3 fresh copies (the database among them) on 1 medium, none offsite"
    assert published(config) == 'opsmon_backup_rule_321_satisfied{database="demo"} 0.0'


def test_a_fresh_copy_in_a_bucket_makes_it_and_a_stale_one_does_not(tmp_path):
    config = kit(tmp_path)
    now = time.time()
    catalog.record_copy(config.backups.directory, "offsite", now - 60)
    found = rule(config, now)
    assert (found.copies, found.media, found.offsite, found.satisfied) == (4, 2, True, True)
    assert published(config) == 'opsmon_backup_rule_321_satisfied{database="demo"} 1.0'
    # Two days on, with no new copy: the bucket's copy (and every backup) is no longer fresh.
    assert rule(config, now + 2 * DAY).satisfied is False
    assert rule(config, now + 2 * DAY).copies == 1


def test_a_failed_copy_keeps_its_last_success_only(tmp_path):
    config = kit(tmp_path)
    now = time.time()
    catalog.record_copy(config.backups.directory, "offsite", now - 3 * DAY)
    catalog.record_copy(config.backups.directory, "offsite", now, error="the bucket refused the upload")
    assert rule(config, now).offsite is False


def test_a_replica_in_a_bucket_counts_offsite_and_one_on_disk_does_not(tmp_path):
    config = kit(tmp_path, litestream={"enabled": True, "replica_directory": "replica"})
    now = time.time()
    catalog.record_pitr(config.backups.directory, now - 3600, now - 5)
    on_disk = rule(config, now)
    assert (on_disk.copies, on_disk.offsite) == (4, False)
    in_bucket = config.model_copy(update={"backups": config.backups.model_copy(
        update={"litestream": config.backups.litestream.model_copy(update={"replica_directory": None})})})
    assert rule(in_bucket, now).offsite is True
