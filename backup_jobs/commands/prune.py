"""`opsmon-backup prune`: delete what the retention policy lets go, here and in the copies."""

from __future__ import annotations

import argparse

from backup_jobs.commands.command import Command
from backup_jobs.jobs import Jobs
from opsmon.exits import EXIT_OK


def run(args: argparse.Namespace, jobs: Jobs) -> int:
    for record in jobs.prune():
        print(f"deleted {record.id}")
    return EXIT_OK


COMMAND = Command(
    "prune", run, locked=True,
    help="delete backups the retention policy lets go, here and in the copies",
    examples=(("opsmon-backup prune", "keeps backups.retention's count of each tier; prints each backup deleted"),))
