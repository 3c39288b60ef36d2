"""Alertmanager: the config passes amtool, every route reaches its receivers, inhibition holds in a real
Alertmanager, and the email templates render."""

from __future__ import annotations

import subprocess
from datetime import datetime, timedelta, timezone

import pytest
import requests
import yaml

from tests.conftest import REPO, free_port, wait_for

ALERTMANAGER = REPO / "alertmanager"
CONFIG = ALERTMANAGER / "alertmanager.yml"


def amtool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["amtool", *args], cwd=ALERTMANAGER, capture_output=True, text=True, timeout=60)


def test_config_passes_amtool():
    result = amtool("check-config", "alertmanager.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "4 inhibit rules" in result.stdout and "8 receivers" in result.stdout


ROUTES = yaml.safe_load((ALERTMANAGER / "tests" / "routes.yml").read_text())


@pytest.mark.parametrize("case", ROUTES, ids=[case["name"] for case in ROUTES])
def test_route(case):
    labels = [f"{name}={value}" for name, value in case["labels"].items()]
    receivers = ",".join(case["receivers"])
    result = amtool("config", "routes", "test", "--config.file=alertmanager.yml", f"--verify.receivers={receivers}",
                    *labels)
    assert result.returncode == 0, f"{labels} went to {result.stdout.strip()}, expected {receivers}"


def test_every_receiver_is_reached_by_a_route_test():
    receivers = {r["name"] for r in yaml.safe_load(CONFIG.read_text())["receivers"]}
    assert receivers == {name for case in ROUTES for name in case["receivers"]}


def test_receivers_send_what_their_names_say():
    receivers = {r["name"]: r for r in yaml.safe_load(CONFIG.read_text())["receivers"]}
    for name in ("pager-ops", "pager-app", "pager-business"):
        assert receivers[name]["email_configs"] and receivers[name]["webhook_configs"], name
    for name in ("email-ops", "email-app", "email-business"):
        assert receivers[name]["email_configs"] and "webhook_configs" not in receivers[name], name
    assert set(receivers["blackhole"]) == {"name"}


def test_warnings_are_muted_in_the_maintenance_window_and_repeats_are_hours_apart():
    config = yaml.safe_load(CONFIG.read_text())
    warning_route = next(r for r in config["route"]["routes"] if r["matchers"] == ['severity="warning"'])
    assert warning_route["mute_time_intervals"] == ["maintenance"]
    window = config["time_intervals"][0]["time_intervals"][0]
    assert window == {"weekdays": ["sunday"], "times": [{"start_time": "02:00", "end_time": "04:00"}]}
    assert config["route"]["repeat_interval"] == "4h"


@pytest.mark.parametrize("name", ["opsmon.email.subject", "opsmon.email.text", "opsmon.email.html"])
def test_templates_render(name):
    result = amtool("template", "render", "--template.glob=templates/*.tmpl",
                    "--template.text={{ template \"%s\" . }}" % name)
    assert result.returncode == 0, result.stderr
    if name == "opsmon.email.html":
        assert '<meta name="viewport"' in result.stdout and "What to do" in result.stdout
        assert result.stdout.count("Dashboard</a>") == 2  # amtool's sample data holds two alerts
    if name == "opsmon.email.text":
        assert result.stdout.count("Runbook: ") == 2 and "Since: " in result.stdout


@pytest.fixture(scope="module")
def alertmanager(tmp_path_factory):
    """The real Alertmanager with the shipped config; mail goes to a port where nobody listens."""
    work = tmp_path_factory.mktemp("alertmanager")
    config = yaml.safe_load(CONFIG.read_text())
    config["global"]["smtp_smarthost"] = f"127.0.0.1:{free_port()}"
    config["templates"] = [str(ALERTMANAGER / "templates" / "*.tmpl")]
    for receiver in config["receivers"]:
        for hook in receiver.get("webhook_configs", []):
            hook["url"] = f"http://127.0.0.1:{free_port()}/"
    (work / "alertmanager.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    process = subprocess.Popen(["prometheus-alertmanager", f"--config.file={work / 'alertmanager.yml'}",
                                f"--storage.path={work / 'data'}", f"--web.listen-address=127.0.0.1:{port}",
                                "--cluster.listen-address="], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    wait_for(lambda: requests.get(f"{url}/-/ready", timeout=1).ok, what="Alertmanager")
    yield url
    process.terminate()
    process.wait(10)


def post(url: str, *alerts: dict) -> None:
    starts = datetime.now(timezone.utc).isoformat()
    ends = (datetime.now(timezone.utc) + timedelta(hours=1)).isoformat()
    body = [{"labels": labels, "annotations": {"summary": "test."}, "startsAt": starts, "endsAt": ends}
            for labels in alerts]
    requests.post(f"{url}/api/v2/alerts", json=body, timeout=5).raise_for_status()


def inhibited(url: str, alertname: str, **labels) -> bool:
    def state():
        for alert in requests.get(f"{url}/api/v2/alerts", timeout=5).json():
            if alert["labels"]["alertname"] == alertname and all(alert["labels"].get(k) == v
                                                                 for k, v in labels.items()):
                return alert["status"]
        return None

    status = wait_for(state, what=f"{alertname} in Alertmanager")
    return bool(status["inhibitedBy"])


def test_target_down_inhibits_everything_else_from_that_job(alertmanager):
    target = {"job": "opsmon-exporter", "instance": "a:9877"}
    post(alertmanager, {"alertname": "OpsmonTargetDown", "severity": "critical", "team": "ops", **target},
         {"alertname": "OpsmonCollectorFailing", "severity": "warning", "team": "ops", "collector": "x", **target},
         {"alertname": "OpsmonBackupMetricsAbsent", "severity": "critical", "team": "ops", "job": "opsmon-exporter"},
         {"alertname": "OpsmonLitestreamDown", "severity": "warning", "team": "ops", "job": "opsmon-backup",
          "instance": "a:9878"})
    assert inhibited(alertmanager, "OpsmonCollectorFailing", instance="a:9877")
    assert inhibited(alertmanager, "OpsmonBackupMetricsAbsent", job="opsmon-exporter")
    assert not inhibited(alertmanager, "OpsmonLitestreamDown", job="opsmon-backup")
    assert not inhibited(alertmanager, "OpsmonTargetDown", instance="a:9877")


# Each test below uses a job of its own: the TargetDown above inhibits all of opsmon-exporter.
def test_critical_inhibits_the_warning_of_the_same_alert_and_place(alertmanager):
    place = {"job": "job-b", "instance": "b:9877", "mountpoint": "/data"}
    post(alertmanager, {"alertname": "OpsmonDiskSpaceLow", "severity": "critical", "team": "ops", **place},
         {"alertname": "OpsmonDiskSpaceLow", "severity": "warning", "team": "ops", **place},
         {"alertname": "OpsmonDiskSpaceLow", "severity": "warning", "team": "ops", **place, "mountpoint": "/"})
    assert inhibited(alertmanager, "OpsmonDiskSpaceLow", instance="b:9877", mountpoint="/data", severity="warning")
    assert not inhibited(alertmanager, "OpsmonDiskSpaceLow", instance="b:9877", mountpoint="/", severity="warning")


def test_full_disk_inhibits_backup_failures_on_that_host(alertmanager):
    post(alertmanager, {"alertname": "OpsmonDiskSpaceLow", "severity": "critical", "team": "ops",
                        "job": "job-c", "instance": "c:9877", "mountpoint": "/"},
         {"alertname": "OpsmonBackupFailing", "severity": "warning", "team": "ops", "job": "job-c",
          "instance": "c:9877", "database": "demo", "tier": "daily"},
         {"alertname": "OpsmonBackupVerificationFailing", "severity": "critical", "team": "ops",
          "job": "job-c", "instance": "c:9877", "database": "demo"})
    assert inhibited(alertmanager, "OpsmonBackupFailing", instance="c:9877")
    assert not inhibited(alertmanager, "OpsmonBackupVerificationFailing", instance="c:9877")  # damage is news


def test_down_service_inhibits_its_slow_alert(alertmanager):
    where = {"job": "job-d", "instance": "d:9877"}
    post(alertmanager, {"alertname": "OpsmonExternalServiceDown", "severity": "critical", "team": "app",
                        "service": "payments", **where},
         {"alertname": "OpsmonExternalServiceSlow", "severity": "warning", "team": "app", "service": "payments",
          **where},
         {"alertname": "OpsmonExternalServiceSlow", "severity": "warning", "team": "app", "service": "search",
          **where})
    assert inhibited(alertmanager, "OpsmonExternalServiceSlow", service="payments")
    assert not inhibited(alertmanager, "OpsmonExternalServiceSlow", service="search")
