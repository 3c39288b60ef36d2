"""The jobs the command line and the scheduler run, each under the job lock, each recording its outcome."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from backup_jobs import copies, integrity
from opsmon import catalog
from opsmon.catalog import TIERS, to_iso
from backup_jobs.drills import DrillFailed, DrillResult, Drills
from backup_jobs.humanize import age_text
from backup_jobs.inputs import RestoreRequest
from backup_jobs.litestream import Litestream
from backup_jobs.locks import job_lock
from backup_jobs.restore import BadRequest, Report, Restorer, RestoreFailed
from backup_jobs.store import BackupRecord, BackupStore
from opsmon.config import BackupsConfig, OpsmonConfig
from opsmon.exits import Failure

log = logging.getLogger(__name__)


class Refused(Failure):
    """The job would break a promise the catalog keeps (the last verified backup of a tier stays)."""


class Jobs:
    def __init__(self, config: OpsmonConfig, clock: Callable[[], float] = time.time,
                 locations: list[copies.Location] | None = None, config_file: str | None = None):
        assert config.backups is not None, "the command line and the service refuse a config without backups"
        backups = config.backups
        self.config = config
        self.config_file = config_file  # recorded with each job's outcome: which config ran it
        self.origin: catalog.Origin | None = None  # the job under the lock now, for its records
        self.clock = clock
        self.store = BackupStore(config.database.path, backups.directory, backups.compression_level, clock)
        self.restorer = Restorer(self.store, backups.retention.safety_days, config.integrity.quick)
        self.locations = self._locations(backups) if locations is None else locations
        self.pitr = (Litestream(backups.litestream, config.database.path, backups.directory, backups.offsite)
                     if backups.litestream.enabled else None)

    @staticmethod
    def _locations(backups: BackupsConfig) -> list[copies.Location]:
        found: list[copies.Location] = []
        if backups.secondary_directory:
            found.append(copies.FolderCopies(backups.secondary_directory))
        if backups.offsite:
            found.append(copies.BucketCopies.from_config(backups.offsite))
        return found

    @property
    def directory(self) -> Path:
        return self.store.directory

    @contextlib.contextmanager
    def locked(self, job: str, wait_seconds: float = 0.0, via: str = "cli") -> Iterator[None]:
        """Hold the job lock; first finish what an interrupted job left (a restore to roll back, temp files).
        `job` and `via` (cli, service, console) are recorded with what the job records."""
        with job_lock(self.directory, job, wait_seconds):
            self.origin = catalog.Origin(config_file=self.config_file, via=via, command=job)
            try:
                message = self.restorer.recover_interrupted()
                if message:
                    log.warning("%s", message)
                self.store.remove_leftovers()
                yield
            finally:
                self.origin = None

    @property
    def recorded(self) -> dict:
        """Whose outcome a job records, and what ran it: the keywords of every catalog.record_*."""
        return {"database": self.store.status_key, "by": self.origin}

    # ---- backups ---------------------------------------------------------------------------

    def backup(self, tier: str) -> BackupRecord:
        """Create, then prune the tier and refresh the copies. A failure is recorded for the alerts."""
        try:
            record = self.store.create(tier)
        except Exception as err:
            catalog.record_backup_failure(self.directory, tier, self.clock(), str(err), **self.recorded)
            raise
        self.store.prune({tier: getattr(self.config.backups.retention, tier)})
        self.copy()
        return record

    def verify(self, backup_ids: list[str] | None = None) -> list[str]:
        """Verify the given backups, or all; returns the problems, each naming its backup."""
        started = self.clock()
        records = [self.store.find(i) for i in backup_ids] if backup_ids else self.store.records()
        problems = [] if backup_ids else self.store.unreadable_manifests()
        own = catalog.database_of(self.store.database).identity
        for record in records:
            error = self.store.verify(record)
            if error:
                problems.append(error)
            theirs = record.manifest.database.identity
            if own and theirs and theirs != own:
                problems.append(f"backup {record.id}: of another database ({theirs}); {self.store.database} is "
                                f"database {own}, so a restore refuses it")
        if not backup_ids:
            catalog.record_verify(self.directory, started, passed=not problems, **self.recorded)
        return problems

    def prune(self) -> list[BackupRecord]:
        retention = self.config.backups.retention
        deleted = self.store.prune({tier: getattr(retention, tier) for tier in TIERS}) + self.restorer.prune_safety()
        self.copy()
        return deleted

    def delete(self, backup_id: str) -> BackupRecord:
        """Delete one backup, never the last verified one of its tier; the copies follow at the next sync."""
        record = self.store.find(backup_id)
        verified = [r for r in self.store.catalog().of_tier(record.tier) if r.verified]
        if verified == [record]:
            raise Refused(f"{record.id} is the last verified {record.tier} backup: it stays")
        self.store.delete(record)
        return record

    def copy(self) -> list[str]:
        """Bring every copy location up to date; returns the problems (also recorded per location)."""
        problems = []
        current = self.store.catalog()
        for location in self.locations:
            try:
                copies.sync(location, current)
            except Exception as err:  # noqa: BLE001 - one location down must not stop the other
                problems.append(f"{location.name}: {err}")
                catalog.record_copy(self.directory, location.name, self.clock(), str(err), **self.recorded)
                log.error("copy to %s failed: %s", location.name, err)
                continue
            catalog.record_copy(self.directory, location.name, self.clock(), **self.recorded)
        return problems

    # ---- restores --------------------------------------------------------------------------

    def restore(self, request: RestoreRequest) -> Report:
        self.refuse_missing_database(request)
        if request.backup:
            return self.restore_backup(request.backup, request.tables, request.dry_run, request.allow_other_database)
        return self.restore_moment(request.at, request.tables, request.dry_run, request.allow_other_database)

    def refuse_missing_database(self, request: RestoreRequest) -> None:
        """A restore makes a database that does not exist only when asked to: a typo in its path would
        otherwise bring back a stale copy under a new name (BadRequest, saying how to ask)."""
        if self.store.database.exists() or request.create_database:
            return
        raise BadRequest(f"{self.store.missing_database()}: a restore would create it; to do so on purpose: "
                         "--create-database (console API: \"create_database\": true); nothing was changed")

    def restore_backup(self, backup_id: str, tables: list[str] | None = None, dry_run: bool = False,
                       allow_other: bool = False) -> Report:
        record = self.store.find(backup_id)
        candidate = self.restorer.verified_copy(record)
        age = age_text(self.clock() - record.started_at)
        return self._restored(self.restorer.restore(candidate, f"backup {record.id} (taken {age} ago)", tables,
                                                    dry_run, self.store.manifest(record).database, allow_other))

    def _restored(self, report: Report) -> Report:
        """Record a restore that happened, for the exporter (opsmon_restore_last_success_timestamp_seconds)."""
        if not report.dry_run:
            catalog.record_restore(self.directory, self.clock(), report.source, report.tables, report.safety_backup,
                                   **self.recorded)
        return report

    def restore_moment(self, moment: float, tables: list[str] | None = None, dry_run: bool = False,
                       allow_other: bool = False) -> Report:
        """The database as it was at `moment`, from the source whose newest point at or before it is the
        nearest: the Litestream replica or a verified backup. A source holding nothing at or before
        the moment is never used."""
        at = to_iso(moment)
        record = self.restorer.newest_before(moment)
        window = self.pitr.window() if self.pitr is not None else None
        # Litestream lists and restores whole seconds, the floor of the moment: a point in the window's
        # first second may lie after that floor, so the replica holds the moment from the next second on.
        replica_point = min(moment, window[1]) if window and window[0] + 1 <= int(moment) else None
        if window is None:
            replica_says = "no Litestream replica is configured" if self.pitr is None else "the replica holds nothing"
        else:
            replica_says = f"the replica covers {to_iso(window[0])} to {to_iso(window[1])}"
        backup_says = (f"the newest verified backup at or before it is {record.id}, taken {to_iso(record.started_at)}"
                       if record else "no verified backup was taken at or before it")
        if replica_point is not None and (record is None or replica_point >= record.started_at):
            candidate = self.pitr.restore_to(moment, self.store.tmp)
            if candidate is not None:
                report = self.restorer.restore(self.restorer.checked(candidate), f"the Litestream replica at {at}",
                                               tables, dry_run, None, allow_other)
                report.notes.append(f"restored from the replica: its newest point at or before {at} is "
                                    f"{to_iso(replica_point)}, {age_text(moment - replica_point)} before it; "
                                    f"{replica_says}; {backup_says}")
                return self._restored(report)
            replica_says += ", but restoring from it failed (see the log)"
        if record is None:
            raise RestoreFailed(f"nothing holds the database at or before {at}: {backup_says}, and {replica_says}; "
                                "nothing was changed")
        candidate = self.restorer.verified_copy(record)
        report = self.restorer.restore(candidate, f"backup {record.id}", tables, dry_run,
                                       self.store.manifest(record).database, allow_other)
        report.notes.append(f"restored from backup {record.id}, taken {to_iso(record.started_at)}, "
                            f"{age_text(moment - record.started_at)} before {at}; {replica_says}")
        return self._restored(report)

    def drill(self) -> list[DrillResult]:
        """Restore drills of every location (drills.py); each location's result is recorded, and the
        drill as a whole passes when every location does."""
        started = self.clock()
        results = Drills(self).run()
        failed = "; ".join(r.line() for r in results if not r.ok) or None
        local = results[0]
        catalog.record_drill(self.directory, started, self.clock(), local.source if local.ok else None, failed,
                             **self.recorded)
        return results

    # ---- integrity -------------------------------------------------------------------------

    def check(self, fix: bool = False) -> integrity.CheckResult:
        rules = self.config.integrity.rules
        quick = self.config.integrity.quick
        result = integrity.check(self.store.database, rules, quick, self.clock)
        if fix:
            fixed = integrity.fix(self.store, rules, result)
            if fixed:
                safety = result.safety_backup
                result = integrity.check(self.store.database, rules, quick, self.clock)
                result.fixed, result.safety_backup = fixed, safety
        integrity.record(self.directory, result, **self.recorded)
        return result


__all__ = ["DrillFailed", "Jobs", "Refused", "RestoreFailed"]
