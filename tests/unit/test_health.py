"""Health checks: thresholds from config turn readings into ok, degraded or down."""

from __future__ import annotations

import sqlite3

from opsmon.config import parse_config
from exporter.health import check_health
from tests.conftest import FIXTURES
from tests.fakes import FakeResponse, FakeSession, Statvfs, fake_psutil


def config_for(tmp_path, **exporter):
    db = tmp_path / "app.db"
    with sqlite3.connect(db) as connection:
        connection.execute("CREATE TABLE IF NOT EXISTS videos (id INTEGER PRIMARY KEY)")
    connection.close()
    return parse_config({"database": {"path": str(db)}, "exporter": exporter}, "test.yml", tmp_path)


def statuses(report) -> dict:
    return {c["component"]: c["status"] for c in report["checks"]}


def disk(free_ratio):
    return lambda path: Statvfs(1000, int(1000 * free_ratio), 4096, 100, 50)


def test_all_ok(tmp_path):
    report = check_health(config_for(tmp_path), FakeSession({}), ps=fake_psutil(), statvfs=disk(0.5))
    assert report["status"] == "ok"
    assert statuses(report) == {"database": "ok", "disk": "ok", "memory": "ok", "cpu": "ok"}


def test_disk_below_warning_degrades_and_below_critical_is_down(tmp_path):
    config = config_for(tmp_path)
    assert check_health(config, FakeSession({}), ps=fake_psutil(), statvfs=disk(0.05))["status"] == "degraded"
    report = check_health(config, FakeSession({}), ps=fake_psutil(), statvfs=disk(0.01))
    assert report["status"] == "down"
    assert report["checks"][1]["detail"] == "1.0% free where the database lives"


def test_thresholds_come_from_config(tmp_path):
    config = config_for(tmp_path, health={"memory_available_ratio": {"warning": 0.9, "critical": 0.5}})
    report = check_health(config, FakeSession({}), ps=fake_psutil(available=6 * 2**30), statvfs=disk(0.5))
    assert statuses(report)["memory"] == "degraded"  # 75 % available is below the 90 % warning
    assert report["checks"][2]["thresholds"] == {"warning_available_ratio": 0.9, "critical_available_ratio": 0.5}


def test_overloaded_cpu_is_degraded_not_down(tmp_path):
    report = check_health(config_for(tmp_path), FakeSession({}), ps=fake_psutil(load=(40.0, 1, 1)),
                          statvfs=disk(0.5))
    assert statuses(report)["cpu"] == "degraded" and report["status"] == "degraded"


def test_a_failing_service_degrades(tmp_path):
    config = config_for(tmp_path, probes=[{"service": "payments", "url": "http://pay.test/"}])
    report = check_health(config, FakeSession({"http://pay.test/": FakeResponse(500)}), ps=fake_psutil(),
                          statvfs=disk(0.5))
    assert statuses(report)["service:payments"] == "degraded"
    assert report["status"] == "degraded"


def test_unreadable_database_is_down(tmp_path):
    config = config_for(tmp_path)
    config.database.path.write_bytes(b"this is not a database file at all, not even close" * 100)
    report = check_health(config, FakeSession({}), ps=fake_psutil(), statvfs=disk(0.5))
    assert statuses(report)["database"] == "down" and report["status"] == "down"
    assert "file is not a database" in report["checks"][0]["detail"]


def test_a_0_byte_or_emptied_database_is_down(tmp_path):
    config = config_for(tmp_path)
    config.database.path.write_bytes(b"")
    report = check_health(config, FakeSession({}), ps=fake_psutil(), statvfs=disk(0.5))
    assert statuses(report)["database"] == "down" and "holds no tables (0 bytes)" in report["checks"][0]["detail"]


def test_backups_degrade_when_a_tier_is_missing_or_a_backup_fails(tmp_path):
    db = tmp_path / "app.db"
    sqlite3.connect(db).close()
    config = parse_config({"database": {"path": str(db)}, "backups": {"directory": str(FIXTURES / "catalog")}},
                          "test.yml", tmp_path)
    report = check_health(config, FakeSession({}), ps=fake_psutil(), statvfs=disk(0.5),
                          clock=lambda: 1_795_600_000.0)  # 2026-11-26T09:06Z, 7 h after the last daily
    backups = report["checks"][-1]
    assert backups["status"] == "degraded"
    assert backups["detail"] == "no verified monthly backup; 1 backup(s) fail verification"
