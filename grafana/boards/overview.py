"""Overview: is anything wrong right now, and which board says more?"""

import re

from grafana_foundation_sdk.builders import dashboard
from grafana_foundation_sdk.models import dashboard as model

from grafana.boards import panels as p
from grafana.boards import rules
from grafana.boards.lint import HOSTLESS_JOBS

UID = "opsmon-overview"
FILE = "overview"
# No alert watches the budget that is left; below a quarter of it a person should spend it with care.
BUDGET_LOW = 0.25
H = p.on_hosts()
MONITORING_JOBS = "|".join(HOSTLESS_JOBS)
NEWEST_DAILY = "opsmon_backup_last_success_timestamp_seconds" + p.on_hosts('tier="daily"')
# The boards a row of the Hosts table leads to, each for that row's host.
HOST_BOARDS = (("System", "opsmon-system"), ("Application", "opsmon-application"), ("Logs", "opsmon-logs"),
               ("Business", "opsmon-business"), ("Backups", "opsmon-backups"),
               ("External services", "opsmon-external"), ("Exporter", "opsmon-exporter"))


def alert_groups_url() -> str:
    """Grafana's alert groups page, read from the provisioned Alertmanager: silences and inhibitions applied."""
    return (f"/alerting/groups?alertmanager={p.ALERTMANAGER}&alertState=active"
            f"&queryString=alertname%21%3D{rules.heartbeat()}")


def error_ratio_thresholds() -> dashboard.ThresholdsConfig:
    """Orange above the objective (the budget burns), red at the fastest burn rate a page fires at."""
    objective, fastest = rules.error_objective(), max(rules.burn_rates())
    return p.steps("green", (objective, "orange"), (round(fastest * objective, 9), "red"))


def budget_thresholds() -> dashboard.ThresholdsConfig:
    return p.steps("red", (0, "orange"), (BUDGET_LOW, "green"))


def slow_share(selector: str = "") -> str:
    """The share of requests slower than the latency alert's bucket boundary, as the alert counts it."""
    boundary = f"{rules.bucket('OpsmonLatencyHigh'):g}"
    inner = (selector or H).strip("{}")
    every = "{" + ", ".join(filter(None, [inner, 'le="+Inf"'])) + "}"
    fast = "{" + ", ".join(filter(None, [inner, f'le="{boundary}"'])) + "}"
    return (f"(sum(rate(app_request_duration_seconds_bucket{every}[$__rate_interval]))"
            f" - sum(rate(app_request_duration_seconds_bucket{fast}[$__rate_interval])))"
            f" / sum(rate(app_request_duration_seconds_bucket{every}[$__rate_interval]))")


def reporting():
    """1 while the series an absent() alert watches is there, 0 once it is gone: the blind spots in words."""
    def name(alert: str) -> str:  # OpsmonAppMetricsAbsent: "App metrics"
        words = re.findall(r"[A-Z][a-z]*", alert.removeprefix("Opsmon").removesuffix("Absent"))
        return " ".join([words[0]] + [w.lower() for w in words[1:]])
    targets = [p.query(f"(count({p.with_hosts(selector)}) > bool 0) or vector(0)", name(alert), instant=True)
               for alert, selector in rules.absences()]
    alerts = ", ".join(alert for alert, _ in rules.absences())
    return p.stat_panel("Metrics reporting", f"Whether the series the absence alerts watch ({alerts}) are there: "
                        "without them those alerts, and this board, are blind.", targets, p.STATE,
                        p.steps("red", (1, "green")), mappings=[p.words("missing", "reporting")])


def daily_backup_limits() -> list[rules.Limit]:
    return [rules.limit("OpsmonBackupStale", severity, where='tier="daily"') for severity in ("warning", "critical")]


def target_up(header: str, job: str) -> p.Column:
    down = rules.limit("OpsmonTargetDown").color
    selector = p.on_hosts(f'job="{job}"')
    return p.Column(header, f"max by (host) (up{selector})", p.STATE, mappings=[p.words("down", "up", down)],
                    thresholds=p.steps(down, (1, "green")),
                    colored=True)


def hosts_table() -> dashboard.Panel:
    """One row per host: its two services, its errors, its newest backup and its database; each row leads to the
    other boards for that host."""
    broken = rules.color("OpsmonDatabaseIntegrityFailed")
    return p.merged_table(
        "Hosts", "Each host of the fleet: whether Prometheus reaches its exporter and its backup service "
        "(OpsmonTargetDown), its failed requests over requests in the last 5 minutes (orange above the 1 % "
        "objective, red at the burn rate that pages), the age of its database's newest daily backup (the oldest "
        "of its databases; OpsmonBackupStale), and its integrity check (OpsmonDatabaseIntegrityFailed). Click a "
        "row for that host on the other boards.",
        [target_up("Exporter", "opsmon-exporter"), target_up("Backup service", "opsmon-backup"),
         p.Column("Error ratio (5 min)", f"sum by (host) (job:app_request_errors:rate5m{H})"
                  f" / sum by (host) (job:app_requests:rate5m{H})", p.RATIO,
                  thresholds=error_ratio_thresholds(), colored=True),
         p.Column("Newest daily backup", p.since(f"min by (host) ({NEWEST_DAILY})"), p.SECONDS,
                  mappings=[p.never()], thresholds=p.above(*daily_backup_limits()), colored=True),
         p.Column("Integrity", f"min by (host) (opsmon_db_integrity_check_success{H})", p.STATE,
                  mappings=[p.words("failed", "ok", broken)], thresholds=p.steps(broken, (1, "green")),
                  colored=True)],
        sort_by="host", descending=False, row_links=[p.host_link(title, uid) for title, uid in HOST_BOARDS])


def capacity_row() -> p.Row:
    """The kit's own data: what each of its folders holds and how fast it all grows (OpsmonFootprintFillsDisk)."""
    return p.Row(8, [
        (p.graph("Kit's own data", "Bytes each of the kit's folders holds (backups, second folder, Litestream "
                 "replica, logs, exporter state), and Prometheus's TSDB. Retention keeps each bounded: a sawtooth, "
                 "not a ramp.",
                 [p.query(f"opsmon_footprint_bytes{H}", "{{host}} {{part}}"),
                  p.query("prometheus_tsdb_storage_blocks_bytes", "TSDB {{instance}}")], p.BYTES, minimum=0,
                 links=[p.link("System", "opsmon-system")]), 12),
        (p.graph("Kit's data growth (6 h)", "How fast the kit's folders grow together, per host, over 6 hours. "
                 "OpsmonFootprintFillsDisk fires when a day's average, kept up for 35 days, exceeds the free space.",
                 [p.query(f"host:opsmon_footprint_bytes:deriv6h{H}", "{{host}}")], p.BYTES_PER_SECOND), 12),
    ])


def build() -> dashboard.Dashboard:
    heartbeat = rules.heartbeat()
    boundary = f"{rules.bucket('OpsmonLatencyHigh'):g}"
    daily = daily_backup_limits()
    person = p.stat(
        "Alerts reaching a person",
        "Alerts Alertmanager is sending now: silenced and inhibited ones are left out (Alertmanager's own count), "
        f"and so is the {heartbeat} heartbeat. Click through for the list as Alertmanager holds it.",
        f"clamp_min(max(alertmanager_alerts{{state=\"active\"}})"
        f" - (count(ALERTS{{alertname=\"{heartbeat}\", alertstate=\"firing\"}}) or vector(0)), 0)",
        p.COUNT, p.steps("green", (1, "red")),
        links=[dashboard.DashboardLink("Alert groups in Alertmanager").type(model.DashboardLinkType.LINK)
               .url(alert_groups_url())])
    return p.board(
        UID, "opsmon / Overview",
        "Is anything wrong right now, and which board says more? Every stat turns where its alert fires.",
        [
            p.Row(4, [
                (p.stat("Targets down", "Scrape targets Prometheus cannot reach now: the selected hosts' exporter, "
                        "backup service and Litestream, and always Prometheus and Alertmanager, which belong to no "
                        "host; OpsmonTargetDown pages when one stays down.",
                        f"count(up{H} == 0 or up{{job=~\"{MONITORING_JOBS}\"}} == 0) or vector(0)", p.COUNT,
                        p.any_is_bad(rules.limit("OpsmonTargetDown")),
                        links=[p.link("Exporter", "opsmon-exporter")]), 4),
                (p.stat("Processes down", "Watched processes not running now (OpsmonProcessDown).",
                        f"count(opsmon_process_up{H} == 0) or vector(0)", p.COUNT,
                        p.any_is_bad(rules.limit("OpsmonProcessDown")), links=[p.link("System", "opsmon-system")]), 4),
                (p.stat("Services down", "External services whose last check failed; OpsmonExternalServiceDown "
                        "pages when most recent checks fail.",
                        f"count(opsmon_probe_success{H} == 0) or vector(0)", p.COUNT,
                        p.any_is_bad(rules.limit("OpsmonExternalServiceDown")),
                        links=[p.link("External services", "opsmon-external")]), 4),
                (p.stat("Collectors failing", "Exporter collectors whose last run failed: their metrics are "
                        "missing (OpsmonCollectorFailing).",
                        f"count(opsmon_scrape_collector_success{H} == 0) or vector(0)", p.COUNT,
                        p.any_is_bad(rules.limit("OpsmonCollectorFailing", "warning")),
                        links=[p.link("Exporter", "opsmon-exporter")]), 4),
                (person, 4),
                (p.age("Newest daily backup", "Age of the newest verified daily backup, for the database whose newest "
                       "is oldest; orange and red where OpsmonBackupStale warns and pages, \"never\" if none exists.",
                       f"min({NEWEST_DAILY})", p.above(*daily),
                       links=[p.link("Backups", "opsmon-backups")]), 4),
            ]),
            p.Row(5, [
                (p.stat("Error ratio, last hour", "Failed requests over all requests in the last hour, all jobs "
                        "together (errors summed over requests summed). Orange above the 1 % objective, red at the "
                        "burn rate that pages.",
                        # A host with no requests has a ratio of 0/0 = NaN, which would poison the sum: it is
                        # left out of the errors (`> 0`) and adds nothing to the requests.
                        f"sum(job:app_request_errors:ratio_rate1h{H} * on (job, host) (job:app_requests:increase1h{H} > 0))"
                        f" / sum(job:app_requests:increase1h{H})", p.RATIO, error_ratio_thresholds(),
                        links=[p.link("Application", "opsmon-application")]), 5),
                (p.stat("Error budget left (30 days)", "Share of the 30-day error budget (1 % of requests) not "
                        "spent; red below 0, when the budget is overspent.",
                        f"min(job:app_error_budget:remaining_ratio{H})", p.RATIO, budget_thresholds(),
                        links=[p.link("Application", "opsmon-application")]), 5),
                (p.stat(f"Requests slower than {boundary} s", "Share of requests slower than the latency alert's "
                        "bucket boundary; OpsmonLatencyHigh fires where it turns orange.",
                        slow_share(), p.RATIO, p.above(rules.limit("OpsmonLatencyHigh")),
                        links=[p.link("Application", "opsmon-application")]), 5),
                (p.stat("Requests per second", "All requests the application answers, per second (last minute).",
                        f"sum(handler:app_requests:rate1m{H})", p.REQUESTS_PER_SECOND, p.neutral(), sparkline=True), 5),
                (reporting(), 4),
            ]),
            p.Row(8, [(hosts_table(), 24)]),
            p.Row(9, [
                (p.graph("Error ratio against the SLO", "Failed requests over requests, per host and job, over 5 "
                         "minutes; the dashed line is the 1 % objective.",
                         [p.query(f"job:app_request_errors:ratio_rate5m{H}", "{{host}} {{job}}")], p.RATIO,
                         thresholds=p.steps("green", (rules.error_objective(), "red")), minimum=0,
                         links=[p.link("Application", "opsmon-application")]), 12),
                (p.alert_rules("Firing alert rules", "Prometheus's alert rules that are firing or pending, without "
                               f"the {heartbeat} heartbeat. Silences live in Alertmanager: \"Alerts reaching a "
                               "person\" and its link show what is actually sent.", heartbeat,
                               links=[dashboard.DashboardLink("Alert groups in Alertmanager")
                                      .type(model.DashboardLinkType.LINK).url(alert_groups_url())]), 12),
            ]),
            capacity_row(),
        ],
        links=[dashboard.DashboardLink("Alerts in Alertmanager").type(model.DashboardLinkType.LINK)
               .url(alert_groups_url()).icon("bolt").tooltip("Silenced and inhibited alerts left out")],
    )
