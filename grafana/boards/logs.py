"""Logs: what the application logs, which patterns are new, and which errors grow."""

from grafana_foundation_sdk.builders import dashboard
from grafana_foundation_sdk.models import dashboard as model

from grafana.boards import panels as p
from grafana.boards import rules

UID = "opsmon-logs"
FILE = "logs"
S = p.on_hosts('source=~"$source"')
ERRORS = p.on_hosts('source=~"$source"', 'level=~"error|critical"')
LEVEL_COLORS = {"critical": "dark-red", "error": "red", "warning": "orange", "info": "green", "debug": "blue"}


def with_template(rate: str, by: str) -> str:
    """A rate per pattern, with the pattern's template (a line with its variable parts blanked) as a label."""
    return (f"{rate} * on ({by}) group_left (template) "
            f"max by ({by}, template) (opsmon_log_pattern_info{S})")


def build() -> dashboard.Dashboard:
    lines_by_pattern = (f"sum by (host, source, level, pattern) "
                        f"(rate(opsmon_log_pattern_lines_total{S}[$__rate_interval]))")
    error_patterns = with_template(f"sum by (host, source, pattern) "
                                   f"(rate(opsmon_log_pattern_lines_total{ERRORS}[$__rate_interval]))",
                                   "host, source, pattern")
    return p.board(
        UID, "opsmon / Logs",
        "What does the application log, which patterns are new, and which errors grow? Patterns are mined from "
        "the tailed log files; lines past the per-source limit count under pattern \"other\".",
        [
            p.Row(4, [
                (p.stat("Lines per second", "Log lines per second, every level.",
                        f"sum(rate(opsmon_log_messages_total{S}[$__rate_interval]))", p.LINES_PER_SECOND,
                        p.neutral(), sparkline=True), 4),
                (p.stat("Error lines per second", "Lines at level error or critical, per second; the application's "
                        "error metrics, not its logs, page on errors.",
                        f"sum(rate(opsmon_log_messages_total{ERRORS}[$__rate_interval])) or vector(0)",
                        p.LINES_PER_SECOND, p.neutral(), sparkline=True), 4),
                (p.stat("Patterns", "Distinct line patterns known now.", f"count(opsmon_log_pattern_info{S})",
                        p.COUNT, p.neutral()), 4),
                (p.age("Newest pattern", "Time since a pattern of any level was first seen: a young one is "
                       "something the application did not say before.",
                       f"max(opsmon_log_pattern_first_seen_timestamp_seconds{S})", p.neutral()), 4),
                (p.age("Newest error pattern", "Time since a kind of error or critical line was first seen; orange "
                       "while OpsmonLogPatternNew fires for it.",
                       f"max(opsmon_log_pattern_first_seen_timestamp_seconds{S}"
                       f" * on (host, source, pattern) group_left () "
                       f"max by (host, source, pattern) (opsmon_log_pattern_info{ERRORS}))",
                       p.below(rules.limit("OpsmonLogPatternNew"))), 4),
                (p.state("Log sources", "Each tailed log file: read, or unreadable (missing, a folder, no "
                         "permission), when its lines go uncounted (OpsmonLogSourceDown).",
                         f"opsmon_log_source_up{S}", "unreadable", "read", legend="{{host}} {{source}}",
                         zero_color=rules.color("OpsmonLogSourceDown")), 4),
            ]),
            p.Row(8, [
                (p.graph("Lines by level", "Log lines per second of the selected hosts together, stacked by level.",
                         [p.query(f"sum by (level) (rate(opsmon_log_messages_total{S}[$__rate_interval]))",
                                  "{{level}}")], p.LINES_PER_SECOND, stack=True, minimum=0,
                         overrides=[(level, [model.DynamicConfigValue(
                             id_val="color", value={"mode": "fixed", "fixedColor": color})])
                             for level, color in LEVEL_COLORS.items()]), 12),
                (p.graph("Error patterns", "Each error or critical pattern's lines per second, named by its "
                         "template, per host.", [p.query(error_patterns, "{{host}} {{template}}")], p.LINES_PER_SECOND,
                         minimum=0), 12),
            ]),
            p.Row(8, [
                (p.graph("Unread backlog", "Bytes written to each log file that the exporter has not read yet: "
                         "a growing backlog means the counts lag behind the application.",
                         [p.query(f"opsmon_log_backlog_bytes{S}", "{{host}} {{source}}")], p.BYTES, minimum=0), 12),
                (p.graph("Damaged lines", "Lines cut at the length limit, and lines that are not UTF-8, per "
                         "second: counted, but their text is not what was written.",
                         [p.query(f"sum by (host, source) (rate(opsmon_log_lines_{damage}_total{S}[$__rate_interval]))",
                                  f"{{{{host}}}} {{{{source}}}} {word}")
                          for damage, word in (("truncated", "truncated"), ("invalid_utf8", "not UTF-8"))],
                         p.LINES_PER_SECOND, minimum=0), 12),
            ]),
            p.Row(10, [
                (p.merged_table("Top patterns", "The 20 patterns logged most in the last moments, with their "
                                "template (a line with its variable parts blanked).",
                                [p.Column("Lines per second", with_template(f"topk(20, {lines_by_pattern})",
                                                                            "host, source, level, pattern"),
                                          p.LINES_PER_SECOND)],
                                hide=("job", "instance"), sort_by="Lines per second"), 24),
            ]),
            p.Row(10, [
                (p.merged_table("Newest patterns", "The 20 patterns first seen most recently, with their template.",
                                [p.Column("First seen", with_template(
                                    f"topk(20, max by (host, source, pattern) "
                                    f"(opsmon_log_pattern_first_seen_timestamp_seconds{S})) * 1000",
                                    "host, source, pattern"), p.TIME_AGO, mappings=[p.never(0, color="text")])],
                                hide=("job", "instance"), sort_by="First seen"), 24),
            ]),
        ],
        variables=[p.variable("source", "Source", f"opsmon_log_messages_total{p.on_hosts()}", "source")],
    )
