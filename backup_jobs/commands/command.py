"""What each subcommand of opsmon-backup is: its name, help, examples, arguments and run."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from backup_jobs.jobs import Jobs


def no_arguments(parser: argparse.ArgumentParser) -> None:
    """For a command that takes none of its own."""


@dataclass(frozen=True)
class Command:
    name: str
    run: Callable[[argparse.Namespace, Jobs], int]  # returns the exit status; raises a Failure
    help: str  # one line in `opsmon-backup --help`
    examples: tuple[tuple[str, str], ...]  # (command line, what it does): in its --help; the first in the top one
    arguments: Callable[[argparse.ArgumentParser], None] = no_arguments
    locked: bool = False  # runs under the job lock, as every job that writes backups or the database does

    def epilog(self) -> str:
        return "examples:\n" + "\n".join(f"  {line}\n      {what}" for line, what in self.examples)


def describe(args: argparse.Namespace) -> str:
    """The job as the lock file and the catalog name it: the command line as given."""
    return " ".join(str(a) for a in sys.argv[1:]) or args.command


def config_file_of(args: argparse.Namespace) -> str | None:
    """--config.file, else opsmon.yml when it exists here."""
    return args.config_file or ("opsmon.yml" if Path("opsmon.yml").exists() else None)
