"""`opsmon-backup user`: add a console user or change a password; the password is read from stdin."""

from __future__ import annotations

import argparse
import sys
from getpass import getpass

from backup_jobs.commands.command import Command
from backup_jobs.jobs import Jobs
from backup_jobs.users import ROLES, Users
from opsmon.exits import EXIT_OK


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["add", "passwd"], help="add (or change) a user; passwd: a new password only")
    parser.add_argument("name")
    parser.add_argument("--role", choices=ROLES, default="viewer", help="with add")


def run(args: argparse.Namespace, jobs: Jobs) -> int:
    password = getpass("password: ") if sys.stdin.isatty() else sys.stdin.readline().rstrip("\n")
    users = Users(jobs.config.backups.console.users_file)
    if args.action == "passwd":
        users.change_password(args.name, password)
    else:
        users.add(args.name, password, args.role)
    print(f"user {args.name} ({users.account(args.name).role}) saved in {users.path}")
    return EXIT_OK


COMMAND = Command(
    "user", run, arguments=arguments,
    help="add or change a console user; the password is read from stdin",
    examples=(("opsmon-backup user add alice --role admin", "asks for her password on a terminal"),
              ("opsmon-backup user passwd alice",
               "a new password, read from stdin (a pipe, or asked for on a terminal); her role stays")))
