"""The /health answer: one check per component, each ok, degraded or down, with its detail and thresholds."""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path

import psutil

from opsmon.catalog import TIERS, database_of, read_catalog
from opsmon.files import sqlite_uri
from exporter.collectors.probes import run_probes

ORDER = {"ok": 0, "degraded": 1, "down": 2}
PROBE_BUDGET_SECONDS = 3.0


def _check(component: str, status: str, detail: str, **thresholds) -> dict:
    entry = {"component": component, "status": status, "detail": detail}
    if thresholds:
        entry["thresholds"] = thresholds
    return entry


def _at_least(value: float, limits, worst: str = "down") -> str:
    """Status of a 'more is better' reading (free disk, free memory)."""
    if value < limits.critical:
        return worst
    return "degraded" if value < limits.warning else "ok"


def database_check(path) -> dict:
    if not os.path.exists(path):
        return _check("database", "down", f"{path} does not exist")
    try:
        connection = sqlite3.connect(sqlite_uri(path, "ro"), uri=True, timeout=2)
        try:
            tables = connection.execute("SELECT count(*) FROM sqlite_master WHERE type = 'table'").fetchone()[0]
        finally:
            connection.close()
    except sqlite3.Error as err:
        return _check("database", "down", f"{path} cannot be read: {err}")
    if not tables:  # a 0-byte or emptied file opens fine, but the app's data is not there
        return _check("database", "down", f"{path} holds no tables ({os.path.getsize(path)} bytes)")
    return _check("database", "ok", f"{path} opens read-only, {tables} tables")


def disk_check(path, limits, statvfs=os.statvfs) -> dict:
    # The filesystem that holds the database: when it fills, SQLite's writes fail.
    stat = statvfs(os.path.dirname(os.path.abspath(path)) or "/")
    free = stat.f_bavail / stat.f_blocks if stat.f_blocks else 0.0
    return _check("disk", _at_least(free, limits), f"{free:.1%} free where the database lives",
                  warning_free_ratio=limits.warning, critical_free_ratio=limits.critical)


def memory_check(limits, ps=psutil) -> dict:
    memory = ps.virtual_memory()
    available = memory.available / memory.total
    return _check("memory", _at_least(available, limits), f"{available:.1%} of memory available",
                  warning_available_ratio=limits.warning, critical_available_ratio=limits.critical)


def cpu_check(limits, ps=psutil) -> dict:
    load = ps.getloadavg()[0] / (ps.cpu_count() or 1)
    # A busy machine is slow, not down: past the critical level it is still only degraded.
    status = "degraded" if load >= limits.warning else "ok"
    return _check("cpu", status, f"1-minute load {load:.2f} per core",
                  warning_load_per_core=limits.warning, critical_load_per_core=limits.critical)


def service_checks(session, probes) -> list[dict]:
    # The app can run while a dependency is down, in part: a failed service degrades, never downs.
    return [_check(f"service:{r.service}", "ok" if r.success else "degraded", r.detail)
            for r in run_probes(session, probes, PROBE_BUDGET_SECONDS)]


def backup_check(directory, max_age: dict, now: float, database: Path | None = None) -> dict:
    catalog = read_catalog(directory, database_of(database) if database else None)
    problems = []
    for tier in TIERS:
        newest = catalog.newest_verified(tier)
        if newest is None:
            problems.append(f"no verified {tier} backup")
        elif now - newest.finished_at > max_age[tier]:
            problems.append(f"newest {tier} backup is {(now - newest.finished_at) / 3600:.1f}h old")
    failing = sum(1 for b in catalog.scheduled if b.verified is False)
    if failing:
        problems.append(f"{failing} backup(s) fail verification")
    problems.extend(catalog.problems)
    detail = "; ".join(problems) or f"{len(catalog.scheduled)} backups, all tiers fresh and verified"
    return _check("backups", "degraded" if problems else "ok", detail,
                  **{f"max_age_seconds_{tier}": max_age[tier] for tier in TIERS})


def check_health(config, session, ps=psutil, statvfs=os.statvfs, clock=time.time) -> dict:
    """Every check, and the overall status: the worst of them."""
    limits = config.exporter.health
    checks = [database_check(config.database.path)]
    try:
        checks.append(disk_check(config.database.path, limits.disk_free_ratio, statvfs))
    except OSError as err:
        checks.append(_check("disk", "down", f"cannot stat the database's filesystem: {err}"))
    checks.append(memory_check(limits.memory_available_ratio, ps))
    checks.append(cpu_check(limits.cpu_load_per_core, ps))
    checks.extend(service_checks(session, config.exporter.probes))
    if config.backups is not None:
        checks.append(backup_check(config.backups.directory, limits.backup_max_age_seconds, clock(),
                                   config.database.path))
    overall = max((c["status"] for c in checks), key=ORDER.__getitem__)
    return {"status": overall, "checks": checks}
