"""Backups and data: is there a recent, verified, copied and restorable backup, and is the database sound?"""

from grafana_foundation_sdk.builders import dashboard
from grafana_foundation_sdk.models import dashboard as model

from grafana.boards import panels as p
from grafana.boards import rules

UID = "opsmon-backups"
FILE = "backups"
CONSOLE = "http://localhost:9878/"
D = p.on_hosts('database=~"$database"')
H = p.on_hosts()
TIERS = ("daily", "weekly", "monthly")
# A tier's series is named `<host> <database> <tier>`: the tier last, where the per-tier overrides match it.
TIER_LEGEND = "{{database}} {{tier}}"


def stale(tier: str) -> dashboard.ThresholdsConfig:
    """Orange where OpsmonBackupStale warns for this tier (one run missed), red where it pages (two)."""
    return p.above(*[rules.limit("OpsmonBackupStale", severity, where=f'tier="{tier}"')
                     for severity in ("warning", "critical")])


def job(suffix: str) -> str:
    return f"opsmon_backup_job_{suffix}{H}"


def per_job(expr: str) -> str:
    """One row per host and backup job: the same labels on every column (no __name__), so the merge lines them up."""
    return f"max by (host, backup_job) ({expr})"


# The drills: per location (local, secondary, offsite, replica), against the objectives of the config, which the
# exporter publishes per database; the alerts compare with those series, so the panels do too.
SAME = "on (job, instance, database)"
DRILL_PASSED = f"opsmon_restore_drill_last_success_timestamp_seconds{D}"


def drilled(figure: str) -> str:
    return f"opsmon_restore_drill_{figure}_seconds{D}"


def objective(figure: str) -> str:
    return f"opsmon_backup_objective_{figure}_seconds{D}"


def per_location(expr: str) -> str:
    return f"max by (host, database, location) ({expr})"


def objective_per_location(figure: str) -> str:
    """The database's objective on each location's row, so the table shows the figure beside what it must meet."""
    return per_location(f"0 * {drilled(figure)} + {SAME} group_left {objective(figure)}")


def best_rpo() -> str:
    """The RPO a disaster would cost, as OpsmonBackupRpoMissed reads it: the best location among those whose drill
    passed within OpsmonRestoreDrillStale's age."""
    fresh = rules.limit("OpsmonRestoreDrillStale").value
    return (f"min by (job, instance, database) ({drilled('rpo')} unless on (job, instance, database, location) "
            f"(time() - {DRILL_PASSED} > {fresh:g}))")


def missed(figure: str) -> str:
    """1 where the alert on the objective fires (before its `for`), 0 where the figure is within it."""
    if figure == "rpo":
        return f"{best_rpo()} > bool {SAME} {objective('rpo')}"
    return f"{drilled(figure)} > bool {SAME} group_left {objective(figure)}"


def build() -> dashboard.Dashboard:
    # Per host and database: two hosts' databases of one name are two databases.
    pitr_lag = p.since(f"max by (host, database) (opsmon_pitr_last_replicated_timestamp_seconds{D})",
                       now=f"max by (host, database) (opsmon_db_last_modified_timestamp_seconds{D})",
                       on="host, database")
    overdue = rules.limit("OpsmonBackupJobOverdue")
    slow = rules.color("OpsmonRestoreDrillRtoMissed")
    return p.board(
        UID, "opsmon / Backups and data",
        "Is there a recent, verified, copied and restorable backup, and is the database sound?",
        [
            p.Row(4, [
                (p.stat("Backups failing verification", "Retained backups whose last verification failed now "
                        "(OpsmonBackupVerificationFailing pages); opsmon-backup verify --all names them.",
                        f"sum(opsmon_backup_verify_failures{D})", p.COUNT,
                        p.any_is_bad(rules.limit("OpsmonBackupVerificationFailing"))), 4),
                (p.age("Last verification", "Time since a verification of every retained backup last passed; "
                       "orange where OpsmonBackupVerificationStale fires.",
                       f"min(opsmon_backup_verify_last_success_timestamp_seconds{D})",
                       p.above(rules.limit("OpsmonBackupVerificationStale"))), 4),
                (p.age("Last restore drill", "Time since the drill of the location proved longest ago last "
                       "restored and checked its copy (every location is drilled daily); orange where "
                       "OpsmonRestoreDrillStale fires for a location, \"never\" while one never passed.",
                       f"min(opsmon_restore_drill_last_success_timestamp_seconds{D})",
                       p.above(rules.limit("OpsmonRestoreDrillStale"))), 4),
                (p.stat("PITR lag", "How far the point-in-time replica is behind the database's last write; orange "
                        "where OpsmonPitrReplicationLagging fires, \"never\" if it never replicated.",
                        f"max({pitr_lag})", p.SECONDS,
                        p.above(rules.limit("OpsmonPitrReplicationLagging")), mappings=[p.never()]), 4),
                (p.state("Litestream", "The Litestream replicator behind point-in-time restore: running or down "
                         "(OpsmonLitestreamDown).", f"min(opsmon_litestream_up{H})", "down", "running",
                         zero_color=rules.limit("OpsmonLitestreamDown").color), 4),
                (p.age("Last restore", "Time since a restore into the live database last succeeded; \"never\" "
                       "until the first one. A restore is an event, not a duty: no colour.",
                       f"max(opsmon_restore_last_success_timestamp_seconds{D})", p.neutral(), no_value="never"), 4),
            ]),
            p.Row(4, [
                (p.state("Integrity", "PRAGMA integrity_check of the live database: ok or failed "
                         "(OpsmonDatabaseIntegrityFailed pages).",
                         f"min(opsmon_db_integrity_check_success{D})", "failed", "ok",
                         zero_color=rules.limit("OpsmonDatabaseIntegrityFailed").color), 4),
                (p.age("Last integrity check", "Time since the database was last checked; orange where "
                       "OpsmonIntegrityCheckStale fires.",
                       f"min(opsmon_db_integrity_check_last_timestamp_seconds{D})",
                       p.above(rules.limit("OpsmonIntegrityCheckStale"))), 4),
                (p.stat("Foreign key violations", "Rows pointing at rows that do not exist "
                        "(OpsmonForeignKeyViolations).", f"sum(opsmon_db_foreign_key_violations{D})", p.COUNT,
                        p.any_is_bad(rules.limit("OpsmonForeignKeyViolations"))), 4),
                (p.stat("Rule violations", "Rows breaking the business rules of the config "
                        "(OpsmonRuleViolations); the Violations graph names the rule.",
                        f"sum(opsmon_db_rule_violations{D})", p.COUNT,
                        p.any_is_bad(rules.limit("OpsmonRuleViolations"))), 4),
                (p.stat("Backup jobs overdue", "Scheduled jobs whose start time passed more than the alert's "
                        "grace ago without them starting (OpsmonBackupJobOverdue).",
                        f"count((time() - {job('next_run_timestamp_seconds')} > {overdue.value:g})"
                        f" and {job('next_run_timestamp_seconds')} > 0) or vector(0)", p.COUNT,
                        p.any_is_bad(overdue)), 4),
                (p.stat("Unreadable manifests", "Backup manifests that cannot be read (damaged, or of a newer "
                        "format): their backups are left out of every figure on this board. No alert watches it; "
                        "orange because every other panel here is then incomplete.",
                        f"sum(opsmon_backup_manifests_unreadable{D})", p.COUNT, p.steps("green", (1, "orange"))), 4),
            ]),
            p.Row(8, [
                (p.bars("Age of the newest backup, by tier", "Age of the newest verified backup of each tier; "
                        "orange where OpsmonBackupStale warns for that tier (a run missed), red where it pages "
                        "(two), \"never\" if none exists.",
                        [p.query(p.since(f"opsmon_backup_last_success_timestamp_seconds{D}"),
                                 f"{{{{host}}}} {TIER_LEGEND}",
                                 instant=True)], p.SECONDS, stale("daily"), mappings=[p.never()], minimum=0,
                        regexp_overrides=[(f"/ {tier}$/", [model.DynamicConfigValue(
                            id_val="thresholds", value=stale(tier).build())]) for tier in TIERS[1:]]), 12),
                (p.bars("Age of the copies, by location", "Age of the newest backup at each location (local, "
                        "secondary, offsite); orange where OpsmonBackupCopyStale fires, \"never\" if none arrived.",
                        [p.query(p.since(f"opsmon_backup_copy_last_success_timestamp_seconds{D}"),
                                 "{{host}} {{location}}",
                                 instant=True)], p.SECONDS, p.above(rules.limit("OpsmonBackupCopyStale")),
                        mappings=[p.never()], minimum=0), 12),
            ]),
            p.Row(4, [
                (p.state("RPO objective", "Whether the data a disaster would cost now is within "
                         "backups.objectives.rpo_seconds: the best location's RPO at its last drill (locations whose "
                         "drill passed in the last day), as OpsmonBackupRpoMissed reads it. One lagging location "
                         "is not a disaster.", f"max({missed('rpo')})", "met", "missed", zero_color="green",
                         one_color=rules.color("OpsmonBackupRpoMissed"), no_value="no drill yet"), 8),
                (p.state("RTO objective", "Whether every location's last passing drill restored and checked its "
                         "copy within backups.objectives.rto_seconds (OpsmonRestoreDrillRtoMissed, per location).",
                         f"max({missed('rto')})", "met", "missed", zero_color="green",
                         one_color=rules.color("OpsmonRestoreDrillRtoMissed"), no_value="no drill yet"), 8),
                (p.state("3-2-1 rule", "At least three fresh copies (the live database counts as one), on two "
                         "media, one offsite (OpsmonBackupThreeTwoOneUnsatisfied). The demo keeps every copy on one "
                         "disk and has no bucket: not met, rightly.",
                         f"min(opsmon_backup_rule_321_satisfied{D})", "not met", "met",
                         zero_color=rules.color("OpsmonBackupThreeTwoOneUnsatisfied")), 8),
            ]),
            p.Row(8, [
                (p.merged_table("Restore drills, by location", "Each location restored by the daily drill: how "
                                "long ago its drill last passed (orange where OpsmonRestoreDrillStale fires, "
                                "\"never\" if it never did), how long the restore and its checks took (RTO) "
                                "and how old the newest data it gave back was (RPO), each beside its objective "
                                "(backups.objectives). RTO and RPO are those of the last passing drill.",
                                [p.Column("Last passed", per_location(p.since(DRILL_PASSED)), p.SECONDS,
                                          mappings=[p.never()],
                                          thresholds=p.above(rules.limit("OpsmonRestoreDrillStale")), colored=True),
                                 p.Column("RTO", per_location(drilled("rto")), p.SECONDS),
                                 p.Column("RTO objective", objective_per_location("rto"), p.SECONDS),
                                 p.Column("Within RTO", per_location(missed("rto")), p.STATE,
                                          mappings=[p.words("yes", "no", "green", slow)],
                                          thresholds=p.steps("green", (1, slow)), colored=True),
                                 p.Column("RPO", per_location(drilled("rpo")), p.SECONDS),
                                 p.Column("RPO objective", objective_per_location("rpo"), p.SECONDS)],
                                sort_by="location", descending=False), 24),
            ]),
            p.Row(8, [
                (p.graph("Backup size, by tier", "Size of the newest backup of each tier; OpsmonBackupShrunk "
                         "fires when one is under half the size of a week before.",
                         [p.query(f"opsmon_backup_last_size_bytes{D}", f"{{{{host}}}} {TIER_LEGEND}")], p.BYTES,
                         minimum=0), 8),
                (p.graph("Backup duration, by tier", "How long the newest backup of each tier took.",
                         [p.query(f"opsmon_backup_last_duration_seconds{D}", f"{{{{host}}}} {TIER_LEGEND}")], p.SECONDS,
                         minimum=0), 8),
                (p.graph("Backups kept, by tier", "Backups retained per tier after pruning.",
                         [p.query(f"opsmon_backup_retained{D}", f"{{{{host}}}} {TIER_LEGEND}")], p.COUNT,
                         minimum=0), 8),
            ]),
            p.Row(8, [
                (p.graph("Database and WAL size", "Size of the database file and of its write-ahead log.",
                         [p.query(f"opsmon_db_size_bytes{D}", "{{host}} {{database}}"),
                          p.query(f"opsmon_db_wal_size_bytes{D}", "{{host}} {{database}} WAL")], p.BYTES,
                         minimum=0), 8),
                (p.timeline("Integrity checks", "Each integrity check's verdict over time: ok or failed.",
                            [p.query(f"opsmon_db_integrity_check_success{D}", "{{host}} {{database}}")],
                            [p.words("failed", "ok")], p.steps("red", (1, "green"))), 8),
                (p.graph("Violations", "Rows failing foreign_key_check, and rows breaking each business rule; "
                         "dashed from 1, where their alerts fire.",
                         [p.query(f"opsmon_db_foreign_key_violations{D}", "{{host}} foreign keys"),
                          p.query(f"opsmon_db_rule_violations{D}", "{{host}} {{rule}}")], p.COUNT,
                         thresholds=p.any_is_bad(rules.limit("OpsmonForeignKeyViolations")), minimum=0), 8),
            ]),
            p.Row(8, [
                (p.merged_table("Backup jobs", "Each scheduled job of the backup service: when it last succeeded "
                                "and failed (\"never\" where it has not), whether its last run failed, how long it "
                                "took, and when it runs next.",
                                [p.Column("Last success", per_job(f"{job('last_success_timestamp_seconds')} * 1000"),
                                          p.TIME_AGO, mappings=[p.never(0)]),
                                 p.Column("Last failure", per_job(f"{job('last_failure_timestamp_seconds')} * 1000"),
                                          p.TIME_AGO, mappings=[p.never(0, color="green")]),
                                 p.Column("Last run", per_job(f"{job('last_failure_timestamp_seconds')} > bool "
                                                              f"{job('last_success_timestamp_seconds')}"),
                                          p.STATE, mappings=[p.words("ok", "failed", "green", "red")],
                                          thresholds=p.steps("green", (1, "red")), colored=True),
                                 p.Column("Took", per_job(job("last_duration_seconds")), p.SECONDS),
                                 p.Column("Next run", per_job(f"{job('next_run_timestamp_seconds')} * 1000"),
                                          p.TIME_AGO, mappings=[p.never(0, color="text")]),
                                 p.Column("Running", per_job(job("running")), p.STATE,
                                          mappings=[p.words("no", "yes", "text", "blue")])],
                                sort_by="Next run", descending=False), 24),
            ]),
        ],
        variables=[p.variable("database", "Database", f"opsmon_backup_retained{H}", "database")],
        links=[dashboard.DashboardLink("Backup console: restore, back up, verify").type(model.DashboardLinkType.LINK)
               .url(CONSOLE).target_blank(True).icon("external link").tooltip("opsmon-backup serve (login required)")],
    )
