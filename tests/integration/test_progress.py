"""Progress on long work, on a terminal only: bars (bytes done, rate, time left) on a pseudo-terminal, nothing on
a pipe or with --quiet, and stdout's last line the same either way."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import struct
import subprocess
import sys
import termios
import threading
from datetime import datetime, timezone
from pathlib import Path

import pytest
import yaml

from tests.backup_helpers import demo_database, opsmon_backup
from tests.conftest import new_bucket
from tests.integration.test_pitr import next_second

ID = r"\d{8}T\d{6}Z-(?:daily|weekly|monthly|safety)(?:-\d+)?"
# tqdm's bar: "backup 20261126T020000Z-daily:  40%|████      | 1.20M/3.00M [00:01<00:01, 1.05MB/s]"
BAR = r"{what}: +\d+%\|[^|]*\| [\d.]+\w?/[\d.]+\w? \[[\d:]+<[\d:?]+, +[\d.?]+\w?B/s\]"


def on_terminal(*args, cwd: Path, timeout: float = 120) -> tuple[int, str, str]:
    """opsmon-backup with stderr on a pseudo-terminal of 120 columns and stdout on a pipe, as a person runs it
    with `| tail -1`: (exit status, stdout, what the terminal showed)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    process = subprocess.Popen([sys.executable, "-m", "backup_jobs", *map(str, args)], stdout=subprocess.PIPE,
                               stderr=slave, stdin=subprocess.DEVNULL, cwd=cwd)
    os.close(slave)
    screen = bytearray()

    def read() -> None:
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: every writer of the terminal has closed it
                return
            if not chunk:
                return
            screen.extend(chunk)

    reader = threading.Thread(target=read)
    reader.start()
    stdout = process.stdout.read().decode()
    process.wait(timeout)
    reader.join(timeout)
    os.close(master)
    return process.returncode, stdout, screen.decode("utf-8", "replace")


def bar(what: str) -> re.Pattern:
    return re.compile(BAR.format(what=what))


@pytest.fixture
def kit(tmp_path):
    """A database of a few MiB, its backups, and a second folder for copies."""
    demo_database(tmp_path / "live.db", videos=20_000)
    (tmp_path / "opsmon.yml").write_text(yaml.safe_dump({
        "database": {"path": "live.db"},
        "backups": {"directory": "backups", "secondary_directory": "second-disk"}}))
    return tmp_path


def test_create_shows_its_progress_on_a_terminal_and_prints_only_the_id(kit):
    status, stdout, screen = on_terminal("create", "--tier", "daily", cwd=kit)
    assert status == 0 and re.fullmatch(f"{ID}\n", stdout), screen
    backup_id = stdout.strip()
    assert bar(f"backup {backup_id}").search(screen), screen
    # The copy to the second folder, and its reading back, each have their bar too.
    assert bar(f"copy daily/{backup_id}.db.gz to secondary").search(screen), screen
    assert bar(f"read back daily/{backup_id}.db.gz from secondary").search(screen), screen


def test_no_progress_on_a_pipe_and_none_with_quiet(kit):
    piped = opsmon_backup("create", "--tier", "daily", cwd=kit)
    assert piped.returncode == 0 and re.fullmatch(f"{ID}\n", piped.stdout)
    assert "%|" not in piped.stderr and "\r" not in piped.stderr and "B/s" not in piped.stderr
    status, stdout, screen = on_terminal("--quiet", "create", "--tier", "weekly", cwd=kit)
    assert status == 0 and re.fullmatch(f"{ID}\n", stdout)
    assert "%|" not in screen and "B/s" not in screen, screen
    assert "backup " in screen  # the log line is still there: only the bars are gone


@pytest.mark.parametrize("how", [[], ["--tables", "videos,approvals"], ["--at", "now"]],
                         ids=["full", "tables", "at a moment"])
def test_restore_shows_progress_and_its_summary_is_unchanged(kit, how):
    backup_id = opsmon_backup("create", "--tier", "daily", cwd=kit, check=True).stdout.strip()
    if how == ["--at", "now"]:
        how = ["--at", _iso_now()]
        source = []
    else:
        source = [backup_id]
    piped = opsmon_backup("restore", *source, *how, cwd=kit, check=True)
    status, stdout, screen = on_terminal("restore", *source, *how, cwd=kit)
    assert status == 0, screen
    # The summary, line for line, but for the safety backup's id and the age of the backup.
    normal = [re.sub(f"{ID}|taken [^)]*|, [^,]* before", "X", line) for line in piped.stdout.splitlines()]
    assert [re.sub(f"{ID}|taken [^)]*|, [^,]* before", "X", line) for line in stdout.splitlines()] == normal
    assert "%|" not in piped.stderr
    assert bar(f"verify {backup_id}").search(screen), screen  # the backup unpacked and checked
    assert bar(f"backup {ID}").search(screen), screen  # the safety backup of the database as it was


def test_verify_all_shows_one_bar_over_every_backup(kit):
    for tier in ("daily", "weekly", "monthly"):
        opsmon_backup("create", "--tier", tier, cwd=kit, check=True)
    status, stdout, screen = on_terminal("verify", "--all", cwd=kit)
    assert (status, stdout) == (0, ""), screen
    assert bar("verify 3 backups").search(screen), screen
    assert bar(f"verify {ID}").search(screen), screen


def test_a_drill_shows_the_copies_fetched(kit):
    backup_id = opsmon_backup("create", "--tier", "daily", cwd=kit, check=True).stdout.strip()
    piped = opsmon_backup("drill", cwd=kit, check=True)
    status, stdout, screen = on_terminal("drill", cwd=kit)
    assert status == 0, screen
    assert [line.split(";")[0] for line in stdout.splitlines()] == \
        [line.split(";")[0] for line in piped.stdout.splitlines()]
    assert bar(f"fetch daily/{backup_id}.db.gz from secondary").search(screen), screen
    assert bar(f"verify {backup_id}").search(screen), screen  # the backup folder's own drill


def test_copies_to_the_bucket_show_their_progress(tmp_path, s3):
    _, bucket = new_bucket(s3, tmp_path)
    demo_database(tmp_path / "live.db", videos=20_000)
    (tmp_path / "opsmon.yml").write_text(yaml.safe_dump({
        "database": {"path": "live.db"},
        "backups": {"directory": "backups",
                    "offsite": {"bucket": bucket, "prefix": "demo", "endpoint_url": s3,
                                "access_key_id_file": "key-id", "secret_access_key_file": "secret"}}}))
    status, stdout, screen = on_terminal("create", "--tier", "daily", cwd=tmp_path)
    assert status == 0 and re.fullmatch(f"{ID}\n", stdout), screen
    backup_id = stdout.strip()
    assert bar(f"copy daily/{backup_id}.db.gz to offsite").search(screen), screen
    assert bar(f"read back daily/{backup_id}.db.gz from offsite").search(screen), screen
    status, stdout, screen = on_terminal("drill", cwd=tmp_path)
    assert status == 0, screen
    assert bar(f"fetch daily/{backup_id}.db.gz from offsite").search(screen), screen


def _iso_now() -> str:
    """Now, to the second, and after the second the backup just taken began: --at takes whole seconds."""
    return datetime.fromtimestamp(next_second(), timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
