"""The starter config `opsmon init` writes for an app's own database, with examples written against its tables."""

from __future__ import annotations

import json
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from opsmon.config import Retention, TierSchedule
from opsmon.files import sqlite_uri


class CannotStart(Exception):
    """The starter config cannot be written; the message names the argument or file."""


@dataclass(frozen=True)
class Table:
    name: str
    columns: list[str]


def write_starter(out: Path, database: Path, log: Path | None = None, health_url: str | None = None) -> str:
    """Write the starter config to `out` (never over an existing file) and return its text."""
    text = starter_config(out, database, log, health_url)
    try:
        with open(out, "x", encoding="utf-8") as file:  # "x": an existing file is never overwritten
            file.write(text)
    except FileExistsError:
        raise CannotStart(f"--out {out}: the file exists; opsmon init never overwrites (give another --out)") from None
    except OSError as err:
        raise CannotStart(f"--out {out}: cannot write: {err.strerror}") from None
    return text


def starter_config(out: Path, database: Path, log: Path | None, health_url: str | None) -> str:
    base = out.absolute().parent
    tables = read_tables(database)
    name = database.stem
    backups = database.absolute().parent / f"{name}-backups"
    lines = [
        f"# opsmon's config for {_quoted(database.name)}, written by opsmon init. Relative paths are relative to "
        "this file.",
        f"# Check it with: opsmon check --config.file {_quoted(str(out))}",
        "",
        "database:",
        f"  path: {_path(database, base)}",
        f"  name: {_quoted(name)}",
        "",
        "exporter:",
        "  listen_address: 127.0.0.1:9877",
        "  # Where the app's processes write their metrics (opsmon.instrument): the folder must exist, and the",
        "  # app start with PROMETHEUS_MULTIPROC_DIR set to it.",
        "  # app_metrics_directory: /var/lib/myapp/metrics",
        *_log_lines(log, base),
        *_probe_lines(health_url),
        "",
        "backups:",
        f"  directory: {_path(backups, base)}",
        "  timezone: UTC",
        "  # The requirement's schedule and retention (the defaults, written out to be changed here).",
        f"  schedule: {_flow(TierSchedule().model_dump())}",
        f"  retention: {_flow(Retention().model_dump())}",
        "  # 3-2-1: a second copy on another disk, and an S3-compatible bucket:",
        "  # secondary_directory: /mnt/other-disk/opsmon-backups",
        "  # offsite: {bucket: my-backups, endpoint_url: https://s3.example.com}",
        "",
        "# SQLite's integrity_check and foreign_key_check run at every check, with nothing to configure.",
        "# Rules of your own: each query returns the rows that break the rule.",
        "integrity:",
        "  rules: []",
        *_rule_example(tables),
        "",
        "# States read with SQL and published as gauges (events are counters the app increments itself).",
        "business: []",
        *_business_example(tables, name),
    ]
    return "\n".join(lines) + "\n"


def read_tables(database: Path) -> list[Table]:
    """The app's tables and their columns, read-only; opsmon's own (_opsmon) and SQLite's left out."""
    if not database.is_file():
        raise CannotStart(f"--database {database}: no such file (opsmon init reads the tables of an existing "
                          "database)")
    connection = sqlite3.connect(sqlite_uri(database, "ro"), uri=True, timeout=5)
    try:
        names = [row[0] for row in connection.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' "
            "AND name NOT LIKE '\\_opsmon%' ESCAPE '\\' ORDER BY name")]
        return [Table(n, [row[1] for row in connection.execute("SELECT * FROM pragma_table_info(?)", (n,))])
                for n in names]
    except sqlite3.Error as err:
        raise CannotStart(f"--database {database}: cannot be read as a SQLite database: {err}") from None
    finally:
        connection.close()


def _log_lines(log: Path | None, base: Path) -> list[str]:
    if log is None:
        return ["  # logs:", "  #   - {source: app, path: /var/log/myapp/app.log, format: text}"]
    return ["  logs:", "    - source: app", f"      path: {_path(log, base)}", f"      format: {_log_format(log)}"]


def _log_format(log: Path) -> str:
    """json when the file's first line is a JSON object (opsmon.instrument's logs are), else text."""
    try:
        with open(log, encoding="utf-8", errors="replace") as file:
            first = file.readline()
        return "json" if isinstance(json.loads(first), dict) else "text"
    except (OSError, ValueError):
        return "text"


def _probe_lines(health_url: str | None) -> list[str]:
    if health_url is None:
        return ["  # probes:", "  #   - {service: app, url: http://127.0.0.1:8000/health}"]
    return ["  probes:", "    - service: app", f"      url: {_quoted(health_url)}"]


def _rule_example(tables: list[Table]) -> list[str]:
    table = next((t for t in tables if len(t.columns) > 1), None)
    if table is None:
        return []
    column = table.columns[1]
    return [
        "  # An example against your tables, in place of `rules: []`:",
        "  # rules:",
        f"  #   - name: {_snake(f'{table.name}_without_{column}')}",
        f"  #     description: {_quoted(f'Every row of {table.name} has its {column}.')}",
        f"  #     query: {_quoted(f'SELECT * FROM {_identifier(table.name)} WHERE {_identifier(column)} IS NULL')}",
    ]


def _business_example(tables: list[Table], database_name: str) -> list[str]:
    if not tables:
        return []
    table = tables[0].name
    return [
        "# An example against your tables, in place of `business: []`:",
        "# business:",
        f"#   - name: {_snake(f'business_{table}')}",
        f"#     help: {_quoted(f'Rows in {table} of {database_name} now.')}",
        f"#     query: {_quoted(f'SELECT count(*) AS value FROM {_identifier(table)}')}",
    ]


def _snake(text: str) -> str:
    """A metric or rule name from a table's or column's name, whatever characters those hold."""
    name = "".join(c if c.isascii() and c.isalnum() else "_" for c in text).lower()
    return f"_{name}" if name[:1].isdigit() else name


def _identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _quoted(value: str) -> str:
    """A YAML double-quoted scalar (a JSON string is one)."""
    return json.dumps(value)


def _path(path: Path, base: Path) -> str:
    """Relative to the config's folder when under it, so the folder may move as one."""
    path = path.absolute()
    try:
        return _quoted(str(path.relative_to(base)))
    except ValueError:
        return _quoted(os.fspath(path))


def _flow(mapping: dict) -> str:
    return "{" + ", ".join(f"{key}: {_quoted(str(value)) if isinstance(value, str) else value}"
                           for key, value in mapping.items()) + "}"
