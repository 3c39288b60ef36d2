"""`opsmon-backup delete`: delete one backup, never the last verified one of its tier."""

from __future__ import annotations

import argparse

from backup_jobs.commands.command import Command
from backup_jobs.inputs import parse_backup_id
from backup_jobs.jobs import Jobs
from opsmon.exits import EXIT_OK


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("backup_id", metavar="ID", help="a backup's id (see: opsmon-backup list)")


def run(args: argparse.Namespace, jobs: Jobs) -> int:
    print(f"deleted {jobs.delete(parse_backup_id(args.backup_id, 'ID')).id}")
    return EXIT_OK


COMMAND = Command(
    "delete", run, arguments=arguments, locked=True,
    help="delete one backup (never the last verified one of its tier)",
    examples=(("opsmon-backup delete 20261126T020000Z-daily", "that backup; its copies go at the next sync"),))
