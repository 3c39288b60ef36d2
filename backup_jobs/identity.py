"""Which database a file holds: an identity opsmon keeps in a table of its own, and the schema's fingerprint.

The table `_opsmon` (key, value) lives in the backed-up database itself, so the identity travels with
the data: into every backup, copy and Litestream replica, and back with every restore. opsmon's own
rows are left out of row counts and row-change reports. A source whose identity differs from the
live database's is another database, and no restore writes it over the live one unless told to.
"""

from __future__ import annotations

import hashlib
import logging
import sqlite3
import uuid
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

from backup_jobs.sqlitefile import not_the_apps
from opsmon.catalog import IDENTITY_KEY, OPSMON_TABLE as TABLE
from opsmon.files import sqlite_uri

log = logging.getLogger(__name__)


class OtherDatabase(Exception):
    """The source holds another database than the live one; the message names both."""


@dataclass(frozen=True)
class Identity:
    id: str | None  # None: opsmon never backed this database up (or could not write to it)
    schema_sha256: str
    tables: tuple[str, ...]

    def describe(self) -> str:
        named = f"database {self.id}" if self.id else "a database without an opsmon identity"
        return f"{named} (tables: {', '.join(self.tables) or 'none'})"


def _schema(connection: sqlite3.Connection) -> tuple[str, tuple[str, ...]]:
    rows = connection.execute(
        "SELECT type, name, tbl_name, coalesce(sql, '') FROM main.sqlite_master "
        f"WHERE {not_the_apps('tbl_name')} ORDER BY type, name").fetchall()
    tables = tuple(name for kind, name, _, _ in rows if kind == "table")
    return hashlib.sha256(repr(rows).encode()).hexdigest(), tables


def read(connection: sqlite3.Connection) -> Identity:
    schema, tables = _schema(connection)
    try:
        row = connection.execute(f"SELECT value FROM main.{TABLE} WHERE key = ?", (IDENTITY_KEY,)).fetchone()
    except sqlite3.DatabaseError:  # no such table (never given an identity), or it cannot be read
        row = None
    return Identity(row[0] if row else None, schema, tables)


def read_file(path: Path) -> Identity:
    with closing(sqlite3.connect(sqlite_uri(path, "ro"), uri=True, timeout=30)) as connection:
        return read(connection)


def ensure(path: Path) -> str | None:
    """The database's identity, given to it now if it has none. None when it cannot be written (read-only,
    damaged): its backups then say so, and restores compare schemas instead."""
    try:
        with closing(sqlite3.connect(path, timeout=30, isolation_level=None)) as connection:
            found = read(connection).id
            if found:
                return found
            connection.execute("BEGIN IMMEDIATE")
            connection.execute(f"CREATE TABLE IF NOT EXISTS main.{TABLE} (key TEXT PRIMARY KEY, value TEXT)")
            connection.execute(f"INSERT OR IGNORE INTO main.{TABLE} VALUES (?, ?)", (IDENTITY_KEY, uuid.uuid4().hex))
            connection.execute("COMMIT")
            return read(connection).id
    except sqlite3.Error as err:
        log.warning("%s has no opsmon identity and cannot be given one (%s): restores will compare schemas",
                    path, err)
        return None


def restore_identity(path: Path, wanted: str) -> None:
    """Give the live database back its own identity after a restore of another one on purpose."""
    with closing(sqlite3.connect(path, timeout=60)) as connection:
        connection.execute(f"CREATE TABLE IF NOT EXISTS main.{TABLE} (key TEXT PRIMARY KEY, value TEXT)")
        connection.execute(f"INSERT OR REPLACE INTO main.{TABLE} VALUES (?, ?)", (IDENTITY_KEY, wanted))
        connection.commit()


def compare(source: Identity, live: Identity, source_name: str, live_name: str) -> str | None:
    """None when the source is the live database (by identity; by schema where either has none), else
    why not, naming both."""
    if source.id and live.id:
        if source.id == live.id:
            return None
    elif source.schema_sha256 == live.schema_sha256:
        return None
    return (f"{source_name} is {source.describe()}, but {live_name} is {live.describe()}: another database")
