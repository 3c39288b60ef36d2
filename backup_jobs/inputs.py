"""What a person asks for, parsed by one set of rules for the command line and the console alike."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from opsmon.catalog import ID_PATTERN, TIERS, to_iso
from opsmon.exits import EXIT_USAGE, Failure


class UsageError(Failure):
    """The request cannot be carried out as asked; the message names the argument and says why."""

    exit_status = EXIT_USAGE


def parse_moment(text: object, name: str = "--at", clock=time.time) -> float:
    """An ISO 8601 moment with its time zone, e.g. 2026-11-26T10:00:00Z, not in the future."""
    if not isinstance(text, str):
        raise UsageError(f"{name}: give an ISO 8601 moment such as 2026-11-26T10:00:00Z")
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise UsageError(f"{name} {text!r}: not an ISO 8601 moment such as 2026-11-26T10:00:00Z") from None
    if moment.tzinfo is None:
        raise UsageError(f"{name} {text!r}: give the time zone too, e.g. {moment.isoformat()}Z for UTC")
    try:
        to_iso(moment.timestamp())  # a moment before year 1 in UTC cannot even be shown
    except (ValueError, OverflowError, OSError):
        raise UsageError(f"{name} {text!r}: out of the calendar this tool can show") from None
    if moment.timestamp() > clock():
        raise UsageError(f"{name} {text!r}: that moment is in the future; nothing holds data from it yet")
    return moment.timestamp()


def parse_tables(value: object, name: str = "--tables", known: list[str] | None = None) -> list[str] | None:
    """Table names, as 'a,b' or a list of strings, as SQLite spells them (spaces, quotes, any script: they are
    quoted wherever SQL names them); each one of `known` when given."""
    if value is None or value == "" or value == []:
        return None
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(t, str) for t in items):
        raise UsageError(f"{name}: give table names separated by commas, e.g. videos,approvals")
    tables = list(dict.fromkeys(t.strip() for t in items))
    if not all(tables):
        raise UsageError(f"{name} {value!r}: give table names separated by commas, e.g. videos,approvals")
    bad = [] if known is None else [t for t in tables if t not in known]
    if bad:
        raise UsageError(f"{name}: no table {', '.join(bad)} in the database (tables: {', '.join(known)})")
    return tables


def parse_backup_id(value: object, name: str = "backup") -> str:
    """A backup id by its shape alone; only the catalog says whether it names a backup."""
    if not isinstance(value, str) or not ID_PATTERN.fullmatch(value):
        raise UsageError(f"{name}: {value!r} is not a backup id (see: opsmon-backup list)")
    return value


def parse_tier(value: object, name: str = "tier") -> str:
    if value not in TIERS:
        raise UsageError(f"{name} must be one of {', '.join(TIERS)}, not {value!r}")
    return value


@dataclass(frozen=True)
class RestoreRequest:
    """A restore: of one backup, or of the database as it was at a moment; all tables or some."""

    backup: str | None = None
    at: float | None = None
    tables: list[str] | None = None
    dry_run: bool = False
    allow_other_database: bool = False  # write another database's data over this one, on purpose
    create_database: bool = False  # the database does not exist: make it from the source (a new machine)

    @property
    def at_iso(self) -> str | None:
        return to_iso(self.at) if self.at is not None else None

    def describe(self) -> str:
        what = self.backup if self.backup else f"the database at {to_iso(self.at)}"
        return what + (f" (tables {', '.join(self.tables)})" if self.tables else "")


def restore_request(values: Mapping, known_tables: list[str] | None = None, dry_run: object = False) -> RestoreRequest:
    """A restore from a form or a JSON body: {"backup": id} or {"at": moment}, optional "tables" and
    "create_database" (true: the database does not exist, make it)."""
    tables = parse_tables(values.get("tables"), "tables", known_tables)
    create = values.get("create_database", False)
    if not isinstance(create, bool):
        raise UsageError(f"create_database: true or false, not {create!r}")
    if values.get("backup") and values.get("at"):
        raise UsageError("give a backup or a moment, not both")
    if values.get("backup"):
        return RestoreRequest(backup=parse_backup_id(values["backup"]), tables=tables, dry_run=dry_run is True,
                              create_database=create)
    if values.get("at"):
        return RestoreRequest(at=parse_moment(values["at"], "at"), tables=tables, dry_run=dry_run is True,
                              create_database=create)
    raise UsageError("say what to restore: a backup id, or a moment")
