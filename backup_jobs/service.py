"""`opsmon-backup serve`: the schedules, Litestream under supervision, and /metrics and /-/healthy on 9878.

After downtime a job whose last run is older than its previous scheduled time runs once at
start (not once per missed time); then each runs at its next cron time in backups.timezone.
Jobs run one at a time on a worker thread, so the supervision (Litestream, the PITR window,
signals) goes on while a long backup runs.
"""

from __future__ import annotations

import logging
import queue
import signal
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Callable
from zoneinfo import ZoneInfo

from croniter import croniter
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily

from backup_jobs.console import create_app
from backup_jobs.console.work import Audit
from backup_jobs.drills import DrillFailed
from backup_jobs.jobs import Jobs
from backup_jobs.litestream import Litestream
from backup_jobs.users import Users
from opsmon import catalog, http
from opsmon.catalog import TIERS
from opsmon.checks import check_backup_folders, check_database
from opsmon.config import OpsmonConfig

log = logging.getLogger(__name__)

LOCK_WAIT_SECONDS = 600  # a scheduled job waits this long for a running one (a restore, say)
PITR_POLL_SECONDS = 15
SUPERVISE_SECONDS = 1.0  # how often Litestream is looked after, whatever the jobs are doing


@dataclass
class Job:
    name: str
    cron: str
    action: Callable[[], object]
    last_run: float | None = None
    next_run: float = 0.0
    last_success: float = 0.0
    last_failure: float = 0.0
    last_duration: float = 0.0
    running: bool = False
    queued: bool = False


class Scheduler:
    def __init__(self, entries: list[Job], timezone: str, clock=time.time):
        self.jobs = entries
        self.zone = ZoneInfo(timezone)
        self.clock = clock
        now = clock()
        for job in self.jobs:
            previous = croniter(job.cron, self._local(now)).get_prev(float)
            missed = job.last_run is None or job.last_run < previous
            job.next_run = now if missed else self._next(job, now)
            if missed:
                log.info("%s missed its run at %s: running it now", job.name, catalog.to_iso(previous))

    def _local(self, moment: float) -> datetime:
        return datetime.fromtimestamp(moment, self.zone)

    def _next(self, job: Job, after: float) -> float:
        return croniter(job.cron, self._local(after)).get_next(float)

    def seconds_to_next(self) -> float:
        waiting = [job.next_run for job in self.jobs if not (job.queued or job.running)]
        return max(0.0, min(waiting, default=self.clock() + 60) - self.clock())

    def due(self) -> list[Job]:
        """The jobs whose time has come and that are not already waiting or running, earliest first."""
        now = self.clock()
        return sorted((j for j in self.jobs if j.next_run <= now and not (j.queued or j.running)),
                      key=lambda j: j.next_run)

    def run_one(self, job: Job, run: Callable[[Job], None]) -> None:
        now = self.clock()
        job.running, job.queued, job.last_run = True, False, now
        try:
            run(job)
            job.last_success = self.clock()
        except Exception as err:  # noqa: BLE001 - a failed job is logged, recorded, and tried next time
            job.last_failure = self.clock()
            log.error("%s failed: %s", job.name, err)
        finally:
            job.last_duration = self.clock() - now
            job.next_run = self._next(job, self.clock())
            job.running = False

    def run_due(self, run: Callable[[Job], None]) -> None:
        """Run what is due here and now, one after the other (the service hands them to a Worker)."""
        for job in self.due():
            self.run_one(job, run)


class Worker:
    """One thread that runs the jobs handed to it, one at a time, in the order they came."""

    def __init__(self, scheduler: Scheduler, run: Callable[[Job], None]):
        self._scheduler = scheduler
        self._run = run
        self._queue: queue.Queue[Job] = queue.Queue()
        threading.Thread(target=self._loop, name="jobs", daemon=True).start()

    def submit(self, job: Job) -> None:
        job.queued = True
        self._queue.put(job)

    def _loop(self) -> None:
        while True:
            self._scheduler.run_one(self._queue.get(), self._run)


def scheduled_jobs(jobs: Jobs) -> list[Job]:
    """The backup service's jobs, each with when it last ran, from the catalog."""
    backups = jobs.config.backups
    current = jobs.store.own_catalog()  # another database's backups on the folder are not this one's runs
    status = current.status

    def last_of_tier(tier: str) -> float | None:
        return max((r.started_at for r in current.of_tier(tier)), default=None)

    entries = [Job(f"backup-{tier}", getattr(backups.schedule, tier), lambda tier=tier: jobs.backup(tier),
                   last_of_tier(tier)) for tier in TIERS]
    entries += [
        Job("verify", backups.verify_schedule, jobs.verify, status.verify.last_run_at),
        Job("drill", backups.drill_schedule, lambda: _passed(jobs.drill()), status.drill.last_run_at),
        Job("check", backups.check_schedule, jobs.check, status.integrity.checked_at if status.integrity else None),
    ]
    return entries


def _passed(results) -> None:
    """A drill job fails, for its metrics and log, when a location failed."""
    failed = [r.line() for r in results if not r.ok]
    if failed:
        raise DrillFailed("; ".join(failed))


class ServiceCollector:
    """The service's own metrics, read from the scheduler (and the console's audit) at scrape time."""

    def __init__(self, scheduler: Scheduler, database: Path, litestream: Litestream | None = None,
                 audit: Audit | None = None):
        self._scheduler = scheduler
        self._database = database
        self._litestream = litestream
        self._audit = audit

    def collect(self):
        specs = [
            ("last_run_timestamp_seconds", "When the job last started, in Unix seconds; 0 never.", "last_run"),
            ("last_success_timestamp_seconds", "When the job last succeeded, in Unix seconds; 0 never.",
             "last_success"),
            ("last_failure_timestamp_seconds", "When the job last failed, in Unix seconds; 0 never.", "last_failure"),
            ("last_duration_seconds", "How long the job's last run took.", "last_duration"),
            ("next_run_timestamp_seconds", "When the job runs next, in Unix seconds.", "next_run"),
            ("running", "1 while the job runs.", "running"),
        ]
        for suffix, documentation, attribute in specs:
            family = GaugeMetricFamily(f"opsmon_backup_job_{suffix}", documentation, labels=["backup_job"])
            for job in self._scheduler.jobs:
                family.add_metric([job.name], float(getattr(job, attribute) or 0))
            yield family
        # Which database this service backs up: `status` of another database on the same port must not
        # take this service's schedule for its own.
        yield InfoMetricFamily("opsmon_backup_service", "The database this backup service backs up.",
                               value={"path": str(self._database)})
        if self._litestream is not None:
            yield GaugeMetricFamily("opsmon_litestream_up", "1 while the Litestream replicator runs.",
                                    value=1 if self._litestream.running else 0)
        if self._audit is not None:
            actions = CounterMetricFamily("opsmon_admin_actions", "Actions taken in the backup console, by result.",
                                          labels=["action", "result"])
            for (action, result), count in sorted(self._audit.counts.items()):
                actions.add_metric([action, result], count)
            yield actions


def make_app(collector, console=None):
    """/metrics and /-/healthy, open to Prometheus; everything else is the console (behind its login)."""

    def app(environ, start_response):
        path, method = environ.get("PATH_INFO", "/"), environ.get("REQUEST_METHOD", "GET")
        if path == "/metrics":
            return http.finish(start_response, http.metrics_response(environ, collector.collect), method)
        if path == "/-/healthy":
            return http.finish(start_response, ("200 OK", [("Content-Type", "text/plain")], b"Healthy\n"), method)
        if console is not None:
            return console(environ, start_response)
        return http.finish(start_response, ("404 Not Found", [("Content-Type", "text/plain")], b"Not Found\n"), method)

    return app


def console_app(jobs: Jobs):
    """The console's WSGI app when it is enabled, its audit, and TLS files; the first admin is made here."""
    settings = jobs.config.backups.console
    if not settings.enabled:
        return None, None, None
    users = Users(settings.users_file)
    password = users.ensure_admin()
    if password:
        # Shown once, here and nowhere else; only its hash is stored.
        print(f"backup console: user 'admin', password {password} (shown once; stored hashed in "
              f"{settings.users_file})", flush=True)
    tls = (str(settings.tls_cert_file), str(settings.tls_key_file)) if settings.tls_cert_file else None
    app = create_app(jobs, users, secure_cookies=tls is not None)
    return app, app.extensions["opsmon"]["audit"], tls


def record_pitr(jobs: Jobs) -> None:
    try:
        window = jobs.pitr.window()
    except Exception as err:  # noqa: BLE001 - the window is asked again at the next poll
        log.warning("could not read the replica's window: %s", err)
        return
    if window is not None:
        catalog.record_pitr(jobs.directory, *window, database=jobs.store.status_key)


def report_findings(config: OpsmonConfig, source: str) -> None:
    """`opsmon check`'s findings on what this service uses, logged once at start. Logged, not fatal: a
    broken integrity rule must not stop the backups, and each check run reports it again as a problem."""
    for finding in [*check_database(config), *check_backup_folders(config)]:
        (log.warning if finding.warning else log.error)("%s", finding.line(source))


def serve(jobs: Jobs, stop: threading.Event | None = None, listen_address: str | None = None,
          config_source: str = "config") -> int:
    """Run until SIGTERM or SIGINT (or `stop`, for tests)."""
    backups = jobs.config.backups
    listen_address = listen_address or backups.listen_address
    signals = {signal.SIGTERM, signal.SIGINT}
    if stop is None:
        signal.pthread_sigmask(signal.SIG_BLOCK, signals)  # taken by sigtimedwait below, never by a handler

    def stopped(wait: float) -> bool:
        return stop.wait(wait) if stop is not None else signal.sigtimedwait(signals, wait) is not None

    # Started beside the app (make run, compose), the service waits for the app to create its database.
    while not jobs.store.database.exists():
        log.info("waiting for %s to exist", jobs.store.database)
        if stopped(2.0):
            return 0
    report_findings(jobs.config, config_source)
    scheduler = Scheduler(scheduled_jobs(jobs), backups.timezone, jobs.clock)
    console, audit, tls = console_app(jobs)
    server = http.serve(make_app(ServiceCollector(scheduler, jobs.store.database, jobs.pitr, audit), console), listen_address, tls)
    threading.Thread(target=server.serve_forever, name="http", daemon=True).start()
    if jobs.pitr is not None:
        jobs.pitr.start()
    log.info("backup service on http://%s with jobs %s", listen_address,
             ", ".join(f"{j.name} ({j.cron})" for j in scheduler.jobs))

    def run(job: Job) -> None:
        with jobs.locked(f"scheduled {job.name}", wait_seconds=LOCK_WAIT_SECONDS, via="service"):
            job.action()

    worker = Worker(scheduler, run)
    next_pitr_poll = 0.0
    try:
        while True:
            for job in scheduler.due():
                worker.submit(job)
            if jobs.pitr is not None:
                jobs.pitr.supervise()
                if time.monotonic() >= next_pitr_poll:
                    record_pitr(jobs)
                    next_pitr_poll = time.monotonic() + PITR_POLL_SECONDS
            if stopped(min(scheduler.seconds_to_next(), SUPERVISE_SECONDS)):
                break
    finally:
        for job in scheduler.jobs:
            if job.running:
                log.warning("%s is cut short by the stop; the next opsmon-backup command cleans up after it "
                            "(or rolls a restore back)", job.name)
        if jobs.pitr is not None:
            jobs.pitr.stop()
        server.shutdown()
        log.info("backup service stopped")
    return 0
