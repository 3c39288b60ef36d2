"""opsmon-backup's command line: each subcommand's help shows examples that parse, and every error exits with
the status of its kind and its message, whichever layer raised it."""

from __future__ import annotations

import io
import shlex
import sqlite3
import subprocess
import sys

import pytest

from backup_jobs import cli
from backup_jobs.commands import COMMANDS
from backup_jobs.locks import job_lock
from opsmon.exits import EXIT_BUSY, EXIT_FAILED, EXIT_NOT_RESTORED, EXIT_USAGE, MEANINGS, Failure
from tests.backup_helpers import demo_database

PATHS = ["--database", "live.db", "--backup-dir", "backups"]


@pytest.mark.parametrize("name", COMMANDS)
def test_each_subcommands_help_shows_its_examples_and_each_example_parses(name, capsys):
    with pytest.raises(SystemExit) as exited:
        cli.main([name, "--help"])
    shown = capsys.readouterr().out
    assert exited.value.code == 0 and shown.startswith(f"usage: opsmon-backup {name} ")
    for line, what in COMMANDS[name].examples:
        assert f"\n  {line}\n      {what}\n" in shown
        assert cli.build_parser().parse_args(shlex.split(line)[1:]).command == name


def test_python_dash_m_lists_every_subcommand_with_an_example_and_the_exit_statuses():
    shown = subprocess.run([sys.executable, "-m", "backup_jobs", "--help"], capture_output=True, text=True,
                           check=True, timeout=60).stdout
    for name, command in COMMANDS.items():
        assert f"\n    {name} " in shown and f"\n  {command.examples[0][0]}\n" in shown
    for status, meaning in MEANINGS.items():
        assert f"\n  {status}  {meaning}\n" in shown


@pytest.fixture
def kit(tmp_path, monkeypatch):
    """A folder with a small database and no opsmon.yml, as the current directory; a password on stdin."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "stdin", io.StringIO("a password long enough\n"))
    demo_database(tmp_path / "live.db", videos=20)
    (tmp_path / "notes.txt").write_text("not a database\n")
    return tmp_path


def a_backup(capsys) -> str:
    assert cli.main([*PATHS, "create"]) == 0
    return capsys.readouterr().out.strip()


# (the case, its arguments (`{backup}`: a backup taken first), the exit status, what the message says)
ERRORS = [
    ("a config file that is not there", ["--config.file", "none.yml", "status"], EXIT_USAGE,
     "none.yml: cannot read config file"),
    ("neither a config nor the two paths", ["status"], EXIT_USAGE,
     "give --config.file, or both --database and --backup-dir"),
    ("a moment that is not one", [*PATHS, "restore", "--at", "yesterday"], EXIT_USAGE,
     "--at 'yesterday': not an ISO 8601 moment"),
    ("a backup id the catalog lacks", [*PATHS, "verify", "20200101T000000Z-daily"], EXIT_USAGE,
     "no backup with id '20200101T000000Z-daily'"),
    ("a table the backup lacks", [*PATHS, "restore", "{backup}", "--tables", "nosuch"], EXIT_USAGE,
     "no table nosuch in both the database and the backup"),
    ("a restore that would create the database", ["--database", "missing.db", "--backup-dir", "backups", "restore",
                                                   "--at", "2020-01-01T00:00:00Z"], EXIT_USAGE,
     "missing.db does not exist: a restore would create it"),
    ("a user name with a space", [*PATHS, "user", "add", "two words"], EXIT_USAGE,
     "a user name is letters, digits and _"),
    ("a moment nothing holds", [*PATHS, "restore", "--at", "2020-01-01T00:00:00Z"], EXIT_NOT_RESTORED,
     "nothing holds the database at or before 2020-01-01T00:00:00Z"),
    ("the last verified backup of its tier", [*PATHS, "delete", "{backup}"], EXIT_FAILED,
     "is the last verified daily backup: it stays"),
    ("a database SQLite cannot read", ["--database", "notes.txt", "--backup-dir", "backups", "create"], EXIT_FAILED,
     "notes.txt cannot be read by SQLite (file is not a database): no backup was kept"),
    ("a backup folder that is a file", ["--database", "live.db", "--backup-dir", "notes.txt", "create"], EXIT_USAGE,
     "notes.txt is not a folder"),
]


@pytest.mark.parametrize("args, status, message", [case[1:] for case in ERRORS], ids=[case[0] for case in ERRORS])
def test_an_error_exits_with_the_status_of_its_kind_and_its_message(kit, capsys, args, status, message):
    backup = a_backup(capsys) if "{backup}" in args else None
    assert cli.main([arg.replace("{backup}", backup or "") for arg in args]) == status
    said = capsys.readouterr().err.splitlines()
    assert any(line.startswith("opsmon-backup: ") and message in line for line in said), said


def test_a_job_holding_the_lock_exits_busy_naming_it(kit, capsys):
    with job_lock(kit / "backups", "a test holding the lock"):
        assert cli.main([*PATHS, "create"]) == EXIT_BUSY
    assert "'a test holding the lock' (pid" in capsys.readouterr().err


def test_an_error_of_sqlite_itself_is_a_failure_naming_the_database():
    with pytest.raises(Failure) as failed, cli.failures_of_the_system():
        sqlite3.connect(":memory:").execute("SELECT * FROM nowhere")
    assert failed.value.exit_status == EXIT_FAILED
    assert str(failed.value) == "the database cannot be used: no such table: nowhere"
