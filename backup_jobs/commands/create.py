"""`opsmon-backup create`: back up the database now, and print the new backup's id."""

from __future__ import annotations

import argparse

from backup_jobs.commands.command import Command
from backup_jobs.jobs import Jobs
from opsmon.catalog import TIERS
from opsmon.exits import EXIT_OK


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tier", choices=TIERS, default="daily")


def run(args: argparse.Namespace, jobs: Jobs) -> int:
    print(jobs.backup(args.tier).id)
    return EXIT_OK


COMMAND = Command(
    "create", run, arguments=arguments, locked=True,
    help="back up the database now; prints the new backup's id",
    examples=(("opsmon-backup create --tier daily", "a daily backup, verified, then the tier pruned and copied"),
              ("opsmon-backup --database app.db --backup-dir backups create",
               "a backup of any SQLite file, with no config at all")))
