"""`opsmon-backup drill`: restore from every location to a temporary place, prove it, measure RTO and RPO."""

from __future__ import annotations

import argparse
import sys

from backup_jobs.commands.command import Command
from backup_jobs.jobs import Jobs
from opsmon.exits import EXIT_OK, EXIT_PROBLEMS


def run(args: argparse.Namespace, jobs: Jobs) -> int:
    results = jobs.drill()
    for result in results:
        print(result.line(), file=sys.stdout if result.ok else sys.stderr)
    return EXIT_OK if all(r.ok for r in results) else EXIT_PROBLEMS


COMMAND = Command(
    "drill", run, locked=True,
    help="restore from every location (backup folder, copies, replica) to a temporary place, prove it, and measure "
         "its RTO and RPO",
    examples=(("opsmon-backup drill", "a line per location; exit status 3 when one of them does not restore"),))
