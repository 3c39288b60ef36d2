"""The dashboard lint (grafana/boards/lint.py): every board passes it, it catches each problem a review found on
the hand-made boards (grafana/tests/flawed-boards/, as they were before the boards were written as code), the
thresholds it asks for are the alert rules' own numbers, and it keeps the boards working for a fleet: every
host's series filtered by `$host`, every board on its datasource variable, the overview's Hosts table leading to
every board."""

from __future__ import annotations

import copy
import json
import re
import textwrap

import pytest
import yaml

from grafana.boards import lint, rules
from grafana.boards.lint import color_at
from opsmon import render, thresholds
from opsmon.config import StackConfig
from tests.conftest import REPO

GRAFANA = REPO / "grafana"


def load(folder) -> dict[str, dict]:
    return {path.stem: json.loads(path.read_text()) for path in sorted(folder.glob("*.json"))}


# The kit's boards, and the demo's (its own, and the business board rendered from its compose config).
BOARDS = {**load(GRAFANA / "dashboards"), **load(REPO / "demo" / "dashboards")}
FLAWED = load(GRAFANA / "tests/flawed-boards")


def panel(boards: dict, board: str, title: str) -> dict:
    return next(p for p in lint.panels(boards[board]) if p["title"] == title)


def steps(p: dict) -> list[tuple[float | None, str]]:
    return [(s["value"], s["color"]) for s in p["fieldConfig"]["defaults"]["thresholds"]["steps"]]


def test_every_board_passes_the_lint():
    problems = lint.lint(BOARDS)
    assert not problems, "\n".join(map(str, problems))


# The review's list of problems on the hand-made boards, each with the board, panel and rule that catches it.
FLAWS = [
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
    *[("no links between boards", board, "", "links") for board in sorted(FLAWED)],
    *[("no shared crosshair", board, "", "crosshair") for board in sorted(FLAWED)],
]


@pytest.mark.parametrize("problem, board, title, rule", FLAWS,
                         ids=[f"{b}: {t or 'board'}: {r}" for _, b, t, r in FLAWS])
def test_the_lint_catches_each_flaw_of_the_hand_made_boards(problem, board, title, rule):
    found = {(p.board, p.panel, p.rule) for p in lint.lint(FLAWED)}
    assert (board, title, rule) in found, f"{problem}: not caught"


def test_the_lint_fails_every_hand_made_board():
    assert {p.board for p in lint.lint(FLAWED)} == set(FLAWED)


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
    ("overview", "Collectors failing", lambda: [(1, rules.limit("OpsmonCollectorFailing", "warning").color)]),
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
    """A bar is a host's database's tier, named with the tier last; each tier's override matches that name."""
    bars = panel(BOARDS, "backups", "Age of the newest backup, by tier")
    assert bars["targets"][0]["legendFormat"].endswith(" {{tier}}")
    overrides = bars["fieldConfig"]["overrides"]
    assert {o["matcher"]["id"] for o in overrides} == {"byRegexp"}
    for tier in ("weekly", "monthly"):
        matching = [o for o in overrides if re.search(o["matcher"]["options"].strip("/"), f"demo app {tier}")]
        assert len(matching) == 1, tier
        expected = [l.value for l in both("OpsmonBackupStale", where=f'tier="{tier}"')]
        assert [s["value"] for s in matching[0]["properties"][0]["value"]["steps"][1:]] == expected, tier
    assert not any(re.search(o["matcher"]["options"].strip("/"), "demo app daily") for o in overrides)


RECORDED = re.compile(r"\b[a-z_]*:[a-z_]+:[a-z0-9_]+\b")


def test_the_pipeline_stat_reads_the_window_of_the_stall_alert():
    """The series OpsmonVideoProcessingStalled reads, over its 30 minutes: a pipeline doing a video every 3
    minutes is moving, where a 1-minute rate showed it stalled while the alert stayed quiet."""
    stat = panel(BOARDS, "demo-video", "Pipeline")["targets"][0]["expr"]
    read = set(RECORDED.findall(rules.alert("OpsmonVideoProcessingStalled")["expr"]))
    assert read and set(RECORDED.findall(stat)) == read, stat


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


# ---- the fleet: hosts, the datasource variable, the Hosts table ------------------------------------

PROVISIONED = yaml.safe_load((GRAFANA / "provisioning/datasources/datasources.yml").read_text())


def found(boards: dict) -> set[tuple[str, str, str]]:
    return {(p.board, p.panel, p.rule) for p in lint.lint(boards)}


def broken(board: str, change) -> dict:
    """Every board as committed, but `board` changed by `change` (a copy: BOARDS stays as it is)."""
    boards = copy.deepcopy(BOARDS)
    change(boards[board])
    return boards


def first_target(board: dict, title: str) -> dict:
    return panel({"b": board}, "b", title)["targets"][0]


def unfilter(title: str, nth: int = 0):
    """Drop the nth `host=~"$host"` matcher of a panel's first query."""
    def change(board: dict) -> None:
        target = first_target(board, title)
        matches = list(re.finditer(r'host=~"\$host"(?:, )?', target["expr"]))
        target["expr"] = target["expr"][:matches[nth].start()] + target["expr"][matches[nth].end():]
    return change


def variable(board: dict, name: str) -> dict:
    return next(v for v in board["templating"]["list"] if v["name"] == name)


def drop_variable(name: str):
    return lambda board: board["templating"]["list"].remove(variable(board, name))


def set_variable(name: str, key: str, value):
    return lambda board: variable(board, name).__setitem__(key, value)


def hosts_table(board: dict) -> dict:
    return panel({"b": board}, "b", "Hosts")


def drop_row_link(uid: str):
    def change(board: dict) -> None:
        links = hosts_table(board)["fieldConfig"]["defaults"]["links"]
        links[:] = [link for link in links if f"/d/{uid}?" not in link["url"]]
    return change


def without_time_range(board: dict) -> None:
    for link in hosts_table(board)["fieldConfig"]["defaults"]["links"]:
        link["url"] = link["url"].replace("&${__url_time_range}", "")


def fixed_datasource(title: str):
    def change(board: dict) -> None:
        panel({"b": board}, "b", title)["datasource"] = {"type": "prometheus", "uid": "opsmon-prometheus"}
    return change


# (what is wrong, board, panel ("" for the board), the rule that catches it, the change that breaks it)
FLEET_BREAKS = [
    ("a raw series of every host", "system", "CPU utilisation", "host", unfilter("CPU utilisation")),
    ("a recorded series of every host", "overview", "Error ratio against the SLO", "host",
     unfilter("Error ratio against the SLO")),
    ("the second side of a division of every host", "application", "Error ratio", "host",
     unfilter("Error ratio", nth=1)),
    ("a table column of every host", "overview", "Hosts", "host", unfilter("Hosts")),
    ("a variable listing every host's values", "system", "", "host",
     lambda board: variable(board, "instance")["query"].update(query="label_values(opsmon_cpus, instance)")),
    ("no host variable", "logs", "", "host-variable", drop_variable("host")),
    ("a host variable without the All of every host", "backups", "", "host-variable",
     set_variable("host", "allValue", None)),
    ("a host variable not refreshed with the time range", "business", "", "host-variable",
     set_variable("host", "refresh", 1)),
    ("a host variable on a fixed datasource", "exporter", "", "host-variable",
     set_variable("host", "datasource", {"type": "prometheus", "uid": "opsmon-prometheus"})),
    ("no datasource variable", "external-services", "", "datasource-variable", drop_variable("datasource")),
    ("a datasource variable defaulting to the long-term store", "application", "", "datasource-variable",
     set_variable("datasource", "current", {"text": "VictoriaMetrics", "value": "opsmon-victoriametrics"})),
    ("a panel on a fixed datasource", "system", "Memory in use", "datasource", fixed_datasource("Memory in use")),
    ("no Hosts table", "overview", "", "hosts-table",
     lambda board: board["panels"].remove(hosts_table(board))),
    ("no row link to a board", "overview", "", "hosts-table", drop_row_link("opsmon-backups")),
    ("row links that lose the time range", "overview", "", "hosts-table", without_time_range),
]


@pytest.mark.parametrize("problem, board, title, rule, change", FLEET_BREAKS,
                         ids=[f"{b}: {t or 'board'}: {r}: {w}" for w, b, t, r, _ in FLEET_BREAKS])
def test_the_lint_catches_a_board_broken_for_the_fleet(problem, board, title, rule, change):
    assert (board, title, rule) not in found(BOARDS)
    assert (board, title, rule) in found(broken(board, change)), f"{problem}: not caught"


def test_the_monitoring_itself_is_read_whatever_the_hosts_and_nothing_else_is():
    assert lint.unfiltered('count(ALERTS{alertname="X"}) - max(alertmanager_alerts{state="active"})') == []
    assert lint.unfiltered('up{job=~"prometheus|alertmanager"} == 0') == []
    assert lint.unfiltered('up{job=~"prometheus|opsmon-backup"} == 0') == ['up{job=~"prometheus|opsmon-backup"}']
    assert lint.unfiltered('rate(a{host=~"$host", p=~"[a-z]+"}[$__rate_interval]) / on (host) b offset 1w') == ["b"]
    assert lint.unfiltered('sum by (host) (x{host=~"web"})') == ['x{host=~"web"}'], "a host, not the variable"


def test_a_missing_row_link_is_named():
    problems = lint.lint(broken("overview", drop_row_link("opsmon-backups")))
    assert any(p.rule == "hosts-table" and "opsmon-backups" in p.message for p in problems)


def test_the_hosts_table_has_a_row_per_host_leading_to_every_board():
    table = panel(BOARDS, "overview", "Hosts")
    assert all("by (host)" in target["expr"] for target in table["targets"])
    assert table["transformations"][0]["id"] == "merge"
    urls = [link["url"] for link in table["fieldConfig"]["defaults"]["links"]]
    others = sorted(uid for name, uid in lint.UIDS.items() if name != "overview")
    assert sorted(re.match(r"/d/([\w-]+)\?", url).group(1) for url in urls) == others
    assert all("var-host=${__data.fields.host}" in url and "${__url_time_range}" in url
               and "${datasource:queryparam}" in url for url in urls)
    assert "job:app_request_errors:rate5m" in " ".join(t["expr"] for t in table["targets"]), \
        "the error ratio from the SLO's recorded 5-minute rates, errors summed over requests summed"


def test_provisioning_offers_the_long_term_store_with_its_fixed_uid():
    assert lint.lint_provisioning(PROVISIONED) == []
    store = next(s for s in PROVISIONED["datasources"] if s["uid"] == "opsmon-victoriametrics")
    assert store["url"] == "http://victoriametrics:8428"


def test_the_boards_read_the_datasources_the_renderer_provisions():
    """One uid for each datasource, the renderer's: what `opsmon render` provisions passes the boards' lint,
    and every board's datasource variable defaults to it."""
    assert lint.lint_provisioning(render.grafana_datasources(StackConfig())) == []
    defaults = {name: next(v for v in board["templating"]["list"] if v["name"] == lint.DATASOURCE)["current"]["value"]
                for name, board in BOARDS.items()}
    assert set(defaults.values()) == {render.PROMETHEUS_UID}


def changed_store(**fields) -> dict:
    document = copy.deepcopy(PROVISIONED)
    next(s for s in document["datasources"] if s["name"] == "VictoriaMetrics").update(fields)
    return document


@pytest.mark.parametrize("document", [
    {"datasources": [s for s in PROVISIONED["datasources"] if s["name"] != "VictoriaMetrics"]},
    changed_store(uid="victoriametrics"),
    changed_store(type="victoriametrics-datasource"),
    changed_store(isDefault=True),
    changed_store(editable=True),
    {"datasources": [s for s in PROVISIONED["datasources"] if s["name"] != "Prometheus"]},
], ids=["no store", "another uid", "another type", "the default", "editable", "no Prometheus"])
def test_the_lint_catches_provisioning_without_the_fixed_datasources(document):
    assert [p.rule for p in lint.lint_provisioning(document)] == ["datasources"]


# ---- the reader of the rule files ---------------------------------------------------------------------------

@pytest.fixture
def rule_file(tmp_path, monkeypatch):
    """The rule reader pointed at a file of the test's own: call it with the YAML to read."""
    monkeypatch.setattr(thresholds, "RULES", tmp_path)
    monkeypatch.setattr(rules, "DEMO_RULES", tmp_path)

    def write(text: str) -> None:
        (tmp_path / "x.rules.yml").write_text(textwrap.dedent(text))
        rules.shipped.cache_clear()

    yield write
    rules.shipped.cache_clear()


def test_the_rule_reader_takes_the_number_an_alert_compares_with(rule_file):
    rule_file("""\
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
        """)
    assert rules.limit("Stale", where='tier="weekly"').value == 8 * 86400
    assert rules.limit("Degraded").value == 0.1
    assert rules.limit("Down") == rules.Limit("Down", "critical", "==", 0)
    assert rules.error_objective() == 0.01
    assert rules.burn_rates() == {14.4: "critical"}
    with pytest.raises(LookupError):
        rules.limit("Missing")


def test_the_blind_spots_are_read_from_both_forms_of_absence_alert(rule_file):
    """`absent(selector)` for the whole fleet, or `... unless on (host) selector` naming the host that lost it."""
    rule_file("""\
        groups:
          - name: g
            rules:
              - alert: OpsmonAppMetricsAbsent
                expr: absent(app_requests_total{job="opsmon-exporter"})
              - alert: OpsmonBackupMetricsAbsent
                expr: |
                  (up{job="opsmon-exporter"} unless on (host) opsmon_backup_retained{job="opsmon-exporter"})
                  or absent(opsmon_backup_retained{job="opsmon-exporter"})
        """)
    assert rules.absences() == [("OpsmonAppMetricsAbsent", 'app_requests_total{job="opsmon-exporter"}'),
                                ("OpsmonBackupMetricsAbsent", 'opsmon_backup_retained{job="opsmon-exporter"}')]
    rule_file("groups: [{name: g, rules: [{alert: OpsmonXAbsent, expr: 'x == 0'}]}]")
    with pytest.raises(LookupError):
        rules.absences()
