"""Restore drills: every location that holds copies is restored into a temporary place and checked, with
what a disaster would cost from it.

Locations: `local` (the backup folder), `secondary` (the second folder), `offsite` (the bucket) and
`replica` (Litestream's). Each drill takes only what that location holds (its files, its manifests),
restores it, and proves it: integrity_check, foreign_key_check, row counts against the manifest, and
the identity of the live database. It measures the RTO (how long that restore and its checks took)
and the RPO (how old the newest data it gave back is). With `backups.drill.canary`, a marker row
with the drill's time is written into opsmon's own table of the live database first; the RPO is then
read from the newest marker in the restored copy, end to end. The replica is given a bounded wait
for the new marker; a backup location holds the marker of the drill before its newest backup.
"""

from __future__ import annotations

import logging
import shutil
import sqlite3
import time
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from backup_jobs import gzipfile, identity, sqlitefile
from backup_jobs.copies import Location
from backup_jobs.humanize import age_text, progress_bar
from backup_jobs.identity import TABLE
from opsmon import catalog
from opsmon.catalog import BACKUP_SUFFIX, MANIFEST_SUFFIX, TIERS, to_iso

if TYPE_CHECKING:  # jobs.py imports this module
    from backup_jobs.jobs import Jobs

log = logging.getLogger(__name__)

CANARY_KEY = "drill_canary"


class DrillFailed(Exception):
    """This location could not be restored, or what it gave back is not sound; the message says which."""


@dataclass
class DrillResult:
    location: str
    source: str | None
    error: str | None = None
    rto_seconds: float | None = None
    rpo_seconds: float | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def line(self) -> str:
        if not self.ok:
            return f"{self.location}: FAILED: {self.error}"
        return (f"{self.location}: restored {self.source} and proved it; RTO {self.rto_seconds:.1f} s, "
                f"RPO {age_text(self.rpo_seconds)}")


def write_canary(database: Path, at: float) -> None:
    with closing(sqlite3.connect(database, timeout=30)) as connection:
        connection.execute(f"CREATE TABLE IF NOT EXISTS main.{TABLE} (key TEXT PRIMARY KEY, value TEXT)")
        connection.execute(f"INSERT OR REPLACE INTO main.{TABLE} VALUES (?, ?)", (CANARY_KEY, repr(at)))
        connection.commit()


def read_canary(database: Path) -> float | None:
    try:
        with closing(sqlitefile.open_readonly(database)) as connection:
            row = connection.execute(f"SELECT value FROM main.{TABLE} WHERE key = ?", (CANARY_KEY,)).fetchone()
        return float(row[0]) if row else None
    except (sqlite3.DatabaseError, ValueError):
        return None


class Drills:
    def __init__(self, jobs: Jobs):
        self.jobs = jobs
        self.store = jobs.store
        self.clock = jobs.clock
        self.settings = jobs.config.backups.drill

    def run(self) -> list[DrillResult]:
        """Drill every configured location; each result is recorded in the status as it comes."""
        canary = self.clock() if self.settings.canary else None
        if canary is not None:
            write_canary(self.store.database, canary)
        drills = [("local", self._local)]
        drills += [(location.name, lambda work, location=location: self._copy(location, work))
                   for location in self.jobs.locations]
        if self.jobs.pitr is not None:
            drills.append(("replica", lambda work: self._replica(canary, work)))
        return [self._drill(name, restore) for name, restore in drills]

    def _drill(self, location: str, restore) -> DrillResult:
        started_at, started = self.clock(), time.monotonic()
        work = self.store.tmp / f"drill-{location}"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        restored = None
        try:
            restored, source, point, expected = restore(work)
            self._prove(restored, expected)
            found = read_canary(restored) if self.settings.canary else None
            newest = found if found is not None else point
            result = DrillResult(location, source, rto_seconds=time.monotonic() - started,
                                 rpo_seconds=max(0.0, started_at - newest))
        except Exception as err:  # noqa: BLE001 - one location failing is that location's result
            result = DrillResult(location, None, error=str(err))
            log.error("restore drill of %s failed: %s", location, err)
        finally:
            shutil.rmtree(work, ignore_errors=True)
            if restored is not None:
                restored.unlink(missing_ok=True)
        catalog.record_location_drill(self.store.directory, location, started_at, result.source, result.error,
                                      result.rto_seconds, result.rpo_seconds, **self.jobs.recorded)
        return result

    # ---- each location: (restored file, what it is, the moment its data is from, its manifest's facts)

    def _local(self, work: Path):
        record = next((r for r in reversed(self.store.own_catalog().backups) if r.verified and r.tier in TIERS), None)
        if record is None:
            raise DrillFailed("the backup folder holds no verified backup")
        target = self.store.scratch("drill-local.db", record.manifest.database.size_bytes)
        try:
            self.store.check(record, into=target, database=False)
        except Exception as err:
            raise DrillFailed(str(err)) from None
        return target, f"backup {record.id}", record.started_at, record.manifest.database

    def _copy(self, location: Location, work: Path):
        keys = location.keys()
        manifests = sorted((k for k in keys if k.endswith(MANIFEST_SUFFIX) and k.split("/")[0] in TIERS),
                           key=lambda k: k.split("/")[-1], reverse=True)  # ids begin with their UTC time
        record = None
        for key in manifests:
            local = work / key
            local.parent.mkdir(parents=True, exist_ok=True)
            location.fetch(key, local)
            try:
                record = catalog.read_manifest(local)
            except catalog.CatalogError as err:
                raise DrillFailed(f"{location.name} holds a manifest that cannot be read: {err}") from None
            if record.verified:
                break
        if record is None or not record.verified:
            raise DrillFailed(f"{location.name} holds no verified backup")
        backup_key = f"{record.tier}/{record.id}{BACKUP_SUFFIX}"
        if backup_key not in keys:
            raise DrillFailed(f"{location.name} has the manifest of backup {record.id} but not its file")
        packed = work / backup_key
        location.fetch(backup_key, packed)
        target = self.store.scratch(f"drill-{location.name}.db", record.manifest.database.size_bytes)
        try:
            with progress_bar(f"drill {location.name}", record.manifest.database.size_bytes) as bar:
                raw, compressed = gzipfile.decompress(packed, target, bar.update)
        except gzipfile.CorruptGzip as err:
            raise DrillFailed(f"{location.name} copy of backup {record.id}: {err}") from None
        if (compressed.sha256, raw.sha256) != (record.sha256, record.manifest.database.sha256):
            raise DrillFailed(f"{location.name} copy of backup {record.id} does not match its manifest")
        return target, f"backup {record.id}", record.started_at, record.manifest.database

    def _replica(self, canary: float | None, work: Path):
        """The replica's newest state. Litestream is given a bounded wait to hold something (a service just
        started) and, with the canary, to hold this drill's marker."""
        pitr = self.jobs.pitr
        deadline = time.monotonic() + self.settings.replica_wait_seconds
        while True:
            window = pitr.window()
            if (window and (canary is None or window[1] >= int(canary) + 1)) or time.monotonic() >= deadline:
                break
            time.sleep(1)
        if window is None:
            raise DrillFailed("the Litestream replica holds nothing")
        # Litestream lists whole seconds and restores up to the floor of a moment: ask for the second after
        # its newest point, so that point is in.
        while self.clock() < window[1] + 1:
            time.sleep(0.1)
        restored = pitr.restore_to(self.clock(), work)
        if restored is None:
            raise DrillFailed("Litestream could not restore its replica (its message is in the log)")
        return restored, f"the replica up to {to_iso(window[1])}", window[1], None

    # ---- the proof -----------------------------------------------------------------------

    def _prove(self, restored: Path, expected: catalog.DatabaseFacts | None) -> None:
        problems = sqlitefile.file_integrity(restored)
        if problems:
            raise DrillFailed(f"the restored copy fails integrity_check: {'; '.join(problems[:5])}")
        with closing(sqlitefile.open_readonly(restored)) as connection:
            broken = len(sqlitefile.foreign_key_problems(connection))
            counts = sqlitefile.row_counts(connection)
        if expected is not None and counts != expected.tables:
            raise DrillFailed(f"row counts {counts} differ from the manifest's {expected.tables}")
        allowed = expected.foreign_key_violations if expected is not None else self._live_broken_references()
        if allowed is not None and broken > allowed:
            raise DrillFailed(f"foreign_key_check finds {broken} broken references (at most {allowed} expected)")
        other = identity.compare(identity.read_file(restored), identity.read_file(self.store.database),
                                 "the restored copy", str(self.store.database))
        if other:
            raise DrillFailed(other)

    def _live_broken_references(self) -> int | None:
        try:
            with closing(sqlitefile.open_readonly(self.store.database)) as connection:
                return len(sqlitefile.foreign_key_problems(connection))
        except sqlite3.DatabaseError:
            return None

