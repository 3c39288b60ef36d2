"""Restores into the live database, whole or by tables, with a safety backup first and a rollback on failure.

The sequence for every restore:
1. the source (a backup, or the Litestream replica at a moment) becomes a verified database
   file under `.tmp/`;
2. a safety backup of the live database is taken, and a marker file names it;
3. the source is written into the live database through SQLite (never a file swap);
4. the result is proven (a whole restore: the live database holds the verified file's pages, byte
   for byte, see Restorer._write; a restore of tables: integrity_check, foreign_key_check, the
   row counts, and every other table unchanged, before its commit); any failure writes the safety backup back;
5. the marker is removed. A restore killed before this point is rolled back by the next
   opsmon-backup command (`recover_interrupted`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from backup_jobs import identity, sqlitefile
from opsmon import files
from opsmon.catalog import SAFETY, TIERS, DatabaseFacts, to_iso
from opsmon.exits import EXIT_NOT_RESTORED, EXIT_USAGE, Failure
from backup_jobs.store import BackupFailed, BackupRecord, BackupStore, VerifyFailed

log = logging.getLogger(__name__)

MARKER = "restore-in-progress.json"
DAY = 86400
DAMAGED_DIR = "damaged"  # live files SQLite could not read, kept as they were before a restore replaced them


class RestoreFailed(Failure):
    """The restore did not happen; the live database is as it was before (the message says why)."""

    exit_status = EXIT_NOT_RESTORED


class BadRequest(Failure):
    """The restore asked for something that does not exist (a table); nothing was changed."""

    exit_status = EXIT_USAGE


@dataclass
class Report:
    """What a restore did or, with dry_run, would do."""

    source: str
    tables: list[str] | None
    dry_run: bool
    safety_backup: str | None = None
    row_counts_before: dict[str, int] = field(default_factory=dict)
    row_counts_after: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def changes(self) -> dict[str, int]:
        """Rows per table that the restore adds (positive) or takes away (negative)."""
        names = sorted(set(self.row_counts_before) | set(self.row_counts_after))
        return {n: self.row_counts_after.get(n, 0) - self.row_counts_before.get(n, 0) for n in names
                if self.row_counts_after.get(n, 0) != self.row_counts_before.get(n, 0)}

    def summary(self) -> str:
        what = f"tables {', '.join(self.tables)} of " if self.tables else ""
        verb = "would restore" if self.dry_run else "restored"
        lines = [f"{verb} {what}{self.source}"]
        if self.safety_backup:
            lines.append(f"safety backup of the database as it was: {self.safety_backup}")
        changes = self.changes()
        lines.append("row changes: " + (", ".join(f"{t} {d:+d}" for t, d in changes.items()) or "none"))
        lines.extend(self.notes)
        return "\n".join(lines)


class Restorer:
    def __init__(self, store: BackupStore, safety_days: int = 7, quick: bool = False):
        self.store = store
        self.safety_max_age = safety_days * DAY
        self.quick = quick  # quick_check instead of integrity_check after a restore (integrity.quick)
        self.marker = store.directory / MARKER
        self._live_changed = False  # whether the restore under way has committed a write to the live database

    @property
    def live(self) -> Path:
        return self.store.database

    # ---- the sources ------------------------------------------------------------------------

    def verified_copy(self, record: BackupRecord, database: bool | None = None) -> Path:
        """The backup decompressed and verified into a temporary file (see BackupStore.check).

        By default the database inside is checked again only when its integrity was not proven
        before: a backup that passed integrity_check and whose bytes hash to the same sha256 now
        holds the very database that passed.
        """
        if database is None:
            database = not (record.verified and self.store.manifest(record).database.integrity_checked)
        try:
            target = self.store.scratch(f"restore-{record.id}.db", record.manifest.database.size_bytes)
            self.store.check(record, into=target, database=database)
        except (VerifyFailed, BackupFailed) as err:
            raise RestoreFailed(f"{err}; nothing was changed") from None
        return target

    def checked(self, candidate: Path) -> Path:
        """A database from elsewhere (the Litestream replica) must pass integrity_check before it is used."""
        problems = sqlitefile.file_integrity(candidate)
        if problems:
            candidate.unlink(missing_ok=True)
            raise RestoreFailed(f"the restored copy fails integrity_check: {'; '.join(problems[:5])}; "
                                "nothing was changed")
        return candidate

    def newest_before(self, moment: float) -> BackupRecord | None:
        """The newest verified scheduled backup taken at or before `moment`, or None."""
        candidates = [r for r in self.store.own_catalog().backups
                      if r.verified and r.tier in TIERS and r.started_at <= moment]
        return max(candidates, key=lambda r: r.started_at, default=None)

    # ---- restoring --------------------------------------------------------------------------

    def restore(self, candidate: Path, source: str, tables: list[str] | None = None, dry_run: bool = False,
                expected: DatabaseFacts | None = None, allow_other: bool = False) -> Report:
        """Write a verified database file into the live one (all of it, or `tables`).

        `expected` is the backup manifest's facts of the database (row counts, broken foreign keys),
        when the candidate comes from a backup. A candidate of another database (identity.py) is
        refused, unless `allow_other`: then it is written and the live database keeps its identity.
        """
        report = Report(source=source, tables=tables, dry_run=dry_run)
        try:
            if not self.live.exists() and not tables:
                return self._restore_missing(candidate, report)
            unreadable = sqlitefile.unreadable(self.live)
            if unreadable:
                return self._restore_over_unreadable(candidate, report, unreadable)
            report.row_counts_before = _counts_if_readable(self.live)
            if tables:  # before _same_database, which may give the live database its identity
                self._check_tables(candidate, tables)
            own = self._same_database(candidate, source, allow_other, report)
            if dry_run:
                report.row_counts_after = self._dry_run(candidate, tables, report.notes)
                return report
            if not tables:
                sqlitefile.keep_litestream_tables(self.live, candidate)
            report.row_counts_after, report.safety_backup = self._write_with_safety(
                candidate, source, tables, expected, report.notes)
            if own is not None:
                identity.restore_identity(self.live, own)
            return report
        except sqlite3.Error as err:
            if self.marker.exists():  # a rollback is pending: the next command finishes it
                raise
            raise RestoreFailed(f"{self.live} cannot be used now ({err}); nothing was changed") from None
        finally:
            for leftover in (candidate, Path(f"{candidate}-wal"), Path(f"{candidate}-shm")):
                leftover.unlink(missing_ok=True)
            if not dry_run:  # after a failed restore too: its safety backup counts against the retention
                self.prune_safety()

    def _write_with_safety(self, candidate: Path, source: str, tables, expected: DatabaseFacts | None,
                           notes: list[str]):
        """Snapshot the live database, then write; the snapshot is catalogued as the safety backup
        while the write and its checks run, and copied back if either fails after the write committed.

        The marker names the snapshot for the next command only while the live database may differ
        from it: a failure before the write committed (a full disk, say) leaves nothing to roll back,
        and a rollback of it would throw away what the app wrote since."""
        started = self.store.clock()
        safety = None
        try:
            safety = self.store.scratch(f"safety-{started:.6f}.db", self.store.live_size())
            sqlitefile.snapshot(self.live, safety)
            sqlitefile.fsync_file(safety)
            files.write_json_atomically(self.marker, {"safety_snapshot": str(safety), "source": source,
                                                        "started_at": to_iso(started)})
        except (BackupFailed, sqlite3.Error, OSError) as err:
            self.marker.unlink(missing_ok=True)
            if safety is not None:
                safety.unlink(missing_ok=True)
            raise RestoreFailed(f"the safety backup could not be taken ({err}); nothing was changed") from None
        self._live_changed = False
        try:
            with ThreadPoolExecutor(max_workers=1) as pool:
                catalogued = pool.submit(self.store.catalogue, SAFETY, safety, started)
                try:
                    counts, failure = self._write(candidate, tables, expected, notes), None
                except Exception as err:  # noqa: BLE001 - whatever broke, the database goes back
                    failure = f"restoring {source} failed ({err})"
                try:
                    record, stored = catalogued.result(), None
                except Exception as err:  # noqa: BLE001 - without a stored safety backup, nothing is kept
                    record, stored = None, f"the safety backup could not be stored ({err})"
            if failure is None and stored is None:
                self.marker.unlink()
                return counts, record.id
            if self._live_changed:
                sqlitefile.copy_into(safety, self.live)  # if this fails too, the marker stays for the next command
                outcome = "the database was rolled back, as it was before"
            else:
                outcome = "nothing was written: the database is as it was"
            self.marker.unlink()
            kept = f" (safety backup {record.id})" if record else ""
            raise RestoreFailed(f"{failure or stored}; {outcome}{kept}")
        finally:
            if not self.marker.exists():
                safety.unlink(missing_ok=True)

    def _restore_missing(self, candidate: Path, report: Report) -> Report:
        """The database is gone (a lost disk): there is nothing to keep safe, only something to bring back."""
        with closing(sqlitefile.open_readonly(candidate)) as source:
            report.row_counts_after = sqlitefile.row_counts(source)
        report.notes.append(f"{self.live} did not exist: no safety backup was needed")
        if not report.dry_run:
            sqlitefile.copy_into(candidate, self.live)
        return report

    def _same_database(self, candidate: Path, source: str, allow_other: bool, report: Report) -> str | None:
        """Refuse a candidate of another database (RestoreFailed, naming both); with `allow_other`, say so
        and return the live identity to give back after the write."""
        live = identity.read_file(self.live)
        problem = identity.compare(identity.read_file(candidate), live, source, str(self.live))
        if problem is None:
            return None
        if not allow_other:
            raise RestoreFailed(f"{problem}; nothing was changed (to write it over {self.live} on purpose: "
                                "--allow-other-database)")
        if live.id is None and not report.dry_run:  # named now, on purpose, so that its name survives the write
            live = identity.Identity(identity.ensure(self.live), live.schema_sha256, live.tables)
        report.notes.append(f"{problem}: restored on purpose (--allow-other-database)"
                            + (f"; {self.live} keeps its identity {live.id}" if live.id else ""))
        return live.id

    def _restore_over_unreadable(self, candidate: Path, report: Report, why: str) -> Report:
        """The live file is beyond SQLite (random bytes, another kind of file): no snapshot of it can be
        taken, and SQLite cannot write into it. Its bytes are kept aside as they are, then the file is
        replaced whole: nobody can be using it as a database."""
        if report.tables:
            raise RestoreFailed(f"{self.live} cannot be read by SQLite ({why}): restore it whole, not by "
                                "tables; nothing was changed")
        with closing(sqlitefile.open_readonly(candidate)) as source:
            report.row_counts_after = sqlitefile.row_counts(source)
        if report.dry_run:
            report.notes.append(f"{self.live} cannot be read by SQLite ({why}): it would be kept aside as it is "
                                "and replaced")
            return report
        aside = self.store.directory / DAMAGED_DIR / f"{to_iso(self.store.clock())}-{self.live.name}"
        aside.mkdir(parents=True)
        for part in (self.live, Path(f"{self.live}-wal"), Path(f"{self.live}-shm")):
            if part.exists():
                shutil.copy2(part, aside / part.name)
                sqlitefile.fsync_file(aside / part.name)
        sqlitefile.replace_file(candidate, self.live)
        report.notes.append(f"{self.live} could not be read by SQLite ({why}); it was kept as it was in {aside}, "
                            "and replaced whole")
        return report

    def _check_tables(self, candidate: Path, tables: list[str]) -> None:
        """Refuse tables missing from either side, or whose columns cannot be copied (BadRequest,
        RestoreFailed); both before anything is written."""
        with closing(sqlitefile.open_readonly(self.live)) as live, \
                closing(sqlitefile.open_readonly(candidate)) as source:
            live_tables, source_tables = set(sqlitefile.tables(live)), set(sqlitefile.tables(source))
            unknown = [t for t in tables if t not in live_tables or t not in source_tables]
            if unknown:
                raise BadRequest(f"no table {', '.join(unknown)} in both the database and the backup "
                                 f"(tables: {', '.join(sorted(live_tables))}); nothing was changed")
            for table in tables:
                _column_plan(_columns(live, "main", table), _columns(source, "main", table), table)

    def _dry_run(self, candidate: Path, tables: list[str] | None, notes: list[str]) -> dict[str, int]:
        """Row counts the live database would have; table restores are tried on a copy of it."""
        if not tables:
            with closing(sqlitefile.open_readonly(candidate)) as source:
                return sqlitefile.row_counts(source)
        trial = self.store.tmp / "dry-run.db"
        sqlitefile.snapshot(self.live, trial)
        try:
            return _replace_tables(trial, candidate, tables, notes)
        finally:
            trial.unlink(missing_ok=True)

    def _write(self, candidate: Path, tables, expected: DatabaseFacts | None, notes: list[str]) -> dict[str, int]:
        """Write and prove; `_live_changed` says whether a write committed (and must be undone on failure).

        What a whole restore proves. The candidate is a database that passed integrity_check and was
        counted (when its backup was made or verified: its sha256 ties these very bytes to that check; a
        replica is checked in `checked`). Right after the copy commits, the WAL is checkpointed: the
        database file then holds every page of the copy, and of whatever committed after it. A child
        process compares the file with the candidate page by page: same page size and count, every byte
        equal but the header fields SQLite rewrites at each commit (sqlitefile.REWRITTEN_HEADER), which
        hold no data and no structure. Equal, the database the copy left is the candidate, page for page
        (a page that a later commit had changed would differ, unless it held the candidate's very bytes),
        so it gives the candidate's answers to integrity_check, foreign_key_check and row counts, which
        are functions of those bytes: it passes integrity_check, has the backup's broken references and
        the backup's row counts. That is what the
        restore proved before, by running integrity_check (quick_check with integrity.quick) and
        foreign_key_check on the live database and counting its rows (the checks below); and more: every
        row is the candidate's byte for byte, where integrity_check cannot see a changed value. What the
        application commits later stays in the WAL, beyond the comparison: its own write on the restored
        database; what it committed before the copy is overwritten by the copy. When the pages differ and
        nobody else committed since before the copy, the restore fails; when the application committed
        (its rows may make the pages differ) or held the checkpoint back, the restore proves itself by those
        checks, on what a watcher sees.
        """
        if tables:
            counts = _replace_tables(self.live, candidate, tables, notes)  # checked before its one commit
            self._live_changed = True
            return counts
        if expected is None or expected.foreign_key_violations is None:  # not from a checked backup: count now
            with closing(sqlitefile.open_readonly(candidate)) as source:
                expected_tables = sqlitefile.row_counts(source)
                allowed_fk = len(sqlitefile.foreign_key_problems(source))
        else:
            expected_tables, allowed_fk = expected.tables, expected.foreign_key_violations
        with closing(sqlite3.connect(self.live, isolation_level=None, timeout=60)) as writer, \
                closing(sqlite3.connect(self.live, isolation_level=None, timeout=60)) as watcher:
            version = _data_version(writer)
            sqlitefile.write_over(candidate, writer)  # one transaction: it commits whole, or not at all
            self._live_changed = True
            in_file = sqlitefile.checkpoint(writer)
            with _reading(watcher):  # the application's next commits stay out of the file while it is compared
                # The writer's data_version changes once another connection has committed, never with its own
                # commits: unchanged, nobody else committed from before the copy to what the watcher sees.
                # (The watcher's own moves by one for any number of commits.)
                only_ours = _data_version(writer) == version
                if in_file:
                    difference = _difference(self.live, candidate)
                    if difference is None:
                        return expected_tables
                    if only_ours:
                        raise RestoreFailed(difference)
                _check_live(watcher, allowed_fk, self.quick)
                counts = sqlitefile.row_counts(watcher)
        if only_ours and counts != expected_tables:
            raise RestoreFailed(f"row counts after the restore {counts} differ from the backup's {expected_tables}")
        if not only_ours:
            notes.append("the application wrote during the restore: row counts were checked in the backup, "
                         "integrity and foreign keys in the live database")
        else:
            notes.append("the application's readers kept the WAL from being checkpointed: the restore was proven "
                         f"by {'quick_check' if self.quick else 'integrity_check'}, foreign_key_check and row "
                         "counts rather than page by page")
        return counts

    def prune_safety(self) -> list[BackupRecord]:
        """Safety backups go by age, never by count: the state from before the first of several restores stays."""
        return self.store.prune_older(SAFETY, self.safety_max_age)

    def recover_interrupted(self) -> str | None:
        """Roll back a restore that was killed midway; a message when there was one to roll back."""
        if not self.marker.exists():
            return None
        try:
            marker = json.loads(self.marker.read_text())
            safety = Path(marker["safety_snapshot"])
            sqlitefile.copy_into(safety, self.live)
        except Exception as err:  # noqa: BLE001 - a marker we cannot follow must be seen by a person
            raise RestoreFailed(f"{self.marker} names an interrupted restore that cannot be rolled back "
                                f"automatically ({err}); restore a backup by hand, then delete the marker") from None
        self.marker.unlink()
        safety.unlink(missing_ok=True)
        self.prune_safety()
        return (f"a restore of {marker['source']} started at {marker['started_at']} was interrupted; "
                f"the database was rolled back to the snapshot taken just before it")

def _counts_if_readable(database: Path) -> dict[str, int]:
    """Row counts for the report; a database too damaged to count is what a restore is for."""
    try:
        with closing(sqlitefile.open_readonly(database)) as connection:
            return sqlitefile.row_counts(connection)
    except sqlite3.DatabaseError:
        return {}


def _data_version(connection: sqlite3.Connection) -> int:
    return connection.execute("PRAGMA data_version").fetchone()[0]


@contextmanager
def _reading(connection: sqlite3.Connection) -> Iterator[None]:
    """One read transaction, from now on: while it lasts, the connection sees the database as it is now, and
    no later commit reaches the database file (no checkpoint moves it there from the WAL; with a rollback
    journal, no commit can happen)."""
    connection.execute("BEGIN")
    try:
        connection.execute("SELECT count(*) FROM main.sqlite_master").fetchone()  # BEGIN waits for the first read
        yield
    finally:
        connection.execute("COMMIT")


def _difference(live: Path, candidate: Path) -> str | None:
    """How the live database file differs from the candidate (see Restorer._write), or None when it holds
    the candidate's pages and no others."""
    with closing(sqlitefile.open_readonly(candidate)) as source:
        size = sqlitefile.page_size(source)
    differing = sqlitefile.pages_differing(live, candidate, size)
    if not differing:
        return None
    listed = ", ".join(map(str, differing[:5])) + (", ..." if len(differing) > 5 else "")
    return f"after the copy {len(differing)} page(s) of the database differ from the verified copy (page {listed})"


def _check_live(connection: sqlite3.Connection, allowed_fk: int, quick: bool = False) -> None:
    problems = sqlitefile.integrity_problems(connection, quick)
    if problems:
        raise RestoreFailed(f"{'quick_check' if quick else 'integrity_check'} fails: {'; '.join(problems[:5])}")
    violations = sqlitefile.foreign_key_problems(connection)
    if len(violations) > allowed_fk:
        raise RestoreFailed(f"foreign_key_check finds {len(violations)} broken references "
                            f"(the backup had {allowed_fk}): {'; '.join(violations[:5])}")


def _replace_tables(target: Path, source: Path, tables: list[str], notes: list[str]) -> dict[str, int]:
    """Replace `tables` of `target` with those of `source` in one transaction, checked before commit.

    Only those tables change: the app's triggers are dropped and created again inside the transaction
    (SQLite has no switch for them that Python reaches), foreign key actions are off (ON DELETE CASCADE),
    and every other table is compared, rows and checksum, before the commit."""
    with closing(sqlite3.connect(target, isolation_level=None, timeout=60)) as connection:
        connection.execute("PRAGMA foreign_keys = OFF")  # no cascade; foreign_key_check judges the result
        allowed_fk = len(sqlitefile.foreign_key_problems(connection))
        connection.execute("ATTACH DATABASE ? AS restored", (str(source),))
        connection.execute("BEGIN IMMEDIATE")
        try:
            others = [t for t in _all_tables(connection) if t not in tables]
            untouched = _checksums(connection, others)
            triggers = _drop_triggers(connection)
            for table in tables:
                notes.extend(_copy_table(connection, table))
            for sql in triggers:
                connection.execute(sql)
            _check_live(connection, allowed_fk)
            now = _checksums(connection, others)
            changed = [t for t in others if now[t] != untouched[t]]
            if changed:
                raise RestoreFailed(f"restoring {', '.join(tables)} would also change {', '.join(changed)}")
            counts = sqlitefile.row_counts(connection)
            connection.execute("COMMIT")
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        finally:
            connection.execute("DETACH DATABASE restored")
    notes.append(f"only {', '.join(tables)} changed: the app's triggers did not fire, foreign key actions were off, "
                 "and every other table was checked unchanged (rows and checksum)")
    return counts


@dataclass(frozen=True)
class _Column:
    name: str
    declared: str
    not_null: bool
    default: str | None


def _columns(connection: sqlite3.Connection, schema: str, table: str) -> list[_Column]:
    """A table's columns as SQLite reads them (generated and hidden ones aside), by bound names: no SQL built."""
    found = connection.execute('SELECT name, type, "notnull", dflt_value FROM pragma_table_info(?, ?)', (table, schema))
    return [_Column(name, declared, bool(not_null), default) for name, declared, not_null, default in found]


@dataclass(frozen=True)
class _ColumnPlan:
    copied: list[str]  # the live table's names of the columns both sides have
    defaulted: list[str]  # only in the live table: they take their default
    left_out: list[str]  # only in the backup: nowhere to put them


def _column_plan(live: list[_Column], backup: list[_Column], table: str) -> _ColumnPlan:
    """Which columns a table restore copies; RestoreFailed, naming them, when the schemas cannot be matched."""
    in_backup = {c.name.lower(): c for c in backup}  # SQLite's column names ignore case
    in_live = {c.name.lower() for c in live}
    required = [c.name for c in live if c.name.lower() not in in_backup and c.not_null and c.default is None]
    if required:
        raise RestoreFailed(f"table {table}: column(s) {', '.join(required)} of the database are NOT NULL without a "
                            "default and the backup has no such column; nothing was changed")
    retyped = [f"{c.name} ({in_backup[c.name.lower()].declared or 'no type'} in the backup, {c.declared or 'no type'} "
               "now)" for c in live if c.name.lower() in in_backup
               and not _compatible(in_backup[c.name.lower()].declared, c.declared)]
    if retyped:
        raise RestoreFailed(f"table {table}: column(s) {', '.join(retyped)} changed type; nothing was changed")
    return _ColumnPlan(copied=[c.name for c in live if c.name.lower() in in_backup],
                       defaulted=[c.name for c in live if c.name.lower() not in in_backup],
                       left_out=[c.name for c in backup if c.name.lower() not in in_live])


NUMERIC_AFFINITIES = {"INTEGER", "REAL", "NUMERIC"}


def _affinity(declared: str) -> str:
    """SQLite's type affinity of a declared column type (its rules, in their order)."""
    kind = declared.upper()
    if "INT" in kind:
        return "INTEGER"
    if any(word in kind for word in ("CHAR", "CLOB", "TEXT")):
        return "TEXT"
    if "BLOB" in kind or not kind:
        return "BLOB"
    if any(word in kind for word in ("REAL", "FLOA", "DOUB")):
        return "REAL"
    return "NUMERIC"


def _compatible(backup_type: str, live_type: str) -> bool:
    """Whether values of a column declared `backup_type` keep their meaning in one declared `live_type`."""
    was, now = _affinity(backup_type), _affinity(live_type)
    return was == now or {was, now} <= NUMERIC_AFFINITIES or not live_type.strip()


def _copy_table(connection: sqlite3.Connection, table: str) -> list[str]:
    """Replace the rows of main's `table` with restored's, column by column; notes on what was not copied."""
    plan = _column_plan(_columns(connection, "main", table), _columns(connection, "restored", table), table)
    columns = ", ".join(map(sqlitefile.quote, plan.copied))
    name = sqlitefile.quote(table)
    connection.execute(f"DELETE FROM main.{name}")
    connection.execute(f"INSERT INTO main.{name} ({columns}) SELECT {columns} FROM restored.{name}")
    notes = []
    if plan.defaulted:
        notes.append(f"{table}: column(s) {', '.join(plan.defaulted)} are not in the backup: they took their default")
    if plan.left_out:
        notes.append(f"{table}: column(s) {', '.join(plan.left_out)} of the backup are no longer in the database: "
                     "left out")
    return notes


def _all_tables(connection: sqlite3.Connection) -> list[str]:
    """Every table of main but SQLite's own (opsmon's and Litestream's included: none may change)."""
    return [row[0] for row in connection.execute(
        "SELECT name FROM main.sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'")]


def _checksums(connection: sqlite3.Connection, tables: list[str]) -> dict[str, tuple[int, str]]:
    """Rows and a sha256 of every row, per table, in the order SQLite stores them."""
    found = {}
    for table in tables:
        digest, rows = hashlib.sha256(), 0
        for row in connection.execute(f"SELECT * FROM main.{sqlitefile.quote(table)}"):
            digest.update(repr(row).encode())
            rows += 1
        found[table] = (rows, digest.hexdigest())
    return found


def _drop_triggers(connection: sqlite3.Connection) -> list[str]:
    """Drop main's triggers; returns the statements that create them again."""
    triggers = connection.execute("SELECT name, sql FROM main.sqlite_master WHERE type = 'trigger'").fetchall()
    for name, _ in triggers:
        connection.execute(f"DROP TRIGGER main.{sqlitefile.quote(name)}")
    return [sql for _, sql in triggers]
