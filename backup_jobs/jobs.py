"""The jobs the command line and the scheduler run, each under the job lock, each recording its outcome."""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Iterator

from backup_jobs import copies, integrity
from opsmon import catalog
from opsmon.catalog import SAFETY, TIERS, to_iso
from backup_jobs.litestream import Litestream
from backup_jobs.locks import job_lock
from backup_jobs.restore import Report, Restorer, RestoreFailed
from backup_jobs.store import BackupRecord, BackupStore

log = logging.getLogger(__name__)


class Jobs:
    def __init__(self, config, clock=time.time, locations=None):
        backups = config.backups
        self.config = config
        self.clock = clock
        self.store = BackupStore(config.database.path, backups.directory, backups.compression_level, clock)
        self.restorer = Restorer(self.store, backups.retention.safety, config.integrity.quick)
        self.locations = self._locations(backups) if locations is None else locations
        self.pitr = (Litestream(backups.litestream, config.database.path, backups.directory, backups.offsite)
                     if backups.litestream.enabled else None)

    @staticmethod
    def _locations(backups) -> list:
        found = []
        if backups.secondary_directory:
            found.append(copies.FolderCopies(backups.secondary_directory))
        if backups.offsite:
            found.append(copies.BucketCopies.from_config(backups.offsite))
        return found

    @property
    def directory(self):
        return self.store.directory

    def _status(self, patch: dict) -> None:
        catalog.merge_status(self.directory, patch)

    @contextlib.contextmanager
    def locked(self, job: str, wait_seconds: float = 0.0) -> Iterator[None]:
        """Hold the job lock; first finish what an interrupted job left (a restore to roll back, temp files)."""
        with job_lock(self.directory, job, wait_seconds):
            message = self.restorer.recover_interrupted()
            if message:
                log.warning("%s", message)
            self.store.remove_leftovers()
            yield

    # ---- backups ---------------------------------------------------------------------------

    def backup(self, tier: str) -> BackupRecord:
        """Create, then prune the tier and refresh the copies. A failure is recorded for the alerts."""
        try:
            record = self.store.create(tier)
        except Exception as err:
            self._status({"tiers": {tier: {"last_failure_at": self.clock(), "last_error": str(err)}}})
            raise
        self.store.prune({tier: getattr(self.config.backups.retention, tier)})
        self.copy()
        return record

    def verify(self, backup_ids: list[str] | None = None) -> list[str]:
        """Verify the given backups, or all; returns the problems, each naming its backup."""
        records = [self.store.find(i) for i in backup_ids] if backup_ids else self.store.records()
        problems = [] if backup_ids else self.store.unreadable_manifests()
        if not backup_ids:
            self._status({"verify": {"last_run_at": self.clock()}})
        for record in records:
            error = self.store.verify(record)
            if error:
                problems.append(error)
        if not backup_ids and not problems:
            self._status({"verify": {"last_success_at": self.clock()}})
        return problems

    def prune(self) -> list[BackupRecord]:
        retention = self.config.backups.retention
        deleted = self.store.prune({tier: getattr(retention, tier) for tier in (*TIERS, SAFETY)})
        self.copy()
        return deleted

    def copy(self) -> list[str]:
        """Bring every copy location up to date; returns the problems (also recorded per location)."""
        problems = []
        records = self.store.records()
        for location in self.locations:
            try:
                copies.sync(location, records, self.store.manifest_path)
            except Exception as err:  # noqa: BLE001 - one location down must not stop the other
                problems.append(f"{location.name}: {err}")
                self._status({"copies": {location.name: {"last_error": str(err)}}})
                log.error("copy to %s failed: %s", location.name, err)
                continue
            self._status({"copies": {location.name: {"last_success_at": self.clock(), "last_error": None}}})
        return problems

    # ---- restores --------------------------------------------------------------------------

    def restore_backup(self, backup_id: str, tables=None, dry_run=False) -> Report:
        record = self.store.find(backup_id)
        candidate = self.restorer.verified_copy(record)
        age = age_text(self.clock() - record.started_at)
        return self._restored(self.restorer.restore(candidate, f"backup {record.id} (taken {age} ago)", tables,
                                                    dry_run, self.store.manifest(record)["database"]))

    def _restored(self, report: Report) -> Report:
        """Record a restore that happened, for the exporter (opsmon_restore_last_success_timestamp_seconds)."""
        if not report.dry_run:
            self._status({"restore": {"last_success_at": self.clock(), "source": report.source,
                                      "tables": report.tables, "safety_backup": report.safety_backup}})
        return report

    def restore_moment(self, moment: float, tables=None, dry_run=False) -> Report:
        """The database as it was at `moment`: from the Litestream replica when it covers it, else the
        newest verified backup taken at or before it."""
        if self.pitr is not None:
            replica = self.pitr.restore_to(moment, self.store.tmp)
            if replica is not None:
                candidate, note = replica
                report = self.restorer.restore(self.restorer.checked(candidate),
                                               f"the Litestream replica at {to_iso(moment)}", tables, dry_run)
                report.notes.append(note)
                return self._restored(report)
        record = self.restorer.newest_before(moment)
        candidate = self.restorer.verified_copy(record)
        report = self.restorer.restore(candidate, f"backup {record.id}", tables, dry_run,
                                       self.store.manifest(record)["database"])
        report.notes.append(f"no replica covers {to_iso(moment)}: used the newest backup before it, taken "
                            f"{age_text(moment - record.started_at)} earlier ({to_iso(record.started_at)})")
        return self._restored(report)

    def drill(self) -> BackupRecord:
        self._status({"drill": {"last_run_at": self.clock()}})
        try:
            record = self.restorer.drill()
        except Exception as err:
            self._status({"drill": {"last_failure_at": self.clock(), "last_error": str(err)}})
            raise
        self._status({"drill": {"last_success_at": self.clock(), "backup": record.id, "last_error": None}})
        return record

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
        integrity.record(self.directory, result)
        return result


def age_text(seconds: float) -> str:
    """A duration as a person reads it: 2d 3h, 4h 12m, 5m 3s."""
    seconds = max(0, int(seconds))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    return f"{minutes}m {seconds % 60}s"


__all__ = ["Jobs", "RestoreFailed"]
