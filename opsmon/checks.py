"""What a service would trip over later, found at once: the database, every query against its schema, the paths."""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from opsmon.config import OpsmonConfig
from opsmon.files import sqlite_uri


@dataclass(frozen=True)
class Finding:
    """One thing wrong (a problem: exit 2) or worth changing (a warning), at a key of the config."""

    key: str
    cause: str
    warning: bool = False

    def line(self, source: str) -> str:
        return f"{source}: {self.key}: {'warning: ' if self.warning else ''}{self.cause}"


def problem(key: str, cause: str) -> Finding:
    return Finding(key, cause)


def warning(key: str, cause: str) -> Finding:
    return Finding(key, cause, warning=True)


def check_config(config: OpsmonConfig) -> list[Finding]:
    """Every finding of every section: what `opsmon check` and `opsmon-exporter --config.check` report."""
    return [*check_database(config), *check_exporter_paths(config), *check_backup_folders(config)]


def check_database(config: OpsmonConfig) -> list[Finding]:
    """The database, and every business and integrity query compiled against its real schema."""
    path = config.database.path
    findings, connection = _open_database(path)
    if connection is None:
        return findings
    try:
        findings += _journal_mode(connection, path)
        for number, query in enumerate(config.business):
            if query.query is None:  # a counter the app increments: no SQL to check
                continue
            findings += _query(connection, f"business[{number}].query", query.name, query.query,
                               needs=[*query.labels, query.value_column])
        for number, rule in enumerate(config.integrity.rules):
            findings += _query(connection, f"integrity.rules[{number}].query", rule.name, rule.query, needs=[])
            if rule.fix:
                findings += _compiles(connection, f"integrity.rules[{number}].fix", rule.name, rule.fix)
    finally:
        connection.close()
    return findings


def _open_database(path: Path) -> tuple[list[Finding], sqlite3.Connection | None]:
    """Opened read-only: a wrong path is reported, never created as an empty database."""
    if not path.exists():
        return [problem("database.path", f"{path} does not exist (opsmon never creates it: is the path right?)")], None
    if not path.is_file():
        return [problem("database.path", f"{path} is not a file")], None
    if not os.access(path, os.R_OK):
        return [problem("database.path", f"{path} is not readable by this user")], None
    connection = sqlite3.connect(sqlite_uri(path, "ro"), uri=True, timeout=5)
    try:
        connection.execute("PRAGMA schema_version").fetchone()
    except sqlite3.Error as err:
        connection.close()
        return [problem("database.path", f"{path} cannot be read as a SQLite database: {err}")], None
    return [], connection


def _journal_mode(connection: sqlite3.Connection, path: Path) -> list[Finding]:
    mode = connection.execute("PRAGMA journal_mode").fetchone()[0]
    if mode.lower() == "wal":
        return []
    return [warning("database.path", f"{path} is in rollback-journal mode ({mode}): the app's writes and opsmon's "
                                     "reads and backups block each other; WAL lets them run side by side "
                                     "(sqlite3 the.db 'PRAGMA journal_mode=WAL', once)")]


def _compiles(connection: sqlite3.Connection, key: str, name: str, sql: str) -> list[Finding]:
    """SQLite's own verdict: EXPLAIN prepares the statement against the schema without running it."""
    try:
        connection.execute(f"EXPLAIN {sql}")
    except sqlite3.Error as err:
        return [problem(key, f"{name}: {err}")]
    return []


def _query(connection: sqlite3.Connection, key: str, name: str, sql: str, needs: list[str]) -> list[Finding]:
    """The query compiles, is one SELECT that returns rows, and returns the columns it must."""
    found = _compiles(connection, key, name, sql)
    if found:
        return found
    try:
        # Wrapped so that SQLite names the columns without reading a row.
        cursor = connection.execute(f"SELECT * FROM (\n{sql.rstrip().rstrip(';')}\n) LIMIT 0")
    except sqlite3.Error:
        return [problem(key, f"{name}: must be one SELECT statement that returns rows")]
    columns = [column[0] for column in cursor.description]
    missing = [column for column in needs if column not in columns]
    if missing:
        return [problem(key, f"{name}: returns no column {', '.join(missing)} (it returns {', '.join(columns)})")]
    return []


def check_exporter_paths(config: OpsmonConfig) -> list[Finding]:
    exporter = config.exporter
    findings = [*_writable_folder("exporter.state_directory", exporter.state_directory)]
    for number, source in enumerate(exporter.logs):
        findings += _log_file(f"exporter.logs[{number}].path", source.path)
    if exporter.app_metrics_directory is not None:
        findings += _app_metrics_directory(exporter.app_metrics_directory)
    return findings


def _log_file(key: str, path: Path) -> list[Finding]:
    if path.exists():
        if not path.is_file() or not os.access(path, os.R_OK):
            return [problem(key, f"{path} is not a readable file")]
        return []
    if not path.parent.is_dir():
        return [problem(key, f"{path.parent} does not exist or is not a folder")]
    return [warning(key, f"{path} does not exist yet (read from its start once the app writes it)")]


def _app_metrics_directory(path: Path) -> list[Finding]:
    key = "exporter.app_metrics_directory"
    if not path.is_dir():
        return [problem(key, f"{path} does not exist: create it, and start the app with "
                             f"PROMETHEUS_MULTIPROC_DIR={path}")]
    if not os.access(path, os.R_OK | os.X_OK):
        return [problem(key, f"{path} is not readable by this user")]
    if not any(path.glob("*.db")):
        return [warning(key, f"{path} holds no metric files yet: the app is not running, or runs without "
                             f"PROMETHEUS_MULTIPROC_DIR={path}")]
    return []


def check_backup_folders(config: OpsmonConfig) -> list[Finding]:
    backups = config.backups
    if backups is None:
        return []
    folders = {"backups.directory": backups.directory, "backups.secondary_directory": backups.secondary_directory,
               "backups.litestream.replica_directory": backups.litestream.replica_directory}
    return [finding for key, path in folders.items() if path is not None for finding in _writable_folder(key, path)]


def _writable_folder(key: str, path: Path) -> list[Finding]:
    """A folder opsmon writes: there and writable, or creatable under the nearest folder that exists."""
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        return [problem(key, f"{existing} is not a folder")]
    if not os.access(existing, os.W_OK | os.X_OK):
        what = path if existing == path else f"{existing} (where {path} would be created)"
        return [problem(key, f"{what} is not writable by this user")]
    return []
