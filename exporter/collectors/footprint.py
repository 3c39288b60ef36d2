"""Bytes the kit's own data holds on this host, e.g. `opsmon_footprint_bytes{part="backups"} 1.2e+09`.

A configured folder not created yet holds nothing and reads 0; a part the config does not have
(no second folder, no replica) is absent. A folder that cannot be read fails this collector, naming it.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from prometheus_client.core import GaugeMetricFamily


class FootprintError(Exception):
    pass


def _raise(err: OSError):
    raise FootprintError(f"cannot read {err.filename}: {err.strerror}")


def folder_bytes(folder: Path) -> int:
    """Bytes of the regular files under a folder, links not followed; 0 when it does not exist yet."""
    if not folder.exists():
        return 0
    if not folder.is_dir():
        raise FootprintError(f"{folder} is not a folder")
    total = 0
    for root, _dirs, files in os.walk(folder, onerror=_raise):
        for name in files:
            try:
                info = os.lstat(os.path.join(root, name))
            except FileNotFoundError:
                continue  # removed while we walked (a rotation, a retention run)
            if stat.S_ISREG(info.st_mode):
                total += info.st_size
    return total


def log_bytes(path: Path) -> int:
    """A log file and its rotated siblings (app.log.1, app.log.2.gz) beside it."""
    folder = path.parent
    if not folder.exists():
        return 0
    try:
        names = [name for name in os.listdir(folder) if name == path.name or name.startswith(path.name + ".")]
    except OSError as err:
        _raise(err)
    total = 0
    for name in names:
        try:
            total += os.stat(folder / name).st_size
        except FileNotFoundError:
            continue
    return total


class FootprintCollector:
    name = "footprint"

    def __init__(self, folders: dict[str, Path], logs: list[Path]):
        self._folders = folders  # part -> folder, for the parts the config has
        self._logs = logs

    def describe(self):
        return []

    def collect(self):
        family = GaugeMetricFamily("opsmon_footprint_bytes",
                                   "Bytes the kit's own data holds on this host, by part.", labels=["part"])
        for part, folder in self._folders.items():
            family.add_metric([part], folder_bytes(folder))
        if self._logs:
            family.add_metric(["logs"], sum(log_bytes(path) for path in self._logs))
        yield family


def parts(config) -> dict[str, Path]:
    """The folders of each part the config has; the catalog lives in the backup folder."""
    folders = {}
    backups = config.backups
    if backups is not None:
        folders["backups"] = backups.directory
        if backups.secondary_directory is not None:
            folders["secondary"] = backups.secondary_directory
        if backups.litestream.enabled and backups.litestream.replica_directory is not None:
            folders["replica"] = backups.litestream.replica_directory
    folders["exporter_state"] = config.exporter.state_directory
    return folders


def build(config):
    return FootprintCollector(parts(config), [source.path for source in config.exporter.logs])
