"""Exporter: is every collector working, and is each scrape well inside its timeout?"""

from grafana_foundation_sdk.builders import dashboard

from grafana.boards import panels as p
from grafana.boards import rules

UID = "opsmon-exporter"
FILE = "exporter"
OWN = p.on_hosts('job=~"opsmon-.*"')
H = p.on_hosts()


def build() -> dashboard.Dashboard:
    scrape_slow = p.above(rules.limit("OpsmonScrapeSlow"))
    ok_failed = [p.words("failed", "ok")]
    reload_failed = rules.color("OpsmonConfigReloadFailed")
    return p.board(
        UID, "opsmon / Exporter",
        "Is every collector working, and is each scrape well inside its timeout?",
        [
            p.Row(4, [
                (p.stat("Collectors failing", "Collectors whose last run failed: their metrics are missing. "
                        "OpsmonCollectorFailing fires when most of its recent runs fail.",
                        f"count(opsmon_scrape_collector_success{H} == 0) or vector(0)", p.COUNT,
                        p.any_is_bad(rules.limit("OpsmonCollectorFailing", "warning"))), 6),
                (p.stat("Slowest scrape", "The longest scrape of an opsmon target now; orange where "
                        "OpsmonScrapeSlow fires (on its average), short of the scrape timeout.",
                        f"max(scrape_duration_seconds{OWN})", p.SECONDS, scrape_slow, sparkline=True), 6),
                (p.stat("Business queries failing", "Business SQL queries whose last refresh failed "
                        "(OpsmonBusinessQueryFailing fires when most recent refreshes fail).",
                        f"count(opsmon_business_query_success{H} == 0) or vector(0)", p.COUNT,
                        p.any_is_bad(rules.limit("OpsmonBusinessQueryFailing"))), 6),
                (p.state("Configuration", "Whether each process's last configuration reload succeeded; the old "
                         "configuration stays in force when one fails (OpsmonConfigReloadFailed).",
                         f"min(opsmon_config_last_reload_successful{H})", "reload failed", "loaded",
                         zero_color=reload_failed), 6),
            ]),
            p.Row(8, [
                (p.timeline("Collector success", "Each collector's runs over time: ok or failed.",
                            [p.query(f"opsmon_scrape_collector_success{H}", "{{host}} {{collector}}")], ok_failed,
                            p.steps("red", (1, "green"))), 12),
                (p.graph("Collector duration", "How long each collector takes per scrape.",
                         [p.query(f"opsmon_scrape_collector_duration_seconds{H}", "{{host}} {{collector}}")], p.SECONDS,
                         minimum=0), 12),
            ]),
            p.Row(8, [
                (p.graph("Scrape duration", "How long each scrape of an opsmon target takes; dashed where "
                         "OpsmonScrapeSlow fires, short of the scrape timeout.",
                         [p.query(f"scrape_duration_seconds{OWN}", "{{host}} {{job}}")], p.SECONDS,
                         thresholds=scrape_slow,
                         minimum=0), 12),
                (p.graph("Samples per scrape", "Samples each scrape returns: a jump is a label gone wild.",
                         [p.query(f"scrape_samples_scraped{OWN}", "{{host}} {{job}}")], p.COUNT, minimum=0), 12),
            ]),
            p.Row(8, [
                (p.timeline("Business queries", "Each business SQL query's refreshes over time: ok or failed.",
                            [p.query(f"opsmon_business_query_success{H}", "{{host}} {{query}}")], ok_failed,
                            p.steps("red", (1, "green"))), 12),
                (p.merged_table("Build and config", "Each exporter's version, and whether its last configuration "
                                "reload succeeded.",
                                [p.Column("Configuration", f"opsmon_config_last_reload_successful{H}"
                                          " * on (job, instance) group_left (version) "
                                          f"opsmon_exporter_build_info{H}",
                                          p.STATE,
                                          mappings=[p.words("reload failed", "loaded", reload_failed, "green")],
                                          thresholds=p.steps(reload_failed, (1, "green")), colored=True)],
                                hide=()), 12),
            ]),
        ],
    )
