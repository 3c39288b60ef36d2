"""3-2-1: copies in a second folder and in a real S3-compatible server (moto, on loopback), verified and pruned."""

from __future__ import annotations

import json

import pytest
import yaml

from opsmon import catalog
from tests.backup_helpers import demo_database, opsmon_backup
from tests.conftest import free_port, new_bucket


@pytest.fixture
def setup(tmp_path, s3):
    client, bucket = new_bucket(s3, tmp_path)
    db = demo_database(tmp_path / "live.db")
    config = tmp_path / "opsmon.yml"
    config.write_text(yaml.safe_dump({
        "database": {"path": str(db)},
        "backups": {"directory": "backups", "secondary_directory": "second-disk", "retention": {"daily": 2},
                    "offsite": {"bucket": bucket, "prefix": "demo", "endpoint_url": s3,
                                "access_key_id_file": "key-id", "secret_access_key_file": "secret"}}}))
    return config, client, bucket, tmp_path


def objects(client, bucket) -> list[str]:
    return sorted(item["Key"] for item in client.list_objects_v2(Bucket=bucket).get("Contents", []))


def test_each_backup_reaches_both_copies_and_pruning_follows(setup):
    config, client, bucket, tmp_path = setup
    ids = [opsmon_backup("--config.file", config, "create", check=True).stdout.strip() for _ in range(3)]
    kept = ids[1:]  # retention keeps 2 daily backups
    expected = sorted(f"demo/daily/{i}{suffix}" for i in kept for suffix in (".db.gz", ".json"))
    assert objects(client, bucket) == expected
    second = sorted(str(p.relative_to(tmp_path / "second-disk")) for p in (tmp_path / "second-disk").glob("*/*"))
    assert second == [k.removeprefix("demo/") for k in expected]
    for backup_id in kept:  # the offsite bytes are the local bytes
        remote = client.get_object(Bucket=bucket, Key=f"demo/daily/{backup_id}.db.gz")["Body"].read()
        assert remote == (tmp_path / "backups" / "daily" / f"{backup_id}.db.gz").read_bytes()
    status = catalog.read_status(tmp_path / "backups").copies
    assert status["offsite"].last_success_at > 0 and status["offsite"].last_error is None
    assert status["secondary"].last_success_at > 0


def test_an_unreachable_bucket_keeps_the_local_backup_and_says_so(setup):
    config, client, bucket, tmp_path = setup
    document = yaml.safe_load(config.read_text())
    document["backups"]["offsite"]["endpoint_url"] = f"http://127.0.0.1:{free_port()}"  # nobody listens
    config.write_text(yaml.safe_dump(document))
    result = opsmon_backup("--config.file", config, "create", timeout=300)
    assert result.returncode == 0
    backup_id = result.stdout.strip()
    assert (tmp_path / "backups" / "daily" / f"{backup_id}.db.gz").exists()
    assert (tmp_path / "second-disk" / "daily" / f"{backup_id}.db.gz").exists()
    assert "copy to offsite failed" in result.stderr
    status = catalog.read_status(tmp_path / "backups").copies
    assert "offsite" in status and status["offsite"].last_success_at is None
    assert "Could not connect" in status["offsite"].last_error
    assert json.loads((tmp_path / "backups" / "daily" / f"{backup_id}.json").read_text())["verification"]["ok"]
