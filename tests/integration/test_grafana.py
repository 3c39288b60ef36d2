"""Grafana, tested without Grafana (it cannot run here): provisioning, dashboard JSON generated from
grafana/boards and committed, and every panel's PromQL parsed by a real Prometheus and checked against
the metrics opsmon publishes. The dashboard lint is tests/unit/test_dashboard_lint.py."""

from __future__ import annotations

import json
from pathlib import Path
import re
import subprocess

import pytest
import requests
import yaml
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from backup_jobs.service import Job, Scheduler, ServiceCollector
from demo.business import BusinessEvents
from exporter.collectors.backup import BackupCollector
from opsmon import catalog
from opsmon.config import load_config
from opsmon.instrument import AppMetrics
from exporter.service import Exporter
from tests.conftest import GOLDEN, REPO, free_port, wait_for, write_config

GRAFANA = REPO / "grafana"
# The kit's boards, and the demo's: its own board and the business board rendered from its compose config.
DEMO_BOARDS = REPO / "demo" / "dashboards"
DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json")) + sorted(DEMO_BOARDS.glob("*.json"))
KIT = {"overview", "system", "application", "logs", "backups", "external-services", "exporter"}
EXPECTED = KIT | {"business", "demo-video"}
# Series Prometheus makes itself, beside what it scrapes.
PROMETHEUS_OWN = {"up", "ALERTS", "scrape_duration_seconds", "scrape_samples_scraped",
                  "prometheus_tsdb_storage_blocks_bytes"}
# Alertmanager's own metrics, which Prometheus scrapes (prometheus/prometheus.yml, job alertmanager).
ALERTMANAGER_OWN = {"alertmanager_alerts"}
# From the logs-pattern work (a parallel change to the logs collector): the Logs board reads them before
# a committed tests/golden/logs.prom has them. Drop this list once it does.
LOGS_PATTERN_WORK_METRICS = {"opsmon_log_pattern_lines_total", "opsmon_log_pattern_info",
                             "opsmon_log_pattern_first_seen_timestamp_seconds", "opsmon_log_source_up",
                             "opsmon_log_backlog_bytes", "opsmon_log_lines_truncated_total",
                             "opsmon_log_lines_invalid_utf8_total"}
PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset", "and", "or",
                "unless", "inf", "nan"}


def datasource_uids() -> set[str]:
    document = yaml.safe_load((GRAFANA / "provisioning/datasources/datasources.yml").read_text())
    return {source["uid"] for source in document["datasources"]}


def panels(dashboard: dict):
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])


def panel_expressions():
    for path in DASHBOARDS:
        for panel in panels(json.loads(path.read_text())):
            for target in panel.get("targets", []):
                yield path.stem, panel["title"], target["expr"]


def data_panels(dashboard: dict):
    """Panels that query a datasource (an alert list reads Grafana's alerting instead)."""
    return (panel for panel in panels(dashboard) if panel.get("targets"))


def expressions():
    """The panels' expressions and the dashboard query variables' queries (the datasource variable has none)."""
    yield from panel_expressions()
    for path in DASHBOARDS:
        for variable in json.loads(path.read_text())["templating"]["list"]:
            if variable["type"] == "query":
                yield path.stem, f"variable {variable['name']}", variable["query"]["query"]


def filled(expr: str) -> str:
    """The expression as Grafana sends it: variables filled in with 'all'."""
    match = re.fullmatch(r"label_values\((\w+(?:\{[^}]*\})?), \w+\)", expr)
    if match:  # a variable's query: Grafana asks the series API for this selector
        expr = match.group(1)
    return re.sub(r'=~"\$\w+"', '=~".*"', expr).replace("$__rate_interval", "1m").replace(
        "$__interval", "1m").replace("$__range", "1h")


def e2e_filled(expr: str) -> str:
    """What tests/e2e/test_e2e.py's test_9 sends for a panel: only `=~"$var"` and $__rate_interval are filled."""
    return re.sub(r'=~"\$\w+"', '=~".*"', expr).replace("$__rate_interval", "1m")


def metric_names(expr: str) -> set[str]:
    expr = re.sub(r'"[^"]*"', '""', expr)           # label values
    expr = re.sub(r"\{[^}]*\}", "", expr)           # label matchers
    expr = re.sub(r"\[[^\]]*\]", "", expr)          # ranges
    expr = re.sub(r"\b\d+(ms|[smhdwy])\b", "", expr)  # durations (offset 1w)
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    names = {m.group() for m in re.finditer(r"[a-zA-Z_:][a-zA-Z0-9_:]*", expr)
             if not expr[m.end():].lstrip().startswith("(")}  # a function, not a series
    return {n for n in names if n not in PROMQL_WORDS}


def published() -> set[str]:
    """Every series name opsmon's exporter, backup service and recording rules publish."""
    names = PROMETHEUS_OWN | ALERTMANAGER_OWN | LOGS_PATTERN_WORK_METRICS
    for golden in GOLDEN.glob("*.prom"):
        for family in text_string_to_metric_families(golden.read_text()):
            names |= {family.name} | {sample.name for sample in family.samples}
    return names


@pytest.fixture(scope="module")
def known_names(tmp_path_factory) -> set[str]:
    names = published()
    tmp = tmp_path_factory.mktemp("names")
    exporter = Exporter(str(write_config(tmp / "opsmon.yml", {"database": {"path": str(tmp / "x.db")}})), set())
    names |= {f.name for f in exporter.scrape(1)}  # the scrape wrapper's own gauges, empty here
    demo = load_config(REPO / "opsmon.yml")
    names |= {query.name for query in demo.business}  # the demo's business SQL
    # The demo pipeline's business events, counted where they happen (multiprocess counters, served by the exporter).
    events = CollectorRegistry()
    BusinessEvents(registry=events)
    names |= {s.name for f in events.collect() for s in f.samples}
    # The backup collector with the demo's objectives and 3-2-1 rule, after a drill of every location: the golden
    # file holds a catalog of before per-location drills, read without a config.
    drilled = tmp / "drilled"
    for location in ("local", "secondary", "offsite", "replica"):
        catalog.record_location_drill(drilled, location, 1.0, "a backup", None, rto_seconds=2.0, rpo_seconds=3.0)
    names |= {s.name for f in BackupCollector(drilled, "demo", policy=demo).collect() for s in f.samples}
    app = AppMetrics(registry=CollectorRegistry())
    app.in_progress.labels("h")
    names |= {s.name for f in app.registry.collect() for s in f.samples}
    service = ServiceCollector(Scheduler([Job("j", "0 2 * * *", lambda: None)], "UTC"), Path("/data/app.db"),
                               litestream=True)
    service._litestream = type("Running", (), {"running": True})()
    names |= {s.name for f in service.collect() for s in f.samples}
    for path in [*(REPO / "prometheus/rules").glob("*.rules.yml"), *(REPO / "demo/rules").glob("*.rules.yml")]:
        for group in yaml.safe_load(path.read_text())["groups"]:
            names |= {rule["record"] for rule in group["rules"] if "record" in rule}
    return names


def test_provisioning_names_fixed_uids():
    assert datasource_uids() == {"opsmon-prometheus", "opsmon-victoriametrics", "opsmon-alertmanager"}
    provider = yaml.safe_load((GRAFANA / "provisioning/dashboards/dashboards.yml").read_text())["providers"][0]
    assert provider["type"] == "file" and provider["options"]["path"] == "/var/lib/grafana/dashboards"


def test_dashboards_are_complete_and_self_contained():
    assert {p.stem for p in DASHBOARDS} == EXPECTED
    uids = []
    for path in DASHBOARDS:
        text = path.read_text()
        dashboard = json.loads(text)
        assert "__inputs" not in dashboard and "${DS_" not in text, path.name
        assert dashboard["editable"] is False, path.name
        uids.append(dashboard["uid"])
        for panel in panels(dashboard):
            assert panel["title"] and panel["description"], f"{path.name}: {panel.get('title')}"
        # Every panel reads the board's datasource variable, whose default is a provisioned datasource's fixed uid.
        source = next(v for v in dashboard["templating"]["list"] if v["name"] == "datasource")
        assert source["current"]["value"] in datasource_uids(), path.name
        for panel in data_panels(dashboard):
            where = f"{path.name}: {panel.get('title')}"
            assert panel["fieldConfig"]["defaults"]["unit"], where
            assert panel["datasource"]["uid"] == "${datasource}", where
            for target in panel["targets"]:
                assert target["datasource"]["uid"] == "${datasource}", where
    assert len(set(uids)) == len(uids) == len(EXPECTED)


def test_the_committed_json_is_what_the_generator_writes():
    pytest.importorskip("grafana_foundation_sdk", reason="the generator's library needs Python 3.11")
    from grafana.boards.build import rendered

    boards = rendered()
    assert {path.stem for path in boards} == EXPECTED - {"business"}  # `opsmon render` writes that one
    stale = [path.name for path, text in boards.items() if path.read_text() != text]
    assert not stale, f"the committed boards differ from grafana/boards for {stale}: run python -m grafana.boards"


def test_the_end_to_end_suite_can_read_every_board():
    """test_e2e.py's test_9 reads each top-level panel's targets and fills only `=~"$var"` and $__rate_interval."""
    from tests.e2e.test_e2e import EMPTY_WHEN_HEALTHY

    titles = set()
    for path in DASHBOARDS:
        for panel in json.loads(path.read_text())["panels"]:
            titles.add((path.stem, panel["title"]))
            for target in panel["targets"]:
                assert "$" not in e2e_filled(target["expr"]), f"{path.stem}: {panel['title']}: {target['expr']}"
    assert EMPTY_WHEN_HEALTHY <= titles, "panels test_e2e expects empty are gone or renamed"


def test_the_overview_reads_alertmanager():
    """The count of alerts reaching a person is Alertmanager's (silences and inhibitions applied, heartbeat left
    out), and it links to Grafana's alert groups of the provisioned Alertmanager datasource."""
    from grafana.boards.rules import heartbeat

    sources = yaml.safe_load((GRAFANA / "provisioning/datasources/datasources.yml").read_text())["datasources"]
    alertmanager = next(s["name"] for s in sources if s["type"] == "alertmanager")
    prometheus = next(s["name"] for s in sources if s["type"] == "prometheus")
    overview = json.loads((GRAFANA / "dashboards/overview.json").read_text())
    person = next(p for p in overview["panels"] if p["title"] == "Alerts reaching a person")
    expr = person["targets"][0]["expr"]
    assert 'alertmanager_alerts{state="active"}' in expr and f'alertname="{heartbeat()}"' in expr
    assert any(f"/alerting/groups?alertmanager={alertmanager}&" in link["url"] for link in person["links"])
    rules_list = next(p for p in overview["panels"] if p["type"] == "alertlist")
    assert rules_list["options"]["alertInstanceLabelFilter"] == f'{{alertname!="{heartbeat()}"}}'
    assert rules_list["options"]["datasource"] == prometheus


def test_rates_use_rate_interval_and_counters_are_never_graphed_raw():
    for dashboard, title, expr in panel_expressions():
        for window in re.findall(r"\b(?:rate|irate)\([^\[]*\[([^\]]+)\]", expr):
            assert window == "$__rate_interval", f"{dashboard}: {title}: {expr}"
        shown = re.sub(r"\b(count|absent)\([^()]*\)", "", expr)  # counting a counter's series shows no value
        if re.search(r"_total\b|_bucket\b", shown):
            assert re.search(r"\b(rate|irate|increase)\(", shown), f"{dashboard}: {title}: raw counter in {expr}"


def test_error_ratios_count_server_errors_as_the_slo_does():
    """A 4xx is the caller's mistake: a board that counted it would show red while the SLO is met."""
    counted = [(dashboard, title, expr) for dashboard, title, expr in panel_expressions()
               if "app_request_errors_total" in expr]
    assert counted
    for dashboard, title, expr in counted:
        for selector in re.findall(r"app_request_errors_total(\{[^}]*\})?", expr):
            assert 'kind="server"' in selector, f"{dashboard}: {title}: {expr}"


def test_every_panel_uses_published_metrics(known_names):
    for dashboard, title, expr in expressions():
        unknown = metric_names(filled(expr)) - known_names
        assert not unknown, f"{dashboard}: {title}: nobody publishes {unknown}"


def test_alert_dashboard_links_point_at_dashboards():
    uids = {json.loads(p.read_text())["uid"] for p in DASHBOARDS}
    for path in [*(REPO / "prometheus/rules").glob("*.rules.yml"), *(REPO / "demo/rules").glob("*.rules.yml")]:
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                if "alert" in rule:
                    assert rule["annotations"]["dashboard_url"].rsplit("/", 1)[1] in uids, rule["alert"]


def test_backups_dashboard_links_to_the_console():
    links = json.loads((GRAFANA / "dashboards/backups.json").read_text())["links"]
    assert any(link.get("url") == "http://localhost:9878/" for link in links)


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory):
    """A real Prometheus with opsmon's recording rules and nothing to scrape."""
    work = tmp_path_factory.mktemp("prometheus")
    (work / "prometheus.yml").write_text(yaml.safe_dump(
        {"global": {"evaluation_interval": "1m"}, "rule_files": [str(REPO / "prometheus/rules/*.rules.yml")]}))
    port = free_port()
    process = subprocess.Popen(["prometheus", f"--config.file={work / 'prometheus.yml'}",
                                f"--storage.tsdb.path={work / 'data'}", f"--web.listen-address=127.0.0.1:{port}"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    wait_for(lambda: requests.get(f"{url}/-/ready", timeout=1).ok, timeout=30, what="Prometheus")
    yield url
    process.terminate()
    process.wait(10)


def test_every_expression_parses_in_prometheus(prometheus):
    for dashboard, title, expr in expressions():
        answer = requests.get(f"{prometheus}/api/v1/query", params={"query": filled(expr)}, timeout=10).json()
        assert answer["status"] == "success", f"{dashboard}: {title}: {answer.get('error')}"
