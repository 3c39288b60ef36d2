"""Backups on disk: create (snapshot, compress, verify), verify, find and prune, and their manifests.

A backup is `<tier>/<id>.db.gz` plus `<tier>/<id>.json`, its manifest. The backup file is
written under `.tmp/`, fsynced and renamed into place first; the manifest is written last.
A job killed at any moment leaves at most a temporary file or a backup without a manifest,
and neither is in the catalog: the next job removes them, under the job lock, so no job can still
be writing them. It removes only what has opsmon's own names: under `.tmp/` the scratch files it
makes, in a tier folder a backup file named by the id pattern of that tier (a crash between data
and manifest). Anything else (`manual/x.db.gz`, `daily/copy.db.gz`) is left as it is. A link is
never followed: a `.tmp` or tier folder that is a link is never descended, and the job refuses a
`.tmp` that is a link or not a folder, naming it.
"""

from __future__ import annotations

import errno
import glob
import hashlib
import logging
import os
import re
import resource
import shutil
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

from backup_jobs import gzipfile, identity, sqlitefile
from backup_jobs.humanize import progress_bar
from opsmon import catalog, files
from opsmon.catalog import (BACKUP_SUFFIX, MANIFEST_SUFFIX, SAFETY, TIERS, BackupFile, BackupRecord, CatalogError,
                            DatabaseFacts, Manifest, Verification, to_iso)
from opsmon.exits import EXIT_USAGE, Failure

log = logging.getLogger(__name__)

TMP_DIR = ".tmp"
STALE_TEMPORARY_SECONDS = 60
# What opsmon writes under .tmp: scratch databases (with their journals), drill folders, packed backups.
SCRATCH_NAME = re.compile(rf"(snapshot|verify|restore|safety|drill)-|dry-run\.db|pitr\.db|"
                          rf"({catalog.ID_PATTERN.pattern}){re.escape(BACKUP_SUFFIX)}$")
# The temporary file of opsmon.files.write_atomically: `.<name>.<tempfile.mkstemp's letters>.tmp`.
ATOMIC_WRITE_NAME = re.compile(r"\..+\.[a-z0-9_]+\.tmp")
MIB = 1 << 20
NOTHING_KEPT = "nothing was kept, and the backups before it are as they were"


class BackupFailed(Failure):
    """A backup could not be made; nothing was added to the catalog."""


class VerifyFailed(Exception):
    """A backup is damaged; the message names the backup and the problem."""


class UnknownBackup(Failure):
    """No backup in the catalog has the id asked for."""

    exit_status = EXIT_USAGE


class BackupStore:
    def __init__(self, database: Path, directory: Path, compression_level: int = 1, clock=time.time):
        self.database = Path(database).absolute()
        self.directory = Path(directory).absolute()
        self.compression_level = compression_level
        self.clock = clock
        self.tmp = self.directory / TMP_DIR
        self.status_key = str(self.database.resolve())  # this database's part of status.json

    # ---- reading ---------------------------------------------------------------------------

    def catalog(self) -> catalog.Catalog:
        """The catalog as it is on disk now: every backup in the folder, this database's status, and the
        manifests that cannot be read. What the jobs work on: a backup of another database here is named."""
        return catalog.read_catalog(self.directory, catalog.Database(self.status_key))

    def own_catalog(self) -> catalog.Catalog:
        """The catalog as this database sees it: only its own backups (by identity) and its own status.
        What status, list and drills show: a second config on this folder never reads the first's as its own."""
        return catalog.read_catalog(self.directory, catalog.database_of(self.database))

    def records(self) -> list[BackupRecord]:
        """Every backup in the catalog, oldest first."""
        return self.catalog().backups

    def find(self, backup_id: str) -> BackupRecord:
        """The backup with this id; ids come only from the catalog, never from a path."""
        for record in self.records():
            if record.id == backup_id:
                return record
        raise UnknownBackup(f"no backup with id {backup_id!r} in {self.directory} (see: opsmon-backup list)")

    @staticmethod
    def manifest(record: BackupRecord) -> Manifest:
        """The backup's manifest as it is on disk now (CatalogError when it can no longer be read)."""
        return catalog.read_manifest(record.manifest_path).manifest

    # ---- housekeeping ----------------------------------------------------------------------

    def remove_leftovers(self) -> list[Path]:
        """Remove what killed jobs left: scratch files, interrupted writes, and backup files no manifest
        names; only files of opsmon's own names, never through a link (see the module's docstring).

        Call it only under the job lock, when no other job can be writing. Manifests are written under
        that lock, status.json under its own, taken here.
        """
        with files.locked(self.directory / catalog.LOCK_FILE):
            removed = self._scratch_leftovers() + self._snapshots_beside() + self._interrupted_writes()
            removed += self._unnamed_backups()
            for path in removed:
                # rmtree removes the links inside a drill folder without following them; unlink of a
                # link removes the link, never its target.
                shutil.rmtree(path) if files.is_real_directory(path) else path.unlink(missing_ok=True)
                log.warning("removed %s, left by an interrupted job", path)
        return removed

    def _scratch_leftovers(self) -> list[Path]:
        # A link of a scratch name is removed too: a later job writing that name must not write through it.
        found = []
        for path in sorted(files.own_directory(self.tmp).iterdir()):
            if SCRATCH_NAME.match(path.name):
                found.append(path)
            else:
                log.warning("left %s (%s) as it is: not a file opsmon makes", path, files.describe_kind(path))
        return found

    def _snapshots_beside(self) -> list[Path]:
        return [p for p in self.database.parent.glob(f"{glob.escape(self._beside_prefix())}*")
                if not files.is_real_directory(p)]

    def _interrupted_writes(self) -> list[Path]:
        """Writes killed between their temporary file and the rename (opsmon/files.py): a manifest's or
        status.json's (their writers wait for the locks held here), any other only once it is old
        enough that no writer can still be on it."""
        def interrupted(path: Path) -> bool:
            return ATOMIC_WRITE_NAME.fullmatch(path.name) is not None and files.is_regular(path)

        in_tiers = [p for folder in self._tier_folders() for p in folder.iterdir() if interrupted(p)]
        at_top = [p for p in self.directory.iterdir() if interrupted(p)
                  and (p.name.startswith(f".{catalog.STATUS_FILE}.")
                       or time.time() - p.stat().st_mtime > STALE_TEMPORARY_SECONDS)]
        return in_tiers + at_top

    def _unnamed_backups(self) -> list[Path]:
        """Backup files of opsmon's id pattern, in their tier's folder, that no manifest names: a job
        killed between renaming the file into place and writing its manifest."""
        return [p for folder in self._tier_folders() for p in folder.glob(f"*{BACKUP_SUFFIX}")
                if catalog.own_file_name(folder.name, p.name) and files.is_regular(p)
                and not p.with_name(p.name.removesuffix(BACKUP_SUFFIX) + MANIFEST_SUFFIX).exists()]

    def _tier_folders(self) -> list[Path]:
        return [self.directory / tier for tier in (*TIERS, SAFETY) if files.is_real_directory(self.directory / tier)]

    def _new_id(self, tier: str, now: float) -> str:
        stamp = datetime.fromtimestamp(now, timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        backup_id, n = f"{stamp}-{tier}", 1
        while any((self.directory / tier / f"{backup_id}{suffix}").exists()
                  for suffix in (MANIFEST_SUFFIX, BACKUP_SUFFIX)):  # never written over, whoever put it there
            n += 1
            backup_id = f"{stamp}-{tier}-{n}"
        return backup_id

    # ---- creating --------------------------------------------------------------------------

    def create(self, tier: str) -> BackupRecord:
        """Snapshot the live database, compress it, verify it, and add it to the catalog."""
        if tier not in (*TIERS, SAFETY):
            raise BackupFailed(f"unknown tier {tier!r}: use one of {', '.join(TIERS)}")
        if not self.database.is_file():
            raise BackupFailed(self.missing_database())
        self._refuse_before_writing(tier)
        # Stamped only once the checks above passed: a refused backup leaves the database as it was.
        identity.ensure(self.database)
        started = self.clock()
        snapshot = self.scratch(f"snapshot-{started:.6f}.db", self.live_size())
        try:
            try:
                sqlitefile.snapshot(self.database, snapshot)
            except sqlite3.DatabaseError as err:
                # SQLite reads a write refused by the file-size limit as "disk I/O error" or, cut short,
                # as "disk is full": the limit is the one to name when the copy cannot fit under it.
                if _file_size_limit() <= self.live_size():
                    raise _over_file_size_limit(snapshot, NOTHING_KEPT) from None
                if "disk is full" in str(err):
                    raise _out_of_space(snapshot.parent) from None
                raise BackupFailed(f"database {self.database} cannot be read by SQLite ({err}): no backup was "
                                   "kept") from None
            return self.catalogue(tier, snapshot, started)
        except OSError as err:
            if err.errno == errno.EFBIG:
                raise _over_file_size_limit(Path(err.filename or self.tmp), NOTHING_KEPT) from None
            if err.errno != errno.ENOSPC:
                raise
            raise _out_of_space(self.directory) from None
        finally:
            snapshot.unlink(missing_ok=True)

    def _refuse_before_writing(self, tier: str) -> None:
        """Refuse, reading only, what catalogue() would refuse after a snapshot, and another database's folder."""
        try:
            live = identity.read_file(self.database)
        except sqlite3.DatabaseError as err:
            raise BackupFailed(f"database {self.database} cannot be read by SQLite ({err}): no backup was kept; "
                               "nothing was changed") from None
        if tier != SAFETY and not live.tables:
            raise BackupFailed(f"database {self.database} holds no tables, so no backup was kept: the backups "
                               "before it stay the newest; nothing was changed")
        self._refuse_another_database(live.id)

    def _refuse_another_database(self, own: str | None) -> None:
        """One backup folder, one database: a retention over two databases' backups would delete one's
        to keep the other's. A database without an identity yet is not the one an identified backup is of."""
        other = next((r for r in self.records() if r.manifest.database.identity not in (None, own)), None)
        if other is not None:
            named = f"database {own}" if own else "a database without an opsmon identity"
            raise BackupFailed(f"{self.directory} holds backups of another database ({other.id} is of database "
                               f"{other.manifest.database.identity}, {self.database} is {named}): give each "
                               "database a backup folder of its own; nothing was changed")

    def taken_elsewhere(self) -> Path | None:
        """When the database does not exist: another file, still there, that the newest backup here was taken
        from (a typo in the path would otherwise adopt its backups, and leave that file without new ones)."""
        records = [] if self.database.exists() else self.records()
        if not records:
            return None
        source = Path(records[-1].manifest.database.path)
        if source.is_absolute() and source.is_file() and source.resolve() != self.database.resolve():
            return source
        return None

    def missing_database(self) -> str:
        """Why there is no database to work on, naming the file the backups here were taken from when it exists."""
        source = self.taken_elsewhere()
        if source is None:
            return f"database {self.database} does not exist"
        return (f"database {self.database} does not exist; backups in {self.directory} were taken from {source}: "
                "did you mean it? (database.path in the config, or --database)")

    def scratch(self, name: str, need: int) -> Path:
        """A path for a temporary database file of `need` bytes where it fits: the backup folder's .tmp,
        else beside the live database (its folder held the database, so it often has room for a
        copy). A job's leftovers in either are removed by the next job. BackupFailed when neither fits."""
        database_dir = self.database.parent
        files.own_directory(self.tmp)
        for folder, file_name in ((self.tmp, name), (database_dir, f"{self._beside_prefix()}{name}")):
            if _free(folder) >= need * 1.05 + MIB:
                return folder / file_name
        raise BackupFailed(f"no room for a temporary copy of the database ({need / MIB:.1f} MiB): {self.tmp} "
                           f"has {_free(self.tmp) / MIB:.1f} MiB free and {database_dir} {_free(database_dir) / MIB:.1f}"
                           " MiB; nothing was changed")

    def live_size(self) -> int:
        """The live database's bytes with its WAL: what a snapshot of it may take."""
        return sum(p.stat().st_size for p in (self.database, Path(f"{self.database}-wal")) if p.exists())

    def _beside_prefix(self) -> str:
        # Named after the database and this backup folder, so a cleanup never takes another's snapshot.
        return f".{self.database.name}.opsmon-snapshot-{hashlib.sha256(bytes(self.directory)).hexdigest()[:8]}-"

    def catalogue(self, tier: str, snapshot: Path, started: float) -> BackupRecord:
        """Compress a snapshot into the catalog, read it back, and write its manifest last.

        The snapshot stays where it is (the caller owns it). A scheduled backup of a database that
        fails integrity_check is refused: it would pass for a good one. A safety backup is not
        checked at all: it is kept as the database was, which a rollback must bring back.
        """
        backup_id = self._new_id(tier, started)
        packed = self.tmp / f"{backup_id}{BACKUP_SUFFIX}"
        check = tier != SAFETY
        try:
            # integrity_check, the slow part, reads the snapshot in a second thread while this one
            # compresses, reads the result back, and counts: on two cores it costs little extra time.
            with ThreadPoolExecutor(max_workers=1) as pool:
                checks = pool.submit(sqlitefile.file_checks, snapshot) if check else None
                with progress_bar(f"backup {backup_id}", snapshot.stat().st_size) as bar:
                    raw, compressed = gzipfile.compress(snapshot, packed, self.compression_level, bar.update)
                # Read back what is on disk: its hash, its gzip stream, and the bytes inside.
                if gzipfile.decompress(packed) != (raw, compressed):
                    raise BackupFailed(f"{packed} does not read back as written")
                facts = sqlitefile.describe(snapshot)
                found = _identity_of(snapshot)
                problems, facts["foreign_key_violations"] = checks.result() if checks else ([], None)
            if facts["unreadable"] and not problems:
                problems = [facts["unreadable"]]
            if problems and check:
                raise BackupFailed(f"the database fails integrity_check, so no backup was kept: "
                                   f"{'; '.join(problems[:5])}")
            if check and not facts["tables"]:
                # An emptied or 0-byte file is a valid SQLite database, but a "verified" backup of it
                # would push the real ones out of the retention.
                raise BackupFailed(f"database {self.database} holds no tables, so no backup was kept: the "
                                   "backups before it stay the newest")
            final = self.directory / tier / f"{backup_id}{BACKUP_SUFFIX}"
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(packed, final)
            files.fsync_dir(final.parent)
            finished = self.clock()
            manifest = Manifest(
                id=backup_id,
                tier=tier,
                sequence=self._next_sequence(),
                database=DatabaseFacts(path=str(self.database.resolve()), sha256=raw.sha256,
                                       size_bytes=raw.size_bytes,
                                       page_size=facts["page_size"], page_count=facts["page_count"],
                                       tables=facts["tables"], foreign_key_violations=facts["foreign_key_violations"],
                                       integrity_checked=check, identity=found.id if found else None,
                                       schema_sha256=found.schema_sha256 if found else None),
                backup=BackupFile(file=final.name, sha256=compressed.sha256, size_bytes=compressed.size_bytes,
                                  compression=f"gzip (isal level {self.compression_level})"),
                sqlite_version=sqlite3.sqlite_version,
                started_at=to_iso(started),
                finished_at=to_iso(finished),
                verification=Verification(ok=not problems, at=to_iso(finished),
                                          error=f"unreadable: {'; '.join(problems[:5])}" if problems else None),
            )
            catalog.write_manifest(final.with_name(backup_id + MANIFEST_SUFFIX), manifest)
        except BaseException:
            packed.unlink(missing_ok=True)
            raise
        log.info("backup %s: %d bytes from %d, in %.1fs", backup_id, compressed.size_bytes, raw.size_bytes,
                 finished - started)
        return self.find(backup_id)

    def _next_sequence(self) -> int:
        """One more than any backup's in the folder: creation order, whatever the clock says."""
        return max((r.manifest.sequence or 0 for r in self.records()), default=0) + 1

    # ---- verifying -------------------------------------------------------------------------

    def check(self, record: BackupRecord, into: Path | None = None, database: bool = True) -> None:
        """Raise VerifyFailed naming what is wrong: size, hash, gzip stream, integrity, row counts.

        With `into`, the verified database is left there (a restore uses it). With database=False
        only the bytes are checked: enough to bring back a safety backup exactly as it was taken.
        """
        name = f"backup {record.id}"
        changed_message = "the file's sha256 does not match the manifest (it changed after it was written)"
        try:
            manifest = self.manifest(record)
        except CatalogError as err:
            raise VerifyFailed(f"{name}: the manifest cannot be read: {err}") from None
        if not record.path.is_file():
            raise VerifyFailed(f"{name}: the file {record.path} is missing")
        size = record.path.stat().st_size
        if size != record.size_bytes:
            raise VerifyFailed(f"{name}: the file is {size} bytes, the manifest says {record.size_bytes} "
                               "(truncated or replaced)")
        target = into or self.scratch(f"verify-{record.id}.db", manifest.database.size_bytes)
        try:
            with progress_bar(f"verify {record.id}", manifest.database.size_bytes) as bar:
                try:
                    raw, compressed = gzipfile.decompress(record.path, target, bar.update)
                except gzipfile.CorruptGzip as err:
                    changed = f"{changed_message}; " if err.packed.sha256 != record.sha256 else ""
                    raise VerifyFailed(f"{name}: {changed}{err}") from None
                except OSError as err:  # the machine's limit, not damage of the backup: it is not marked bad
                    if err.errno == errno.EFBIG:
                        raise _over_file_size_limit(target, f"{name} was not checked") from None
                    raise
            if compressed.sha256 != record.sha256:
                raise VerifyFailed(f"{name}: {changed_message}")
            if raw.sha256 != manifest.database.sha256:
                raise VerifyFailed(f"{name}: the database inside does not match the manifest's sha256")
            if database:
                self._check_database(name, target, manifest.database.tables)
        except BaseException:
            target.unlink(missing_ok=True)
            raise
        if into is None:
            target.unlink()

    @staticmethod
    def _check_database(name: str, path: Path, tables: dict[str, int]) -> None:
        problems = sqlitefile.file_integrity(path)
        if problems:
            raise VerifyFailed(f"{name}: the database inside fails integrity_check: {'; '.join(problems[:5])}")
        counts = sqlitefile.describe(path)["tables"]
        if counts != tables:
            raise VerifyFailed(f"{name}: row counts {counts} differ from the manifest's {tables}")

    def verify(self, record: BackupRecord) -> str | None:
        """Check one backup and record the result in its manifest; the problem, or None when sound."""
        try:
            self.check(record)
            error = None
        except VerifyFailed as err:
            error = str(err)
        self._record_verification(record, error)
        return error

    def _record_verification(self, record: BackupRecord, error: str | None) -> None:
        try:
            manifest = self.manifest(record)
        except CatalogError:
            return  # nothing to record into; the error itself names the manifest
        manifest.verification = Verification(ok=error is None, at=to_iso(self.clock()), error=error)
        catalog.write_manifest(record.manifest_path, manifest)

    def unreadable_manifests(self) -> list[str]:
        """Manifests that exist but cannot be read (damaged, or of a newer format): verify reports each."""
        return self.catalog().problems

    # ---- pruning ---------------------------------------------------------------------------

    def prune(self, keep: dict[str, int]) -> list[BackupRecord]:
        """Delete what the retention policy lets go; returns what was deleted."""
        deleted = []
        for tier, count in keep.items():
            for record in to_prune([r for r in self.records() if r.tier == tier], count):
                self.delete(record)
                deleted.append(record)
        return deleted

    def prune_older(self, tier: str, max_age_seconds: float) -> list[BackupRecord]:
        """Delete the backups of `tier` taken more than `max_age_seconds` ago; returns what was deleted."""
        cutoff = self.clock() - max_age_seconds
        deleted = [r for r in self.records() if r.tier == tier and r.started_at < cutoff]
        for record in deleted:
            self.delete(record)
        return deleted

    def delete(self, record: BackupRecord) -> None:
        # Manifest first: if we die between the two, an unnamed file is left, never a dangling manifest.
        record.manifest_path.unlink(missing_ok=True)
        record.path.unlink(missing_ok=True)
        log.info("deleted backup %s", record.id)


def to_prune(records: list[BackupRecord], keep: int) -> list[BackupRecord]:
    """Of one tier's backups, those beyond the newest `keep`, sparing always the newest verified one.

    Newest in the order they were made, not by their stamps: after a clock that ran ahead is set back,
    the backup just taken is the newest, and the future-dated ones age out as new ones come.
    """
    newest_first = sorted(records, key=catalog.creation_order, reverse=True)
    spared = {r.id for r in newest_first[:max(keep, 1)]}
    last_good = next((r for r in newest_first if r.verified), None)
    if last_good is not None:
        spared.add(last_good.id)
    return [r for r in newest_first if r.id not in spared]


def _free(folder: Path) -> int:
    """Bytes free for us in the filesystem that holds `folder` (or would hold it)."""
    folder = Path(folder)
    while not folder.exists():
        folder = folder.parent
    stat = os.statvfs(folder)
    return stat.f_bavail * stat.f_frsize


def _out_of_space(folder: Path) -> BackupFailed:
    return BackupFailed(f"the filesystem of {folder} ran out of space during the backup ({_free(folder) / MIB:.1f} "
                        f"MiB free now); {NOTHING_KEPT}")


def _file_size_limit() -> float:
    """The largest file this process may write (ulimit -f), in bytes; infinite when unlimited."""
    limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    return float("inf") if limit == resource.RLIM_INFINITY else limit


def _over_file_size_limit(path: Path, consequence: str) -> BackupFailed:
    return BackupFailed(f"the file-size limit was hit writing {path} (ulimit -f: {_file_size_limit():.0f} bytes): "
                        f"{consequence}; raise the limit of the shell or service that runs opsmon-backup")


def _identity_of(snapshot: Path) -> identity.Identity | None:
    try:
        return identity.read_file(snapshot)
    except sqlite3.DatabaseError:  # a damaged safety snapshot: kept as it is, without a name
        return None
