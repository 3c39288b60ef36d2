"""The backup service looks after Litestream and signals while a long job runs: a 1 GiB backup on a
real `opsmon-backup serve` with the real Litestream binary."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time
from contextlib import closing

import psutil
import pytest
import requests
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.backup_helpers import demo_database, opsmon_backup
from tests.conftest import free_port, stop, wait_for

pytestmark = pytest.mark.slow

GIB = 1 << 30


def big_database(path):
    """The demo schema with 1 GiB of incompressible rows beside it: a backup of it takes a while."""
    demo_database(path, videos=100)
    with closing(sqlite3.connect(path)) as connection:
        connection.execute("CREATE TABLE padding (bytes BLOB)")
        connection.execute("INSERT INTO padding SELECT randomblob(1048576) FROM generate_series(1, 1024)"
                           if sqlite3.sqlite_version_info >= (3, 42) else
                           "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1024) "
                           "INSERT INTO padding SELECT randomblob(1048576) FROM n")
        connection.commit()
    assert path.stat().st_size > GIB
    return path


def gauges(url: str) -> dict:
    text = requests.get(url, timeout=5).text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for f in text_string_to_metric_families(text) for s in f.samples}


def litestream_pid(service: subprocess.Popen) -> int | None:
    """The replicator's pid: not a `litestream ltx` the service runs now and then to read the replica's window."""
    children = psutil.Process(service.pid).children(recursive=True)
    return next((c.pid for c in children if c.name() == "litestream" and "replicate" in c.cmdline()
                 and c.status() != psutil.STATUS_ZOMBIE), None)


def test_litestream_and_sigterm_are_looked_after_during_a_1_gib_backup(tmp_path):
    database = big_database(tmp_path / "live.db")
    port, litestream_port = free_port(), free_port()
    config = tmp_path / "opsmon.yml"
    config.write_text(yaml.safe_dump({
        "database": {"path": str(database)},
        "backups": {"directory": str(tmp_path / "backups"), "listen_address": f"127.0.0.1:{port}",
                    "litestream": {"enabled": True, "replica_directory": str(tmp_path / "replica"),
                                   "metrics_address": f"127.0.0.1:{litestream_port}"}}}))
    log = tmp_path / "serve.log"
    service = subprocess.Popen([sys.executable, "-m", "backup_jobs", "--config.file", str(config), "serve"],
                               stdout=open(log, "wb"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/metrics"
    daily_running = ("opsmon_backup_job_running", (("backup_job", "backup-daily"),))
    try:
        # No backup yet: the daily one is due at once, and runs for a while on 1 GiB. Litestream serving
        # its metrics has started (and said so in the log) before it is killed.
        wait_for(lambda: gauges(url).get(daily_running) == 1 and litestream_pid(service)
                 and requests.get(f"http://127.0.0.1:{litestream_port}/metrics", timeout=2).ok, timeout=60,
                 what="the first backup running beside Litestream")
        first = litestream_pid(service)
        psutil.Process(first).kill()
        killed = time.monotonic()
        again = wait_for(lambda: (pid := litestream_pid(service)) not in (None, first) and pid, timeout=15,
                         interval=0.2, what="Litestream started again")
        restarted_after = time.monotonic() - killed
        assert gauges(url).get(daily_running) == 1, "the backup was still running when Litestream came back"
        assert restarted_after < 10, restarted_after
        print(f"\nLitestream killed during the backup: running again (pid {again}) after {restarted_after:.1f} s")

        service.send_signal(signal.SIGTERM)
        asked = time.monotonic()
        service.wait(15)
        print(f"SIGTERM during the backup: the service stopped after {time.monotonic() - asked:.1f} s")
        assert time.monotonic() - asked < 10
        assert not psutil.pid_exists(again) or psutil.Process(again).status() == psutil.STATUS_ZOMBIE
    finally:
        stop(service)
    output = log.read_text()
    assert "litestream exited" in output  # the death was seen, and said so
    assert " litestream: " in output  # Litestream's own lines, under its own name

    # The next command cleans up what the cut-short backup left, and what is in the catalog is sound.
    verified = opsmon_backup("--config.file", config, "verify", "--all", timeout=600)
    assert verified.returncode == 0, verified.stderr
    assert list((tmp_path / "backups").glob(".tmp/*")) == []
