"""The backup catalog on disk: typed, versioned manifests and job status, each with one writer and one reader.

Layout under the backup directory:

    <tier>/<id>.db.gz          the backup, standard gzip
    <tier>/<id>.json           its manifest (the truth about that backup)
    status.json                outcome of the last jobs: failures, verify runs, copies, drills,
                               restores, integrity checks, PITR replication; each with the config
                               file and command that ran it

Every reader asks on behalf of one database (`Database`): its backups are those of its identity, and
its part of status.json is keyed by its resolved path. The folder's own database (`database` in
status.json) has the top-level sections; a second config pointed at the same folder gets its own
under `others`, so neither reads the other's outcomes as its own. A status of before `database`
belongs to the database the folder's newest manifest was taken from (to any reader, when that file
is gone); the first write records it. These keys (`database`, `others`, each job's `by`) came without
a new format version: an older reader keeps them as they are and reads the top level, as before.

Both kinds of file carry a format `version` (files written before it existed have none: version 1).
Older shapes are migrated here, in the one reader, never in its callers: a status of before per-location
drills (`drill` alone) reads as the drill of the backup folder (`drills.local`).
A record that cannot be read, or was written by a newer opsmon, is reported by name and left as it
is, never skipped in silence; everything else goes on. A status file with a bad part is read
without that part, and the next write heals it. Every write is atomic (opsmon.files).
"""

from __future__ import annotations

import json
import logging
import os
import re
import sqlite3
from contextlib import closing
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Callable, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator

from opsmon import files

log = logging.getLogger(__name__)

FORMAT_VERSION = 1  # the newest format this opsmon reads and writes, for manifests and status alike
TIERS = ("daily", "weekly", "monthly")
SAFETY = "safety"  # taken before a restore or a fix; kept apart from the scheduled tiers
STATUS_FILE = "status.json"
LOCK_FILE = ".status.lock"
BACKUP_SUFFIX = ".db.gz"
MANIFEST_SUFFIX = ".json"
# A backup stamped later than this after now was taken under a clock that ran ahead (then corrected).
FUTURE_TOLERANCE_SECONDS = 300
# The only shape a backup id has: it becomes a file name, so nothing else may pass for one.
ID_PATTERN = re.compile(r"[0-9]{8}T[0-9]{6}Z-(daily|weekly|monthly|safety)(-[0-9]+)?")  # ASCII digits only
OPSMON_TABLE = "_opsmon"  # opsmon's own rows in a backed-up database: see backup_jobs/identity.py
IDENTITY_KEY = "identity"


class CatalogError(Exception):
    """A catalog file cannot be used; the message names the file and what is wrong."""


def to_timestamp(moment: str | None) -> float | None:
    """ISO 8601 (as manifests store it) to Unix seconds."""
    if not moment:
        return None
    parsed = datetime.fromisoformat(moment.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.timestamp()


def to_iso(timestamp: float) -> str:
    """Unix seconds to ISO 8601 UTC with a Z, as manifests and `list --json` show it."""
    return datetime.fromtimestamp(timestamp, timezone.utc).isoformat().replace("+00:00", "Z")


def _moment(value: str) -> str:
    try:
        to_iso(to_timestamp(value))  # and back: a moment before year 1 in UTC cannot be shown
    except (ValueError, OverflowError, OSError, TypeError):
        raise ValueError(f"not an ISO 8601 moment: {value!r}") from None
    return value


def _backup_id(value: str) -> str:
    if not ID_PATTERN.fullmatch(value):
        raise ValueError(f"not a backup id: {value!r}")
    return value


Moment = Annotated[str, AfterValidator(_moment)]
Timestamp = Annotated[float, Field(ge=0)]
Count = Annotated[int, Field(ge=0)]
BackupId = Annotated[str, AfterValidator(_backup_id)]


class Record(BaseModel):
    # strict: "12" is not a number nor 1 a boolean; finite numbers only. Keys this version does not
    # know are kept, so rewriting a record never drops what a newer minor writer added.
    model_config = ConfigDict(strict=True, allow_inf_nan=False, extra="allow")


# ---- manifests ------------------------------------------------------------------------------

class DatabaseFacts(Record):
    path: str  # the file it was taken from: absolute, and resolved (links followed) since it is compared
    sha256: str
    size_bytes: Count
    page_size: Count | None = None
    page_count: Count | None = None
    tables: dict[str, Count]
    foreign_key_violations: Count | None = None  # None: not counted (older manifests, safety backups)
    integrity_checked: bool = False  # older manifests did not say: their integrity is proven again
    identity: str | None = None  # which database this is (backup_jobs/identity.py); None in older manifests
    schema_sha256: str | None = None


class BackupFile(Record):
    file: str
    sha256: str
    size_bytes: Count
    compression: str | None = None


class Verification(Record):
    ok: bool | None = None
    at: Moment | None = None
    error: str | None = None


class Manifest(Record):
    version: int = FORMAT_VERSION
    id: BackupId
    tier: Literal["daily", "weekly", "monthly", "safety"]
    # Creation order in the backup folder, counted by the writer, not read off a clock that may have jumped
    # (None in older manifests: they were all made before any that has one).
    sequence: Count | None = None
    database: DatabaseFacts
    backup: BackupFile
    sqlite_version: str | None = None
    started_at: Moment
    finished_at: Moment
    verification: Verification = Verification()


@dataclass(frozen=True)
class BackupRecord:
    """One backup as the catalog knows it: its manifest, with times as Unix seconds."""

    id: str
    tier: str
    path: Path
    started_at: float
    finished_at: float
    size_bytes: int
    sha256: str
    verified: bool | None
    verified_at: float | None = None
    verify_error: str | None = None
    manifest: Manifest | None = field(default=None, compare=False, repr=False)

    @property
    def manifest_path(self) -> Path:
        return self.path.with_name(self.id + MANIFEST_SUFFIX)

    def as_json(self) -> dict:
        """The backup as `list --json` and the console's API show it."""
        return {"id": self.id, "tier": self.tier, "created_at": to_iso(self.started_at),
                "finished_at": to_iso(self.finished_at), "path": str(self.path), "size_bytes": self.size_bytes,
                "sha256": self.sha256, "verified": bool(self.verified), "verify_error": self.verify_error}


def _version(document: object, name: str) -> int:
    """The format version of a parsed file; CatalogError when it is not one this opsmon reads."""
    if not isinstance(document, dict):
        raise CatalogError(f"{name}: not a JSON object")
    version = document.get("version", 1)
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise CatalogError(f"{name}: version: not a format version: {version!r}")
    if version > FORMAT_VERSION:
        raise CatalogError(f"{name}: written by a newer opsmon (format {version}; this one reads up to "
                           f"{FORMAT_VERSION}): left as it is")
    return version


def _load_json(path: Path) -> object:
    try:
        return json.loads(path.read_bytes())
    except (UnicodeDecodeError, ValueError) as err:
        raise CatalogError(f"{path}: not valid JSON ({err})") from None
    except RecursionError:
        raise CatalogError(f"{path}: not valid JSON (nested too deep)") from None


def _problems(err: ValidationError, name: str) -> list[str]:
    return [f"{name}: {'.'.join(map(str, e['loc'])) or '(top)'}: {e['msg']}" for e in err.errors()]


def read_manifest(path: Path) -> BackupRecord:
    """One manifest, checked from its format version to its last field; CatalogError names what is wrong."""
    path = Path(path)
    try:
        document = _load_json(path)
    except OSError as err:
        raise CatalogError(f"{path}: cannot be read: {err.strerror}") from None
    _version(document, str(path))
    try:
        manifest = Manifest.model_validate(document)
    except ValidationError as err:
        raise CatalogError("; ".join(_problems(err, str(path)))) from None
    if path.name != manifest.id + MANIFEST_SUFFIX or path.parent.name != manifest.tier:
        raise CatalogError(f"{path}: it describes backup {manifest.id} of tier {manifest.tier}, "
                           "which does not belong at this path")
    verification = manifest.verification
    return BackupRecord(
        id=manifest.id,
        tier=manifest.tier,
        path=path.with_name(manifest.id + BACKUP_SUFFIX),
        started_at=to_timestamp(manifest.started_at),
        finished_at=to_timestamp(manifest.finished_at),
        size_bytes=manifest.backup.size_bytes,
        sha256=manifest.backup.sha256,
        verified=verification.ok,
        verified_at=to_timestamp(verification.at),
        verify_error=verification.error,
        manifest=manifest,
    )


def write_manifest(path: Path, manifest: Manifest) -> None:
    """The one writer of manifests: always in this opsmon's format version."""
    manifest.version = FORMAT_VERSION
    files.write_json_atomically(path, manifest.model_dump(mode="json"))


def own_file_name(tier: str, name: str) -> bool:
    """`name` is a backup file or manifest of opsmon's id pattern, of `tier`: the only files in a tier's
    folder that opsmon may remove (anything else there was put by someone else)."""
    for suffix in (BACKUP_SUFFIX, MANIFEST_SUFFIX):
        if name.endswith(suffix):
            found = ID_PATTERN.fullmatch(name.removesuffix(suffix))
            return found is not None and found.group(1) == tier
    return False


def manifest_paths(directory: Path) -> list[Path]:
    return sorted(Path(directory).glob(f"*/*{MANIFEST_SUFFIX}"))


# ---- status ---------------------------------------------------------------------------------

class Origin(Record):
    """What ran a job: the config file (None: the command line's --database and --backup-dir alone), and the
    command, as the job lock names it (`create --tier daily`, `scheduled backup-daily`, `console ...`)."""

    config_file: str | None = None
    via: Literal["cli", "service", "console"]
    command: str

    def text(self) -> str:
        where = {"cli": "on the command line", "service": "by the service", "console": "from the console"}[self.via]
        return f"`{self.command}` {where}, config {self.config_file or '(none)'}"


class TierStatus(Record):
    last_failure_at: Timestamp | None = None
    last_error: str | None = None
    by: Origin | None = None


class VerifyStatus(Record):
    last_run_at: Timestamp | None = None
    last_success_at: Timestamp | None = None
    by: Origin | None = None


class CopyStatus(Record):
    last_success_at: Timestamp | None = None
    last_error: str | None = None
    by: Origin | None = None


class RestoreStatus(Record):
    last_success_at: Timestamp
    source: str | None = None
    tables: list[str] | None = None
    safety_backup: str | None = None
    by: Origin | None = None


class DrillStatus(Record):
    last_run_at: Timestamp | None = None
    last_success_at: Timestamp | None = None
    last_failure_at: Timestamp | None = None
    last_error: str | None = None
    backup: str | None = None
    by: Origin | None = None


class LocationDrill(Record):
    """The last drill of one location (local, secondary, offsite, replica)."""

    last_run_at: Timestamp | None = None
    last_success_at: Timestamp | None = None
    last_failure_at: Timestamp | None = None
    last_error: str | None = None
    source: str | None = None  # what was restored: a backup id, or the replica up to a moment
    rto_seconds: Annotated[float, Field(ge=0)] | None = None  # how long the restore and its checks took
    rpo_seconds: Annotated[float, Field(ge=0)] | None = None  # how old the newest data it gave back was
    by: Origin | None = None


class IntegrityStatus(Record):
    checked_at: Timestamp
    ok: bool = False
    integrity_problems: list[str] = []
    foreign_key_violations: Count = 0
    rule_violations: dict[str, Count] = {}
    by: Origin | None = None


class PitrStatus(Record):
    earliest_at: Timestamp | None = None
    last_replicated_at: Timestamp


class Sections(Record):
    """What the jobs of one database recorded."""

    tiers: dict[str, TierStatus] = {}
    verify: VerifyStatus = VerifyStatus()
    copies: dict[str, CopyStatus] = {}
    restore: RestoreStatus | None = None
    drill: DrillStatus = DrillStatus()
    drills: dict[str, LocationDrill] = {}
    integrity: IntegrityStatus | None = None
    pitr: PitrStatus | None = None

    @model_validator(mode="after")
    def _location_drills(self) -> Sections:
        """`drill` alone is a status of before per-location drills: the backup folder's, kept by the next write."""
        old = self.drill  # every status written since has `drills`, if only {}
        if "drills" not in self.model_fields_set and any(at is not None for at in (
                old.last_run_at, old.last_success_at, old.last_failure_at)):
            self.drills = {"local": LocationDrill(
                last_run_at=old.last_run_at, last_success_at=old.last_success_at, last_failure_at=old.last_failure_at,
                last_error=old.last_error, by=old.by,
                source=f"backup {old.backup}" if old.backup else None)}  # then a bare id
        return self


class Status(Sections):
    """status.json: the folder's database's sections, and those of `others` by their resolved paths. Read
    through read_status, a Status holds the sections of the database asked about. Sections that could not
    be read are left out, and listed in `problems`."""

    version: int = FORMAT_VERSION
    database: str | None = None  # whose the top-level sections are: its resolved path
    others: dict[str, Sections] = {}
    # section ("" for the whole file) -> what could not be read there; never written back
    _problems: dict[str, list[str]] = PrivateAttr(default_factory=dict)
    _newer: bool = PrivateAttr(default=False)

    def problems(self, *sections: str) -> list[str]:
        """What could not be read, in these sections (all when none are named) and in the file as a whole."""
        wanted = dict.fromkeys(("", *(sections or self._problems)))
        return [problem for section in wanted for problem in self._problems.get(section, [])]

    @property
    def newer(self) -> bool:
        return self._newer


def _drop(document: dict, loc: tuple) -> None:
    """Remove the part of the status a validation error points at: a section, or one entry of tiers/copies."""
    section = loc[0]
    if section in ("tiers", "copies", "drills", "others") and len(loc) > 1 and isinstance(document.get(section), dict):
        document[section].pop(loc[1], None)
    else:
        document.pop(section, None)


def _salvage(document: dict, name: str) -> Status:
    """The status with every part that fails validation left out and reported."""
    problems: dict[str, list[str]] = {}
    while True:
        try:
            status = Status.model_validate(document)
            break
        except ValidationError as err:
            for error in err.errors():
                loc = error["loc"] or ("",)
                problems.setdefault(str(loc[0]), []).append(
                    f"{name}: {'.'.join(map(str, loc))}: {error['msg']} (found {error['input']!r:.80})")
                _drop(document, loc)
    status._problems = problems
    return status


def read_status(directory: str | os.PathLike, database: str | None = None) -> Status:
    """The one reader of status.json: the sections of `database` (a resolved path; None: the folder's own).
    A missing file is an empty status; a broken one is reported."""
    whole = _read_whole(directory)
    return whole if database is None or _owner(directory, whole) in (None, database) else _other(whole, database)


def _other(whole: Status, database: str) -> Status:
    """The sections of a database that is not the folder's own, as a Status of their own."""
    view = Status.model_validate(whole.others.get(database, Sections()).model_dump(mode="json"))
    view.database = database
    view._problems = {"": whole.problems("others")}  # the whole file's, and those of the others' part
    view._newer = whole.newer
    return view


def _owner(directory: str | os.PathLike, whole: Status) -> str | None:
    """Whose the top-level sections are: as recorded, else (a status of before it) the file the folder's
    newest manifest was taken from, while it exists; None: anyone's."""
    if whole.database is not None:
        return whole.database
    paths = sorted(manifest_paths(directory), key=lambda p: p.name)
    try:
        taken_from = Path(read_manifest(paths[-1]).manifest.database.path) if paths else None
    except (CatalogError, OSError):  # unreadable: named by the catalog's readers, and no owner to tell here
        return None
    return str(taken_from.resolve()) if taken_from is not None and taken_from.is_file() else None


def _read_whole(directory: str | os.PathLike) -> Status:
    path = Path(directory) / STATUS_FILE
    try:
        document = _load_json(path)
        _version(document, str(path))
    except FileNotFoundError:
        return Status()
    except (CatalogError, OSError) as err:
        status = Status()
        status._problems = {"": [str(err) if isinstance(err, CatalogError) else f"{path}: {err.strerror}"]}
        status._newer = "newer opsmon" in str(err)
        return status
    return _salvage(dict(document), str(path))


def update_status(directory: str | os.PathLike, change: Callable[[Status], None],
                  database: str | None = None) -> Status:
    """Apply `change` to the sections of `database` (None: the folder's own) under a lock, so concurrent
    jobs never lose each other's results. What could not be read is dropped here: the status heals. A
    status of a newer format is never written over."""
    directory = Path(directory)
    with files.locked(directory / LOCK_FILE):
        status = _read_whole(directory)
        if status.newer:
            log.error("%s", status.problems()[0])
            return status
        for problem in status.problems():
            log.warning("%s; rewritten without it", problem)
        owner = _owner(directory, status)
        if database is None or owner in (None, database):
            status.database = owner or database
            change(status)
        else:
            view = _other(status, database)
            change(view)
            status.others[database] = Sections.model_validate(view.model_dump(
                mode="json", include=set(Sections.model_fields)))
        status.version = FORMAT_VERSION
        files.write_json_atomically(directory / STATUS_FILE, status.model_dump(mode="json"))
        return status


# One writer per key of status.json; each writes the sections of `database` (None: the folder's own),
# and says what ran the job (`by`) where a job did:

def record_backup_failure(directory, tier: str, at: float, error: str, database: str | None = None,
                          by: Origin | None = None) -> None:
    def change(status: Status) -> None:
        status.tiers[tier] = TierStatus(last_failure_at=at, last_error=error, by=by)

    update_status(directory, change, database)


def record_verify(directory, run_at: float, passed: bool, database: str | None = None,
                  by: Origin | None = None) -> None:
    def change(status: Status) -> None:
        status.verify.last_run_at, status.verify.by = run_at, by
        if passed:
            status.verify.last_success_at = run_at

    update_status(directory, change, database)


def record_copy(directory, location: str, at: float, error: str | None = None, database: str | None = None,
                by: Origin | None = None) -> None:
    def change(status: Status) -> None:
        entry = status.copies.setdefault(location, CopyStatus())
        entry.last_error, entry.by = error, by
        if error is None:
            entry.last_success_at = at

    update_status(directory, change, database)


def record_restore(directory, at: float, source: str, tables: list[str] | None, safety_backup: str | None,
                   database: str | None = None, by: Origin | None = None) -> None:
    update_status(directory, lambda s: setattr(s, "restore", RestoreStatus(
        last_success_at=at, source=source, tables=tables, safety_backup=safety_backup, by=by)), database)


def record_drill(directory, run_at: float, finished_at: float, backup: str | None, error: str | None,
                 database: str | None = None, by: Origin | None = None) -> None:
    def change(status: Status) -> None:
        drill = status.drill
        drill.last_run_at, drill.last_error, drill.by = run_at, error, by
        if error is None:
            drill.last_success_at, drill.backup = finished_at, backup
        else:
            drill.last_failure_at = finished_at

    update_status(directory, change, database)


def record_location_drill(directory, location: str, at: float, source: str | None, error: str | None,
                          rto_seconds: float | None = None, rpo_seconds: float | None = None,
                          database: str | None = None, by: Origin | None = None) -> None:
    def change(status: Status) -> None:
        entry = status.drills.setdefault(location, LocationDrill())
        entry.last_run_at, entry.last_error, entry.source, entry.by = at, error, source, by
        if error is None:
            entry.last_success_at, entry.rto_seconds, entry.rpo_seconds = at, rto_seconds, rpo_seconds
        else:
            entry.last_failure_at = at

    update_status(directory, change, database)


def record_integrity(directory, result: IntegrityStatus, database: str | None = None) -> None:
    update_status(directory, lambda s: setattr(s, "integrity", result), database)


def record_pitr(directory, earliest_at: float, last_replicated_at: float, database: str | None = None) -> None:
    update_status(directory, lambda s: setattr(s, "pitr", PitrStatus(earliest_at=earliest_at,
                                                                     last_replicated_at=last_replicated_at)), database)


# ---- whose records ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Database:
    """The database a reader asks about: its resolved path keys its part of status.json; its identity
    picks its backups. `known` is False when its identity cannot be read (the file is missing, or
    beyond SQLite): then every backup in the folder may be its own (a lost disk restores from them)."""

    path: str
    identity: str | None = None
    known: bool = False

    def owns(self, record: BackupRecord) -> bool:
        theirs = record.manifest.database.identity if record.manifest else None
        return not self.known or theirs is None or theirs == self.identity


def database_of(path: str | os.PathLike) -> Database:
    """The database at `path`, with the identity opsmon gave it (the table _opsmon), read without writing."""
    path = Path(path).resolve()
    if not path.is_file():
        return Database(str(path))
    try:
        # A short wait: a scrape must not hang on a writer's lock (then the identity is not known, and no
        # backup is left out).
        with closing(sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, timeout=2)) as connection:
            try:
                row = connection.execute(f"SELECT value FROM main.{OPSMON_TABLE} WHERE key = ?",
                                         (IDENTITY_KEY,)).fetchone()
            except sqlite3.OperationalError as err:
                if "no such table" not in str(err):
                    raise
                row = None
    except sqlite3.DatabaseError:
        return Database(str(path))
    return Database(str(path), row[0] if row else None, known=True)


# ---- the catalog ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Catalog:
    backups: list[BackupRecord]
    status: Status = field(default_factory=Status)
    problems: list[str] = field(default_factory=list)  # manifests that could not be read, each named
    unreadable: list[Path] = field(default_factory=list)  # their paths: left as they are, never pruned

    @property
    def scheduled(self) -> list[BackupRecord]:
        """The backups of the scheduled tiers (safety backups left out)."""
        return [b for b in self.backups if b.tier in TIERS]

    def of_tier(self, tier: str) -> list[BackupRecord]:
        """A tier's backups, oldest first."""
        return sorted((b for b in self.backups if b.tier == tier), key=lambda b: (b.started_at, b.id))

    def newest_verified(self, tier: str) -> BackupRecord | None:
        """The newest backup of the tier that passed its last verification: what a restore would use."""
        return newest_verified(self.of_tier(tier))


def creation_order(record: BackupRecord) -> tuple:
    """Sort key of backups in the order they were made: by sequence, then (older manifests) by time."""
    sequence = record.manifest.sequence if record.manifest is not None else None
    return (sequence or 0, record.started_at, record.id)


def future_dated(records: list[BackupRecord], now: float) -> list[BackupRecord]:
    """The backups stamped after `now` (beyond FUTURE_TOLERANCE_SECONDS): taken while the clock ran ahead."""
    return [r for r in records if r.started_at > now + FUTURE_TOLERANCE_SECONDS]


def newest_verified(records: list[BackupRecord]) -> BackupRecord | None:
    """Of some backups, the newest that passed its last verification."""
    return max((r for r in records if r.verified), key=lambda r: (r.started_at, r.id), default=None)


def read_catalog(directory: str | os.PathLike, database: Database | None = None) -> Catalog:
    """The catalog as it is on disk now, oldest backup first: all of it, or what belongs to `database`
    (its backups and its status). A missing directory is an empty catalog."""
    directory = Path(directory)
    records, problems, unreadable = [], [], []
    for path in manifest_paths(directory):
        try:
            records.append(read_manifest(path))
        except CatalogError as err:
            problems.append(str(err))
            unreadable.append(path)
    records.sort(key=lambda r: (r.started_at, r.id))
    if database is not None:
        records = [r for r in records if database.owns(r)]
    return Catalog(backups=records, status=read_status(directory, database.path if database else None),
                   problems=problems, unreadable=unreadable)
