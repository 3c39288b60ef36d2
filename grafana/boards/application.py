"""Application: are requests fast and successful, and how much error budget is left?"""

from grafana_foundation_sdk.builders import dashboard

from grafana.boards import panels as p
from grafana.boards import rules
from grafana.boards.overview import budget_thresholds, error_ratio_thresholds, slow_share

UID = "opsmon-application"
FILE = "application"
S = p.on_hosts('job=~"$job"', 'instance=~"$instance"', 'handler=~"$handler"')  # raw series
# The errors the SLO counts: a 4xx (kind="client") is the caller's mistake, not a failure of the app.
E = p.on_hosts('job=~"$job"', 'instance=~"$instance"', 'handler=~"$handler"', 'kind="server"')
J = p.on_hosts('job=~"$job"', 'instance=~"$instance"')                          # series without a handler
R = p.on_hosts('job=~"$job"')                                                   # recording rules, by job and host
H = p.on_hosts()
BURN_WINDOWS = ("1h", "6h", "1d", "3d")  # the long windows of the burn-rate alerts' pairs


def burn_thresholds():
    """A dashed line at each burn rate an alert fires at: orange where it warns, red where it pages."""
    return p.steps("green", *[(rate, rules.SEVERITY_COLORS[severity])
                              for rate, severity in rules.burn_rates().items()])


def quantile(q: float, by: str = "le, host, handler") -> str:
    return (f"histogram_quantile({q}, sum by ({by}) "
            f"(rate(app_request_duration_seconds_bucket{S}[$__rate_interval])))")


def build() -> dashboard.Dashboard:
    objective = rules.error_objective()
    boundary = rules.bucket("OpsmonLatencyHigh")
    latency = p.steps("green", (boundary, rules.limit("OpsmonLatencyHigh").color))
    errors = (f"sum(rate(app_request_errors_total{E}[$__rate_interval]))"
              f" / sum(rate(app_requests_total{S}[$__rate_interval]))")
    return p.board(
        UID, "opsmon / Application",
        "Are requests fast and successful, and how much error budget is left? Per host, job, instance and handler; "
        "the stats take the selected hosts together, the graphs draw each host.",
        [
            p.Row(4, [
                (p.stat("Requests per second", "Requests answered per second, for the selected handlers.",
                        f"sum(rate(app_requests_total{S}[$__rate_interval]))", p.REQUESTS_PER_SECOND, p.neutral(),
                        sparkline=True), 4),
                (p.stat("Error ratio", "Failed requests (server errors, as the SLO counts them: not 4xx) over "
                        "requests, errors summed over requests summed. Orange "
                        "above the 1 % objective, red at the burn rate that pages.", errors, p.RATIO,
                        error_ratio_thresholds(), sparkline=True), 4),
                (p.stat(f"Slower than {boundary:g} s", "Share of requests slower than the latency alert's bucket "
                        "boundary; OpsmonLatencyHigh fires where it turns orange.", slow_share(S),
                        p.RATIO, p.above(rules.limit("OpsmonLatencyHigh")), sparkline=True), 4),
                (p.stat("p95 latency", "95th percentile of request time, interpolated inside a bucket; orange from "
                        f"{boundary:g} s, the bucket boundary the latency alert counts at.", quantile(0.95, "le"),
                        p.SECONDS, latency, sparkline=True), 4),
                (p.stat("Error budget left (30 days)", "Share of the 30-day error budget (1 % of requests) not "
                        "spent, for the job and host with the least left; red when overspent.",
                        f"min(job:app_error_budget:remaining_ratio{R})", p.RATIO, budget_thresholds()), 4),
                (p.stat("In progress", "Requests being answered right now.",
                        f"sum(app_requests_in_progress{S})", p.COUNT, p.neutral(), sparkline=True), 4),
            ]),
            p.Row(8, [
                (p.graph("Requests per second", "Requests answered per second, per host and handler.",
                         [p.query(f"sum by (host, handler) (rate(app_requests_total{S}[$__rate_interval]))",
                                  "{{host}} {{handler}}")], p.REQUESTS_PER_SECOND, minimum=0), 12),
                (p.graph("Error ratio", "Failed requests (server errors, not 4xx) over requests, per host and handler; "
                         "dashed at the 1 % objective and at the burn rate that pages.",
                         [p.query(f"sum by (host, handler) (rate(app_request_errors_total{E}[$__rate_interval])) / "
                                  f"sum by (host, handler) (rate(app_requests_total{S}[$__rate_interval]))",
                                  "{{host}} {{handler}}")],
                         p.RATIO, thresholds=error_ratio_thresholds(), minimum=0), 12),
            ]),
            p.Row(8, [
                (p.graph("Latency quantiles", "50th, 95th and 99th percentiles of request time, per host and "
                         f"handler; dashed at {boundary:g} s, the bucket boundary the latency alert counts at.",
                         [p.query(quantile(q), f"p{q * 100:g} {{{{host}}}} {{{{handler}}}}")
                          for q in (0.5, 0.95, 0.99)], p.SECONDS, thresholds=latency, minimum=0), 12),
                (p.latency_heatmap("Latency distribution", "How many requests took how long, per time slice "
                                   "(the histogram's buckets).",
                                   f"sum by (le) (increase(app_request_duration_seconds_bucket{S}[$__rate_interval]))"),
                 12),
            ]),
            p.Row(8, [
                (p.graph("Error budget burn rate", "How fast the error budget burns, over each alert window: 1 "
                         "spends exactly the budget in 30 days. Dashed at the burn rates the alerts fire at "
                         "(each needs its short window too): orange warns, red pages.",
                         [p.query(f"job:app_request_errors:ratio_rate{w}{R} / {objective:g}",
                                  f"{{{{host}}}} {{{{job}}}} over {w}")
                          for w in BURN_WINDOWS], p.BURN, thresholds=burn_thresholds(), minimum=0), 12),
                (p.graph("Error budget left (30 days)", "Share of the 30-day error budget not spent, per host and job; "
                         "below 0 it is overspent.",
                         [p.query(f"job:app_error_budget:remaining_ratio{R}", "{{host}} {{job}}")], p.RATIO,
                         thresholds=budget_thresholds()), 12),
            ]),
            p.Row(8, [
                (p.graph("In progress", "Requests being answered at each moment, per host and handler.",
                         [p.query(f"sum by (host, handler) (app_requests_in_progress{S})", "{{host}} {{handler}}")],
                         p.COUNT,
                         minimum=0), 8),
                (p.graph("Errors by category and severity", "Errors the application recorded per second, by "
                         "host, category and severity (requests and background jobs alike).",
                         [p.query(f"sum by (host, category, severity) (rate(app_errors_total{J}[$__rate_interval]))",
                                  "{{host}} {{category}} ({{severity}})")], p.ERRORS_PER_SECOND, minimum=0), 8),
                (p.graph("Log messages", "Log lines per second, by host, source and level; the Logs board shows "
                         "which patterns they are.",
                         [p.query(f"sum by (host, source, level) "
                                  f"(rate(opsmon_log_messages_total{H}[$__rate_interval]))",
                                  "{{host}} {{source}} {{level}}")], p.LINES_PER_SECOND, minimum=0,
                         links=[p.link("Logs: patterns and errors", "opsmon-logs")]), 8),
            ]),
        ],
        variables=[
            p.variable("job", "Job", f"app_requests_total{H}", "job"),
            p.variable("instance", "Instance", f"app_requests_total{R}", "instance"),
            p.variable("handler", "Handler", f"app_requests_total{J}", "handler"),
        ],
    )
