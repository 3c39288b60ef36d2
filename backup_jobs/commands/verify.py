"""`opsmon-backup verify`: read backups back and prove them; exit 3 naming each one that fails."""

from __future__ import annotations

import argparse
import sys

from backup_jobs import humanize
from backup_jobs.commands.command import Command
from backup_jobs.jobs import Jobs
from opsmon.exits import EXIT_OK, EXIT_PROBLEMS


def arguments(parser: argparse.ArgumentParser) -> None:
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("backup_id", nargs="?", metavar="ID", help="a backup's id (see: opsmon-backup list)")
    which.add_argument("--all", action="store_true", help="every backup in the folder, and the manifests")


def run(args: argparse.Namespace, jobs: Jobs) -> int:
    problems = _verify(jobs, [args.backup_id] if args.backup_id else None)
    for problem in problems:
        print(problem, file=sys.stderr)
    return EXIT_PROBLEMS if problems else EXIT_OK


def _verify(jobs: Jobs, ids: list[str] | None) -> list[str]:
    """verify, with one bar over all the backups' bytes when there are several (--all)."""
    if ids is not None:
        return jobs.verify(ids)
    records = jobs.store.records()
    if len(records) < 2:
        return jobs.verify(None)
    total = sum(r.manifest.database.size_bytes for r in records)
    with humanize.overall(f"verify {len(records)} backups", total):
        return jobs.verify(None)


COMMAND = Command(
    "verify", run, arguments=arguments, locked=True,
    help="verify backups: hash, size, gzip stream, integrity, row counts",
    examples=(("opsmon-backup verify --all", "every backup; exit status 3, naming each damaged one, when any is"),
              ("opsmon-backup verify 20261126T020000Z-daily", "one backup, by its id (see: opsmon-backup list)")))
