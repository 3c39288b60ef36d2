"""The 3-2-1 rule over the catalog and the config: three fresh copies, on two media, one offsite."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from opsmon.catalog import Catalog
from opsmon.config import OpsmonConfig


@dataclass(frozen=True)
class ThreeTwoOne:
    copies: int  # fresh copies, the live database among them
    media: int  # filesystems they are on (a bucket is one of its own)
    offsite: bool

    @property
    def satisfied(self) -> bool:
        return self.copies >= 3 and self.media >= 2 and self.offsite

    def text(self) -> str:
        return (f"{self.copies} fresh copies (the database among them) on {self.media} "
                f"{'medium' if self.media == 1 else 'media'}, {'one' if self.offsite else 'none'} offsite")


def three_two_one(catalog: Catalog, config: OpsmonConfig, now: float) -> ThreeTwoOne:
    """The copies held now: the live database, the backup folder, the second folder, the bucket, the
    replica. Fresh: within the daily tier's age limit of the health check."""
    backups, max_age = config.backups, config.exporter.health.backup_max_age_seconds["daily"]
    status = catalog.status

    def fresh(moment: float | None) -> bool:
        return moment is not None and now - moment <= max_age

    media = {_medium(config.database.path)}
    newest = catalog.newest_verified("daily")
    copies, offsite = 1, False
    held = [(fresh(newest.finished_at if newest else None), _medium(backups.directory), False)]
    for name, copy in status.copies.items():
        where = backups.secondary_directory if name == "secondary" else None
        held.append((fresh(copy.last_success_at), _medium(where) if where else "bucket", name == "offsite"))
    if status.pitr is not None and backups.litestream.enabled:
        in_bucket = backups.litestream.replica_directory is None
        held.append((fresh(status.pitr.last_replicated_at),
                     "bucket" if in_bucket else _medium(backups.litestream.replica_directory), in_bucket))
    for is_fresh, medium, is_offsite in held:
        if is_fresh:
            copies, offsite = copies + 1, offsite or is_offsite
            media.add(medium)
    return ThreeTwoOne(copies, len(media), offsite)


def _medium(path: Path) -> str:
    """The filesystem a path lives on (the nearest existing parent's)."""
    path = Path(path)
    while not path.exists() and path != path.parent:
        path = path.parent
    return f"dev {os.stat(path).st_dev}"
