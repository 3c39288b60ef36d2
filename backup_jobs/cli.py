"""`opsmon-backup`: the backup kit's command line, over one module per subcommand in backup_jobs/commands/."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sqlite3
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

from tqdm.contrib.logging import logging_redirect_tqdm

from backup_jobs import humanize
from backup_jobs.commands import COMMANDS
from backup_jobs.commands.command import config_file_of, describe
from backup_jobs.inputs import UsageError
from backup_jobs.jobs import Jobs
from opsmon import __version__
from opsmon.config import OpsmonConfig, load_config, parse_config
from opsmon.exits import EXIT_FAILED, MEANINGS, Failure
from opsmon.files import same_file

ON_A_TERMINAL = ("On a terminal, a restore asks first (--yes does not), and long work shows its progress on stderr "
                 "(never on a pipe, nor with --quiet); stdout's last line is the same either way.")


def description() -> str:
    statuses = "\n".join(f"  {status}  {meaning}" for status, meaning in MEANINGS.items())
    return (f"Back up a SQLite database, verify, copy, restore and drill its backups.\n\nexit statuses:\n{statuses}"
            f"\n\n{textwrap.fill(ON_A_TERMINAL, 100)}")


def build_parser() -> argparse.ArgumentParser:
    examples = "examples:\n" + "\n".join(f"  {command.examples[0][0]}" for command in COMMANDS.values())
    parser = argparse.ArgumentParser(prog="opsmon-backup", description=description(), epilog=examples,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config.file", dest="config_file",
                        help="the opsmon YAML config (default: opsmon.yml when it exists)")
    parser.add_argument("--database", help="the SQLite database (overrides the config)")
    parser.add_argument("--backup-dir", help="the backup directory (overrides the config)")
    parser.add_argument("--log.level", dest="log_level", default="info", choices=["debug", "info", "warning", "error"])
    parser.add_argument("--quiet", action="store_true", help="no progress bars, even on a terminal")
    parser.add_argument("--version", action="version", version=f"opsmon-backup {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS.values():
        command.arguments(subparsers.add_parser(command.name, help=command.help, description=command.help,
                                                epilog=command.epilog(),
                                                formatter_class=argparse.RawDescriptionHelpFormatter))
    return parser


def load(args: argparse.Namespace) -> tuple[OpsmonConfig, str | None]:
    """The config, and the file it came from (None: none applies): the file, with --database and
    --backup-dir over it; or those two alone.

    A --database that is not the config's database borrows nothing of the config: the replica,
    copies, integrity rules and schedules there belong to the config's database.
    """
    config_file = config_file_of(args)
    document, source, base = {}, "command line", Path.cwd()
    if config_file:
        config = load_config(config_file)
        if args.database and not same_file(Path(args.database), config.database.path):
            print(f"opsmon-backup: {args.database} is not the database of {config_file} ({config.database.path}): "
                  f"nothing of {config_file} applies to it (its backup folder, replica, copies, integrity rules, "
                  "schedules)", file=sys.stderr)
        else:
            document = config.model_dump(mode="json", exclude_defaults=True)
            source, base = config_file, Path(config_file).resolve().parent
    if not document and not (args.database and args.backup_dir):
        raise UsageError("give --config.file, or both --database and --backup-dir")
    if args.database:
        document.setdefault("database", {})["path"] = str(Path(args.database).absolute())
    if args.backup_dir:
        document.setdefault("backups", {})["directory"] = str(Path(args.backup_dir).absolute())
    config = parse_config(document, source, base)
    if config.backups is None:
        raise UsageError(f"{source}: backups: required to run opsmon-backup (or give --backup-dir)")
    if config.backups.directory.exists() and not config.backups.directory.is_dir():
        raise UsageError(f"{source}: backups.directory: {config.backups.directory} is not a folder")
    return config, None if source == "command line" else str(Path(source).absolute())


def run(args: argparse.Namespace, jobs: Jobs) -> int:
    command = COMMANDS[args.command]
    if not command.locked:
        return command.run(args, jobs)
    with jobs.locked(describe(args)):
        return command.run(args, jobs)


@contextlib.contextmanager
def failures_of_the_system() -> Iterator[None]:
    """The operating system's and SQLite's errors, which the kit does not raise itself, as the Failure they are
    to a person: a message and status 1, never a traceback."""
    try:
        yield
    except BrokenPipeError:
        raise  # stdout's reader went away: main stops quietly, with no message on a pipe that is gone
    except OSError as err:
        raise Failure(str(err)) from err
    except sqlite3.Error as err:
        raise Failure(f"the database cannot be used: {err}") from err


def main(argv: list[str] | None = None) -> int:
    try:
        code = _main(argv)
        sys.stdout.flush()  # here, where a closed pipe is caught, not at exit
        return code
    except BrokenPipeError:
        # The reader went away (`status | head -1`): stop quietly, as the Python docs advise, with stdout
        # on /dev/null so the interpreter's last flush at exit has nowhere to fail.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILED


def _main(argv: list[str] | None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    humanize.set_quiet(args.quiet)
    # A log line printed while a bar is drawn goes above it, not through it; the service draws no bars.
    redirect = logging_redirect_tqdm() if args.command != "serve" else contextlib.nullcontext()
    try:
        with redirect, failures_of_the_system():
            config, config_file = load(args)
            return run(args, Jobs(config, config_file=config_file))
    except Failure as err:
        print(f"opsmon-backup: {err}", file=sys.stderr)
        return err.exit_status
