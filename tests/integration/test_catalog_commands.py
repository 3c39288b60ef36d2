"""The catalog as the real opsmon-backup command writes and reads it: a manifest read back field for field,
and the commands going on beside a bad manifest and a broken status."""

from __future__ import annotations

import json

from opsmon import catalog
from opsmon.catalog import FORMAT_VERSION
from tests.backup_helpers import demo_database, opsmon_backup


def test_a_manifest_written_is_read_back_field_for_field(tmp_path):
    db = demo_database(tmp_path / "live.db")
    backup_id = opsmon_backup("--database", db, "--backup-dir", tmp_path / "b", "create", check=True).stdout.strip()
    path = tmp_path / "b" / "daily" / f"{backup_id}.json"
    on_disk = json.loads(path.read_text())
    record = catalog.read_manifest(path)
    assert record.manifest.model_dump(mode="json") == on_disk
    assert on_disk["version"] == FORMAT_VERSION
    assert set(on_disk) == {"version", "id", "tier", "sequence", "database", "backup", "sqlite_version", "started_at",
                            "finished_at", "verification"}
    assert record.as_json()["id"] == backup_id and record.verified is True


def test_commands_go_on_beside_a_bad_manifest_and_a_broken_status(tmp_path):
    db = demo_database(tmp_path / "live.db")
    args = ("--database", db, "--backup-dir", tmp_path / "backups")
    opsmon_backup(*args, "create", check=True)
    bad = tmp_path / "backups" / "daily" / "20261120T020000Z-daily.json"
    bad.write_text("[1]")
    (tmp_path / "backups" / "status.json").write_text('{"integrity": {"checked_at": "yesterday"')
    listing = opsmon_backup(*args, "list", "--json")
    assert listing.returncode == 0 and len(json.loads(listing.stdout)) == 1
    assert str(bad) in listing.stderr and "not a JSON object" in listing.stderr
    created = opsmon_backup(*args, "create")
    assert created.returncode == 0, created.stderr
    verified = opsmon_backup(*args, "verify", "--all")
    assert verified.returncode == 3 and str(bad) in verified.stderr and "Traceback" not in verified.stderr
    assert bad.read_text() == "[1]"  # left as it is for a person to look at
    assert catalog.read_status(tmp_path / "backups").problems() == []  # healed by verify's write
    checked = opsmon_backup(*args, "check")
    assert checked.returncode == 0, checked.stderr
