"""opsmon-backup on setups that are not the demo's: a config without backups, ids and moments that are not ones;
every error exits with its status and a message naming what is wrong, never a traceback, and changes nothing."""

from __future__ import annotations

import shlex
import subprocess
import sys

import pytest
import requests

from opsmon.exits import EXIT_FAILED, EXIT_USAGE
from tests.backup_helpers import demo_database, fingerprint, opsmon_backup
from tests.conftest import free_port, stop, wait_for, write_config

COMMAND_LINES = ["create --tier daily", "list", "list --json", "verify --all", "verify ID", "restore ID",
                 "restore --at 2026-11-26T10:00:00Z", "delete ID", "prune", "check", "check --json", "drill",
                 "status", "status --json", "serve"]


@pytest.mark.parametrize("line", COMMAND_LINES)
def test_every_command_on_a_config_without_backups_names_the_section_and_exits_with_the_usage_status(tmp_path, line):
    demo_database(tmp_path / "shop db ü.db", videos=5)
    config = write_config(tmp_path / "shop.yml", {"database": {"path": "shop db ü.db"}})
    result = opsmon_backup("--config.file", config, *shlex.split(line), cwd=tmp_path, timeout=60)
    assert result.returncode == EXIT_USAGE, result.stdout + result.stderr
    assert result.stderr == (f"opsmon-backup: {config}: backups: required to run opsmon-backup "
                             "(or give --backup-dir)\n")
    assert not (tmp_path / "backups").exists()


@pytest.mark.parametrize("line, message", [
    ("verify ../../etc/passwd", "no backup with id '../../etc/passwd' in "),
    ("restore ../../etc/passwd --dry-run", "ID: '../../etc/passwd' is not a backup id"),
    ("delete ''", "ID: '' is not a backup id"),
    ("restore --at notatime", "--at 'notatime': not an ISO 8601 moment"),
    ("restore --at 2026-12-03T00:00:00+25:00", "--at '2026-12-03T00:00:00+25:00': not an ISO 8601 moment"),
    ("restore --at 2026-11-26T10:00:00", "--at '2026-11-26T10:00:00': give the time zone too"),
])
def test_ids_and_moments_that_are_none_are_named_and_the_database_is_left_alone(tmp_path, line, message):
    database = demo_database(tmp_path / "shop.db", videos=5)
    before = fingerprint(database)
    result = opsmon_backup("--database", database, "--backup-dir", tmp_path / "backups", *shlex.split(line),
                           cwd=tmp_path, timeout=60)
    assert result.returncode == EXIT_USAGE, result.stdout + result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr
    assert fingerprint(database) == before


def test_a_second_app_s_service_on_the_first_s_port_names_the_address_and_exits(tmp_path):
    port = free_port()
    configs = {}
    for app in ("shop", "blog"):
        (tmp_path / app).mkdir()
        demo_database(tmp_path / app / "live.db", videos=5)
        configs[app] = write_config(tmp_path / app / "opsmon.yml", {
            "database": {"path": "live.db"}, "backups": {"directory": "backups", "listen_address": f"127.0.0.1:{port}"}})
    first = subprocess.Popen([sys.executable, "-m", "backup_jobs", "--config.file", str(configs["shop"]), "serve"],
                             cwd=tmp_path / "shop", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: requests.get(f"http://127.0.0.1:{port}/-/healthy", timeout=2).ok, what="the first service")
        second = opsmon_backup("--config.file", configs["blog"], "serve", cwd=tmp_path / "blog", timeout=60)
    finally:
        stop(first)
    assert second.returncode == EXIT_FAILED, second.stderr
    assert second.stderr.endswith(f"opsmon-backup: backups.listen_address 127.0.0.1:{port}: cannot listen: Address "
                                  "already in use (a second app on this machine needs a port of its own)\n")


def test_a_backup_folder_that_is_a_file_is_named_by_list_and_status(tmp_path):
    database = demo_database(tmp_path / "shop.db", videos=5)
    (tmp_path / "backups").write_text("not a folder")
    for line in (["list"], ["status"], ["create", "--tier", "daily"]):
        result = opsmon_backup("--database", database, "--backup-dir", tmp_path / "backups", *line, cwd=tmp_path)
        assert result.returncode == EXIT_USAGE, (line, result.stdout, result.stderr)
        assert f"{tmp_path / 'backups'} is not a folder" in result.stderr


def test_restore_at_a_date_with_its_zone_suggests_a_moment_that_parses(tmp_path):
    database = demo_database(tmp_path / "shop.db", videos=5)
    result = opsmon_backup("--database", database, "--backup-dir", tmp_path / "backups", "restore", "--at",
                           "2026-11-26Z", "--dry-run", cwd=tmp_path)
    assert result.returncode == EXIT_USAGE and "2026-11-26ZZ" not in result.stderr
    assert "e.g. 2026-11-26T00:00:00Z for UTC" in result.stderr


def test_status_knows_its_own_service_through_a_symlinked_database_path(tmp_path):
    database = demo_database(tmp_path / "shop.db", videos=5)
    (tmp_path / "link.db").symlink_to(database)
    port = free_port()
    backups = {"directory": "backups", "listen_address": f"127.0.0.1:{port}"}
    served = write_config(tmp_path / "served.yml", {"database": {"path": "link.db"}, "backups": backups})
    asked = write_config(tmp_path / "asked.yml", {"database": {"path": "shop.db"}, "backups": backups})
    service = subprocess.Popen([sys.executable, "-m", "backup_jobs", "--config.file", str(served), "serve"],
                               cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: "opsmon_backup_service_info" in requests.get(f"http://127.0.0.1:{port}/metrics",
                                                                      timeout=2).text, what="the service")
        result = opsmon_backup("--config.file", asked, "status", cwd=tmp_path)
        assert "backs up another database" not in result.stdout, result.stdout
    finally:
        stop(service)


