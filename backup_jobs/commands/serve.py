"""`opsmon-backup serve`: the backup service: schedules, Litestream, the console and /metrics."""

from __future__ import annotations

import argparse

from backup_jobs.commands.command import Command, config_file_of
from backup_jobs.jobs import Jobs
from backup_jobs.service import serve


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--web.listen-address", dest="listen_address",
                        help="host:port to serve on (default: backups.listen_address of the config)")


def run(args: argparse.Namespace, jobs: Jobs) -> int:
    return serve(jobs, listen_address=args.listen_address, config_source=config_file_of(args) or "command line")


COMMAND = Command(
    "serve", run, arguments=arguments,
    help="run the schedules, Litestream, and /metrics on the backup service port",
    examples=(("opsmon-backup --config.file opsmon.yml serve", "until SIGTERM; the jobs run on the config's schedules"),
              ("opsmon-backup serve --web.listen-address 127.0.0.1:9878", "on another address than the config's")))
