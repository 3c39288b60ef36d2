"""`opsmon-backup`: status, create, list, verify, restore, delete, prune, check, drill and serve, with exit statuses by kind.

Exit statuses: 0 done (status: all well); 1 the job failed (nothing was lost: the message says what
was kept); 2 bad arguments or config; 3 damaged backups, data problems or a failed drill found
(status: something is not well); 4 another job holds the lock; 5 a restore did not happen (the
database is as it was; rolled back if need be, or not confirmed). On a terminal, a restore asks first (--yes
does not), and long work shows its progress on stderr (never on a pipe, nor with --quiet); stdout's last
line is the same either way.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import os
import sqlite3
import sys
from getpass import getpass
from pathlib import Path

from tqdm.contrib.logging import logging_redirect_tqdm

from backup_jobs import confirm, humanize, report
from backup_jobs.inputs import RestoreRequest, UsageError, parse_backup_id, parse_moment, parse_tables
from backup_jobs.integrity import FixFailed
from backup_jobs.jobs import Jobs, Refused
from backup_jobs.locks import LockHeld
from backup_jobs.restore import BadRequest, RestoreFailed
from backup_jobs.service import scheduled_jobs, serve
from backup_jobs.store import BackupFailed, UnknownBackup
from backup_jobs.users import Users
from opsmon import __version__
from opsmon.catalog import TIERS
from opsmon.config import InvalidConfig, load_config, parse_config

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_PROBLEMS, EXIT_BUSY, EXIT_ROLLED_BACK = range(6)

log = logging.getLogger("backup_jobs")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="opsmon-backup", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config.file", dest="config_file",
                        help="the opsmon YAML config (default: opsmon.yml when it exists)")
    parser.add_argument("--database", help="the SQLite database (overrides the config)")
    parser.add_argument("--backup-dir", help="the backup directory (overrides the config)")
    parser.add_argument("--log.level", dest="log_level", default="info", choices=["debug", "info", "warning", "error"])
    parser.add_argument("--quiet", action="store_true", help="no progress bars, even on a terminal")
    parser.add_argument("--version", action="version", version=f"opsmon-backup {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    status = commands.add_parser("status", help="is the data safe? backups, copies, replica, drills, integrity and "
                                                "the service, each marked ok, warning or problem; exit status 3 "
                                                "when something is not well")
    status.add_argument("--json", action="store_true")

    create = commands.add_parser("create", help="back up the database now; prints the new backup's id")
    create.add_argument("--tier", choices=TIERS, default="daily")
    listing = commands.add_parser("list", help="list the backups")
    listing.add_argument("--json", action="store_true")
    verify = commands.add_parser("verify", help="verify backups: hash, size, gzip stream, integrity, row counts")
    which = verify.add_mutually_exclusive_group(required=True)
    which.add_argument("backup_id", nargs="?", metavar="ID")
    which.add_argument("--all", action="store_true")
    restore = commands.add_parser("restore", help="restore a backup, or the database as it was at a moment")
    source = restore.add_mutually_exclusive_group(required=True)
    source.add_argument("backup_id", nargs="?", metavar="ID")
    source.add_argument("--at", metavar="TIME", help="ISO 8601 moment with time zone, e.g. 2026-11-26T10:00:00Z")
    restore.add_argument("--tables", help="only these tables, comma-separated")
    restore.add_argument("--dry-run", action="store_true", help="restore into a temporary file, verify, report")
    restore.add_argument("--yes", action="store_true", help="no question on a terminal (without a terminal none is "
                                                            "asked)")
    restore.add_argument("--allow-other-database", action="store_true",
                         help="restore a source that holds another database than this one, on purpose (never the "
                              "default: the live database keeps its identity)")
    restore.add_argument("--create-database", action="store_true",
                         help="the database does not exist: create it from the source (a new machine); without it "
                              "such a restore is refused, so a typo in the path never brings back a stale copy")
    delete = commands.add_parser("delete", help="delete one backup (never the last verified one of its tier)")
    delete.add_argument("backup_id", metavar="ID")
    commands.add_parser("prune", help="delete backups the retention policy lets go, here and in the copies")
    check = commands.add_parser("check", help="integrity_check, foreign_key_check and the business rules")
    check.add_argument("--fix", action="store_true", help="apply the fixable rules' fixes (after a safety backup)")
    check.add_argument("--json", action="store_true")
    commands.add_parser("drill", help="restore from every location (backup folder, copies, replica) to a temporary "
                                      "place, prove it, and measure its RTO and RPO")
    user = commands.add_parser("user", help="add or change a console user; the password is read from stdin")
    user.add_argument("action", choices=["add", "passwd"], help="add (or change) a user; passwd: a new password only")
    user.add_argument("name")
    user.add_argument("--role", choices=["viewer", "admin"], default="viewer", help="with add")
    serve = commands.add_parser("serve", help="run the schedules, Litestream, and /metrics on the backup service port")
    serve.add_argument("--web.listen-address", dest="listen_address",
                       help="host:port to serve on (default: backups.listen_address of the config)")
    return parser


def load(args):
    """The config, and the file it came from (None: none applies): the file, with --database and
    --backup-dir over it; or those two alone.

    A --database that is not the config's database borrows nothing of the config: the replica,
    copies, integrity rules and schedules there belong to the config's database.
    """
    config_file = config_file_of(args)
    document, source, base = {}, "command line", Path.cwd()
    if config_file:
        config = load_config(config_file)
        if args.database and not _same_file(Path(args.database), config.database.path):
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
    return config, None if source == "command line" else str(Path(source).absolute())


def config_file_of(args) -> str | None:
    """--config.file, else opsmon.yml when it exists here."""
    return args.config_file or ("opsmon.yml" if Path("opsmon.yml").exists() else None)


def _same_file(given: Path, configured: Path) -> bool:
    return given.resolve() == configured.resolve() or (given.exists() and configured.exists()
                                                         and given.samefile(configured))


def run(args, jobs) -> int:
    command = args.command
    if command == "status":  # reads only: no lock, so it answers while a long job runs
        found = report.build(jobs, report.ask_service, [(job.name, job.cron) for job in scheduled_jobs(jobs)])
        print(json.dumps(found.as_json(), indent=2) if args.json else found.text())
        return EXIT_OK if found.ok else EXIT_PROBLEMS
    if command == "list":
        current = jobs.store.own_catalog()
        for problem in current.problems:
            print(f"opsmon-backup: left out: {problem}", file=sys.stderr)
        others = len(jobs.store.records()) - len(current.backups)
        if others:
            print(f"opsmon-backup: left out: {humanize.plural(others, 'backup')} of another database in "
                  f"{jobs.directory} (opsmon-backup verify --all names them)", file=sys.stderr)
        if args.json:
            print(json.dumps([r.as_json() for r in current.backups], indent=2))
        else:
            print(list_table(current.backups, jobs.clock()) if current.backups else
                  f"no backups in {jobs.directory} yet (opsmon-backup create --tier daily makes one)")
        return EXIT_OK
    if command == "user":
        return add_user(args, jobs)
    if command == "serve":
        return serve(jobs, listen_address=args.listen_address, config_source=config_file_of(args) or "command line")
    if command == "restore":
        return restore(args, jobs)
    with jobs.locked(_describe(args)):
        if command == "create":
            print(jobs.backup(args.tier).id)
            return EXIT_OK
        if command == "verify":
            problems = _verify(jobs, [args.backup_id] if args.backup_id else None)
            for problem in problems:
                print(problem, file=sys.stderr)
            return EXIT_PROBLEMS if problems else EXIT_OK
        if command == "delete":
            print(f"deleted {jobs.delete(parse_backup_id(args.backup_id, 'ID')).id}")
            return EXIT_OK
        if command == "prune":
            for record in jobs.prune():
                print(f"deleted {record.id}")
            return EXIT_OK
        if command == "check":
            result = jobs.check(fix=args.fix)
            _print_check(result, args.json)
            return EXIT_OK if result.ok else EXIT_PROBLEMS
        if command == "drill":
            results = jobs.drill()
            for result in results:
                print(result.line(), file=sys.stdout if result.ok else sys.stderr)
            return EXIT_OK if all(r.ok for r in results) else EXIT_PROBLEMS
    raise UsageError(f"unknown command {command}")


def restore(args, jobs) -> int:
    """A restore; on a terminal, only once the person has seen what it replaces and said yes. Without a
    terminal (a script, cron) or with --yes, no question is asked."""
    source = {"at": parse_moment(args.at)} if args.at else {"backup": parse_backup_id(args.backup_id, "ID")}
    request = RestoreRequest(**source, tables=parse_tables(args.tables), dry_run=args.dry_run,
                             allow_other_database=args.allow_other_database, create_database=args.create_database)
    if not (args.yes or args.dry_run) and sys.stdin.isatty():
        # The lock is not held while the person reads: the scheduled jobs go on meanwhile.
        with jobs.locked(f"{_describe(args)} (its dry run, before asking)"):
            preview = jobs.restore(dataclasses.replace(request, dry_run=True))
        database = jobs.store.database
        if not confirm.ask(confirm.question(database, preview, jobs.store.live_size(), confirm.app_writing(database))):
            print("opsmon-backup: not restored; nothing was changed", file=sys.stderr)
            return EXIT_ROLLED_BACK
    with jobs.locked(_describe(args)):
        print(jobs.restore(request).summary())
    return EXIT_OK


def add_user(args, jobs) -> int:
    password = getpass("password: ") if sys.stdin.isatty() else sys.stdin.readline().rstrip("\n")
    users = Users(jobs.config.backups.console.users_file)
    try:
        if args.action == "passwd":
            users.change_password(args.name, password)
        else:
            users.add(args.name, password, args.role)
    except ValueError as err:
        raise UsageError(str(err)) from None
    print(f"user {args.name} ({users.account(args.name).role}) saved in {users.path}")
    return EXIT_OK


def list_table(records, now: float) -> str:
    """The backups as an aligned table with a header, oldest first, sizes and ages for a person."""
    rows = [("ID", "TIER", "TAKEN", "AGE", "SIZE", "VERIFIED")]
    for r in records:
        verified = "yes" if r.verified else "not yet" if r.verified is None else f"NO: {r.verify_error}"
        rows.append((r.id, r.tier, humanize.moment_text(r.started_at), humanize.age_text(now - r.started_at),
                     humanize.size_text(r.size_bytes), verified))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    right = {4}  # sizes line up on their units
    return "\n".join("  ".join(cell.rjust(widths[i]) if i in right else cell.ljust(widths[i])
                               for i, cell in enumerate(row[:-1])) + "  " + row[-1] for row in rows)


def _verify(jobs, ids: list[str] | None) -> list[str]:
    """verify, with one bar over all the backups' bytes when there are several (--all)."""
    if ids is not None:
        return jobs.verify(ids)
    records = jobs.store.records()
    if len(records) < 2:
        return jobs.verify(None)
    total = sum(r.manifest.database.size_bytes for r in records)
    with humanize.overall(f"verify {len(records)} backups", total):
        return jobs.verify(None)


def _describe(args) -> str:
    return " ".join(str(a) for a in sys.argv[1:]) or args.command


def _print_check(result, as_json: bool) -> None:
    if as_json:
        print(json.dumps(result.as_json(), indent=2))
        return
    print("integrity: " + ("ok" if not result.integrity_problems else "; ".join(result.integrity_problems[:5])))
    print(f"foreign keys: {len(result.foreign_key_problems)} broken reference(s)")
    for problem in result.foreign_key_problems[:10]:
        print(f"  {problem}")
    for rule, count in result.rule_violations.items():
        print(f"rule {rule}: {count} violation(s)")
    for rule, count in result.fixed.items():
        print(f"fixed {count} row(s) of rule {rule} (safety backup {result.safety_backup})")


def main(argv=None) -> int:
    try:
        code = _main(argv)
        sys.stdout.flush()  # here, where a closed pipe is caught, not at exit
        return code
    except BrokenPipeError:
        # The reader went away (`status | head -1`): stop quietly, as the Python docs advise, with stdout
        # on /dev/null so the interpreter's last flush at exit has nowhere to fail.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILED


def _main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    humanize.set_quiet(args.quiet)
    # A log line printed while a bar is drawn goes above it, not through it; the service draws no bars.
    redirect = logging_redirect_tqdm() if args.command != "serve" else contextlib.nullcontext()
    try:
        with redirect:
            config, config_file = load(args)
            return run(args, Jobs(config, config_file=config_file))
    except (InvalidConfig, UsageError, UnknownBackup, BadRequest) as err:
        print(f"opsmon-backup: {err}", file=sys.stderr)
        return EXIT_USAGE
    except LockHeld as err:
        print(f"opsmon-backup: {err}", file=sys.stderr)
        return EXIT_BUSY
    except RestoreFailed as err:
        print(f"opsmon-backup: {err}", file=sys.stderr)
        return EXIT_ROLLED_BACK
    except BrokenPipeError:
        raise  # stdout's reader went away: main stops quietly, with no message on a pipe that is gone
    except (BackupFailed, FixFailed, Refused, OSError) as err:
        print(f"opsmon-backup: {err}", file=sys.stderr)
        return EXIT_FAILED
    except sqlite3.Error as err:  # a database SQLite cannot use: a message, never a traceback
        print(f"opsmon-backup: the database cannot be used: {err}", file=sys.stderr)
        return EXIT_FAILED
