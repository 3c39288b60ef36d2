"""Backup freshness and verification from the backup catalog, e.g. `opsmon_backup_retained{database="demo",tier="daily"} 7`.

Tiers without any backup publish a last success of 0, so "never succeeded" alerts like "too old". Given the
database's path, only its own backups and status are read: another config's on the same folder are not its.
"""

from __future__ import annotations

import time
from pathlib import Path

from prometheus_client.core import GaugeMetricFamily

from opsmon.catalog import (FUTURE_TOLERANCE_SECONDS, TIERS, Catalog, CatalogError, LocationDrill, database_of,
                            future_dated, read_catalog)
from opsmon.three_two_one import three_two_one

COPY_LOCATIONS = ("secondary", "offsite")  # besides "local", the backup directory itself
STATUS_SECTIONS = ("tiers", "verify", "copies", "drill", "drills", "restore", "pitr")  # what this collector reads


class BackupCollector:
    name = "backup"

    def __init__(self, directory: Path, database: str, read=read_catalog, policy=None, clock=time.time,
                 database_path: Path | None = None):
        self._directory = Path(directory)
        self._database = database
        self._database_path = database_path  # None: the whole folder, as the folder's one database
        self._read = read
        self._policy = policy  # the whole config, for the objectives and the 3-2-1 rule; None in tests
        self._clock = clock

    def describe(self):
        return []

    def _gauge(self, name, documentation, extra_label=None):
        return GaugeMetricFamily(name, documentation, labels=["database", *([extra_label] if extra_label else [])])

    def collect(self):
        catalog = self._read(self._directory, database_of(self._database_path) if self._database_path else None)
        # A part of status.json that cannot be read fails this collector (and names the key), rather
        # than publishing a 0 that reads as "never".
        problems = catalog.status.problems(*STATUS_SECTIONS)
        if problems:
            raise CatalogError("; ".join(problems))
        status = catalog.status
        yield from self._tiers(catalog)
        db = [self._database]

        unreadable = self._gauge("opsmon_backup_manifests_unreadable",
                                 "Manifests in the backup directory that cannot be read (damaged, or of a newer "
                                 "format): their backups are left out of every other figure.")
        unreadable.add_metric(db, len(catalog.problems))
        verify_ok = self._gauge("opsmon_backup_verify_last_success_timestamp_seconds",
                                "When a verification of all retained backups last passed, in Unix seconds; 0 never.")
        verify_ok.add_metric(db, status.verify.last_success_at or 0)
        failing = self._gauge("opsmon_backup_verify_failures", "Retained backups whose last verification failed.")
        failing.add_metric(db, sum(1 for b in catalog.scheduled if b.verified is False))

        copies = self._gauge("opsmon_backup_copy_last_success_timestamp_seconds",
                             "When a verified copy last reached each location, in Unix seconds; 0 never. "
                             "A location appears once backup_jobs has tried it (it is configured).", "location")
        newest_local = max((b.finished_at for b in catalog.scheduled if b.verified), default=0)
        copies.add_metric([self._database, "local"], newest_local)
        for location in COPY_LOCATIONS:
            if location in status.copies:
                copies.add_metric([self._database, location], status.copies[location].last_success_at or 0)

        ahead = self._gauge("opsmon_backup_future_dated",
                            f"Retained backups stamped over {FUTURE_TOLERANCE_SECONDS} s after this host's clock: "
                            "taken while a clock ran ahead, or the clock runs behind now.")
        ahead.add_metric(db, len(future_dated(catalog.backups, self._clock())))

        yield from (unreadable, verify_ok, failing, copies, ahead)
        yield from self._drills(status)
        if self._policy is not None:
            yield from self._policy_gauges(catalog)
        if status.restore is not None:  # once the database has been restored
            restored = self._gauge("opsmon_restore_last_success_timestamp_seconds",
                                   "When a restore into the live database last succeeded, in Unix seconds.")
            restored.add_metric(db, status.restore.last_success_at)
            yield restored
        if status.pitr is not None:  # only where Litestream replicates
            pitr = self._gauge("opsmon_pitr_last_replicated_timestamp_seconds",
                               "Newest moment the point-in-time replica holds, in Unix seconds.")
            pitr.add_metric(db, status.pitr.last_replicated_at)
            yield pitr

    def _drills(self, status):
        """Per location: the last passing drill, and what a disaster would cost from there."""
        drills = status.drills or {"local": LocationDrill()}  # before any drill: the backup folder's, never
        success = self._gauge("opsmon_restore_drill_last_success_timestamp_seconds",
                              "When a restore drill of the location last restored and proved its newest copy, in "
                              "Unix seconds; 0 never.", "location")
        rto = self._gauge("opsmon_restore_drill_rto_seconds",
                          "How long the location's last passing drill took to restore and check (its RTO).", "location")
        rpo = self._gauge("opsmon_restore_drill_rpo_seconds",
                          "How old the newest data the location gave back was at its last passing drill (its RPO).",
                          "location")
        for location, drill in sorted(drills.items()):
            labels = [self._database, location]
            success.add_metric(labels, drill.last_success_at or 0)
            if drill.rto_seconds is not None:
                rto.add_metric(labels, drill.rto_seconds)
            if drill.rpo_seconds is not None:
                rpo.add_metric(labels, drill.rpo_seconds)
        yield from (family for family in (success, rto, rpo) if family.samples)

    def _policy_gauges(self, catalog: Catalog):
        policy = self._policy
        objectives = policy.backups.objectives
        yield from (self._value("opsmon_backup_objective_rpo_seconds",
                                "The RPO objective (backups.objectives.rpo_seconds): data a disaster may cost.",
                                objectives.rpo_seconds),
                    self._value("opsmon_backup_objective_rto_seconds",
                                "The RTO objective (backups.objectives.rto_seconds): time a restore may take.",
                                objectives.rto_seconds),
                    self._value("opsmon_backup_rule_321_satisfied",
                                "1 when at least three fresh copies of the data exist, on at least two media, one "
                                "of them offsite (the live database counts as one).",
                                1 if three_two_one(catalog, policy, self._clock()).satisfied else 0),
                    self._value("opsmon_backup_single_copy_intended",
                                "1 when the backup folder is the only copy on purpose (backups.single_copy_intended): "
                                "the 3-2-1 alert is silenced, the rule's gauge stays the truth.",
                                1 if policy.backups.single_copy_intended else 0))

    def _value(self, name: str, documentation: str, value: float) -> GaugeMetricFamily:
        family = self._gauge(name, documentation)
        family.add_metric([self._database], value)
        return family

    def _tiers(self, catalog: Catalog):
        success = self._gauge("opsmon_backup_last_success_timestamp_seconds",
                              "When the newest verified backup of the tier finished, in Unix seconds; 0 never.", "tier")
        failure = self._gauge("opsmon_backup_last_failure_timestamp_seconds",
                              "When a backup of the tier last failed, in Unix seconds; 0 never.", "tier")
        duration = self._gauge("opsmon_backup_last_duration_seconds",
                               "How long the newest backup of the tier took.", "tier")
        size = self._gauge("opsmon_backup_last_size_bytes", "Compressed size of the newest backup of the tier.", "tier")
        retained = self._gauge("opsmon_backup_retained", "Backups of the tier kept now.", "tier")
        for tier in TIERS:
            labels = [self._database, tier]
            backups = catalog.of_tier(tier)
            newest = catalog.newest_verified(tier)
            failed = catalog.status.tiers.get(tier)
            success.add_metric(labels, newest.finished_at if newest else 0)
            failure.add_metric(labels, (failed.last_failure_at if failed else None) or 0)
            retained.add_metric(labels, len(backups))
            if backups:
                duration.add_metric(labels, backups[-1].finished_at - backups[-1].started_at)
                size.add_metric(labels, backups[-1].size_bytes)
        yield from (success, failure, duration, size, retained)


def build(config):
    if config.backups is None:
        return None  # nothing to read without a backups section
    return BackupCollector(config.backups.directory, config.database.label, policy=config,
                           database_path=config.database.path)
