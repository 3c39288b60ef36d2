"""`opsmon-backup list`: the backups of this database, as a table for a person or JSON for a script."""

from __future__ import annotations

import argparse
import json
import sys

from backup_jobs import humanize
from backup_jobs.commands.command import Command
from backup_jobs.jobs import Jobs
from opsmon.catalog import BackupRecord
from opsmon.exits import EXIT_OK


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="an array of objects, for scripts")


def run(args: argparse.Namespace, jobs: Jobs) -> int:
    current = jobs.store.own_catalog()
    for problem in current.problems:
        print(f"opsmon-backup: left out: {problem}", file=sys.stderr)
    others = len(jobs.store.records()) - len(current.backups)
    if others:
        print(f"opsmon-backup: left out: {humanize.plural(others, 'backup')} of another database in "
              f"{jobs.directory} (opsmon-backup verify --all names them)", file=sys.stderr)
    if args.json:
        print(json.dumps([r.as_json() for r in current.backups], indent=2))
    else:
        print(list_table(current.backups, jobs.clock()) if current.backups else
              f"no backups in {jobs.directory} yet (opsmon-backup create --tier daily makes one)")
    return EXIT_OK


def list_table(records: list[BackupRecord], now: float) -> str:
    """The backups as an aligned table with a header, oldest first, sizes and ages for a person."""
    rows = [("ID", "TIER", "TAKEN", "AGE", "SIZE", "VERIFIED")]
    for r in records:
        verified = "yes" if r.verified else "not yet" if r.verified is None else f"NO: {r.verify_error}"
        rows.append((r.id, r.tier, humanize.moment_text(r.started_at), humanize.age_text(now - r.started_at),
                     humanize.size_text(r.size_bytes), verified))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    right = {4}  # sizes line up on their units
    return "\n".join("  ".join(cell.rjust(widths[i]) if i in right else cell.ljust(widths[i])
                               for i, cell in enumerate(row[:-1])) + "  " + row[-1] for row in rows)


COMMAND = Command(
    "list", run, arguments=arguments,
    help="list the backups",
    examples=(("opsmon-backup list", "id, tier, when taken, age, size and verified, oldest first"),
              ("opsmon-backup list --json", "id, tier, created_at, path, size_bytes, sha256, verified and more")))
