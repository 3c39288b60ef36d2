"""The backup catalog on disk, read by the exporter and written by backup_jobs: manifests and job status.

Layout under the backup directory:

    <tier>/<id>.db.gz          the backup, standard gzip
    <tier>/<id>.json           its manifest (the truth about that backup)
    status.json                outcome of the last jobs: failures, verify runs, copies, drills,
                               integrity checks, PITR replication

Every write goes to a temporary file that is fsynced and renamed into place, so a reader
never sees half a file. This module imports nothing from the exporter.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from opsmon import files

TIERS = ("daily", "weekly", "monthly")
SAFETY = "safety"  # taken before a restore or a fix; kept apart from the scheduled tiers
STATUS_FILE = "status.json"
LOCK_FILE = ".status.lock"
BACKUP_SUFFIX = ".db.gz"
MANIFEST_SUFFIX = ".json"


def to_timestamp(moment: str | None) -> float | None:
    """ISO 8601 (as manifests store it) to Unix seconds."""
    if not moment:
        return None
    parsed = datetime.fromisoformat(moment.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.timestamp()


def to_iso(timestamp: float) -> str:
    """Unix seconds to ISO 8601 UTC with a Z, as manifests and `list --json` show it."""
    return datetime.fromtimestamp(timestamp, timezone.utc).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class BackupRecord:
    """What the exporter needs of one manifest."""

    id: str
    tier: str
    path: Path
    started_at: float
    finished_at: float
    size_bytes: int
    sha256: str
    verified: bool | None
    verified_at: float | None = None
    verify_error: str | None = None


@dataclass(frozen=True)
class Catalog:
    backups: list[BackupRecord]
    status: dict = field(default_factory=dict)

    @property
    def scheduled(self) -> list[BackupRecord]:
        """The backups of the scheduled tiers (safety backups left out)."""
        return [b for b in self.backups if b.tier in TIERS]

    def of_tier(self, tier: str) -> list[BackupRecord]:
        """A tier's backups, oldest first."""
        return sorted((b for b in self.backups if b.tier == tier), key=lambda b: b.finished_at)

    def status_time(self, *keys: str) -> float | None:
        """A timestamp from status.json by path, e.g. status_time('copies', 'offsite', 'last_success_at')."""
        node = self.status
        for key in keys:
            if not isinstance(node, dict) or key not in node:
                return None
            node = node[key]
        return float(node) if isinstance(node, (int, float)) else None


def _record(manifest_path: Path, manifest: dict) -> BackupRecord:
    verification = manifest.get("verification") or {}
    return BackupRecord(
        id=manifest["id"],
        tier=manifest["tier"],
        path=manifest_path.with_name(manifest["id"] + BACKUP_SUFFIX),
        started_at=to_timestamp(manifest["started_at"]),
        finished_at=to_timestamp(manifest["finished_at"]),
        size_bytes=int(manifest["backup"]["size_bytes"]),
        sha256=manifest["backup"]["sha256"],
        verified=verification.get("ok"),
        verified_at=to_timestamp(verification.get("at")),
        verify_error=verification.get("error"),
    )


def read_manifests(directory: Path) -> list[BackupRecord]:
    """Every readable manifest under the backup directory; unreadable ones are skipped, not fatal."""
    records = []
    for manifest_path in sorted(Path(directory).glob(f"*/*{MANIFEST_SUFFIX}")):
        try:
            records.append(_record(manifest_path, json.loads(manifest_path.read_text())))
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return records


def read_status(directory: Path) -> dict:
    try:
        status = json.loads((Path(directory) / STATUS_FILE).read_text())
    except FileNotFoundError:
        return {}
    return status if isinstance(status, dict) else {}


def read_catalog(directory: str | os.PathLike) -> Catalog:
    """The catalog as it is on disk now. A missing directory is an empty catalog."""
    directory = Path(directory)
    return Catalog(backups=read_manifests(directory), status=read_status(directory))


def update_status(directory: str | os.PathLike, change: Callable[[dict], None]) -> dict:
    """Apply `change` to status.json under a lock, so concurrent jobs never lose each other's results."""
    directory = Path(directory)
    with files.locked(directory / LOCK_FILE):
        status = read_status(directory)
        change(status)
        files.write_json_atomically(directory / STATUS_FILE, status)
        return status


def set_status(directory: str | os.PathLike, keys: tuple[str, ...], value: object) -> dict:
    """Set one nested value of status.json, e.g. set_status(d, ('drill', 'last_success_at'), now)."""

    def change(status: dict) -> None:
        node = status
        for key in keys[:-1]:
            node = node.setdefault(key, {})
        node[keys[-1]] = value

    return update_status(directory, change)


def merge_status(directory: str | os.PathLike, patch: dict) -> dict:
    """Merge `patch` into status.json, nested dicts key by key: {"drill": {"last_run_at": t}} keeps the rest."""

    def merge(node: dict, changes: dict) -> None:
        for key, value in changes.items():
            if isinstance(value, dict) and isinstance(node.get(key), dict):
                merge(node[key], value)
            else:
                node[key] = value

    return update_status(directory, lambda status: merge(status, patch))
