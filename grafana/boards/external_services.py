"""External services: are the services the app depends on answering, and how fast?"""

from grafana_foundation_sdk.builders import dashboard
from grafana_foundation_sdk.models import dashboard as model

from grafana.boards import panels as p
from grafana.boards import rules

UID = "opsmon-external"
FILE = "external-services"
S = p.on_hosts('service=~"$service"')


def http_status() -> list:
    """Status codes in the colours a person expects; 0 is a check that got no HTTP answer at all."""
    def span(low: int, high: int, color: str) -> model.RangeMap:
        return model.RangeMap(options=model.DashboardRangeMapOptions(
            from_val=low, to=high, result=model.ValueMappingResult(color=color)))
    return [model.ValueMap(options={"0": model.ValueMappingResult(text="no answer", color="red", index=0)}),
            span(100, 399, "green"), span(400, 499, "orange"), span(500, 599, "red")]


def build() -> dashboard.Dashboard:
    down = rules.limit("OpsmonExternalServiceDown")
    slow = p.above(rules.limit("OpsmonExternalServiceSlow"))
    availability = p.below(down)
    return p.board(
        UID, "opsmon / External services",
        "Are the services the app depends on answering, and how fast? Each host checks them from where it stands, "
        "so every line is a host and a service.",
        [
            p.Row(5, [
                (p.state("Up now", "Each service's last check: up or down. OpsmonExternalServiceDown pages when "
                         "most recent checks fail.", f"opsmon_probe_success{S}", "down", "up",
                         legend="{{host}} {{service}}", zero_color=down.color), 8),
                (p.stat("Response time now", "How long each service's last check took; orange where "
                        "OpsmonExternalServiceSlow fires (on its average).",
                        f"opsmon_probe_duration_seconds{S}", p.SECONDS, slow, legend="{{host}} {{service}}"), 8),
                (p.stat("HTTP status now", "The HTTP status each service answered its last check with.",
                        f"opsmon_probe_http_status_code{S}", p.STATE, p.neutral(), legend="{{host}} {{service}}",
                        mappings=http_status()), 8),
            ]),
            p.Row(8, [
                (p.bars("Availability over the time range", "Share of checks that passed over the time range "
                        "shown (the mean of each moment's share); red below the share under which "
                        "OpsmonExternalServiceDown pages.",
                        [p.query(f"avg_over_time(opsmon_probe_success{S}[$__rate_interval])", "{{host}} {{service}}")],
                        p.RATIO, availability, calc="mean", minimum=0, maximum=1), 8),
                (p.timeline("Up", "Each service's checks over time: up or down.",
                            [p.query(f"opsmon_probe_success{S}", "{{host}} {{service}}")], [p.words("down", "up")],
                            p.steps("red", (1, "green"))), 8),
                (p.graph("Response time", "How long each check took; dashed where OpsmonExternalServiceSlow "
                         "fires (on its average).",
                         [p.query(f"opsmon_probe_duration_seconds{S}", "{{host}} {{service}}")], p.SECONDS,
                         thresholds=slow, minimum=0), 8),
            ]),
            p.Row(8, [
                (p.timeline("HTTP status", "The status code of each check: green 1xx to 3xx, orange 4xx, red 5xx "
                            "and no answer.",
                            [p.query(f"opsmon_probe_http_status_code{S}", "{{host}} {{service}}")], http_status(),
                            p.neutral()), 12),
                (p.graph("Availability", "Share of checks that passed in each moment's window; dashed where "
                         "OpsmonExternalServiceDown pages (on its window).",
                         [p.query(f"avg_over_time(opsmon_probe_success{S}[$__rate_interval])", "{{host}} {{service}}")],
                         p.RATIO, thresholds=availability, minimum=0, maximum=1), 12),
            ]),
        ],
        variables=[p.variable("service", "Service", f"opsmon_probe_success{p.on_hosts()}", "service")],
    )
