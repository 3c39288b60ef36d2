"""`opsmon-backup status` on real catalogs in every state: its exact lines, its exit status, its JSON, and
the alerts' thresholds it shares with prometheus/rules."""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import threading
from contextlib import closing
from pathlib import Path

import pytest
import yaml

from backup_jobs import report
from backup_jobs.humanize import seconds_text, size_text
from backup_jobs.jobs import Jobs
from backup_jobs.service import Scheduler, ServiceCollector, make_app, scheduled_jobs
from exporter.collectors.backup import BackupCollector
from opsmon import catalog, http
from opsmon.catalog import to_timestamp
from opsmon.config import load_config, parse_config
from opsmon.thresholds import Rules, shipped
from tests.backup_helpers import backups_config, demo_database, opsmon_backup
from tests.conftest import FIXTURES, REPO, free_port
from tests.fakes import FakeClock

NOW = "2026-11-26T10:12:04Z"
NEXT_RUNS = ("check in 2m 56s, backup-daily in 15h 47m, verify in 19h 17m, drill in 19h 47m, "
             "backup-weekly in 2d 16h, backup-monthly in 4d 17h")
RULES = [rule for group in yaml.safe_load((REPO / "prometheus" / "rules" / "backups.rules.yml").read_text())["groups"]
         for rule in group["rules"]]


# ---- the thresholds are the alerts' ------------------------------------------------------------

def test_every_alert_of_the_backups_is_marked_or_says_why_not():
    """An alert added to backups.rules.yml makes this fail until the status report marks it, or says why not."""
    marked = report.Limits.read(shipped()).alerts()
    assert {r["alert"] for r in RULES} == marked | set(report.NOT_MARKED)
    assert not marked & set(report.NOT_MARKED)


def test_the_report_marks_its_lines_at_the_thresholds_in_the_rules_it_reads(kit, tmp_path):
    """The report holds no number of its own: in a copy of the rules where a daily backup is stale after 2
    hours (not 26) and a copy after 1 hour (not 26), paging, the same catalog reads differently."""
    copy = tmp_path / "rules"
    shutil.copytree(REPO / "prometheus" / "rules", copy)
    backups = copy / "backups.rules.yml"
    text = backups.read_text().replace('{tier="daily"}[5m])) > 26 * 3600', '{tier="daily"}[5m])) > 2 * 3600', 1)
    copy_stale = text.index("alert: OpsmonBackupCopyStale")
    text = text[:copy_stale] + (text[copy_stale:].replace("> 26 * 3600", "> 3600", 1)
                                .replace("severity: warning", "severity: critical", 1))
    backups.write_text(text)
    kit.fresh()  # the daily backup and its copy were made 8 hours ago
    shipped_levels = {line.name: line.level for line in kit.status().lines}
    copy_levels = {line.name: line.level for line in kit.status(rules=Rules(copy)).lines}
    assert (shipped_levels["daily backup"], copy_levels["daily backup"]) == (report.OK, report.WARNING)
    assert (shipped_levels["copy secondary"], copy_levels["copy secondary"]) == (report.OK, report.PROBLEM)


# ---- a kit with a clock of its own, and a real backup service to answer /-/healthy -------------

class Kit:
    def __init__(self, tmp_path: Path, service, integrity: dict | None = None, videos: int = 300, **backups):
        """`service`: (port, start) from the fixture, or a bare port where no service listens."""
        self.port, self._start = service if isinstance(service, tuple) else (service, None)
        self.serving = False
        self.db = demo_database(tmp_path / "live.db", videos)
        port = self.port
        document = {"database": {"path": str(self.db)}, "integrity": integrity or {},
                    "backups": {"directory": str(tmp_path / "backups"), "listen_address": f"127.0.0.1:{port}",
                                "secondary_directory": str(tmp_path / "second-disk"), **backups}}
        self.config = parse_config(document, "test.yml", tmp_path)
        self.clock = FakeClock(to_timestamp(NOW))
        self.jobs = Jobs(self.config, clock=self.clock)
        self.directory = self.jobs.directory

    def at(self, moment: str) -> Kit:
        self.clock.now = to_timestamp(moment)
        return self

    def fresh(self) -> Kit:
        """Every job done on time: backups of each tier, verify, drill and check."""
        self.at("2026-11-01T04:00:00Z").jobs.backup("monthly")
        self.at("2026-11-22T03:00:00Z").jobs.backup("weekly")
        self.at("2026-11-26T02:00:00Z").jobs.backup("daily")
        self.at("2026-11-26T05:30:00Z").jobs.verify()
        self.at("2026-11-26T06:00:00Z").jobs.drill()
        self.at("2026-11-26T10:00:00Z").jobs.check()
        return self.at(NOW)

    def serve(self) -> Kit:
        """The backup service, its scheduler on this kit's clock: the jobs' next runs are computed now."""
        if self._start and not self.serving:
            self._start(self.jobs)
            self.serving = True
        return self

    def status(self, rules: Rules | None = None) -> report.StatusReport:
        self.serve()
        # The database was last written 4 s before now (its files' times are the real clock's otherwise).
        for part in (self.db, Path(f"{self.db}-wal")):
            if part.exists():
                os.utime(part, (self.clock.now - 4, self.clock.now - 4))
        return report.build(self.jobs, report.ask_service,
                            [(job.name, job.cron) for job in scheduled_jobs(self.jobs)], rules)

    # what the lines say of the files, computed from them
    def size(self, backup_id: str) -> str:
        return size_text(next(b for b in self.jobs.store.records() if b.id == backup_id).size_bytes)

    def database_size(self) -> str:
        return size_text(sum(p.stat().st_size for p in (self.db, Path(f"{self.db}-wal")) if p.exists()))

    def drill(self, location: str) -> catalog.LocationDrill:
        return catalog.read_status(self.directory).drills[location]


@pytest.fixture
def service():
    """The backup service's own HTTP app (/-/healthy, and /metrics from its scheduler and Litestream) on a
    free loopback port, started by the kit once its jobs are done: what `status` asks."""
    port, servers = free_port(), []

    def start(jobs):
        scheduler = Scheduler(scheduled_jobs(jobs), jobs.config.backups.timezone, jobs.clock)
        server = http.serve(make_app(ServiceCollector(scheduler, jobs.store.database, jobs.pitr)), f"127.0.0.1:{port}")
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)

    yield port, start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture
def kit(tmp_path, service):
    return Kit(tmp_path, service)


def lines(found: report.StatusReport) -> list[str]:
    return found.text().splitlines()


def at_line(text: list[str], name: str) -> int:
    """Where the line of `name` is (its mark takes the first 9 columns)."""
    return next(i for i, line in enumerate(text) if line[9:].startswith(name + "  "))


def test_fresh_backups_read_all_well(kit):
    found = kit.fresh().status()
    local, second = kit.drill("local"), kit.drill("secondary")
    assert lines(found) == [
        f"opsmon-backup status of {kit.db}, 2026-11-26 10:12 UTC",
        "",
        f"ok       database         {kit.database_size()}, last written 0m 4s ago",
        f"ok       daily backup     20261126T020000Z-daily, taken 8h 12m ago, {kit.size('20261126T020000Z-daily')}; "
        "1 kept of 7",
        f"ok       weekly backup    20261122T030000Z-weekly, taken 4d 7h ago, "
        f"{kit.size('20261122T030000Z-weekly')}; 1 kept of 4",
        f"ok       monthly backup   20261101T040000Z-monthly, taken 25d 6h ago, "
        f"{kit.size('20261101T040000Z-monthly')}; 1 kept of 12",
        "ok       verification     verify --all last passed 4h 42m ago",
        "ok       copy secondary   up to 20261126T020000Z-daily, synced 8h 12m ago",
        "off      point in time    no Litestream replica (backups.litestream): a restore to a moment uses the "
        "newest backup before it",
        "ok       exposure now     a disaster now would lose 8h 12m of data: the newest recoverable point is backup "
        "20261126T020000Z-daily, 2026-11-26 02:00 UTC; objective 1d 2h",
        f"ok       drill local      passed 4h 12m ago: backup 20261126T020000Z-daily; restored in "
        f"{seconds_text(local.rto_seconds)}, data 4h 0m old",
        f"ok       drill secondary  passed 4h 12m ago: backup 20261126T020000Z-daily; restored in "
        f"{seconds_text(second.rto_seconds)}, data 4h 0m old",
        "ok       recovery point   at the last drill (2026-11-26 06:00 UTC): a disaster then would have lost 4h 0m of "
        "data (best copy: local); objective 1d 2h",
        "ok       integrity        checked 12m 4s ago: sound, 0 broken references, no rule broken",
        f"ok       service          running on 127.0.0.1:{kit.port}",
        f"         next runs        {NEXT_RUNS}",
        "",
        "all well",
    ]
    assert found.ok and found.level == "ok"


def test_a_stale_tier_warns_and_a_missed_second_run_is_a_problem(kit):
    kit.at("2026-10-15T04:00:00Z").jobs.backup("monthly")
    kit.fresh()
    kit.jobs.store.delete(kit.jobs.store.catalog().of_tier("monthly")[-1])  # November's is lost: October's is newest
    kit.at("2026-11-28T09:00:00Z")  # two days on: the daily backups of the 27th and 28th did not happen
    found = kit.status()
    text = lines(found)
    assert text[3] == (f"PROBLEM  daily backup     20261126T020000Z-daily, taken 2d 7h ago, "
                       f"{kit.size('20261126T020000Z-daily')}; 1 kept of 7; older than 1d 2h")
    assert text[4] == ("                          what to do: see the service's log for the run at `0 2 * * *`, then: "
                       "opsmon-backup create --tier daily")
    assert text[5].startswith("ok       weekly backup    20261122T030000Z-weekly, taken 6d 6h ago")
    assert text[6] == (f"WARNING  monthly backup   20261015T040000Z-monthly, taken 44d 5h ago, "
                       f"{kit.size('20261015T040000Z-monthly')}; 1 kept of 12; older than 32d 0h")
    assert text[-1] == "not all well: 1 problem, 7 warnings (marked above)"
    assert [line.name for line in found.lines if line.level == "warning"] == [
        "monthly backup", "verification", "copy secondary", "exposure now", "drill local", "drill secondary",
        "integrity"]
    assert "WARNING  verification     verify --all last passed 2d 3h ago (over 1d 2h)" in text
    assert "WARNING  copy secondary   up to 20261126T020000Z-daily, synced 2d 7h ago" in text
    assert "         recovery point   unknown: no location passed a drill in the last 1d 2h; objective 1d 2h" in text
    assert "WARNING  integrity        checked 1d 23h ago (over 3h 0m): sound, 0 broken references, no rule broken" \
        in text
    assert found.level == "problem" and not found.ok


def test_a_failed_backup_run_warns_with_its_error_before_the_tier_is_old(kit):
    kit.fresh()
    kit.db.rename(kit.db.with_name("moved.db"))
    kit.at("2026-11-26T09:00:00Z")
    with pytest.raises(Exception, match="does not exist"):
        kit.jobs.backup("daily")
    kit.db.with_name("moved.db").rename(kit.db)
    found = kit.at(NOW).status()
    daily = next(line for line in found.lines if line.name == "daily backup")
    assert (daily.level, daily.text) == (
        "warning", f"20261126T020000Z-daily, taken 8h 12m ago, {kit.size('20261126T020000Z-daily')}; 1 kept of 7; "
                   f"the last run failed 1h 12m ago: database {kit.db} does not exist")


def test_a_failed_copy_is_marked_with_its_error(kit, tmp_path):
    kit.fresh()
    (tmp_path / "second-disk").rename(tmp_path / "second-disk.gone")
    (tmp_path / "second-disk").write_text("not a folder: the disk is not mounted\n")
    kit.at("2026-11-26T10:00:00Z").jobs.backup("daily")
    found = kit.at(NOW).status()
    copy = at_line(lines(found), "copy secondary")
    error = catalog.read_status(kit.directory).copies["secondary"].last_error
    assert "Not a directory" in error or "File exists" in error
    assert lines(found)[copy:copy + 2] == [
        f"WARNING  copy secondary   up to 20261126T020000Z-daily, synced 8h 12m ago; the last try failed: {error}",
        "                          what to do: the copy is tried again after every backup and prune (opsmon-backup "
        f"prune); check {tmp_path / 'second-disk'}"]
    assert lines(found)[-1] == "not all well: 1 warning (marked above)"


REPLICA = {"enabled": True, "replica_directory": "replica"}


def test_no_replica_is_a_problem_where_litestream_is_on(tmp_path, service):
    # Litestream is on, but nothing runs it: the replica holds nothing, and its drill finds nothing.
    kit = Kit(tmp_path, service, litestream=REPLICA, drill={"replica_wait_seconds": 0.1}).fresh()
    found = kit.status()
    text = lines(found)
    point = at_line(text, "point in time")
    assert text[point:point + 2] == [
        "WARNING  point in time    the replica holds nothing the backup service has seen",
        "                          what to do: is the service running (below)? Litestream's lines are in its log, "
        "as `litestream`"]
    error = kit.drill("replica").last_error
    assert error == "the Litestream replica holds nothing"
    assert f"PROBLEM  drill replica    failed 4h 12m ago: {error}" in text
    assert found.facts["pitr"] == {"enabled": True, "level": "warning", "earliest_at": None, "latest_at": None,
                                   "lag_seconds": None}


def test_a_replica_behind_the_database_warns_past_five_minutes(tmp_path, service):
    kit = Kit(tmp_path, service, litestream=REPLICA, drill={"replica_wait_seconds": 0.1}).fresh()
    # What a running service records: its replica's window, and a drill of it that passed.
    catalog.record_location_drill(kit.directory, "replica", to_timestamp("2026-11-26T06:01:00Z"),
                                  "the replica up to 2026-11-26T05:59:58Z", None, 1.5, 2.0)
    catalog.record_pitr(kit.directory, to_timestamp("2026-11-19T02:00:01Z"), to_timestamp("2026-11-26T10:06:00Z"))
    found = kit.status()
    assert "WARNING  point in time    2026-11-19T02:00:01Z to 2026-11-26T10:06:00Z; 6m 0s behind the database's " \
           "last write" in lines(found)
    assert "ok       drill replica    passed 4h 11m ago: the replica up to 2026-11-26T05:59:58Z; restored in 1.5 s, " \
           "data 0m 2s old" in lines(found)
    # The drill's RPO is of 06:01; the exposure now is of the replica's last point, six minutes ago.
    assert "ok       recovery point   at the last drill (2026-11-26 06:01 UTC): a disaster then would have lost " \
           "0m 2s of data (best copy: replica); objective 1d 2h" in lines(found)
    assert "ok       exposure now     a disaster now would lose 6m 4s of data: the newest recoverable point is the " \
           "Litestream replica, 2026-11-26 10:06 UTC; objective 1d 2h" in lines(found)
    assert (found.facts["exposure"]["seconds"], found.facts["recovery_point"]["rpo_seconds"]) == (364.0, 2.0)
    # The service's Litestream is not running (this one was never started): its replica stops where it is.
    assert lines(found)[at_line(lines(found), "litestream")] == (
        "WARNING  litestream       the service says its Litestream is not running: the point-in-time replica stops "
        "at its last write")
    catalog.record_pitr(kit.directory, to_timestamp("2026-11-19T02:00:01Z"), to_timestamp("2026-11-26T10:12:00Z"))
    again = kit.status()
    assert "ok       point in time    2026-11-19T02:00:01Z to 2026-11-26T10:12:00Z; up to the database's last write" \
        in lines(again)
    assert [line.name for line in again.lines if line.level != "ok"] == ["next runs", "litestream"]


def test_a_failed_drill_is_a_problem_naming_the_location_and_its_error(kit, tmp_path):
    kit.fresh()
    copy = tmp_path / "second-disk" / "daily" / "20261126T020000Z-daily.db.gz"
    copy.write_bytes(copy.read_bytes()[:200])  # the second disk's copy is damaged
    kit.at("2026-11-26T09:00:00Z").jobs.drill()
    found = kit.at(NOW).status()
    error = kit.drill("secondary").last_error
    text = lines(found)
    drill = at_line(text, "drill secondary")
    assert text[drill:drill + 2] == [
        f"PROBLEM  drill secondary  failed 1h 12m ago: {error}; passed 4h 12m ago",
        "                          what to do: this location may not restore: fix the cause above, then "
        "opsmon-backup drill"]
    assert "secondary copy of backup 20261126T020000Z-daily" in error
    assert text[-1] == "not all well: 1 problem (marked above)"


def test_integrity_violations_and_damaged_backups_are_marked(tmp_path, service):
    rules = [{"name": "no_cheap_monetizations", "description": "Revenue is at least 50 cents.",
              "query": "SELECT id FROM monetizations WHERE revenue_cents < 50"}]
    kit = Kit(tmp_path, service, integrity={"rules": rules}).fresh()
    db = kit.db
    with closing(sqlite3.connect(db)) as connection:  # a row pointing at a video that does not exist
        connection.execute("INSERT INTO approvals (video_id, approved_at) VALUES (99999, 0)")
        connection.commit()
    cheap = sqlite3.connect(db).execute("SELECT count(*) FROM monetizations WHERE revenue_cents < 50").fetchone()[0]
    assert cheap > 1
    weekly = kit.jobs.store.catalog().newest_verified("weekly")
    weekly.path.write_bytes(b"\x1f\x8b damaged")
    kit.at("2026-11-26T10:05:00Z").jobs.verify()
    kit.jobs.check()
    found = kit.at(NOW).status()
    text = lines(found)
    integrity = at_line(text, "integrity")
    assert text[integrity:integrity + 2] == [
        f"WARNING  integrity        checked 7m 4s ago: sound, 1 broken reference, {cheap} rows break "
        "no_cheap_monetizations",
        "                          what to do: opsmon-backup check names the rows; check --fix repairs the rules "
        "marked fixable"]
    verification = at_line(text, "verification")
    assert text[verification] == ("PROBLEM  verification     1 backup fails verification: 20261122T030000Z-weekly; "
                                  "verify --all last passed 4h 42m ago")
    assert text[verification + 1].startswith("                          what to do: opsmon-backup verify --all names "
                                             "each problem")
    assert text[-1] == "not all well: 2 problems, 1 warning (marked above)"  # the weekly tier has no verified one
    assert "PROBLEM  weekly backup    no verified backup; 1 kept of 4" in text


def test_jobs_the_service_has_not_started_for_half_an_hour_are_overdue(kit):
    kit.fresh()
    kit.at("2026-11-27T03:00:00Z").serve()  # the service starts after a night down: two jobs missed their runs
    text = lines(kit.at("2026-11-27T03:45:00Z").status())  # ...and has not run them (a restore holds the lock?)
    assert text[at_line(text, "overdue"):at_line(text, "overdue") + 2] == [
        "WARNING  overdue          backup-daily should have started 45m 0s ago, check should have started 45m 0s ago",
        "                          what to do: a job waits for the job lock (a long restore?) or the scheduler is "
        "stuck: see the service's log"]
    assert text[at_line(text, "next runs")].startswith("         next runs        backup-daily 45m 0s late, check 45m 0s "
                                                       "late, verify in 1h 45m, drill in 2h 15m")


def test_a_daily_backup_under_half_the_weekly_one_warns(tmp_path, service):
    kit = Kit(tmp_path, service, videos=3000)
    kit.at("2026-11-22T03:00:00Z").jobs.backup("weekly")
    with closing(sqlite3.connect(kit.db)) as connection:  # most of the data is gone, by mistake
        for table in ("monetizations", "approvals", "processed_videos"):
            connection.execute(f"DELETE FROM {table} WHERE video_id > 500")
        connection.execute("DELETE FROM videos WHERE id > 500")
        connection.commit()
        connection.execute("VACUUM")
    kit.at("2026-11-26T02:00:00Z").jobs.backup("daily")
    daily = next(line for line in kit.at(NOW).status().lines if line.name == "daily backup")
    weekly = kit.size("20261122T030000Z-weekly")
    assert (daily.level, daily.text) == ("warning", f"20261126T020000Z-daily, taken 8h 12m ago, "
                                                    f"{kit.size('20261126T020000Z-daily')}; 1 kept of 7; under 50% of the "
                                                    f"size of the newest weekly backup ({weekly})")
    assert daily.hint.startswith("rows were lost, or another file is backed up")


def test_a_stopped_service_is_a_problem(tmp_path):
    kit = Kit(tmp_path, free_port()).fresh()  # nobody listens on this port
    text = lines(kit.status())
    service = at_line(text, "service")
    assert text[service:service + 2] == [
        f"PROBLEM  service          not answering on 127.0.0.1:{kit.port} (Connection refused): nothing runs on "
        "schedule, Litestream included",
        "                          what to do: run opsmon-backup serve (make run, or docker compose up -d backup)"]
    assert text[-1] == "not all well: 1 problem (marked above)"


def test_another_database_s_service_on_the_port_is_not_this_one_s(tmp_path, service):
    """Two apps on one machine, the second's config copied from the first: the first's service answers on
    the port, but its schedule and Litestream are not the second database's."""
    (tmp_path / "first").mkdir()
    (tmp_path / "second").mkdir()
    Kit(tmp_path / "first", service).fresh().serve()
    second = Kit(tmp_path / "second", service[0]).fresh()
    found = second.status()
    text = lines(found)
    line = at_line(text, "service")
    assert text[line:line + 2] == [
        f"PROBLEM  service          the service on 127.0.0.1:{second.port} backs up another database, "
        f"{tmp_path / 'first' / 'live.db'}: nothing runs on schedule for this one, Litestream included",
        "                          what to do: give each database's service a backups.listen_address of its own, "
        "and run this one's"]
    assert found.facts["service"]["running"] is False and found.facts["service"]["next_runs_from"] == "schedule"


def test_a_kit_without_copies_warns_of_one_disk(tmp_path, service):
    db = demo_database(tmp_path / "live.db")
    config = backups_config(tmp_path, db, listen_address=f"127.0.0.1:{service[0]}")
    jobs = Jobs(config)
    service[1](jobs)
    found = report.build(jobs, report.ask_service)
    assert next(line for line in found.lines if line.name == "copies").text == (
        f"none: every backup is on the disk of {tmp_path / 'backups'} (the 3-2-1 rule wants two more, one offsite)")
    assert [(line.name, line.level) for line in found.lines] == [
        ("database", "ok"), ("daily backup", "problem"), ("weekly backup", "problem"), ("monthly backup", "problem"),
        ("verification", "warning"), ("copies", "warning"), ("point in time", "off"), ("exposure now", "info"),
        ("drill local", "warning"),
        ("recovery point", "info"), ("integrity", "warning"), ("service", "ok"), ("next runs", "info")]


def test_exposure_now_counts_from_the_newest_backup_apart_from_the_rpo_at_the_last_drill(kit):
    kit.fresh()
    kit.at("2026-11-26T10:03:04Z").jobs.backup("daily")
    kit.at("2026-11-26T10:03:30Z").jobs.drill()  # restores the backup of 26 s before: a small RPO, then
    text = lines(kit.at(NOW).status())
    assert "ok       recovery point   at the last drill (2026-11-26 10:03 UTC): a disaster then would have lost " \
           "0m 26s of data (best copy: local); objective 1d 2h" in text
    assert "ok       exposure now     a disaster now would lose 9m 0s of data: the newest recoverable point is " \
           "backup 20261126T100304Z-daily, 2026-11-26 10:03 UTC; objective 1d 2h" in text


def test_one_disk_on_purpose_reads_single_copy_intended(tmp_path, service):
    db = demo_database(tmp_path / "live.db")
    config = backups_config(tmp_path, db, listen_address=f"127.0.0.1:{service[0]}", single_copy_intended=True)
    jobs = Jobs(config)
    service[1](jobs)
    copies = next(line for line in report.build(jobs, report.ask_service).lines if line.name == "copies")
    assert (copies.level, copies.text) == ("ok", f"single copy (intended): every backup is on the disk of "
                                                 f"{tmp_path / 'backups'} (backups.single_copy_intended)")


def test_single_copy_intended_contradicts_a_configured_copy():
    from opsmon.config import InvalidConfig

    with pytest.raises(InvalidConfig, match="test.yml: backups: single_copy_intended is true, but secondary_directory "
                                            "is set"):
        parse_config({"database": {"path": "live.db"}, "backups": {
            "directory": "backups", "secondary_directory": "second", "single_copy_intended": True}}, "test.yml", REPO)


@pytest.mark.parametrize("intended", [True, False])
def test_the_command_exits_0_on_one_disk_only_when_intended(tmp_path, service, intended):
    from exporter.collectors.backup import BackupCollector
    from tests.conftest import exposition

    port, start = service
    db = demo_database(tmp_path / "live.db")
    config = tmp_path / "opsmon.yml"
    config.write_text(yaml.safe_dump({"database": {"path": str(db), "name": "demo"},
                                      "backups": {"directory": "backups", "single_copy_intended": intended,
                                                  "listen_address": f"127.0.0.1:{port}"}}))
    loaded = load_config(config)
    jobs = Jobs(loaded)
    for job in (lambda: jobs.backup("monthly"), lambda: jobs.backup("weekly"), lambda: jobs.backup("daily"),
                jobs.verify, jobs.drill, jobs.check):
        job()
    start(jobs)
    result = opsmon_backup("--config.file", config, "status")
    copies = next(line for line in result.stdout.splitlines() if line[9:].startswith("copies "))
    if intended:
        assert result.returncode == 0 and result.stdout.splitlines()[-1] == "all well", result.stdout
        assert copies.startswith("ok       copies ") and "single copy (intended)" in copies
    else:
        assert result.returncode == 3 and copies.startswith("WARNING  copies ") and "none:" in copies
    published = exposition(BackupCollector(loaded.backups.directory, "demo", policy=loaded))
    assert 'opsmon_backup_rule_321_satisfied{database="demo"} 0.0' in published  # the truth, either way
    assert f'opsmon_backup_single_copy_intended{{database="demo"}} {float(intended)}' in published


# ---- the command --------------------------------------------------------------------------------

STATUS_KEYS = {"ok", "level", "checked_at", "backup_directory", "database", "tiers", "verification", "copies", "pitr",
               "exposure", "drills", "recovery_point", "integrity", "service", "lines"}


def test_the_command_exits_0_when_all_is_well_and_3_when_not(tmp_path, service):
    # The command reads the real clock: every job is done now, on the real clock, and the service runs.
    port, start = service
    db = demo_database(tmp_path / "live.db")
    config = tmp_path / "opsmon.yml"
    config.write_text(yaml.safe_dump({"database": {"path": str(db)},
                                      "backups": {"directory": "backups", "secondary_directory": "second-disk",
                                                  "listen_address": f"127.0.0.1:{port}"}}))
    jobs = Jobs(load_config(config))
    for job in (lambda: jobs.backup("monthly"), lambda: jobs.backup("weekly"), lambda: jobs.backup("daily"),
                jobs.verify, jobs.drill, jobs.check):
        job()
    start(jobs)
    result = opsmon_backup("--config.file", config, "status")
    assert result.returncode == 0, result.stdout
    assert result.stdout.splitlines()[-1] == "all well"
    document = json.loads(opsmon_backup("--config.file", config, "status", "--json").stdout)
    assert set(document) == STATUS_KEYS and document["ok"] is True
    assert set(document["tiers"]["daily"]) == {"level", "newest", "age_seconds", "kept", "retention",
                                               "last_failure_at", "last_error", "last_failure_by"}
    assert set(document["tiers"]["daily"]["newest"]) >= {"id", "tier", "created_at", "path", "size_bytes", "sha256",
                                                         "verified"}
    assert isinstance(document["tiers"]["daily"]["newest"]["size_bytes"], int)
    assert document["tiers"]["daily"]["newest"]["created_at"].endswith("Z")
    assert set(document["copies"]["secondary"]) == {"level", "target", "last_success_at", "last_error", "newest"}
    assert set(document["drills"]["local"]) == {"level", "last_success_at", "last_failure_at", "last_error", "source",
                                                "rto_seconds", "rpo_seconds"}
    assert set(document["integrity"]) == {"level", "ok", "checked_at", "integrity_problems", "foreign_key_violations",
                                          "rule_violations"}
    assert set(document["service"]) == {"level", "listen_address", "running", "error", "timezone", "next_runs_from",
                                        "next_runs", "jobs_running", "litestream_up"}
    assert document["service"]["next_runs_from"] == "service"
    assert set(document["service"]["next_runs"]) == {
        "backup-daily", "backup-weekly", "backup-monthly", "verify", "drill", "check"}
    assert set(document["database"]) == {"path", "exists", "size_bytes", "wal_size_bytes", "last_modified_at"}
    assert set(document["pitr"]) == {"enabled", "level", "earliest_at", "latest_at", "lag_seconds"}
    assert set(document["recovery_point"]) == {"level", "best_location", "rpo_seconds", "drilled_at",
                                               "objective_seconds"}
    assert set(document["exposure"]) == {"level", "seconds", "newest_point_at", "source", "objective_seconds"}
    assert all(set(line) == {"name", "level", "text", "hint"} for line in document["lines"])

    # The service stops: the same command says so and exits 3, --json too.
    config.write_text(config.read_text().replace(str(port), str(free_port())))
    result = opsmon_backup("--config.file", config, "status")
    assert result.returncode == 3 and result.stdout.splitlines()[-1] == "not all well: 1 problem (marked above)"
    stopped = opsmon_backup("--config.file", config, "status", "--json")
    assert stopped.returncode == 3 and json.loads(stopped.stdout)["service"]["running"] is False


def test_two_configs_on_one_backup_folder_each_see_only_their_own_database(tmp_path):
    from exporter.collectors.backup import BackupCollector
    from exporter.collectors.database import DatabaseCollector
    from tests.conftest import exposition
    from tests.integration.test_identity import ledger

    shop, book = demo_database(tmp_path / "shop.db"), ledger(tmp_path / "ledger.db")
    configs = {}
    for name, db in (("shop", shop), ("ledger", book)):  # the second copied from the first, the path changed
        configs[name] = tmp_path / f"{name}.yml"
        configs[name].write_text(yaml.safe_dump({"database": {"path": str(db), "name": name},
                                                 "backups": {"directory": "backups",
                                                             "listen_address": f"127.0.0.1:{free_port()}"}}))
    for command in (["create", "--tier", "daily"], ["verify", "--all"], ["drill"], ["check"]):
        opsmon_backup("--config.file", configs["shop"], *command, cwd=tmp_path, check=True)
    refused = opsmon_backup("--config.file", configs["ledger"], "create", "--tier", "daily", cwd=tmp_path)
    assert refused.returncode == 1 and "holds backups of another database" in refused.stderr

    ledger_status = json.loads(opsmon_backup("--config.file", configs["ledger"], "status", "--json",
                                             cwd=tmp_path).stdout)
    daily = ledger_status["tiers"]["daily"]
    assert daily["newest"] is None and daily["kept"] == 0 and "another database" in daily["last_error"]
    assert daily["last_failure_by"] == {"config_file": str(configs["ledger"]), "via": "cli",
                                        "command": f"--config.file {configs['ledger']} create --tier daily"}
    hint = next(line["hint"] for line in ledger_status["lines"] if line["name"] == "daily backup")
    assert hint.startswith(f"the run that failed was `--config.file {configs['ledger']} create --tier daily` on the "
                           f"command line, config {configs['ledger']}") and "service's log" not in hint
    assert ledger_status["drills"]["local"]["last_success_at"] is None and ledger_status["integrity"] is None
    assert ledger_status["verification"]["last_success_at"] is None
    listed = opsmon_backup("--config.file", configs["ledger"], "list", "--json", cwd=tmp_path)
    assert json.loads(listed.stdout) == []
    assert f"left out: 1 backup of another database in {tmp_path / 'backups'}" in listed.stderr

    shop_status = json.loads(opsmon_backup("--config.file", configs["shop"], "status", "--json", cwd=tmp_path).stdout)
    assert shop_status["tiers"]["daily"]["last_error"] is None and shop_status["tiers"]["daily"]["kept"] == 1
    assert shop_status["drills"]["local"]["last_success_at"] and shop_status["integrity"]["ok"] is True
    assert len(json.loads(opsmon_backup("--config.file", configs["shop"], "list", "--json", cwd=tmp_path).stdout)) == 1

    # The ledger's own check is its own; the shop's stays as it was.
    opsmon_backup("--config.file", configs["ledger"], "check", cwd=tmp_path, check=True)
    again = json.loads(opsmon_backup("--config.file", configs["shop"], "status", "--json", cwd=tmp_path).stdout)
    assert again["integrity"]["checked_at"] == shop_status["integrity"]["checked_at"]
    assert json.loads(opsmon_backup("--config.file", configs["ledger"], "status", "--json",
                                    cwd=tmp_path).stdout)["integrity"]["ok"] is True

    for name, retained, failed in (("shop", "1.0", False), ("ledger", "0.0", True)):
        config = load_config(configs[name])
        published = exposition(BackupCollector(config.backups.directory, name, policy=config,
                                               database_path=config.database.path),
                               DatabaseCollector(config.database.path, name, config.backups.directory))
        assert f'opsmon_backup_retained{{database="{name}",tier="daily"}} {retained}' in published
        assert (f'opsmon_backup_last_failure_timestamp_seconds{{database="{name}",tier="daily"}} 0.0'
                not in published) == failed
        drilled = re.search(rf'opsmon_restore_drill_last_success_timestamp_seconds{{database="{name}",'
                            rf'location="local"}} (\S+)', published).group(1)
        assert (drilled == "0.0") == failed  # the shop's drill is never the ledger's
        assert f'opsmon_db_integrity_check_success{{database="{name}"}} 1.0' in published


def test_status_needs_no_lock_and_answers_while_a_job_runs(kit):
    from backup_jobs.locks import job_lock

    kit.fresh()
    with job_lock(kit.directory, "a long restore"):
        result = opsmon_backup("--database", kit.db, "--backup-dir", kit.directory, "status")
    assert result.returncode == 3 and "daily backup" in result.stdout  # the fake-clock catalog is old by now


def test_list_is_an_aligned_table_with_a_header_and_json_keeps_exact_values(kit):
    kit.fresh()
    result = opsmon_backup("--database", kit.db, "--backup-dir", kit.directory, "list")
    header, *rows = result.stdout.splitlines()
    assert re.fullmatch(r"ID +TIER +TAKEN +AGE +SIZE  VERIFIED", header)
    assert [row.split()[0] for row in rows] == ["20261101T040000Z-monthly", "20261122T030000Z-weekly",
                                                "20261126T020000Z-daily"]
    for column in ("TIER", "TAKEN", "AGE", "VERIFIED"):  # left-aligned: each cell starts under its heading
        start = header.index(column)
        assert all(row[start - 1] == " " and row[start] != " " for row in rows), column
    end = header.index("SIZE") + len("SIZE")  # sizes line up on their units
    assert all(row[end - 3:end] in ("KiB", "MiB") and row[end] == " " for row in rows)
    assert rows[0].split("  ")[0] == "20261101T040000Z-monthly" and "2026-11-01 04:00 UTC" in rows[0]
    assert rows[0].endswith("  yes")
    document = json.loads(opsmon_backup("--database", kit.db, "--backup-dir", kit.directory, "list", "--json").stdout)
    assert document[0]["created_at"] == "2026-11-01T04:00:00Z" and isinstance(document[0]["size_bytes"], int)


def test_version_on_both_commands():
    import subprocess
    import sys

    from opsmon import __version__

    for module, name in (("backup_jobs", "opsmon-backup"), ("exporter", "opsmon-exporter")):
        result = subprocess.run([sys.executable, "-m", module, "--version"], capture_output=True, text=True)
        assert (result.returncode, result.stdout) == (0, f"{name} {__version__}\n")


def test_a_status_of_before_per_location_drills_reads_as_the_backup_folder_s_drill_everywhere(kit):
    """status.json as opsmon wrote it before per-location drills (`drill` alone): the catalog's reader migrates it
    once, and the status report, the exporter's collector and the service's jobs all read the one shape."""
    kit.at("2026-11-22T03:00:00Z").jobs.backup("weekly")
    kit.at("2026-11-26T02:00:00Z").jobs.backup("daily")
    shutil.copy(FIXTURES / "status-before-location-drills.json", kit.directory / catalog.STATUS_FILE)
    kit.at(NOW)
    local = catalog.LocationDrill(last_run_at=to_timestamp("2026-11-26T06:00:00Z"),
                                  last_success_at=to_timestamp("2026-11-26T06:00:42Z"),
                                  last_failure_at=to_timestamp("2026-11-25T06:00:40Z"),
                                  last_error="no verified backup", source="backup 20261126T020000Z-daily")
    assert catalog.read_status(kit.directory).drills == {"local": local}

    drill = next(line for line in kit.status().lines if line.name == "drill local")
    assert (drill.level, drill.text) == (report.OK, "passed 4h 11m ago: backup 20261126T020000Z-daily")
    published = {sample.labels["location"]: sample.value for family in BackupCollector(
        kit.directory, "demo", database_path=kit.db, clock=kit.clock).collect()
        for sample in family.samples if sample.name == "opsmon_restore_drill_last_success_timestamp_seconds"}
    assert published == {"local": local.last_success_at}
    assert next(job for job in scheduled_jobs(kit.jobs) if job.name == "drill").last_run == local.last_run_at

    kit.jobs.verify()  # the next write keeps the migrated shape
    on_disk = json.loads((kit.directory / catalog.STATUS_FILE).read_text())
    assert on_disk["drills"] == {"local": local.model_dump(mode="json")}


def test_the_console_front_page_shows_the_same_marked_lines_and_sizes_for_a_person(kit, tmp_path):
    from backup_jobs.console.work import overview

    kit.fresh()
    copy = tmp_path / "second-disk" / "daily" / "20261126T020000Z-daily.db.gz"
    copy.write_bytes(copy.read_bytes()[:200])
    kit.at("2026-11-26T09:00:00Z").jobs.drill()
    kit.at(NOW)
    page = overview(kit.jobs)
    marked = [line.as_json() for line in kit.status().lines if line.level in ("warning", "problem")]
    assert page["status"]["lines"] == marked and [line["name"] for line in marked] == ["drill secondary"]
    daily = next(b for b in page["backups"] if b["id"] == "20261126T020000Z-daily")
    assert (daily["taken"], daily["age"], daily["size"]) == ("2026-11-26 02:00 UTC", "8h 12m ago",
                                                            kit.size("20261126T020000Z-daily"))
    assert isinstance(daily["size_bytes"], int) and daily["created_at"] == "2026-11-26T02:00:00Z"  # the API's
    assert page["tiers"][0] == {"tier": "daily", "count": 1, "newest": "20261126T020000Z-daily", "retention": 7,
                                "level": "ok", "size": kit.size("20261126T020000Z-daily"), "age": "8h 12m ago"}


@pytest.mark.parametrize("size, text", [(0, "0 B"), (1023, "1023 B"), (1024, "1.0 KiB"), (80_796_840, "77.1 MiB"),
                                        (3 * 2**30 + 2**29, "3.5 GiB"), (None, "unknown")])
def test_sizes_read_in_powers_of_1024(size, text):
    assert size_text(size) == text


@pytest.mark.parametrize("seconds, text", [(0, "0m 0s"), (59.9, "0m 59s"), (3 * 3600 + 12 * 60 + 5, "3h 12m"),
                                           (2 * 86400 + 3 * 3600, "2d 3h"), (-5, "0m 0s")])
def test_ages_read_to_two_units(seconds, text):
    from backup_jobs.humanize import age_text

    assert age_text(seconds) == text
