"""Each collector's exposition from fixed inputs, compared with tests/golden/*.prom, which promtool accepts."""

from __future__ import annotations

import os
import shutil
import pytest
import requests

from exporter.collectors.backup import BackupCollector
from exporter.collectors.business import BusinessCollector
from exporter.collectors.database import DatabaseCollector
from exporter.collectors.footprint import FootprintCollector, FootprintError, folder_bytes
from exporter.collectors.gpu import GpuCollector
from exporter.collectors.logs import LogsCollector
from exporter.collectors.probes import ProbesCollector
from exporter.collectors.process import ProcessCollector
from exporter.collectors.system import SystemCollector
from opsmon.catalog import FUTURE_TOLERANCE_SECONDS, to_timestamp
from opsmon.config import BusinessQueryConfig, LogSourceConfig, ProbeConfig, ProcessConfig
from tests.conftest import FIXTURES, assert_golden, exposition
from tests.fakes import (FakeClock, FakeNvml, FakeProcess, FakeResponse, FakeSession, fake_process_table,
                         fake_psutil, fake_statvfs)


def test_system():
    assert_golden("system", exposition(SystemCollector(ps=fake_psutil(), statvfs=fake_statvfs,
                                                       clock=FakeClock(1764720000.0))))


def test_process(tmp_path):
    pidfile = tmp_path / "app.pid"
    pidfile.write_text("100\n")
    table = fake_process_table([
        FakeProcess(100, "python3", ["python3", "-m", "demo", "serve"]),
        FakeProcess(200, "nginx", ["nginx: master process"], rss=10 * 2**20, created=1_700_000_000.0),
        FakeProcess(201, "nginx", ["nginx: worker process"], rss=20 * 2**20),
    ])
    watched = [ProcessConfig(name="demo", pidfile=pidfile), ProcessConfig(name="nginx", match="^nginx"),
               ProcessConfig(name="gone", pidfile=tmp_path / "missing.pid")]
    assert_golden("process", exposition(ProcessCollector(watched, ps=table)))


@pytest.mark.gpu
def test_gpu_with_a_fake_nvml():
    """CI has no GPU: a fake NVML module stands in for the driver, one reading answering NotSupported."""
    assert_golden("gpu", exposition(GpuCollector(nvml=FakeNvml())))


@pytest.mark.gpu
def test_gpu_absent_publishes_nothing():
    assert exposition(GpuCollector(nvml=FakeNvml(present=False))) == ""


def test_probes():
    clock = FakeClock()
    session = FakeSession({
        "http://api.test/ok": FakeResponse(200, '{"status": "ok"}'),
        "http://api.test/degraded": FakeResponse(200, '{"status": "degraded"}'),
        "http://api.test/broken": FakeResponse(503),
        "http://api.test/down": requests.ConnectionError("refused"),
        "http://api.test/slow": requests.ReadTimeout("read timed out"),
    }, clock=clock)
    probes = [
        ProbeConfig(service="ok", url="http://api.test/ok", body_regex='"ok"'),
        ProbeConfig(service="wrong-body", url="http://api.test/degraded", body_regex='"ok"'),
        ProbeConfig(service="broken", url="http://api.test/broken"),
        ProbeConfig(service="down", url="http://api.test/down"),
        ProbeConfig(service="slow", url="http://api.test/slow"),
    ]
    assert_golden("probes", exposition(ProbesCollector(probes, session=session, clock=clock)))


def test_logs(tmp_path):
    (tmp_path / "app.jsonl").write_text(
        '{"level": "INFO", "message": "started"}\n{"level": "warn", "message": "slow"}\n'
        '{"levelname": "ERROR", "message": "failed"}\nnot json at all\n{"level": "INFO", "message": "part')
    (tmp_path / "app.log").write_text(
        "2026-11-26 10:00:00 INFO started\n2026-11-26 10:00:01 ERROR disk failed\n"
        "ts=1 level=warning msg=slow\nthe info word in prose is no level\nFATAL out of memory\n")
    sources = [LogSourceConfig(source="json-app", path=tmp_path / "app.jsonl", format="json"),
               LogSourceConfig(source="text-app", path=tmp_path / "app.log", format="text")]
    assert_golden("logs", exposition(LogsCollector(sources, tmp_path / "state.json", clock=FakeClock())))


def test_database(tmp_path):
    for name in ("app.db", "app.db-wal"):  # git keeps no modification times: pin them on a copy
        shutil.copy(FIXTURES / name, tmp_path / name)
    os.utime(tmp_path / "app.db", (1_795_600_000, 1_795_600_000))
    os.utime(tmp_path / "app.db-wal", (1_795_600_100, 1_795_600_100))
    assert_golden("database", exposition(DatabaseCollector(tmp_path / "app.db", "demo", FIXTURES / "catalog")))


def test_backup():
    read_at = to_timestamp("2026-11-26T10:12:04Z")  # after the fixture's newest backup
    assert_golden("backup", exposition(BackupCollector(FIXTURES / "catalog", "demo", clock=lambda: read_at)))


def test_backup_counts_the_backups_stamped_after_the_clock():
    """Read six hours before the fixture's newest backup (02:00): that one is future-dated, the one of
    the day before is not, and one stamped within the tolerance of now is not counted either."""
    text = exposition(BackupCollector(FIXTURES / "catalog", "demo",
                                      clock=lambda: to_timestamp("2026-11-25T20:00:00Z")))
    assert 'opsmon_backup_future_dated{database="demo"} 1.0' in text
    within_tolerance = to_timestamp("2026-11-26T02:00:00Z") - FUTURE_TOLERANCE_SECONDS + 1
    text = exposition(BackupCollector(FIXTURES / "catalog", "demo", clock=lambda: within_tolerance))
    assert 'opsmon_backup_future_dated{database="demo"} 0.0' in text


def test_backup_with_an_empty_catalog_says_never(tmp_path):
    text = exposition(BackupCollector(tmp_path / "none-yet", "demo"))
    assert 'opsmon_backup_last_success_timestamp_seconds{database="demo",tier="monthly"} 0.0' in text
    assert 'opsmon_backup_retained{database="demo",tier="daily"} 0.0' in text


def test_business(tmp_path):
    import sqlite3

    db = tmp_path / "app.db"
    with sqlite3.connect(db) as connection:
        connection.executescript(
            "CREATE TABLE processed (id INTEGER PRIMARY KEY, kind TEXT);"
            "INSERT INTO processed (kind) VALUES ('short'), ('short'), ('long');")
    queries = [
        BusinessQueryConfig(name="business_videos_queued", help="Videos waiting now.",
                            query="SELECT count(*) AS value FROM processed", refresh_seconds=60),
        BusinessQueryConfig(name="business_videos_by_kind", help="Videos by kind.", labels=["kind"],
                            query="SELECT kind, count(*) AS value FROM processed GROUP BY kind ORDER BY kind",
                            refresh_seconds=86400),
        BusinessQueryConfig(name="business_broken", help="A query on a table that is not there.",
                            query="SELECT count(*) AS value FROM nowhere"),
    ]
    collector = BusinessCollector(queries, db, clock=FakeClock(), wall=lambda: 1_764_150_000.0)
    assert_golden("business", exposition(collector))


def test_footprint():
    """Each part's bytes from a fixture folder; the replica not created yet reads 0; logs count rotated siblings."""
    root = FIXTURES / "footprint"
    folders = {"backups": root / "backups", "secondary": root / "secondary", "replica": root / "no-replica-yet",
               "exporter_state": root / "state"}
    assert_golden("footprint", exposition(FootprintCollector(folders, [root / "logs" / "app.log"])))


def test_footprint_does_not_follow_links(tmp_path):
    """A link to a big file elsewhere is not the kit's data."""
    (tmp_path / "backups").mkdir()
    (tmp_path / "big").write_bytes(b"x" * 4096)
    (tmp_path / "backups" / "link").symlink_to(tmp_path / "big")
    assert folder_bytes(tmp_path / "backups") == 0


def test_footprint_folder_that_cannot_be_read_fails_the_collector_naming_it(tmp_path):
    """A file where the backup folder should be (root reads any folder, so a mode cannot stand in here)."""
    (tmp_path / "backups").write_text("not a folder\n")
    with pytest.raises(FootprintError, match=f"{tmp_path / 'backups'} is not a folder"):
        exposition(FootprintCollector({"backups": tmp_path / "backups"}, []))
