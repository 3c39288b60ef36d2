"""The app's SQLite file and the integrity results backup_jobs records, e.g. `opsmon_db_size_bytes{database="demo"} 4.1e+06`."""

from __future__ import annotations

import os
from pathlib import Path

from prometheus_client.core import GaugeMetricFamily

from opsmon.catalog import CatalogError, IntegrityStatus, read_status


class DatabaseCollector:
    name = "database"

    def __init__(self, path: Path, label: str, backup_directory: Path | None):
        self._path = Path(path)
        self._label = label
        self._backup_directory = backup_directory

    def describe(self):
        return []

    def collect(self):
        # Raises when the database is gone: that is a failure the success gauge must show.
        database = os.stat(self._path)
        try:
            wal = os.stat(f"{self._path}-wal")
        except FileNotFoundError:
            wal = None  # rollback-journal mode, or checkpointed and closed
        yield self._family("opsmon_db_size_bytes", "Size of the database file.", database.st_size)
        yield self._family("opsmon_db_wal_size_bytes", "Size of the write-ahead log not yet checkpointed.",
                           wal.st_size if wal else 0)
        yield self._family("opsmon_db_last_modified_timestamp_seconds",
                           "Last write to the database or its WAL, in Unix seconds (replication lag is measured "
                           "against it).", max(database.st_mtime, wal.st_mtime if wal else 0))
        if self._backup_directory is not None:
            status = read_status(self._backup_directory, str(self._path.resolve()))  # its own, not a neighbour's
            problems = status.problems("integrity")
            if problems:  # fail this collector, naming the key, rather than publish a wrong figure
                raise CatalogError("; ".join(problems))
            if status.integrity is not None:  # before a first check there is nothing true to say
                yield from self._integrity(status.integrity)

    def _family(self, name, documentation, value):
        family = GaugeMetricFamily(name, documentation, labels=["database"])
        family.add_metric([self._label], value)
        return family

    def _integrity(self, integrity: IntegrityStatus):
        yield self._family("opsmon_db_integrity_check_success",
                           "1 when the last integrity check (opsmon-backup check) passed.",
                           1 if integrity.ok else 0)
        yield self._family("opsmon_db_integrity_check_last_timestamp_seconds",
                           "When the last integrity check ran, in Unix seconds.", integrity.checked_at)
        yield self._family("opsmon_db_foreign_key_violations", "Rows failing foreign_key_check at the last check.",
                           integrity.foreign_key_violations)
        rules = GaugeMetricFamily("opsmon_db_rule_violations", "Rows breaking each business rule at the last check.",
                                  labels=["database", "rule"])
        for rule, count in sorted(integrity.rule_violations.items()):
            rules.add_metric([self._label, rule], count)
        yield rules


def build(config):
    directory = config.backups.directory if config.backups else None
    return DatabaseCollector(config.database.path, config.database.label, directory)
