"""`opsmon-backup restore`: a backup, or the database as it was at a moment, whole or some tables."""

from __future__ import annotations

import argparse
import dataclasses
import sys

from backup_jobs import confirm
from backup_jobs.commands.command import Command, describe
from backup_jobs.inputs import RestoreRequest, parse_backup_id, parse_moment, parse_tables
from backup_jobs.jobs import Jobs
from opsmon.exits import EXIT_NOT_RESTORED, EXIT_OK


def arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("backup_id", nargs="?", metavar="ID", help="a backup's id (see: opsmon-backup list)")
    source.add_argument("--at", metavar="TIME", help="ISO 8601 moment with time zone, e.g. 2026-11-26T10:00:00Z")
    parser.add_argument("--tables", help="only these tables, comma-separated")
    parser.add_argument("--dry-run", action="store_true", help="restore into a temporary file, verify, report")
    parser.add_argument("--yes", action="store_true", help="no question on a terminal (without a terminal none is "
                                                           "asked)")
    parser.add_argument("--allow-other-database", action="store_true",
                        help="restore a source that holds another database than this one, on purpose (never the "
                             "default: the live database keeps its identity)")
    parser.add_argument("--create-database", action="store_true",
                        help="the database does not exist: create it from the source (a new machine); without it "
                             "such a restore is refused, so a typo in the path never brings back a stale copy")


def run(args: argparse.Namespace, jobs: Jobs) -> int:
    """A restore; on a terminal, only once the person has seen what it replaces and said yes. Without a
    terminal (a script, cron) or with --yes, no question is asked."""
    source = {"at": parse_moment(args.at)} if args.at else {"backup": parse_backup_id(args.backup_id, "ID")}
    request = RestoreRequest(**source, tables=parse_tables(args.tables), dry_run=args.dry_run,
                             allow_other_database=args.allow_other_database, create_database=args.create_database)
    if not (args.yes or args.dry_run) and sys.stdin.isatty():
        # The lock is not held while the person reads: the scheduled jobs go on meanwhile.
        with jobs.locked(f"{describe(args)} (its dry run, before asking)"):
            preview = jobs.restore(dataclasses.replace(request, dry_run=True))
        database = jobs.store.database
        if not confirm.ask(confirm.question(database, preview, jobs.store.live_size(), confirm.app_writing(database))):
            print("opsmon-backup: not restored; nothing was changed", file=sys.stderr)
            return EXIT_NOT_RESTORED
    with jobs.locked(describe(args)):
        print(jobs.restore(request).summary())
    return EXIT_OK


COMMAND = Command(
    "restore", run, arguments=arguments,
    help="restore a backup, or the database as it was at a moment",
    examples=(("opsmon-backup restore 20261126T020000Z-daily", "one backup, after a safety backup of the database"),
              ("opsmon-backup restore --at 2026-11-26T09:00:00Z --dry-run",
               "what a restore to that moment would bring back, and from where, changing nothing"),
              ("opsmon-backup restore 20261126T020000Z-daily --tables videos,approvals",
               "only those tables, checked before they are committed")))
