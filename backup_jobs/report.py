"""`opsmon-backup status`: is the data safe? One line per fact, each marked against the thresholds of the alerts.

A line is `ok`, `warning` (an alert of severity warning would fire, or a fault it cannot see yet: a
failed copy, a failed drill), `problem` (a critical alert's threshold, or a copy that would not
restore) or, for what is not set up and need not be, `off`. The command exits 0 when every line is
ok or off, 3 otherwise.
"""

from __future__ import annotations

import ssl
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from croniter import croniter
from prometheus_client.parser import text_string_to_metric_families

from backup_jobs.humanize import age_text, ago_text, moment_text, plural, seconds_text, size_text
from backup_jobs.jobs import Jobs
from opsmon.catalog import TIERS, Catalog, LocationDrill, future_dated, to_iso, to_timestamp
from opsmon.thresholds import Limit, Rules, shipped
from opsmon.config import BackupsConfig, OpsmonConfig
from opsmon.files import same_file

OK, WARNING, PROBLEM, OFF, INFO = "ok", "warning", "problem", "off", "info"
_RANK = {INFO: 0, OFF: 0, OK: 0, WARNING: 1, PROBLEM: 2}
HEALTH_TIMEOUT_SECONDS = 1.0  # each of /-/healthy and /metrics, on this machine


def marked_at(limit: Limit) -> str:
    """How a line past the alert's threshold is marked: a critical alert's is a problem, any other a warning."""
    return PROBLEM if limit.severity == "critical" else WARNING


@dataclass(frozen=True)
class Limits:
    """The thresholds the lines are marked against: the alerts' own, read from prometheus/rules (never copied)."""

    backup_stale: dict[tuple[str, str], Limit]  # by (tier, severity)
    copy_stale: Limit
    verify_stale: Limit
    drill_stale: Limit
    rpo_window: Limit  # only the locations whose drill passed within this count for the recovery point
    pitr_lag: Limit
    integrity_stale: Limit
    job_overdue: Limit
    shrunk: Limit  # the newest daily backup under this share of the newest weekly one
    wal_large: Limit  # the WAL over this many times the database...
    wal_large_bytes: Limit  # ...and over this size
    # Alerts on a fact or a setting: the line is marked at the alert's severity, with no number.
    backup_failing: Limit
    verify_failing: Limit
    manifests_unreadable: Limit
    rto_missed: Limit  # backups.objectives.rto_seconds
    rpo_missed: Limit  # backups.objectives.rpo_seconds
    litestream_down: Limit
    integrity_failed: Limit
    foreign_keys: Limit
    rules_broken: Limit
    future_dated: Limit

    @classmethod
    def read(cls, rules: Rules) -> Limits:
        return cls(
            backup_stale={(tier, severity): rules.limit("OpsmonBackupStale", severity, where=f'tier="{tier}"')
                          for tier in TIERS for severity in ("warning", "critical")},
            copy_stale=rules.limit("OpsmonBackupCopyStale"),
            verify_stale=rules.limit("OpsmonBackupVerificationStale"),
            drill_stale=rules.limit("OpsmonRestoreDrillStale"),
            rpo_window=rules.limit("OpsmonBackupRpoMissed"),
            pitr_lag=rules.limit("OpsmonPitrReplicationLagging"),
            integrity_stale=rules.limit("OpsmonIntegrityCheckStale"),
            job_overdue=rules.limit("OpsmonBackupJobOverdue"),
            shrunk=rules.factor("OpsmonBackupShrunk", "opsmon_backup_last_size_bytes"),
            wal_large=rules.factor("OpsmonDatabaseWalLarge", "opsmon_db_size_bytes"),
            wal_large_bytes=rules.limit("OpsmonDatabaseWalLarge"),
            backup_failing=rules.fact("OpsmonBackupFailing"),
            verify_failing=rules.fact("OpsmonBackupVerificationFailing"),
            manifests_unreadable=rules.fact("OpsmonBackupManifestsUnreadable"),
            rto_missed=rules.fact("OpsmonRestoreDrillRtoMissed"),
            rpo_missed=rules.fact("OpsmonBackupRpoMissed"),
            litestream_down=rules.fact("OpsmonLitestreamDown"),
            integrity_failed=rules.fact("OpsmonDatabaseIntegrityFailed"),
            foreign_keys=rules.fact("OpsmonForeignKeyViolations"),
            rules_broken=rules.fact("OpsmonRuleViolations"),
            future_dated=rules.fact("OpsmonBackupFutureDated"))

    def alerts(self) -> set[str]:
        """The alerts the report marks lines with."""
        found = set()
        for value in vars(self).values():
            found.update(limit.alert for limit in (value.values() if isinstance(value, dict) else [value]))
        return found


# The alerts of backups.rules.yml the report does not mark, and why: what it cannot see from here.
NOT_MARKED = {
    "OpsmonBackupMetricsAbsent": "Prometheus's view: whether the exporter publishes at all",
    "OpsmonLitestreamSyncErrors": "Litestream's own metrics; the replica's lag shows the effect",
    "OpsmonLitestreamNotSyncing": "Litestream's own metrics; the replica's lag shows the effect",
    "OpsmonBackupThreeTwoOneUnsatisfied": "a standing gap in most kits (the demo's: one disk, no bucket), which the "
                                          "copies' lines name; opsmon.three_two_one counts it for the exporter",
}


@dataclass
class Line:
    name: str
    level: str
    text: str
    hint: str | None = None

    def as_json(self) -> dict:
        return {"name": self.name, "level": self.level, "text": self.text, "hint": self.hint}


@dataclass
class StatusReport:
    """The lines a person reads and the facts a script reads (`--json`)."""

    checked_at: float
    database: Path
    lines: list[Line] = field(default_factory=list)
    facts: dict = field(default_factory=dict)

    @property
    def level(self) -> str:
        return max((line.level for line in self.lines), key=_RANK.__getitem__, default=OK)

    @property
    def ok(self) -> bool:
        return _RANK[self.level] == 0

    def text(self) -> str:
        width = max(len(line.name) for line in self.lines) + 2
        out = [f"opsmon-backup status of {self.database}, {moment_text(self.checked_at)}", ""]
        for line in self.lines:
            mark = {OK: "ok", OFF: "off", INFO: ""}.get(line.level, line.level.upper())
            out.append(f"{mark:9}{line.name:{width}}{line.text}")
            if line.hint:
                out.append(f"{'':9}{'':{width}}what to do: {line.hint}")
        counts = [f"{n} {level}{'s' if n > 1 else ''}" for level in (PROBLEM, WARNING)
                  if (n := sum(1 for line in self.lines if line.level == level))]
        out += ["", "all well" if self.ok else f"not all well: {', '.join(counts)} (marked above)"]
        return "\n".join(out)

    def as_json(self) -> dict:
        return {"ok": self.ok, "level": self.level, "checked_at": to_iso(self.checked_at), **self.facts,
                "lines": [line.as_json() for line in self.lines]}


def build(jobs: Jobs, ask: Callable[[str], ServiceAnswer] | None = None,
          schedule: Iterable[tuple[str, str]] = (), rules: Rules | None = None) -> StatusReport:
    """The report of the config's database now.

    `ask(url)` is what the backup service says (ask_service: its /-/healthy and /metrics); without it
    the service is not looked at (the console is the service). `schedule` is the service's jobs as
    (name, cron) pairs, for their next runs when the service does not say them itself. `rules`: the alert
    rules whose thresholds mark the lines, the kit's own unless given.
    """
    limits = Limits.read(rules or shipped())
    now = jobs.clock()
    config = jobs.config
    current = jobs.store.own_catalog()
    report = StatusReport(checked_at=now, database=jobs.store.database)
    report.facts["backup_directory"] = str(jobs.directory)
    elsewhere = jobs.store.taken_elsewhere()
    if elsewhere is not None:  # a typo in the path: the rest would be another file's backups, read as this one's
        report.facts["database"] = {"path": str(jobs.store.database), "exists": False, "taken_from": str(elsewhere)}
        report.lines.append(Line("database", PROBLEM, jobs.store.missing_database(),
                                 "correct database.path (or --database); restore only into a new file on purpose: "
                                 "opsmon-backup restore ID --create-database"))
        return report
    for section in (_database, _tiers, _verification, _copies, _pitr, _exposure, _drills, _integrity,
                    _catalog_files, _future_dated):
        section(report, config, current, now, limits)
    if ask is not None:
        _service(report, jobs.config.backups, jobs.store.database, now, limits, ask, schedule)
    return report


# ---- sections ---------------------------------------------------------------------------------

def _database(report: StatusReport, config: OpsmonConfig, current: Catalog, now: float, limits: Limits) -> None:
    path = Path(config.database.path)
    parts = [p for p in (path, Path(f"{path}-wal")) if p.exists()]
    facts = {"path": str(path), "exists": path.exists(), "size_bytes": None, "wal_size_bytes": None,
             "last_modified_at": None}
    report.facts["database"] = facts
    if not path.exists():
        report.lines.append(Line("database", PROBLEM, f"{path} does not exist",
                                 "restore the newest verified backup: opsmon-backup restore ID"))
        return
    wal = Path(f"{path}-wal")
    facts["size_bytes"] = path.stat().st_size
    facts["wal_size_bytes"] = wal.stat().st_size if wal.exists() else 0
    modified = max(p.stat().st_mtime for p in parts)
    facts["last_modified_at"] = to_iso(modified)
    size, wal_size = facts["size_bytes"], facts["wal_size_bytes"]
    text = f"{size_text(size + wal_size)}, last written {ago_text(modified, now)}"
    if wal_size > limits.wal_large.value * size and wal_size > limits.wal_large_bytes.value:
        report.lines.append(Line("database", marked_at(limits.wal_large),
                                 f"{text}; its WAL is {size_text(wal_size)}, over {limits.wal_large.value:g} times "
                                 "the database: checkpoints do not complete",
                                 "look for a long-running reader of the database (an open transaction)"))
    else:
        report.lines.append(Line("database", OK, text))


def _tiers(report: StatusReport, config: OpsmonConfig, current: Catalog, now: float, limits: Limits) -> None:
    backups = config.backups
    report.facts["tiers"] = {}
    for tier in TIERS:
        newest = current.newest_verified(tier)
        kept, keep = len(current.of_tier(tier)), getattr(backups.retention, tier)
        failure = current.status.tiers.get(tier)
        failed_at = failure.last_failure_at if failure else None
        failing = failed_at is not None and (newest is None or failed_at > newest.finished_at)
        age = now - newest.finished_at if newest else None
        warn, page = limits.backup_stale[tier, "warning"], limits.backup_stale[tier, "critical"]
        shrunk = tier == "daily" and _shrunk(current, limits.shrunk.value)
        if newest is None or age > page.value:
            level = marked_at(page)
        elif age > warn.value or failing or shrunk:
            level = max(marked_at(warn), marked_at(limits.backup_failing) if failing else OK,
                        marked_at(limits.shrunk) if shrunk else OK, key=_RANK.__getitem__)
        else:
            level = OK
        parts = [f"{newest.id}, taken {ago_text(newest.finished_at, now)}, {size_text(newest.size_bytes)}"
                 if newest else "no verified backup", f"{kept} kept of {keep}"]
        if newest is not None and age > warn.value:
            parts.append(f"older than {age_text(warn.value)}")
        if failing:
            parts.append(f"the last run failed {ago_text(failed_at, now)}: {failure.last_error}")
        if shrunk:
            parts.append(f"under {limits.shrunk.value:.0%} of the size of the newest weekly backup "
                         f"({size_text(shrunk)})")
        cron = getattr(backups.schedule, tier)
        hint = None
        if level != OK:
            hint = (f"see the service's log for the run at `{cron}`, then: opsmon-backup create --tier {tier}"
                    if newest is not None or failing else f"opsmon-backup create --tier {tier}")
            by = failure.by if failing else None
            if by is not None and by.via != "service":  # the service's log has nothing of a manual run
                hint = f"the run that failed was {by.text()}: fix what its error says, then: opsmon-backup create " \
                       f"--tier {tier}"
            if shrunk and not failing and age <= warn.value:
                hint = ("rows were lost, or another file is backed up: compare the row counts of opsmon-backup "
                        "restore ID --dry-run with both backups")
        report.lines.append(Line(f"{tier} backup", level, "; ".join(parts), hint))
        report.facts["tiers"][tier] = {
            "level": level, "newest": newest.as_json() if newest else None,
            "age_seconds": age, "kept": kept, "retention": keep,
            "last_failure_at": to_iso(failed_at) if failed_at else None,
            "last_error": failure.last_error if failure else None,
            "last_failure_by": failure.by.model_dump(mode="json") if failure and failure.by else None}


def _shrunk(current: Catalog, share: float) -> int | None:
    """The newest weekly backup's size when the newest daily one is under that share of it (every backup is full)."""
    daily, weekly = current.of_tier("daily"), current.of_tier("weekly")
    if daily and weekly and daily[-1].size_bytes < share * weekly[-1].size_bytes:
        return weekly[-1].size_bytes
    return None


def _verification(report: StatusReport, config: OpsmonConfig, current: Catalog, now: float, limits: Limits) -> None:
    failing = [b for b in current.scheduled if b.verified is False]
    unreadable = current.problems
    last = current.status.verify.last_success_at
    stale = last is None or now - last > limits.verify_stale.value
    parts, hints = [], []
    if failing:
        parts.append(f"{plural(len(failing), 'backup')} {'fails' if len(failing) == 1 else 'fail'} verification: "
                     f"{', '.join(b.id for b in failing[:3])}" + (", ..." if len(failing) > 3 else ""))
        hints.append("opsmon-backup verify --all names each problem; the next run of the tier replaces a damaged "
                     "backup, opsmon-backup delete ID removes it")
    if unreadable:
        parts.append(f"{plural(len(unreadable), 'manifest')} cannot be read, left out of everything: "
                     f"{unreadable[0]}")
        hints.append("look at the manifests named by opsmon-backup verify --all")
    if last is None:
        parts.append("verify --all never passed")
    else:
        parts.append(f"verify --all last passed {ago_text(last, now)}"
                     + (f" (over {age_text(limits.verify_stale.value)})" if stale else ""))
    if stale:
        hints.append(f"opsmon-backup verify --all (the service runs it at `{config.backups.verify_schedule}`)")
    level = (marked_at(limits.verify_failing) if failing else marked_at(limits.manifests_unreadable) if unreadable
             else marked_at(limits.verify_stale) if stale else OK)
    report.lines.append(Line("verification", level, "; ".join(parts), "; ".join(hints) or None))
    report.facts["verification"] = {
        "level": level, "last_success_at": to_iso(last) if last else None, "failing": [b.id for b in failing],
        "unreadable_manifests": unreadable}


def _copies(report: StatusReport, config: OpsmonConfig, current: Catalog, now: float, limits: Limits) -> None:
    backups = config.backups
    where = {}
    if backups.secondary_directory:
        where["secondary"] = str(backups.secondary_directory)
    if backups.offsite:
        where["offsite"] = f"s3://{backups.offsite.bucket}/{backups.offsite.prefix}".rstrip("/")
    report.facts["copies"] = {}
    if not where and backups.single_copy_intended:
        report.lines.append(Line("copies", OK, f"single copy (intended): every backup is on the disk of "
                                               f"{backups.directory} (backups.single_copy_intended)"))
        return
    if not where:
        report.lines.append(Line("copies", WARNING, f"none: every backup is on the disk of {backups.directory} "
                                                    "(the 3-2-1 rule wants two more, one offsite)",
                                 "set backups.secondary_directory (another disk) and backups.offsite (a bucket), "
                                 "or backups.single_copy_intended: true for one disk on purpose"))
        return
    verified = [b for b in current.scheduled if b.verified]
    for name, target in where.items():
        entry = current.status.copies.get(name)
        success = entry.last_success_at if entry else None
        error = entry.last_error if entry else None
        held = max((b for b in verified if success is not None and b.finished_at <= success),
                   key=lambda b: (b.finished_at, b.id), default=None)
        stale = success is None or now - success > limits.copy_stale.value
        parts = [(f"up to {held.id}" if held else "holds no backup") + ", "
                 + (f"synced {ago_text(success, now)}" if success else "never synced")]
        if error:
            parts.append(f"the last try failed: {error}")
        level = marked_at(limits.copy_stale) if (stale or error) and (verified or error) else OK
        hint = (f"the copy is tried again after every backup and prune (opsmon-backup prune); check {target}"
                if level != OK else None)
        report.lines.append(Line(f"copy {name}", level, "; ".join(parts), hint))
        report.facts["copies"][name] = {"level": level, "target": target,
                                        "last_success_at": to_iso(success) if success else None,
                                        "last_error": error, "newest": held.id if held else None}


def _pitr(report: StatusReport, config: OpsmonConfig, current: Catalog, now: float, limits: Limits) -> None:
    litestream = config.backups.litestream
    pitr = current.status.pitr
    facts = {"enabled": litestream.enabled, "level": OFF, "earliest_at": None, "latest_at": None,
             "lag_seconds": None}
    report.facts["pitr"] = facts
    if not litestream.enabled:
        report.lines.append(Line("point in time", OFF, "no Litestream replica (backups.litestream): a restore to a "
                                                       "moment uses the newest backup before it"))
        return
    if pitr is None:  # Litestream's trouble is a warning, as its alerts are: the backups still hold the data
        facts["level"] = marked_at(limits.litestream_down)
        report.lines.append(Line("point in time", marked_at(limits.litestream_down),
                                 "the replica holds nothing the backup service has seen",
                                 "is the service running (below)? Litestream's lines are in its log, as `litestream`"))
        return
    modified = report.facts["database"]["last_modified_at"]
    lag = max(0.0, to_timestamp(modified) - pitr.last_replicated_at) if modified else None
    level = marked_at(limits.pitr_lag) if lag is not None and lag > limits.pitr_lag.value else OK
    span = f"{to_iso(pitr.earliest_at) if pitr.earliest_at else '?'} to {to_iso(pitr.last_replicated_at)}"
    behind = ("" if lag is None else "; up to the database's last write" if lag < 1
              else f"; {age_text(lag)} behind the database's last write")
    hint = ("Litestream falls behind: see the service's log (`litestream`) and opsmon_litestream_up"
            if level != OK else None)
    report.lines.append(Line("point in time", level, span + behind, hint))
    facts.update(level=level, earliest_at=to_iso(pitr.earliest_at) if pitr.earliest_at else None,
                 latest_at=to_iso(pitr.last_replicated_at), lag_seconds=lag)


def _exposure(report: StatusReport, config: OpsmonConfig, current: Catalog, now: float, limits: Limits) -> None:
    """What a disaster now would cost: the time since the newest point a restore can bring back."""
    objective = config.backups.objectives.rpo_seconds
    points = [(b.started_at, f"backup {b.id}") for b in current.scheduled if b.verified]
    pitr = current.status.pitr
    if config.backups.litestream.enabled and pitr is not None:
        points.append((pitr.last_replicated_at, "the Litestream replica"))
    newest = max(points, default=None)
    facts = {"level": INFO, "seconds": None, "newest_point_at": None, "source": None, "objective_seconds": objective}
    report.facts["exposure"] = facts
    if newest is None:
        report.lines.append(Line("exposure now", INFO, "everything: nothing holds a verified copy of the data yet"))
        return
    at, source = newest
    exposure = max(0.0, now - at)
    level = OK if exposure <= objective else WARNING
    report.lines.append(Line("exposure now", level, f"a disaster now would lose {age_text(exposure)} of data: the "
                             f"newest recoverable point is {source}, {moment_text(at)}; objective "
                             f"{age_text(objective)}",
                             None if level == OK else "take a backup now (opsmon-backup create), and see why the "
                                                      "scheduled ones do not keep up"))
    facts.update(level=level, seconds=exposure, newest_point_at=to_iso(at), source=source)


def _drills(report: StatusReport, config: OpsmonConfig, current: Catalog, now: float, limits: Limits) -> None:
    backups, status = config.backups, current.status
    expected = ["local"] + [n for n, on in (("secondary", backups.secondary_directory), ("offsite", backups.offsite))
                            if on] + (["replica"] if backups.litestream.enabled else [])
    drills = status.drills
    objectives = backups.objectives
    report.facts["drills"] = {}
    best = None
    for location in expected + sorted(set(drills) - set(expected)):
        drill = drills.get(location) or LocationDrill()
        passed, failed = drill.last_success_at, drill.last_failure_at
        failing = failed is not None and (passed is None or failed >= passed)
        stale = passed is None or now - passed > limits.drill_stale.value
        slow = drill.rto_seconds is not None and drill.rto_seconds > objectives.rto_seconds
        counts = passed is not None and now - passed <= limits.rpo_window.value  # as OpsmonBackupRpoMissed counts
        if counts and drill.rpo_seconds is not None and (best is None or drill.rpo_seconds < best[1]):
            best = (location, drill.rpo_seconds, passed)
        parts = []
        if failing:
            parts.append(f"failed {ago_text(failed, now)}: {drill.last_error}")
        if passed is not None:
            parts.append(f"passed {ago_text(passed, now)}" + (f": {drill.source}" if drill.source and not failing else ""))
            if drill.rto_seconds is not None and drill.rpo_seconds is not None and not failing:
                parts.append(f"restored in {seconds_text(drill.rto_seconds)}"
                             + (f" (over the RTO objective of {seconds_text(objectives.rto_seconds)})" if slow else "")
                             + f", data {age_text(drill.rpo_seconds)} old")
        elif not failing:
            parts.append("never drilled")
        # A failed drill is a problem at once: that copy may not restore (its alert waits for the staleness).
        level = (PROBLEM if failing else marked_at(limits.drill_stale) if stale
                 else marked_at(limits.rto_missed) if slow else OK)
        hint = None
        if failing:
            hint = "this location may not restore: fix the cause above, then opsmon-backup drill"
        elif level != OK:
            hint = f"opsmon-backup drill (the service runs it at `{backups.drill_schedule}`)"
        report.lines.append(Line(f"drill {location}", level, "; ".join(parts), hint))
        report.facts["drills"][location] = {
            "level": level, "last_success_at": to_iso(passed) if passed else None,
            "last_failure_at": to_iso(failed) if failed else None, "last_error": drill.last_error,
            "source": drill.source, "rto_seconds": drill.rto_seconds, "rpo_seconds": drill.rpo_seconds}
    objective = objectives.rpo_seconds
    if best is None:  # the drill lines above say why; the alert has no figure to compare either
        level, text = INFO, (f"unknown: no location passed a drill in the last {age_text(limits.rpo_window.value)}; "
                             f"objective {age_text(objective)}")
    else:
        level = marked_at(limits.rpo_missed) if best[1] > objective else OK
        text = (f"at the last drill ({moment_text(best[2])}): a disaster then would have lost {age_text(best[1])} "
                f"of data (best copy: {best[0]}); objective {age_text(objective)}")
    report.lines.append(Line("recovery point", level, text,
                             "make the copies fresher: a Litestream replica, or more frequent backups"
                             if best is not None and level != OK else None))
    report.facts["recovery_point"] = {"level": level, "best_location": best[0] if best else None,
                                      "rpo_seconds": best[1] if best else None,
                                      "drilled_at": to_iso(best[2]) if best else None, "objective_seconds": objective}


def _integrity(report: StatusReport, config: OpsmonConfig, current: Catalog, now: float, limits: Limits) -> None:
    result = current.status.integrity
    if result is None:
        report.lines.append(Line("integrity", marked_at(limits.integrity_stale), "never checked",
                                 "opsmon-backup check"))
        report.facts["integrity"] = None
        return
    rules = {rule: n for rule, n in sorted(result.rule_violations.items()) if n}
    stale = now - result.checked_at > limits.integrity_stale.value
    damaged = bool(result.integrity_problems)
    parts = [f"checked {ago_text(result.checked_at, now)}"
             + (f" (over {age_text(limits.integrity_stale.value)})" if stale else "") + ": "
             + (f"damaged ({'; '.join(result.integrity_problems[:3])})" if damaged else "sound") + ", "
             + plural(result.foreign_key_violations, "broken reference") + ", "
             + (", ".join(f"{plural(n, 'row')} {'breaks' if n == 1 else 'break'} {rule}" for rule, n in rules.items())
                or "no rule broken")]
    level = max(marked_at(limits.integrity_failed) if damaged else OK,
                marked_at(limits.foreign_keys) if result.foreign_key_violations else OK,
                marked_at(limits.rules_broken) if rules else OK, marked_at(limits.integrity_stale) if stale else OK,
                key=_RANK.__getitem__)
    hints = []
    if damaged:
        hints.append("opsmon-backup restore ID --dry-run with the newest verified backup, then without --dry-run")
    if result.foreign_key_violations or rules:
        hints.append("opsmon-backup check names the rows; check --fix repairs the rules marked fixable")
    if stale:
        hints.append(f"the service runs opsmon-backup check at `{config.backups.check_schedule}`: is it running?")
    report.lines.append(Line("integrity", level, "; ".join(parts), "; ".join(hints) or None))
    report.facts["integrity"] = {"level": level, **result.model_dump(mode="json", include={
        "ok", "integrity_problems", "foreign_key_violations", "rule_violations"}),
        "checked_at": to_iso(result.checked_at)}


def _catalog_files(report: StatusReport, config: OpsmonConfig, current: Catalog, now: float, limits: Limits) -> None:
    problems = current.status.problems()
    if problems:
        report.lines.append(Line("status file", WARNING, "; ".join(problems[:3]),
                                 "the next job rewrites it without the bad part"))


def _future_dated(report: StatusReport, config: OpsmonConfig, current: Catalog, now: float, limits: Limits) -> None:
    """Backups stamped after now: a clock that ran ahead when they were taken (or runs behind now)."""
    ahead = sorted(future_dated(current.backups, now), key=lambda b: (b.started_at, b.id))
    if not ahead:
        return
    names = ", ".join(b.id for b in ahead[:3]) + (", ..." if len(ahead) > 3 else "")
    report.lines.append(Line(
        "clock", marked_at(limits.future_dated),
        f"{plural(len(ahead), 'backup')} stamped in the future: {names}, up to {age_text(ahead[-1].started_at - now)} "
        "after this host's clock",
        "check the host's time (timedatectl); retention goes by the order backups were made, so these age out as "
        "new ones are taken (opsmon-backup delete ID removes one now)"))
    report.facts["future_dated"] = [b.id for b in ahead]


def _service(report: StatusReport, backups: BackupsConfig, database: Path, now: float, limits: Limits,
             ask: Callable[[str], ServiceAnswer], schedule: Iterable[tuple[str, str]]) -> None:
    where = backups.listen_address
    answer = ask(service_url(backups))
    if answer.error is None and answer.database is not None and not same_file(Path(answer.database), database):
        # Another database's service on this port (two apps on one machine, a config copied from the
        # other): its schedule and Litestream are not this database's.
        text, todo = (f"the service on {where} backs up another database, {answer.database}: nothing runs on "
                      "schedule for this one, Litestream included",
                      "give each database's service a backups.listen_address of its own, and run this one's")
        answer = ServiceAnswer(text)
    elif answer.error is None:
        text, todo = f"running on {where}", None
    else:
        text, todo = (f"not answering on {where} ({answer.error}): nothing runs on schedule, Litestream included",
                      "run opsmon-backup serve (make run, or docker compose up -d backup)")
    level = OK if answer.error is None else PROBLEM
    report.lines.append(Line("service", level, text, todo))
    if answer.error is None and answer.next_runs:  # the service's own times: a job it caught up on is "now"
        runs, source = sorted((at, name) for name, at in answer.next_runs.items()), "service"
    else:  # what the schedules say, for a service that is down (or too old to publish its jobs)
        zone = ZoneInfo(backups.timezone)
        runs = sorted((croniter(cron, datetime.fromtimestamp(now, zone)).get_next(float), name)
                      for name, cron in schedule)
        source = "schedule"
    overdue = [(at, name) for at, name in runs if name not in answer.running and now - at > limits.job_overdue.value]
    if runs:
        report.lines.append(Line("next runs", INFO, ", ".join(
            f"{name} running now" if name in answer.running else
            f"{name} {age_text(now - at)} late" if now > at else f"{name} in {age_text(at - now)}"
            for at, name in runs)))
    if overdue:
        report.lines.append(Line("overdue", marked_at(limits.job_overdue), ", ".join(
            f"{name} should have started {ago_text(at, now)}" for at, name in overdue),
            "a job waits for the job lock (a long restore?) or the scheduler is stuck: see the service's log"))
    if answer.litestream_up is False and backups.litestream.enabled:
        report.lines.append(Line("litestream", marked_at(limits.litestream_down),
                                 "the service says its Litestream is not running: "
                                 "the point-in-time replica stops at its last write",
                                 "see the service's log (`litestream`): it restarts Litestream, waiting longer "
                                 "after each exit"))
    overall = max((level, marked_at(limits.job_overdue) if overdue else OK), key=_RANK.__getitem__)
    report.facts["service"] = {"level": overall,
                               "listen_address": backups.listen_address, "running": answer.error is None,
                               "error": answer.error, "timezone": backups.timezone, "next_runs_from": source,
                               "next_runs": {name: to_iso(at) for at, name in runs},
                               "jobs_running": sorted(answer.running), "litestream_up": answer.litestream_up}


# ---- the service ------------------------------------------------------------------------------

@dataclass
class ServiceAnswer:
    """What the backup service says of itself: why it did not answer, or its jobs from its /metrics."""

    error: str | None
    next_runs: dict[str, float] = field(default_factory=dict)
    running: set[str] = field(default_factory=set)
    litestream_up: bool | None = None
    database: str | None = None  # the path the service backs up; None from a service too old to say


def service_url(backups: BackupsConfig) -> str:
    """The backup service as this machine reaches it (a wildcard address is loopback here)."""
    host, _, port = backups.listen_address.rpartition(":")
    host = host.strip("[]")
    if host in ("", "0.0.0.0", "::"):
        host = "127.0.0.1"
    scheme = "https" if backups.console.enabled and backups.console.tls_cert_file else "http"
    return f"{scheme}://{f'[{host}]' if ':' in host else host}:{port}"


def ask_service(url: str) -> ServiceAnswer:
    """/-/healthy, then /metrics for the jobs' next runs and Litestream, each with a short timeout. Nothing
    secret is sent (both paths are open), so the console's own certificate is not checked here."""
    error = _get(f"{url}/-/healthy")[0]
    if error is not None:
        return ServiceAnswer(error)
    answer = ServiceAnswer(None)
    failed, exposition = _get(f"{url}/metrics")
    if failed is not None:
        return answer
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            job = sample.labels.get("backup_job")
            if sample.name == "opsmon_backup_job_next_run_timestamp_seconds" and job and sample.value > 0:
                answer.next_runs[job] = sample.value
            elif sample.name == "opsmon_backup_job_running" and job and sample.value == 1:
                answer.running.add(job)
            elif sample.name == "opsmon_litestream_up":
                answer.litestream_up = sample.value == 1
            elif sample.name == "opsmon_backup_service_info":
                answer.database = sample.labels.get("path")
    return answer


def _get(url: str) -> tuple[str | None, str]:
    context = ssl._create_unverified_context() if url.startswith("https") else None  # noqa: S323
    try:
        with urllib.request.urlopen(url, timeout=HEALTH_TIMEOUT_SECONDS, context=context) as answer:
            return None, answer.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as err:
        return f"HTTP {err.code}", ""
    except (urllib.error.URLError, OSError, ValueError) as err:
        reason = getattr(err, "reason", err)
        return getattr(reason, "strerror", None) or str(reason), ""
