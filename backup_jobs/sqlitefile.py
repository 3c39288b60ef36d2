"""SQLite files: consistent snapshots of a live database, copies into one, and what a check sees in one."""

from __future__ import annotations

import itertools
import os
import shutil
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

from opsmon.catalog import OPSMON_TABLE
from opsmon.files import fsync_dir, sqlite_uri

# Bytes of page 1 that SQLite itself rewrites when it commits a copy into a database, so a faithful copy
# differs from its source there and nowhere else: the format versions (2 in WAL mode), the change counter,
# the schema cookie, the version-valid-for number and the SQLite version that wrote it. None of them holds
# data or structure: no check, count or query result depends on them.
REWRITTEN_HEADER = (slice(18, 20), slice(24, 28), slice(40, 44), slice(92, 100))
COMPARED_AT_ONCE = 1 << 20  # bytes of each file read at a time when comparing pages
CHECKPOINT_PATIENCE_MS = 1000  # how long a checkpoint after a restore waits for the application


def open_readonly(path: Path, timeout: float = 30) -> sqlite3.Connection:
    """A read-only connection that never creates the file: a missing database is an error."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"database {path} does not exist")
    return sqlite3.connect(sqlite_uri(path, "ro"), uri=True, timeout=timeout)


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
    partial.unlink(missing_ok=True)  # a link planted at this name is removed, never written through
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


def keep_litestream_tables(live: Path, candidate: Path) -> None:
    """Give `candidate` the Litestream tables `live` has and it lacks, empty: written over the live database, it
    must not take them from a Litestream running on it, whose checkpoints fail without them."""
    with closing(open_readonly(live)) as source:
        wanted = source.execute("SELECT name, sql FROM main.sqlite_master WHERE type = 'table' AND "
                                "name LIKE '\\_litestream\\_%' ESCAPE '\\'").fetchall()
    with closing(sqlite3.connect(candidate, isolation_level=None)) as target:
        present = {row[0] for row in target.execute("SELECT name FROM main.sqlite_master WHERE type = 'table'")}
        for name, sql in wanted:
            if name not in present:
                target.execute(sql)


def fsync_file(path: Path) -> None:
    with open(path, "rb") as file:
        os.fsync(file.fileno())


def copy_into(source: Path, live: Path, timeout: float = 60) -> None:
    """Replace the content of `live` with `source`, through SQLite, as one write transaction (write_over)."""
    with closing(sqlite3.connect(live, timeout=timeout)) as dst:
        write_over(source, dst)


def write_over(source: Path, connection: sqlite3.Connection) -> None:
    """Replace the content of the database `connection` is open on with `source`, as one write transaction.

    Other connections keep working: they see the old content until the commit and the new one after,
    never a mix, and the file is never swapped under them (a swap would leave them on the old file,
    with their -wal and -shm). A process killed midway leaves an uncommitted transaction, which SQLite
    rolls back at the next open. SQLite's backup API copies the pages as they are; only the header
    fields of REWRITTEN_HEADER change.
    """
    with closing(open_readonly(source)) as src:
        src.backup(connection)


def checkpoint(connection: sqlite3.Connection) -> bool:
    """Move every committed page from the WAL into the database file; whether the file now holds them all.

    It waits CHECKPOINT_PATIENCE_MS at most for other connections' writer and for their readers of older
    snapshots (new writers wait meanwhile): false when they held it back, or when a reader's snapshot
    keeps later commits out of the file (a checkpoint never moves a page past what a reader reads).
    """
    if connection.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
        return True  # with a rollback journal every commit is written into the database file itself
    patience = connection.execute("PRAGMA busy_timeout").fetchone()[0]
    connection.execute(f"PRAGMA busy_timeout = {CHECKPOINT_PATIENCE_MS}")
    try:
        _, frames, moved = connection.execute("PRAGMA wal_checkpoint(FULL)").fetchone()
    finally:
        connection.execute(f"PRAGMA busy_timeout = {patience}")
    return 0 <= frames == moved  # -1: the checkpoint could not start (another one was running)


def page_size(connection: sqlite3.Connection) -> int:
    return connection.execute("PRAGMA main.page_size").fetchone()[0]


def differing_pages(path: Path, reference: Path, size: int) -> list[int]:
    """The pages (numbered from 1, of `size` bytes) in which `path` differs from `reference`: their bytes,
    the fields of REWRITTEN_HEADER aside, or a page that only one of them has.

    Only ever call it in a process that has no SQLite connection to `path`: closing a file drops every
    POSIX lock the process holds on it, SQLite's own included (pages_differing runs it in a child).
    """
    chunk = max(1, COMPARED_AT_ONCE // size) * size
    found = []
    with open(path, "rb") as live, open(reference, "rb") as wanted:
        for offset in itertools.count(0, chunk):
            have, expected = live.read(chunk), wanted.read(chunk)
            if not have and not expected:
                return found
            if offset == 0:
                have, expected = _without_rewritten_header(have), _without_rewritten_header(expected)
            if have != expected:
                found += _pages_apart(have, expected, offset, size)


def _pages_apart(have: bytes, expected: bytes, offset: int, size: int) -> list[int]:
    """Of two reads from `offset` (one may be shorter), the pages in which they differ."""
    return [(offset + at) // size + 1 for at in range(0, max(len(have), len(expected)), size)
            if have[at:at + size] != expected[at:at + size]]


def _without_rewritten_header(data: bytes) -> bytes:
    masked = bytearray(data)
    for field in REWRITTEN_HEADER:
        masked[field] = bytes(len(masked[field]))
    return bytes(masked)


def pages_differing(path: Path, reference: Path, size: int) -> list[int]:
    """differing_pages, read by a child process: this one may hold SQLite connections to `path`, whose
    locks closing the file here would drop (another process could then take the database for unused
    and delete its WAL under them)."""
    package_root = str(Path(__file__).resolve().parent.parent)  # the child runs this very code
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, (package_root,
                                                                             os.environ.get("PYTHONPATH"))))}
    result = subprocess.run([sys.executable, "-m", __name__, str(path), str(reference), str(size)],
                            capture_output=True, text=True, env=environment)
    if result.returncode != 0:
        why = (result.stderr.strip().splitlines() or [f"exit status {result.returncode}"])[-1]
        raise OSError(f"comparing {path} with {reference} failed: {why}")
    return [int(page) for page in result.stdout.split()]


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


if __name__ == "__main__":  # the child of pages_differing: PATH REFERENCE PAGE_SIZE
    print(*differing_pages(Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])))
