"""The backup service: schedules with catch-up after downtime, Litestream supervised, its /metrics."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timezone

import requests

from opsmon import catalog
from backup_jobs.jobs import Jobs
from backup_jobs.service import Job, Scheduler, serve
from tests.backup_helpers import backups_config, demo_database
from tests.conftest import free_port, wait_for
from tests.fakes import FakeClock


def at(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc).timestamp()


def test_a_job_runs_at_its_cron_time_in_the_configured_zone():
    clock = FakeClock(at("2026-11-25T12:00:00"))
    runs = []
    job = Job("backup-daily", "0 2 * * *", lambda: None, last_run=at("2026-11-25T01:00:00") + 3600)
    scheduler = Scheduler([job], "Europe/Berlin", clock)  # 02:00 in Berlin is 01:00 UTC in November
    assert job.next_run == at("2026-11-26T01:00:00")
    clock.now = at("2026-11-26T00:59:59")
    scheduler.run_due(lambda j: runs.append(clock.now))
    assert runs == []
    clock.now = at("2026-11-26T01:00:00")
    scheduler.run_due(lambda j: runs.append(clock.now))
    assert runs == [at("2026-11-26T01:00:00")]
    assert job.next_run == at("2026-11-27T01:00:00")


def test_after_three_days_down_a_missed_job_runs_once_at_start():
    clock = FakeClock(at("2026-11-26T09:00:00"))
    runs = []
    job = Job("backup-daily", "0 2 * * *", lambda: None, last_run=at("2026-11-23T02:00:05"))
    scheduler = Scheduler([job], "UTC", clock)
    scheduler.run_due(lambda j: runs.append(j.name))
    scheduler.run_due(lambda j: runs.append(j.name))
    assert runs == ["backup-daily"]
    assert job.next_run == at("2026-11-27T02:00:00")


def test_a_job_that_ran_on_time_is_not_repeated_at_start():
    clock = FakeClock(at("2026-11-26T09:00:00"))
    job = Job("backup-weekly", "0 3 * * 0", lambda: None, last_run=at("2026-11-22T03:00:02"))
    Scheduler([job], "UTC", clock)
    assert job.next_run == at("2026-11-29T03:00:00")


def test_a_failing_job_is_recorded_and_tried_at_its_next_time():
    clock = FakeClock(at("2026-11-26T09:00:00"))
    job = Job("check", "15 * * * *", lambda: None)

    def boom(j):
        raise RuntimeError("disk full")

    scheduler = Scheduler([job], "UTC", clock)
    scheduler.run_due(boom)
    assert job.last_failure == clock.now and job.last_success == 0
    assert job.next_run == at("2026-11-26T09:15:00")


def test_serve_catches_up_replicates_and_publishes_metrics(tmp_path):
    db = demo_database(tmp_path / "live.db")
    port, litestream_port = free_port(), free_port()
    config = backups_config(tmp_path, db, listen_address=f"127.0.0.1:{port}",
                            litestream={"enabled": True, "replica_directory": str(tmp_path / "replica"),
                                        "metrics_address": f"127.0.0.1:{litestream_port}"})
    jobs = Jobs(config)
    stop = threading.Event()
    thread = threading.Thread(target=serve, args=(jobs, stop))
    thread.start()
    try:
        url = f"http://127.0.0.1:{port}/metrics"

        def caught_up():
            text = requests.get(url, timeout=5).text
            return text if all(f'opsmon_backup_job_last_success_timestamp_seconds{{backup_job="{name}"}} 0.0' not in text
                               for name in ("backup-daily", "backup-weekly", "backup-monthly", "verify", "drill",
                                            "check")) else None

        text = wait_for(caught_up, timeout=60, interval=0.5, what="every missed job to run once")
        assert "opsmon_litestream_up 1.0" in text
        assert sorted(r.tier for r in jobs.store.records()) == ["daily", "monthly", "weekly"]
        status = wait_for(lambda: catalog.read_status(jobs.directory).pitr, timeout=30,
                          what="the replica's window in the status")
        assert status.last_replicated_at >= status.earliest_at > time.time() - 120
        assert requests.get(f"http://127.0.0.1:{port}/-/healthy", timeout=5).text == "Healthy\n"
        assert requests.get(f"http://127.0.0.1:{litestream_port}/metrics", timeout=5).ok  # Litestream's own
    finally:
        stop.set()
        thread.join(30)
    assert not jobs.pitr.running
