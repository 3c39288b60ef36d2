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
from opsmon.config import BackupsConfig, OpsmonConfig

OK, WARNING, PROBLEM, OFF, INFO = "ok", "warning", "problem", "off", "info"
_RANK = {INFO: 0, OFF: 0, OK: 0, WARNING: 1, PROBLEM: 2}
HOUR, DAY = 3600, 86400
HEALTH_TIMEOUT_SECONDS = 1.0  # each of /-/healthy and /metrics, on this machine


@dataclass(frozen=True)
class Limit:
    """One threshold of prometheus/rules/*.rules.yml: the alert, its severity, and its number (seconds,
    or a ratio); None where the alert compares with a setting or fires on a fact."""

    alert: str
    severity: str
    value: float | None = None

    @property
    def level(self) -> str:
        return PROBLEM if self.severity == "critical" else WARNING


# The alerts' numbers, here once; tests/test_status.py fails when they drift apart from the rules.
BACKUP_STALE = {
    "warning": {"daily": Limit("OpsmonBackupStale", "warning", 26 * HOUR),
                "weekly": Limit("OpsmonBackupStale", "warning", 8 * DAY),
                "monthly": Limit("OpsmonBackupStale", "warning", 32 * DAY)},
    "critical": {"daily": Limit("OpsmonBackupStale", "critical", 50 * HOUR),
                 "weekly": Limit("OpsmonBackupStale", "critical", 15 * DAY),
                 "monthly": Limit("OpsmonBackupStale", "critical", 63 * DAY)},
}
COPY_STALE = Limit("OpsmonBackupCopyStale", "warning", 26 * HOUR)
VERIFY_STALE = Limit("OpsmonBackupVerificationStale", "warning", 26 * HOUR)
DRILL_STALE = Limit("OpsmonRestoreDrillStale", "warning", 26 * HOUR)
PITR_LAG = Limit("OpsmonPitrReplicationLagging", "warning", 300)
INTEGRITY_STALE = Limit("OpsmonIntegrityCheckStale", "warning", 3 * HOUR)
JOB_OVERDUE = Limit("OpsmonBackupJobOverdue", "warning", 30 * 60)
SHRUNK = Limit("OpsmonBackupShrunk", "warning", 0.5)  # the newest daily backup under this share of the weekly
WAL_LARGE = Limit("OpsmonDatabaseWalLarge", "warning", 2)  # the WAL over this many times the database...
WAL_LARGE_BYTES = 64 * 1024 * 1024  # ...and over this size
# Alerts on a fact or a setting: the line is marked at the alert's severity, with no number to keep in step.
BACKUP_FAILING = Limit("OpsmonBackupFailing", "warning")
VERIFY_FAILING = Limit("OpsmonBackupVerificationFailing", "critical")
MANIFESTS_UNREADABLE = Limit("OpsmonBackupManifestsUnreadable", "warning")
RTO_MISSED = Limit("OpsmonRestoreDrillRtoMissed", "warning")  # backups.objectives.rto_seconds
RPO_MISSED = Limit("OpsmonBackupRpoMissed", "warning")  # backups.objectives.rpo_seconds
LITESTREAM_DOWN = Limit("OpsmonLitestreamDown", "warning")
INTEGRITY_FAILED = Limit("OpsmonDatabaseIntegrityFailed", "critical")
FOREIGN_KEYS = Limit("OpsmonForeignKeyViolations", "warning")
RULES_BROKEN = Limit("OpsmonRuleViolations", "warning")
FUTURE_DATED = Limit("OpsmonBackupFutureDated", "warning")
LIMITS = [*BACKUP_STALE["warning"].values(), *BACKUP_STALE["critical"].values(), COPY_STALE, VERIFY_STALE,
          DRILL_STALE, PITR_LAG, INTEGRITY_STALE, JOB_OVERDUE, SHRUNK, WAL_LARGE, BACKUP_FAILING, VERIFY_FAILING,
          MANIFESTS_UNREADABLE, RTO_MISSED, RPO_MISSED, LITESTREAM_DOWN, INTEGRITY_FAILED, FOREIGN_KEYS, RULES_BROKEN,
          FUTURE_DATED]
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
          schedule: Iterable[tuple[str, str]] = ()) -> StatusReport:
    """The report of the config's database now.

    `ask(url)` is what the backup service says (ask_service: its /-/healthy and /metrics); without it
    the service is not looked at (the console is the service). `schedule` is the service's jobs as
    (name, cron) pairs, for their next runs when the service does not say them itself.
    """
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
        section(report, config, current, now)
    if ask is not None:
        _service(report, jobs.config.backups, now, ask, schedule)
    return report


# ---- sections ---------------------------------------------------------------------------------

def _database(report: StatusReport, config: OpsmonConfig, current: Catalog, now: float) -> None:
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
    if wal_size > WAL_LARGE.value * size and wal_size > WAL_LARGE_BYTES:
        report.lines.append(Line("database", WAL_LARGE.level, f"{text}; its WAL is {size_text(wal_size)}, over "
                                 f"{WAL_LARGE.value:g} times the database: checkpoints do not complete",
                                 "look for a long-running reader of the database (an open transaction)"))
    else:
        report.lines.append(Line("database", OK, text))


def _tiers(report: StatusReport, config: OpsmonConfig, current: Catalog, now: float) -> None:
    backups = config.backups
    report.facts["tiers"] = {}
    for tier in TIERS:
        newest = current.newest_verified(tier)
        kept, keep = len(current.of_tier(tier)), getattr(backups.retention, tier)
        failure = current.status.tiers.get(tier)
        failed_at = failure.last_failure_at if failure else None
        failing = failed_at is not None and (newest is None or failed_at > newest.finished_at)
        age = now - newest.finished_at if newest else None
        warn, page = BACKUP_STALE["warning"][tier], BACKUP_STALE["critical"][tier]
        shrunk = tier == "daily" and _shrunk(current)
        if newest is None or age > page.value:
            level = page.level
        elif age > warn.value or failing or shrunk:
            level = max(warn.level, BACKUP_FAILING.level if failing else OK, SHRUNK.level if shrunk else OK,
                        key=_RANK.__getitem__)
        else:
            level = OK
        parts = [f"{newest.id}, taken {ago_text(newest.finished_at, now)}, {size_text(newest.size_bytes)}"
                 if newest else "no verified backup", f"{kept} kept of {keep}"]
        if newest is not None and age > warn.value:
            parts.append(f"older than {age_text(warn.value)}")
        if failing:
            parts.append(f"the last run failed {ago_text(failed_at, now)}: {failure.last_error}")
        if shrunk:
            parts.append(f"under half the size of the newest weekly backup ({size_text(shrunk)})")
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


def _shrunk(current: Catalog) -> int | None:
    """The newest weekly backup's size when the newest daily one is under half of it (every backup is full)."""
    daily, weekly = current.of_tier("daily"), current.of_tier("weekly")
    if daily and weekly and daily[-1].size_bytes < SHRUNK.value * weekly[-1].size_bytes:
        return weekly[-1].size_bytes
    return None


def _verification(report: StatusReport, config: OpsmonConfig, current: Catalog, now: float) -> None:
    failing = [b for b in current.scheduled if b.verified is False]
    unreadable = current.problems
    last = current.status.verify.last_success_at
    stale = last is None or now - last > VERIFY_STALE.value
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
                     + (f" (over {age_text(VERIFY_STALE.value)})" if stale else ""))
    if stale:
        hints.append(f"opsmon-backup verify --all (the service runs it at `{config.backups.verify_schedule}`)")
    level = (VERIFY_FAILING.level if failing else MANIFESTS_UNREADABLE.level if unreadable
             else VERIFY_STALE.level if stale else OK)
    report.lines.append(Line("verification", level, "; ".join(parts), "; ".join(hints) or None))
    report.facts["verification"] = {
        "level": level, "last_success_at": to_iso(last) if last else None, "failing": [b.id for b in failing],
        "unreadable_manifests": unreadable}


def _copies(report: StatusReport, config: OpsmonConfig, current: Catalog, now: float) -> None:
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
        stale = success is None or now - success > COPY_STALE.value
        parts = [(f"up to {held.id}" if held else "holds no backup") + ", "
                 + (f"synced {ago_text(success, now)}" if success else "never synced")]
        if error:
            parts.append(f"the last try failed: {error}")
        level = COPY_STALE.level if (stale or error) and (verified or error) else OK
        hint = (f"the copy is tried again after every backup and prune (opsmon-backup prune); check {target}"
                if level != OK else None)
        report.lines.append(Line(f"copy {name}", level, "; ".join(parts), hint))
        report.facts["copies"][name] = {"level": level, "target": target,
                                        "last_success_at": to_iso(success) if success else None,
                                        "last_error": error, "newest": held.id if held else None}


def _pitr(report: StatusReport, config: OpsmonConfig, current: Catalog, now: float) -> None:
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
        facts["level"] = LITESTREAM_DOWN.level
        report.lines.append(Line("point in time", LITESTREAM_DOWN.level,
                                 "the replica holds nothing the backup service has seen",
                                 "is the service running (below)? Litestream's lines are in its log, as `litestream`"))
        return
    modified = report.facts["database"]["last_modified_at"]
    lag = max(0.0, to_timestamp(modified) - pitr.last_replicated_at) if modified else None
    level = PITR_LAG.level if lag is not None and lag > PITR_LAG.value else OK
    span = f"{to_iso(pitr.earliest_at) if pitr.earliest_at else '?'} to {to_iso(pitr.last_replicated_at)}"
    behind = ("" if lag is None else "; up to the database's last write" if lag < 1
              else f"; {age_text(lag)} behind the database's last write")
    hint = ("Litestream falls behind: see the service's log (`litestream`) and opsmon_litestream_up"
            if level != OK else None)
    report.lines.append(Line("point in time", level, span + behind, hint))
    facts.update(level=level, earliest_at=to_iso(pitr.earliest_at) if pitr.earliest_at else None,
                 latest_at=to_iso(pitr.last_replicated_at), lag_seconds=lag)


def _exposure(report: StatusReport, config: OpsmonConfig, current: Catalog, now: float) -> None:
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


def _drills(report: StatusReport, config: OpsmonConfig, current: Catalog, now: float) -> None:
    backups, status = config.backups, current.status
    expected = ["local"] + [n for n, on in (("secondary", backups.secondary_directory), ("offsite", backups.offsite))
                            if on] + (["replica"] if backups.litestream.enabled else [])
    drills = dict(status.drills)
    if not drills and status.drill.last_run_at is not None:  # a status of before per-location drills
        old = status.drill
        drills["local"] = LocationDrill(last_run_at=old.last_run_at, last_success_at=old.last_success_at,
                                        last_failure_at=old.last_failure_at, last_error=old.last_error,
                                        source=f"backup {old.backup}" if old.backup else None)
    objectives = backups.objectives
    report.facts["drills"] = {}
    best = None
    for location in expected + sorted(set(drills) - set(expected)):
        drill = drills.get(location) or LocationDrill()
        passed, failed = drill.last_success_at, drill.last_failure_at
        failing = failed is not None and (passed is None or failed >= passed)
        stale = passed is None or now - passed > DRILL_STALE.value
        slow = drill.rto_seconds is not None and drill.rto_seconds > objectives.rto_seconds
        if passed is not None and not stale and drill.rpo_seconds is not None and \
                (best is None or drill.rpo_seconds < best[1]):
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
        level = PROBLEM if failing else DRILL_STALE.level if stale else RTO_MISSED.level if slow else OK
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
        level, text = INFO, (f"unknown: no location passed a drill in the last {age_text(DRILL_STALE.value)}; "
                             f"objective {age_text(objective)}")
    else:
        level = RPO_MISSED.level if best[1] > objective else OK
        text = (f"at the last drill ({moment_text(best[2])}): a disaster then would have lost {age_text(best[1])} "
                f"of data (best copy: {best[0]}); objective {age_text(objective)}")
    report.lines.append(Line("recovery point", level, text,
                             "make the copies fresher: a Litestream replica, or more frequent backups"
                             if best is not None and level != OK else None))
    report.facts["recovery_point"] = {"level": level, "best_location": best[0] if best else None,
                                      "rpo_seconds": best[1] if best else None,
                                      "drilled_at": to_iso(best[2]) if best else None, "objective_seconds": objective}


def _integrity(report: StatusReport, config: OpsmonConfig, current: Catalog, now: float) -> None:
    result = current.status.integrity
    if result is None:
        report.lines.append(Line("integrity", INTEGRITY_STALE.level, "never checked", "opsmon-backup check"))
        report.facts["integrity"] = None
        return
    rules = {rule: n for rule, n in sorted(result.rule_violations.items()) if n}
    stale = now - result.checked_at > INTEGRITY_STALE.value
    damaged = bool(result.integrity_problems)
    parts = [f"checked {ago_text(result.checked_at, now)}"
             + (f" (over {age_text(INTEGRITY_STALE.value)})" if stale else "") + ": "
             + (f"damaged ({'; '.join(result.integrity_problems[:3])})" if damaged else "sound") + ", "
             + plural(result.foreign_key_violations, "broken reference") + ", "
             + (", ".join(f"{plural(n, 'row')} {'breaks' if n == 1 else 'break'} {rule}" for rule, n in rules.items())
                or "no rule broken")]
    level = max(INTEGRITY_FAILED.level if damaged else OK, FOREIGN_KEYS.level if result.foreign_key_violations else OK,
                RULES_BROKEN.level if rules else OK, INTEGRITY_STALE.level if stale else OK, key=_RANK.__getitem__)
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


def _catalog_files(report: StatusReport, config: OpsmonConfig, current: Catalog, now: float) -> None:
    problems = current.status.problems()
    if problems:
        report.lines.append(Line("status file", WARNING, "; ".join(problems[:3]),
                                 "the next job rewrites it without the bad part"))


def _future_dated(report: StatusReport, config: OpsmonConfig, current: Catalog, now: float) -> None:
    """Backups stamped after now: a clock that ran ahead when they were taken (or runs behind now)."""
    ahead = sorted(future_dated(current.backups, now), key=lambda b: (b.started_at, b.id))
    if not ahead:
        return
    names = ", ".join(b.id for b in ahead[:3]) + (", ..." if len(ahead) > 3 else "")
    report.lines.append(Line(
        "clock", FUTURE_DATED.level,
        f"{plural(len(ahead), 'backup')} stamped in the future: {names}, up to {age_text(ahead[-1].started_at - now)} "
        "after this host's clock",
        "check the host's time (timedatectl); retention goes by the order backups were made, so these age out as "
        "new ones are taken (opsmon-backup delete ID removes one now)"))
    report.facts["future_dated"] = [b.id for b in ahead]


def _service(report: StatusReport, backups: BackupsConfig, now: float, ask: Callable[[str], ServiceAnswer],
             schedule: Iterable[tuple[str, str]]) -> None:
    answer = ask(service_url(backups))
    level = OK if answer.error is None else PROBLEM
    text = (f"running on {backups.listen_address}" if answer.error is None else
            f"not answering on {backups.listen_address} ({answer.error}): nothing runs on schedule, Litestream "
            "included")
    report.lines.append(Line("service", level, text, None if answer.error is None else
                             "run opsmon-backup serve (make run, or docker compose up -d backup)"))
    if answer.error is None and answer.next_runs:  # the service's own times: a job it caught up on is "now"
        runs, source = sorted((at, name) for name, at in answer.next_runs.items()), "service"
    else:  # what the schedules say, for a service that is down (or too old to publish its jobs)
        zone = ZoneInfo(backups.timezone)
        runs = sorted((croniter(cron, datetime.fromtimestamp(now, zone)).get_next(float), name)
                      for name, cron in schedule)
        source = "schedule"
    overdue = [(at, name) for at, name in runs if name not in answer.running and now - at > JOB_OVERDUE.value]
    if runs:
        report.lines.append(Line("next runs", INFO, ", ".join(
            f"{name} running now" if name in answer.running else
            f"{name} {age_text(now - at)} late" if now > at else f"{name} in {age_text(at - now)}"
            for at, name in runs)))
    if overdue:
        report.lines.append(Line("overdue", JOB_OVERDUE.level, ", ".join(
            f"{name} should have started {ago_text(at, now)}" for at, name in overdue),
            "a job waits for the job lock (a long restore?) or the scheduler is stuck: see the service's log"))
    if answer.litestream_up is False and backups.litestream.enabled:
        report.lines.append(Line("litestream", LITESTREAM_DOWN.level, "the service says its Litestream is not running: "
                                 "the point-in-time replica stops at its last write",
                                 "see the service's log (`litestream`): it restarts Litestream, waiting longer "
                                 "after each exit"))
    report.facts["service"] = {"level": max((level, JOB_OVERDUE.level if overdue else OK), key=_RANK.__getitem__),
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
