"""Prometheus config and rules: promtool accepts them, every alert is unit-tested both ways, names follow the style."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator

import pytest
import yaml

from tests.conftest import REPO

PROMETHEUS = REPO / "prometheus"
# The kit's rules, and the demo's own beside its tests (demo/rules/, rendered for the demo's config only).
KIT_RULE_FILES = sorted((PROMETHEUS / "rules").glob("*.rules.yml"))
DEMO = REPO / "demo" / "rules"
RULE_FILES = KIT_RULE_FILES + sorted(DEMO.glob("*.rules.yml"))
TEST_FILES = sorted((PROMETHEUS / "tests").glob("*.test.yml")) + sorted(DEMO.glob("*.test.yml"))
RUNBOOKS = REPO / "docs" / "runbooks.md"


def alerts() -> list[dict]:
    return [rule for path in RULE_FILES for group in yaml.safe_load(path.read_text())["groups"]
            for rule in group["rules"] if "alert" in rule]


def test_config_and_rules_pass_promtool():
    result = subprocess.run(["promtool", "check", "config", "prometheus.yml"], cwd=PROMETHEUS,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") >= len(KIT_RULE_FILES) + 1
    demo = subprocess.run(["promtool", "check", "rules", *map(str, DEMO.glob("*.rules.yml"))], capture_output=True,
                          text=True)
    assert demo.returncode == 0, demo.stdout + demo.stderr


def test_each_rule_file_has_its_test_file():
    for folder, tests in ((PROMETHEUS / "rules", PROMETHEUS / "tests"), (DEMO, DEMO)):
        assert sorted(p.name.replace(".rules.yml", "") for p in folder.glob("*.rules.yml")) == \
            sorted(p.name.replace(".test.yml", "") for p in tests.glob("*.test.yml")), folder


@pytest.fixture(scope="module")
def unit_test_runs() -> Iterator[dict[str, subprocess.Popen]]:
    """Every file's `promtool test rules` started at once: the long ones take most of a minute, one by one."""
    runs = {path.name: subprocess.Popen(["promtool", "test", "rules", path.name], cwd=path.parent,
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            for path in TEST_FILES}
    yield runs
    for run in runs.values():
        run.kill()
        run.wait()


@pytest.mark.parametrize("test_file", TEST_FILES, ids=lambda p: p.name)
def test_rule_unit_tests_pass(test_file, unit_test_runs):
    output, _ = unit_test_runs[test_file.name].communicate(timeout=300)
    assert unit_test_runs[test_file.name].returncode == 0, output


def test_every_alert_has_a_firing_case_and_a_named_negative_case():
    fires, stays_quiet = set(), set()
    for path in TEST_FILES:
        for test in yaml.safe_load(path.read_text())["tests"]:
            for case in test.get("alert_rule_test", []):
                if case["exp_alerts"]:
                    fires.add(case["alertname"])
                elif "not fire" in test["name"] or "not page" in test["name"]:
                    stays_quiet.add(case["alertname"])
    names = {alert["alert"] for alert in alerts()}
    assert names - fires == set(), "alerts without a case where they fire"
    assert names - {"OpsmonWatchdog"} - stays_quiet == set(), "alerts without a named '... does not fire ...' case"


def test_alerts_follow_the_house_style():
    anchors = {line[4:].strip().lower() for line in RUNBOOKS.read_text().splitlines() if line.startswith("### ")}
    for alert in alerts():
        name, labels, annotations = alert["alert"], alert["labels"], alert["annotations"]
        assert re.fullmatch(r"Opsmon[A-Z][A-Za-z]+", name), name
        assert "for" in alert, f"{name}: no for"
        assert labels["severity"] in {"critical", "warning", "info"}, name
        assert annotations["summary"].endswith(".") and "{{" not in annotations["summary"], name
        assert annotations["description"], name
        assert annotations["runbook_url"].endswith(f"docs/runbooks.md#{name.lower()}"), name
        assert name.lower() in anchors, f"{name} has no section in docs/runbooks.md"
        assert re.fullmatch(r"http://localhost:3000/d/opsmon-[a-z-]+", annotations["dashboard_url"]), name


def test_recording_rules_are_named_level_metric_operations():
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                if "record" in rule:
                    assert re.fullmatch(r"[a-z_]*:[a-z_]+:[a-z0-9_]+", rule["record"]), rule["record"]


RANGE = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(?:\{[^}]*\})?\s*\[(\d+)([smhdwy])\]")
SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}


def test_long_windows_are_evaluated_apart_once_a_minute_to_five_from_recorded_rates():
    """A window of a day or more is read from a recorded series (level:metric:operations) in a group of
    its own evaluated every 1 to 5 minutes, not from raw samples at every 15-second evaluation."""
    long_groups = set()
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                for metric, number, unit in RANGE.findall(rule["expr"]):
                    if int(number) * SECONDS[unit] >= 86400:
                        name = rule.get("record") or rule.get("alert")
                        assert ":" in metric, f"{path.name}: {name} reads {number}{unit} of raw {metric}"
                        assert group.get("interval") in {"1m", "2m", "3m", "4m", "5m"}, \
                            f"{path.name}: {name} is in {group['name']}, evaluated at the global interval"
                        long_groups.add(group["name"])
    assert {"opsmon-daily-recording", "opsmon-slo-recording-long", "demo-video-long-term-recording"} <= long_groups


def recording_rules(path) -> Iterator[tuple[dict, dict]]:
    for group in yaml.safe_load(path.read_text())["groups"]:
        for rule in group["rules"]:
            if "record" in rule:
                yield group, rule


def test_recorded_windows_of_two_hours_or_more_are_evaluated_once_a_minute_to_five():
    """Hours of samples read at every 15-second evaluation are most of a large fleet's rule cost: a
    recording rule over two hours or more sits in a group evaluated every 1 to 5 minutes."""
    for path in RULE_FILES:
        for group, rule in recording_rules(path):
            for metric, number, unit in RANGE.findall(rule["expr"]):
                if int(number) * SECONDS[unit] >= 2 * 3600:
                    assert group.get("interval") in {"1m", "2m", "3m", "4m", "5m"}, \
                        f"{path.name}: {rule['record']} reads {number}{unit} of {metric} in {group['name']}, " \
                        "evaluated at the global interval"


SELECTION = re.compile(r"[a-zA-Z_][a-zA-Z0-9_:]*\s*(?:\{[^}]*\})?\s*\[\d+[smhdwy]\]")


@pytest.mark.parametrize("name", ["recording.rules.yml", "slo.rules.yml"])
def test_the_application_and_slo_recording_rules_read_each_raw_range_once(name):
    """The heaviest groups for a fleet: a range of raw samples (the bucket rates, a window of the
    counters) is read by one rule, and the rules after it read what it recorded."""
    read_by: dict[str, list[str]] = {}
    for _, rule in recording_rules(PROMETHEUS / "rules" / name):
        for selection in SELECTION.findall(rule["expr"]):
            if ":" not in selection.split("{")[0].split("[")[0]:
                read_by.setdefault(re.sub(r"\s+", "", selection), []).append(rule["record"])
    assert {selection: rules for selection, rules in read_by.items() if len(rules) > 1} == {}


def test_alerts_on_a_hovering_value_hold_with_keep_firing_for():
    """The alerts on averages over a window keep firing while the average hovers around the threshold."""
    held = {alert["alert"] for alert in alerts() if "keep_firing_for" in alert}
    assert {"OpsmonCpuHigh", "OpsmonExternalServiceDown", "OpsmonExternalServiceSlow", "OpsmonCollectorFailing",
            "OpsmonLatencyHigh"} <= held


def test_the_alerts_page_counts_the_rules_and_alert_cases():
    rules = [rule for path in RULE_FILES for group in yaml.safe_load(path.read_text())["groups"]
             for rule in group["rules"]]
    cases = sum(len(test.get("alert_rule_test", [])) for path in TEST_FILES
                for test in yaml.safe_load(path.read_text())["tests"])
    counted = (f"{sum('alert' in rule for rule in rules)} alerting rules and "
               f"{sum('record' in rule for rule in rules)} recording rules, checked by {cases} alert cases")
    assert counted in " ".join((REPO / "docs" / "alerts.md").read_text().split()), counted
