"""Helpers for the backup tests: small demo databases, configs, and the opsmon-backup command."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from bench.harness import fingerprint as fingerprint  # the backup tests compare databases by it
from demo.db import seed
from opsmon.config import parse_config


def demo_database(path: Path, videos: int = 300) -> Path:
    seed(path, videos)
    return path


def backups_config(tmp_path: Path, database: Path, **backups) -> object:
    document = {"database": {"path": str(database)},
                "backups": {"directory": str(tmp_path / "backups"), **backups}}
    return parse_config(document, "test.yml", tmp_path)


def opsmon_backup(*args, cwd: Path | None = None, check: bool = False, timeout: float = 120):
    result = subprocess.run([sys.executable, "-m", "backup_jobs", *map(str, args)], capture_output=True, text=True,
                            cwd=cwd, timeout=timeout)
    if check:
        assert result.returncode == 0, result.stderr
    return result


def start_console(work: Path, database: Path, users_file: Path, tls: tuple[Path, Path] | None = None):
    """A real `opsmon-backup serve` with the console on a free port (https with `tls`: cert, key);
    returns (url, process) once its first backups exist."""
    import requests
    import yaml

    from bench.harness import free_port, wait_for

    port = free_port()
    console = {"enabled": True, "users_file": str(users_file)}
    if tls:
        console.update(tls_cert_file=str(tls[0]), tls_key_file=str(tls[1]))
    (work / "opsmon.yml").write_text(yaml.safe_dump({
        "database": {"path": str(database)},
        "backups": {"directory": str(work / "backups"), "listen_address": f"127.0.0.1:{port}",
                    "console": console}}))
    process = subprocess.Popen([sys.executable, "-m", "backup_jobs", "--config.file", str(work / "opsmon.yml"),
                                "serve"], stdout=open(work / "serve.log", "wb"), stderr=subprocess.STDOUT)
    url = f"https://localhost:{port}" if tls else f"http://127.0.0.1:{port}"
    verify = str(tls[0]) if tls else True
    wait_for(lambda: requests.get(f"{url}/-/healthy", timeout=1, verify=verify).ok, timeout=30,
             what="the backup service")
    wait_for(lambda: len(list((work / "backups").glob("*/*.json"))) >= 3, timeout=30, what="the first backups")
    return url, process
