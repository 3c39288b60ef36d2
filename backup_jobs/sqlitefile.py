"""SQLite files: consistent snapshots of a live database, copies into one, and what a check sees in one."""

from __future__ import annotations

import os
import shutil
import sqlite3
from contextlib import closing
from pathlib import Path

from opsmon.files import fsync_dir

OPSMON_TABLE = "_opsmon"  # opsmon's own rows in a backed-up database: see backup_jobs/identity.py


def open_readonly(path: Path, timeout: float = 30) -> sqlite3.Connection:
    """A read-only connection that never creates the file: a missing database is an error."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"database {path} does not exist")
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=timeout)


def snapshot(source: Path, target: Path) -> None:
    """Copy a live database through SQLite's backup API in one step.

    One step is one read transaction: the copy is the database at one moment, while the
    application keeps writing (in WAL mode writers are never blocked by it). A copy in several
    steps would restart whenever another connection writes, and might never finish.
    """
    with closing(open_readonly(source)) as src, closing(sqlite3.connect(target)) as dst:
        src.backup(dst)
        # A file on its own: no -wal or -shm beside it when it is opened later (the live
        # database keeps its own journal mode when this copy is written back into it).
        dst.execute("PRAGMA journal_mode = DELETE")


def unreadable(path: Path) -> str | None:
    """Why SQLite cannot read the file as a database at all (not a database, encrypted...), or None.
    A database with damaged pages is still readable here: integrity_check says the rest."""
    try:
        with closing(open_readonly(path)) as connection:
            connection.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.DatabaseError as err:
        # Only what the file is, never how the machine is (a full disk, an I/O error, a lock): a healthy
        # database must never be taken for one to set aside and replace.
        return str(err) if "not a database" in str(err) else None
    return None


def replace_file(source: Path, target: Path) -> None:
    """Put a copy of `source` in place of `target` by rename, durable; the target's -wal and -shm go."""
    partial = target.with_name(f".{target.name}.restoring")
    try:
        shutil.copyfile(source, partial)
        fsync_file(partial)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    for sidecar in (Path(f"{target}-wal"), Path(f"{target}-shm")):
        sidecar.unlink(missing_ok=True)
    os.replace(partial, target)
    fsync_dir(target.parent)


def fsync_file(path: Path) -> None:
    with open(path, "rb") as file:
        os.fsync(file.fileno())


def copy_into(source: Path, live: Path, timeout: float = 60) -> None:
    """Replace the content of `live` with `source`, through SQLite, as one write transaction.

    Other connections to `live` keep working: they see the old content until the commit and the
    new one after, never a mix, and the file is never swapped under them. A process killed
    midway leaves an uncommitted transaction, which SQLite rolls back at the next open.
    """
    with closing(open_readonly(source)) as src, closing(sqlite3.connect(live, timeout=timeout)) as dst:
        src.backup(dst)


def integrity_problems(connection: sqlite3.Connection, quick: bool = False) -> list[str]:
    """What PRAGMA integrity_check (or quick_check) reports of the main database; empty when it is sound."""
    pragma = "quick_check" if quick else "integrity_check"
    try:
        rows = [row[0] for row in connection.execute(f"PRAGMA main.{pragma}")]
    except sqlite3.DatabaseError as err:  # damaged so badly that the check itself stops
        return [str(err)]
    return [] if rows == ["ok"] else rows


def foreign_key_problems(connection: sqlite3.Connection) -> list[str]:
    """One line per row of the main database whose foreign key points nowhere."""
    return [f"{table} row {rowid} points at a missing row of {parent}"
            for table, rowid, parent, _ in connection.execute("PRAGMA main.foreign_key_check")]


def quote(name: str) -> str:
    """An identifier for SQL, quoted so any table or column name is taken as a name."""
    return '"' + name.replace('"', '""') + '"'


def not_the_apps(column: str = "name") -> str:
    """An SQL condition on sqlite_master that leaves out what is not the application's: SQLite's tables,
    opsmon's (identity, drill canary) and Litestream's."""
    return (f"{column} NOT LIKE 'sqlite\\_%' ESCAPE '\\' AND {column} NOT LIKE '\\_litestream\\_%' ESCAPE '\\' "
            f"AND {column} != '{OPSMON_TABLE}'")


def tables(connection: sqlite3.Connection) -> list[str]:
    """The application's tables, by name."""
    return [row[0] for row in connection.execute(
        f"SELECT name FROM main.sqlite_master WHERE type = 'table' AND {not_the_apps()} ORDER BY name")]


def row_counts(connection: sqlite3.Connection) -> dict[str, int]:
    return {name: connection.execute(f"SELECT count(*) FROM main.{quote(name)}").fetchone()[0]
            for name in tables(connection)}


def file_integrity(path: Path, quick: bool = False) -> list[str]:
    """integrity_check of a database file nobody else uses; empty when it is sound."""
    with closing(open_readonly(path)) as connection:
        return integrity_problems(connection, quick)


def file_checks(path: Path) -> tuple[list[str], int | None]:
    """integrity_check and the count of broken references of a database file nobody else uses."""
    with closing(open_readonly(path)) as connection:
        problems = integrity_problems(connection)
        try:
            return problems, len(foreign_key_problems(connection))
        except sqlite3.DatabaseError as err:
            return problems or [str(err)], None


def describe(path: Path) -> dict:
    """Page size and count and row counts of a database file nobody else uses; `unreadable` says
    why a damaged one could not be counted."""
    with closing(open_readonly(path)) as connection:
        facts = {
            "page_size": connection.execute("PRAGMA page_size").fetchone()[0],
            "page_count": connection.execute("PRAGMA page_count").fetchone()[0],
            "tables": {},
            "unreadable": None,
        }
        try:
            facts["tables"] = row_counts(connection)
        except sqlite3.DatabaseError as err:  # a damaged table
            facts["unreadable"] = str(err)
        return facts
