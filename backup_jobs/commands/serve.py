"""`opsmon-backup serve`: the backup service: schedules, Litestream, the console and /metrics."""

from __future__ import annotations

import argparse
import errno

from backup_jobs.commands.command import Command, config_file_of
from backup_jobs.jobs import Jobs
from backup_jobs.service import serve
from opsmon.exits import Failure

# Errors only binding the service's address raises: a port another program holds, an address not of this machine.
CANNOT_LISTEN = {errno.EADDRINUSE, errno.EADDRNOTAVAIL}


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--web.listen-address", dest="listen_address",
                        help="host:port to serve on (default: backups.listen_address of the config)")


def run(args: argparse.Namespace, jobs: Jobs) -> int:
    try:
        return serve(jobs, listen_address=args.listen_address, config_source=config_file_of(args) or "command line")
    except OSError as err:
        if err.errno not in CANNOT_LISTEN:
            raise
        where = (f"--web.listen-address {args.listen_address}" if args.listen_address
                 else f"backups.listen_address {jobs.config.backups.listen_address}")
        raise Failure(f"{where}: cannot listen: {err.strerror} (a second app on this machine needs a port of its "
                      "own)") from None


COMMAND = Command(
    "serve", run, arguments=arguments,
    help="run the schedules, Litestream, and /metrics on the backup service port",
    examples=(("opsmon-backup --config.file opsmon.yml serve", "until SIGTERM; the jobs run on the config's schedules"),
              ("opsmon-backup serve --web.listen-address 127.0.0.1:9878", "on another address than the config's")))
