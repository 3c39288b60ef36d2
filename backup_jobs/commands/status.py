"""`opsmon-backup status`: is the data safe? Every part marked ok, warning or problem."""

from __future__ import annotations

import argparse
import json

from backup_jobs import report
from backup_jobs.commands.command import Command
from backup_jobs.jobs import Jobs
from backup_jobs.service import scheduled_jobs
from opsmon.exits import EXIT_OK, EXIT_PROBLEMS


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="the report as JSON, for scripts")


def run(args: argparse.Namespace, jobs: Jobs) -> int:
    found = report.build(jobs, report.ask_service, [(job.name, job.cron) for job in scheduled_jobs(jobs)])
    print(json.dumps(found.as_json(), indent=2) if args.json else found.text())
    return EXIT_OK if found.ok else EXIT_PROBLEMS


# Reads only, without the lock: it answers while a long job runs.
COMMAND = Command(
    "status", run, arguments=arguments,
    help="is the data safe? backups, copies, replica, drills, integrity and the service, each marked ok, warning or "
         "problem; exit status 3 when something is not well",
    examples=(("opsmon-backup status", "every part with what to do about the ones not well"),
              ("opsmon-backup status --json", "the same for a script; exit status 0: all is well, 3: not")))
