"""The catalog's one writer and one reader per record: round trips, the version-1 files of before, and
broken or foreign files reported by name, never raised and never skipped in silence."""

from __future__ import annotations

import json
import shutil

import pytest

from exporter.collectors.backup import BackupCollector
from exporter.collectors.database import DatabaseCollector
from exporter.health import backup_check
from opsmon import catalog
from opsmon.catalog import FORMAT_VERSION, IntegrityStatus, Status
from tests.backup_helpers import demo_database
from tests.conftest import FIXTURES, exposition

DEMO, LEDGER = "/srv/app/demo.db", "/srv/ledger/ledger.db"
BY = catalog.Origin(config_file="/etc/opsmon.yml", via="cli", command="create --tier daily")
EVERY_WRITER = [
    lambda d: catalog.record_backup_failure(d, "daily", 10.0, "disk full", database=DEMO, by=BY),
    lambda d: catalog.record_verify(d, 20.0, passed=True, by=BY),
    lambda d: catalog.record_copy(d, "offsite", 30.0, "bucket unreachable"),
    lambda d: catalog.record_copy(d, "secondary", 31.0, by=BY),
    lambda d: catalog.record_restore(d, 40.0, "backup x", ["videos"], "20261126T020000Z-safety", by=BY),
    lambda d: catalog.record_drill(d, 50.0, 55.0, "20261126T020000Z-daily", None),
    lambda d: catalog.record_drill(d, 60.0, 61.0, None, "no verified backup", by=BY),
    lambda d: catalog.record_integrity(d, IntegrityStatus(checked_at=70.0, ok=False, integrity_problems=["p"],
                                                           foreign_key_violations=2, rule_violations={"r": 3},
                                                           by=BY)),
    lambda d: catalog.record_pitr(d, 80.0, 90.0),
    lambda d: catalog.record_location_drill(d, "replica", 95.0, "the replica up to x", None, 2.5, 4.0, by=BY),
    lambda d: catalog.record_location_drill(d, "offsite", 96.0, None, "bucket object missing"),
    lambda d: catalog.record_backup_failure(d, "weekly", 97.0, "holds backups of another database", database=LEDGER,
                                            by=BY),
]
ORIGIN = BY.model_dump()


def test_every_status_key_written_is_read_back_the_same(tmp_path):
    for write in EVERY_WRITER:
        write(tmp_path)
    status = catalog.read_status(tmp_path)
    assert status.problems() == []
    assert status.model_dump() == {
        "version": FORMAT_VERSION,
        "database": DEMO,  # the first database to write claimed the folder; the ledger's is under others
        "tiers": {"daily": {"last_failure_at": 10.0, "last_error": "disk full", "by": ORIGIN}},
        "verify": {"last_run_at": 20.0, "last_success_at": 20.0, "by": ORIGIN},
        "copies": {"offsite": {"last_success_at": None, "last_error": "bucket unreachable", "by": None},
                   "secondary": {"last_success_at": 31.0, "last_error": None, "by": ORIGIN}},
        "restore": {"last_success_at": 40.0, "source": "backup x", "tables": ["videos"],
                    "safety_backup": "20261126T020000Z-safety", "by": ORIGIN},
        "drill": {"last_run_at": 60.0, "last_success_at": 55.0, "last_failure_at": 61.0,
                  "last_error": "no verified backup", "backup": "20261126T020000Z-daily", "by": ORIGIN},
        "integrity": {"checked_at": 70.0, "by": ORIGIN, "ok": False, "integrity_problems": ["p"],
                      "foreign_key_violations": 2, "rule_violations": {"r": 3}},
        "pitr": {"earliest_at": 80.0, "last_replicated_at": 90.0},
        "drills": {"replica": {"by": ORIGIN, "last_run_at": 95.0, "last_success_at": 95.0, "last_failure_at": None,
                               "last_error": None, "source": "the replica up to x", "rto_seconds": 2.5,
                               "rpo_seconds": 4.0},
                   "offsite": {"by": None, "last_run_at": 96.0, "last_success_at": None, "last_failure_at": 96.0,
                               "last_error": "bucket object missing", "source": None, "rto_seconds": None,
                               "rpo_seconds": None}},
        "others": {LEDGER: {
            "tiers": {"weekly": {"last_failure_at": 97.0, "last_error": "holds backups of another database",
                                 "by": ORIGIN}},
            "verify": {"last_run_at": None, "last_success_at": None, "by": None}, "copies": {}, "restore": None,
            "drill": {"last_run_at": None, "last_success_at": None, "last_failure_at": None, "last_error": None,
                      "backup": None, "by": None},
            "drills": {}, "integrity": None, "pitr": None}},
    }
    # Every key of the record has a writer above: a new key without one makes this test fail.
    assert all(value is not None for value in status.model_dump().values())
    ledger = catalog.read_status(tmp_path, LEDGER)  # each database reads its own sections, never the other's
    assert ledger.tiers["weekly"].last_error == "holds backups of another database" and "daily" not in ledger.tiers
    assert ledger.integrity is None and ledger.drills == {} and ledger.verify.last_success_at is None
    assert catalog.read_status(tmp_path, DEMO).tiers.keys() == {"daily"}


def test_the_version_1_files_of_before_stay_readable():
    # tests/fixtures/catalog was written by the first opsmon: no version key, fewer fields.
    current = catalog.read_catalog(FIXTURES / "catalog")
    assert current.problems == [] and current.status.problems() == []
    assert [b.id for b in current.backups] == ["20261122T030000Z-weekly", "20261124T020000Z-daily",
                                               "20261125T020000Z-daily", "20261126T020000Z-daily"]
    assert current.status.integrity.rule_violations == {"approval_without_processing": 0, "negative_revenue": 3}
    assert current.newest_verified("daily").id == "20261125T020000Z-daily"
    assert current.status.drills == {"local": catalog.LocationDrill(last_success_at=1764126000.0)}  # `drill` alone


@pytest.fixture
def fixture_catalog(tmp_path):
    directory = tmp_path / "backups"
    shutil.copytree(FIXTURES / "catalog", directory)
    return directory


@pytest.mark.parametrize("content, problem", [
    (b"[1]", "not a JSON object"),
    (b'{"id": "20261120T020000Z-daily", "tier": "daily", "started_at": 1}', "started_at"),
    (b"\xff\xfe garbage", "not valid JSON"),
    (b"", "not valid JSON"),
    (b'{"version": 2, "id": "20261120T020000Z-daily"}', "written by a newer opsmon (format 2"),
    (b'{"version": "1"}', "version: not a format version"),
])
def test_a_bad_manifest_is_named_and_everything_else_goes_on(fixture_catalog, content, problem):
    bad = fixture_catalog / "daily" / "20261120T020000Z-daily.json"
    bad.write_bytes(content)
    current = catalog.read_catalog(fixture_catalog)
    assert len(current.backups) == 4 and len(current.problems) == 1
    assert str(bad) in current.problems[0] and problem in current.problems[0]
    text = exposition(BackupCollector(fixture_catalog, "demo"))
    assert 'opsmon_backup_manifests_unreadable{database="demo"} 1.0' in text
    assert 'opsmon_backup_retained{database="demo",tier="daily"} 3.0' in text
    assert problem in backup_check(fixture_catalog, {"daily": 1e12, "weekly": 1e12, "monthly": 1e12}, 0)["detail"]


def test_a_manifest_that_claims_another_place_is_refused(fixture_catalog):
    moved = fixture_catalog / "weekly" / "20261125T020000Z-daily.json"
    shutil.copy(fixture_catalog / "daily" / "20261125T020000Z-daily.json", moved)
    current = catalog.read_catalog(fixture_catalog)
    assert any(str(moved) in p and "does not belong at this path" in p for p in current.problems)


@pytest.mark.parametrize("status, broken_key", [
    ({"integrity": {"checked_at": "yesterday", "ok": True}}, "integrity.checked_at"),
    ({"integrity": {"checked_at": 1.0, "ok": True, "foreign_key_violations": "many"}},
     "integrity.foreign_key_violations"),
    ({"integrity": {"checked_at": 1.0, "ok": True, "rule_violations": {"r": None}}}, "integrity.rule_violations.r"),
    ({"integrity": {"checked_at": float("nan"), "ok": True}}, "integrity.checked_at"),
])
def test_one_bad_value_fails_only_the_collector_that_reads_it(fixture_catalog, tmp_path, status, broken_key):
    (fixture_catalog / "status.json").write_text(json.dumps(status))
    db = demo_database(tmp_path / "app.db", videos=5)
    with pytest.raises(catalog.CatalogError, match=broken_key.replace(".", r"\.")):
        list(DatabaseCollector(db, "demo", fixture_catalog).collect())
    assert "opsmon_backup_retained" in exposition(BackupCollector(fixture_catalog, "demo"))


@pytest.mark.parametrize("content", [b'{"verify": {"last_run_at": 1', b"\x00\x01", b"[]", b'"text"', b"null"])
def test_a_broken_status_is_reported_and_healed_by_the_next_write(fixture_catalog, content):
    (fixture_catalog / "status.json").write_bytes(content)
    status = catalog.read_status(fixture_catalog)
    assert status.problems() and "status.json" in status.problems()[0]
    with pytest.raises(catalog.CatalogError):
        list(BackupCollector(fixture_catalog, "demo").collect())
    catalog.record_verify(fixture_catalog, 5.0, passed=True)
    healed = catalog.read_status(fixture_catalog)
    assert healed.problems() == [] and healed.verify.last_success_at == 5.0
    assert "opsmon_backup_retained" in exposition(BackupCollector(fixture_catalog, "demo"))


def test_a_status_of_a_newer_format_is_never_written_over(fixture_catalog):
    newer = {"version": FORMAT_VERSION + 1, "something": {"new": 1}}
    (fixture_catalog / "status.json").write_text(json.dumps(newer))
    catalog.record_verify(fixture_catalog, 5.0, passed=True)
    assert json.loads((fixture_catalog / "status.json").read_text()) == newer
    assert "newer opsmon" in catalog.read_status(fixture_catalog).problems()[0]


def test_status_defaults_read_as_never():
    assert Status().verify.last_success_at is None and Status().integrity is None
