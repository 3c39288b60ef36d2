"""The dashboard lint (grafana/boards/lint.py): every board passes it, it catches each problem issue 12 found
on the boards as they were (grafana/tests/before-issue-12/, copied from git before the boards were generated),
and the thresholds it asks for are the alert rules' own numbers."""

from __future__ import annotations

import json
import re
import textwrap

import pytest

from grafana.boards import lint, rules
from grafana.boards.lint import color_at
from tests.conftest import REPO

GRAFANA = REPO / "grafana"


def load(folder) -> dict[str, dict]:
    return {path.stem: json.loads(path.read_text()) for path in sorted(folder.glob("*.json"))}


BOARDS = load(GRAFANA / "dashboards")
BEFORE = load(GRAFANA / "tests/before-issue-12")


def panel(boards: dict, board: str, title: str) -> dict:
    return next(p for p in lint.panels(boards[board]) if p["title"] == title)


def steps(p: dict) -> list[tuple[float | None, str]]:
    return [(s["value"], s["color"]) for s in p["fieldConfig"]["defaults"]["thresholds"]["steps"]]


def test_every_board_passes_the_lint():
    problems = lint.lint(BOARDS)
    assert not problems, "\n".join(map(str, problems))


# Issue 12's list, each problem with the board, panel and rule that catches it on the boards as they were.
ISSUE_12 = [
    ("ages always red", "overview", "Newest daily backup", "thresholds"),
    ("ages always red", "backups", "Age of the newest backup, by tier", "thresholds"),
    ("ages always red", "backups", "Age of the copies, by location", "thresholds"),
    ("ages always red", "backups", "Last restore drill", "thresholds"),
    ("counts of bad things stay green", "overview", "Targets down", "bad-count"),
    ("counts of bad things stay green", "overview", "Processes down", "bad-count"),
    ("counts of bad things stay green", "overview", "Services down", "bad-count"),
    ("counts of bad things stay green", "overview", "Collectors failing", "bad-count"),
    ("counts of bad things stay green", "backups", "Backups failing verification", "bad-count"),
    ("a negative error budget shows green", "overview", "Error budget left (30 days)", "budget"),
    ("cores with unit none", "system", "CPU by mode", "unit"),
    ("cores with unit none", "system", "Process CPU", "unit"),
    ("business throughput has no unit", "business", "Throughput", "unit"),
    ("0/1 shown as numbers", "backups", "Litestream", "state"),
    ("0/1 shown as numbers", "backups", "Integrity", "state"),
    ("0/1 shown as numbers", "exporter", "Collector success", "state"),
    ("a table of two frames", "backups", "Backup jobs", "merge"),
    ("a 0 timestamp shows 1970", "backups", "Backup jobs", "never"),
    ("fixed windows undersample", "business", "Throughput", "window"),
    ("fixed windows undersample", "external-services", "Availability, last 24 h", "window"),
    ("fixed windows undersample", "external-services", "Availability, last hour", "window"),
    ("summed ratios", "overview", "Error ratio, last hour", "ratio-aggregate"),
    ("alerts from ALERTS, not Alertmanager", "overview", "Firing alerts", "alerts"),
    ("no burn-rate reference lines", "application", "Error budget burn rate", "burn-rate"),
    ("no job, instance variables", "application", "", "variables"),
    *[("no links between boards", board, "", "links") for board in sorted(BEFORE)],
    *[("no shared crosshair", board, "", "crosshair") for board in sorted(BEFORE)],
]


@pytest.mark.parametrize("problem, board, title, rule", ISSUE_12,
                         ids=[f"{b}: {t or 'board'}: {r}" for _, b, t, r in ISSUE_12])
def test_the_lint_catches_what_issue_12_found_on_the_boards_as_they_were(problem, board, title, rule):
    found = {(p.board, p.panel, p.rule) for p in lint.lint(BEFORE)}
    assert (board, title, rule) in found, f"{problem}: not caught"


def test_the_lint_fails_every_board_as_it_was():
    assert {p.board for p in lint.lint(BEFORE)} == set(BEFORE)


def test_a_fixed_range_is_caught_in_any_function_and_granular_ones_are_not():
    def board(expr: str) -> dict:
        return {"uid": "opsmon-logs", "graphTooltip": 1, "tags": [], "panels": [
            {"type": "timeseries", "title": "t", "description": "d", "fieldConfig": {"defaults": {"unit": "s"}},
             "datasource": {"uid": "opsmon-prometheus"},
             "targets": [{"expr": expr, "datasource": {"uid": "opsmon-prometheus"}}]}]}

    def rules_hit(expr: str) -> set[str]:
        return {p.rule for p in lint.lint({"logs": board(expr)})}

    assert "window" in rules_hit("max_over_time(x[5m])")
    assert "window" in rules_hit("rate(x[$__rate_interval:1m])")
    assert "window" not in rules_hit("rate(x[$__rate_interval]) and y offset 1w")
    assert "window" not in rules_hit('x{path=~"[a-z]+"}')


# ---- thresholds are the alerts' numbers --------------------------------------------------------------------

def both(alert: str, **where) -> list[rules.Limit]:
    return [rules.limit(alert, severity, **where) for severity in ("warning", "critical")]


def used(limit: rules.Limit) -> float:
    """An 'available below x' alert, drawn on a panel of what is used."""
    return round(1 - limit.value, 9)


# (board, panel, the alert numbers its thresholds must hold, with the alert's colour)
WIRED = [
    ("overview", "Newest daily backup", lambda: [(l.value, l.color) for l in both("OpsmonBackupStale",
                                                                                   where='tier="daily"')]),
    ("overview", "Targets down", lambda: [(1, rules.limit("OpsmonTargetDown").color)]),
    ("overview", "Collectors failing", lambda: [(1, rules.limit("OpsmonCollectorFailing").color)]),
    ("system", "CPU busy", lambda: [(rules.limit("OpsmonCpuHigh").value, "orange")]),
    ("system", "Memory in use", lambda: [(used(l), l.color) for l in both("OpsmonMemoryLow")]),
    ("system", "Fullest filesystem", lambda: [(used(l), l.color) for l in both("OpsmonDiskSpaceLow")]),
    ("system", "GPU temperature", lambda: [(rules.limit("OpsmonGpuHot").value, "orange")]),
    ("application", "Slower than 2.5 s", lambda: [(rules.limit("OpsmonLatencyHigh").value, "orange")]),
    ("application", "p95 latency", lambda: [(rules.bucket("OpsmonLatencyHigh"), "orange")]),
    ("application", "Error budget burn rate",
     lambda: [(rate, rules.SEVERITY_COLORS[severity]) for rate, severity in rules.burn_rates().items()]),
    ("backups", "Last restore drill", lambda: [(rules.limit("OpsmonRestoreDrillStale").value, "orange")]),
    ("backups", "PITR lag", lambda: [(rules.limit("OpsmonPitrReplicationLagging").value, "orange")]),
    ("backups", "Last integrity check", lambda: [(rules.limit("OpsmonIntegrityCheckStale").value, "orange")]),
    ("backups", "Age of the copies, by location", lambda: [(rules.limit("OpsmonBackupCopyStale").value, "orange")]),
    ("backups", "Backups failing verification", lambda: [(1, "red")]),
    ("external-services", "Response time", lambda: [(rules.limit("OpsmonExternalServiceSlow").value, "orange")]),
    ("external-services", "Availability", lambda: [(rules.limit("OpsmonExternalServiceDown").value, "green")]),
    ("exporter", "Scrape duration", lambda: [(rules.limit("OpsmonScrapeSlow").value, "orange")]),
    ("logs", "Newest error pattern", lambda: [(None, "orange"), (rules.limit("OpsmonLogPatternNew").value, "green")]),
]


@pytest.mark.parametrize("board, title, expected", WIRED, ids=[f"{b}: {t}" for b, t, _ in WIRED])
def test_a_panel_turns_where_its_alert_fires(board, title, expected):
    drawn = steps(panel(BOARDS, board, title))
    for value, color in expected():
        assert (value, color) in drawn, f"{board}: {title}: no {color} step at {value} in {drawn}"


def test_each_tier_ages_against_its_own_alert():
    bars = panel(BOARDS, "backups", "Age of the newest backup, by tier")
    per_tier = {o["matcher"]["options"]: o["properties"][0]["value"]["steps"] for o in bars["fieldConfig"]["overrides"]}
    for tier in ("weekly", "monthly"):
        expected = [l.value for l in both("OpsmonBackupStale", where=f'tier="{tier}"')]
        assert [s["value"] for s in per_tier[tier][1:]] == expected, tier


def test_the_drill_panels_turn_where_their_alerts_fire_against_the_objective_series():
    """The objectives are the exporter's series in the alerts, so in the panels too: never a number of the board."""
    stale = rules.limit("OpsmonRestoreDrillStale").value
    # The best RPO counts the locations whose drill OpsmonRestoreDrillStale does not call stale, in both places.
    assert rules.limit("OpsmonBackupRpoMissed").value == stale
    for title, alert in (("RPO objective", "OpsmonBackupRpoMissed"), ("RTO objective", "OpsmonRestoreDrillRtoMissed")):
        state = panel(BOARDS, "backups", title)
        expr = state["targets"][0]["expr"]
        figure = title[:3].lower()
        assert re.search(rf"> bool on \(job, instance, database\)(?: group_left)? "
                         rf"opsmon_backup_objective_{figure}_seconds\b", expr), expr
        assert (1, rules.color(alert)) in steps(state) and (None, "green") in steps(state)
    assert f"> {stale:g}))" in panel(BOARDS, "backups", "RPO objective")["targets"][0]["expr"]
    rule = panel(BOARDS, "backups", "3-2-1 rule")
    assert steps(rule)[0] == (None, rules.color("OpsmonBackupThreeTwoOneUnsatisfied"))

    table = panel(BOARDS, "backups", "Restore drills, by location")
    columns = {o["matcher"]["options"]: {prop["id"]: prop["value"] for prop in o["properties"]}
               for o in table["fieldConfig"]["overrides"]}
    assert (stale, "orange") in [(s["value"], s["color"]) for s in columns["Last passed"]["thresholds"]["steps"]]
    assert columns["Last passed"]["mappings"][0]["options"]["-1"]["text"] == "never"
    within = columns["Within RTO"]["mappings"][0]["options"]
    assert within["1"] == {"text": "no", "color": rules.color("OpsmonRestoreDrillRtoMissed"), "index": 1}
    assert {"RTO", "RTO objective", "RPO", "RPO objective"} <= {name for name, unit in columns.items()
                                                                 if unit.get("unit") == "s"}


def test_a_never_timestamp_reads_never_and_a_fresh_age_is_green():
    age = panel(BOARDS, "overview", "Newest daily backup")
    mapping = age["fieldConfig"]["defaults"]["mappings"][0]["options"]
    assert mapping["-1"]["text"] == "never"
    assert "> 0) or (" in age["targets"][0]["expr"] and "== 0) - 1" in age["targets"][0]["expr"]
    assert color_at(steps(age), 60) == "green"


# ---- the reader of the rule files ---------------------------------------------------------------------------

def test_the_rule_reader_takes_the_number_an_alert_compares_with(tmp_path, monkeypatch):
    (tmp_path / "x.rules.yml").write_text(textwrap.dedent("""\
        groups:
          - name: g
            rules:
              - alert: Stale
                expr: |
                  (time() - t{tier="daily"}) > 26 * 3600
                  or (time() - t{tier="weekly"}) > 8 * 86400
                labels: {severity: warning}
              - alert: Degraded
                expr: x > 2 * (x offset 1w) and x > 0.1
                labels: {severity: warning}
              - alert: Down
                expr: a == 0 or on () (up{job="b"} == 0)
                labels: {severity: critical}
              - alert: OpsmonErrorBudgetBurnFast
                expr: r1h > (14.4 * 0.01) and r5m > (14.4 * 0.01)
                labels: {severity: critical}
              - record: job:app_error_budget:remaining_ratio
                expr: 1 - r30d / 0.01
        """))
    monkeypatch.setattr(rules, "RULES", tmp_path)
    rules._rules.cache_clear()
    try:
        assert rules.limit("Stale", where='tier="weekly"').value == 8 * 86400
        assert rules.limit("Degraded").value == 0.1
        assert rules.limit("Down") == rules.Limit("Down", "critical", "==", 0)
        assert rules.error_objective() == 0.01
        assert rules.burn_rates() == {14.4: "critical"}
        with pytest.raises(LookupError):
            rules.limit("Missing")
    finally:
        rules._rules.cache_clear()


def test_the_blind_spots_are_read_from_both_forms_of_absence_alert(tmp_path, monkeypatch):
    """`absent(selector)` for the whole fleet, or `... unless on (host) selector` naming the host that lost it."""
    (tmp_path / "x.rules.yml").write_text(textwrap.dedent("""\
        groups:
          - name: g
            rules:
              - alert: OpsmonAppMetricsAbsent
                expr: absent(app_requests_total{job="opsmon-exporter"})
              - alert: OpsmonBackupMetricsAbsent
                expr: |
                  (up{job="opsmon-exporter"} unless on (host) opsmon_backup_retained{job="opsmon-exporter"})
                  or absent(opsmon_backup_retained{job="opsmon-exporter"})
        """))
    monkeypatch.setattr(rules, "RULES", tmp_path)
    rules._rules.cache_clear()
    try:
        assert rules.absences() == [("OpsmonAppMetricsAbsent", 'app_requests_total{job="opsmon-exporter"}'),
                                    ("OpsmonBackupMetricsAbsent", 'opsmon_backup_retained{job="opsmon-exporter"}')]
        (tmp_path / "x.rules.yml").write_text("groups: [{name: g, rules: [{alert: OpsmonXAbsent, expr: 'x == 0'}]}]")
        rules._rules.cache_clear()
        with pytest.raises(LookupError):
            rules.absences()
    finally:
        rules._rules.cache_clear()
