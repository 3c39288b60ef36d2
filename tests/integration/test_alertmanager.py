"""Alertmanager: the config passes amtool, every route reaches its receivers, inhibition holds in a real
Alertmanager, and the email templates render."""

from __future__ import annotations

import json
import re
import subprocess
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import requests
import yaml

from bench.harness import LoopbackServer, QuietHandler
from tests.conftest import REPO, free_port, wait_for

ALERTMANAGER = REPO / "alertmanager"
CONFIG = ALERTMANAGER / "alertmanager.yml"


def amtool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["amtool", *args], cwd=ALERTMANAGER, capture_output=True, text=True, timeout=60)


def test_config_passes_amtool():
    result = amtool("check-config", "alertmanager.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "13 inhibit rules" in result.stdout and "8 receivers" in result.stdout


def test_the_alerts_page_counts_the_inhibition_rules_and_cases():
    rules = len(yaml.safe_load(CONFIG.read_text())["inhibit_rules"])
    cases = len(re.findall(r"assert (?:not )?inhibited\(", Path(__file__).read_text()))
    counted = f"{rules} inhibition rules (each shown on a real Alertmanager by {cases} inhibition cases"
    assert counted in " ".join((REPO / "docs" / "alerts.md").read_text().split()), counted


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


def test_warnings_are_muted_in_the_maintenance_window_and_repeat_at_most_twice_a_day():
    config = yaml.safe_load(CONFIG.read_text())
    warning_route = next(r for r in config["route"]["routes"] if r["matchers"] == ['severity="warning"'])
    assert warning_route["mute_time_intervals"] == ["maintenance"]
    window = config["time_intervals"][0]["time_intervals"][0]
    assert window == {"weekdays": ["sunday"], "times": [{"start_time": "02:00", "end_time": "04:00"}]}
    assert config["route"]["repeat_interval"] == "12h" and "repeat_interval" not in warning_route
    critical_route = next(r for r in config["route"]["routes"] if r["matchers"] == ['severity="critical"'])
    assert critical_route["repeat_interval"] == "2h"


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
        # Links built from the external URLs: Prometheus's (generatorURL) and Alertmanager's own.
        assert "Source: https://generatorurl.com" in result.stdout
        assert "Silence: https://example.com/#/silences/new?filter=" in result.stdout


def run_alertmanager(work, config: dict):
    """Start the real Alertmanager on a config (the shipped one, changed by the caller); yield its URL."""
    (work / "alertmanager.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    process = subprocess.Popen(["prometheus-alertmanager", f"--config.file={work / 'alertmanager.yml'}",
                                f"--storage.path={work / 'data'}", f"--web.listen-address=127.0.0.1:{port}",
                                "--cluster.listen-address="], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: requests.get(f"{url}/-/ready", timeout=1).ok, what="Alertmanager")
        yield url
    finally:
        process.terminate()
        process.wait(10)


def test_dashboard_links_open_the_alert_s_host_an_hour_around_its_start(tmp_path):
    """In the text and the HTML e-mail alike; an alert without a host (about Prometheus itself) opens all hosts."""
    def alert(labels: dict) -> dict:
        return {"status": "firing", "labels": {"alertname": "OpsmonDiskSpaceLow", "severity": "critical", **labels},
                "annotations": {"summary": "s.", "description": "d", "runbook_url": "r",
                                "dashboard_url": "http://localhost:3000/d/opsmon-system"},
                "startsAt": "2026-12-03T10:00:00Z", "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "g"}

    data = tmp_path / "data.json"
    data.write_text(json.dumps({"status": "firing", "receiver": "pager-ops", "externalURL": "http://am",
                                "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {},
                                "alerts": [alert({"host": "web-1"}), alert({})]}))
    window = "time=1796292000000&time.window=3600000"
    for kind, name in (("text", "opsmon.email.text"), ("html", "opsmon.email.html")):
        result = amtool("template", "render", "--template.glob=templates/*.tmpl", f"--template.type={kind}",
                        f"--template.data={data}", "--template.text={{ template \"%s\" . }}" % name)
        assert result.returncode == 0, result.stderr
        links = re.findall(r"http://localhost:3000/d/opsmon-system\S*?(?=[\"\s])", result.stdout.replace("&amp;", "&"))
        assert links == [f"http://localhost:3000/d/opsmon-system?var-host=web-1&{window}",
                         f"http://localhost:3000/d/opsmon-system?var-host=%24__all&{window}"], (kind, links)


@pytest.fixture(scope="module")
def alertmanager(tmp_path_factory):
    """The real Alertmanager with the shipped config; mail goes to a port where nobody listens."""
    config = yaml.safe_load(CONFIG.read_text())
    config["global"]["smtp_smarthost"] = f"127.0.0.1:{free_port()}"
    config["templates"] = [str(ALERTMANAGER / "templates" / "*.tmpl")]
    for receiver in config["receivers"]:
        for hook in receiver.get("webhook_configs", []):
            hook["url"] = f"http://127.0.0.1:{free_port()}/"
    yield from run_alertmanager(tmp_path_factory.mktemp("alertmanager"), config)


def post(url: str, *alerts: dict, ends: datetime | None = None) -> None:
    """Send alerts as Prometheus does; an `ends` in the past resolves them."""
    ends = ends or datetime.now(timezone.utc) + timedelta(hours=1)
    starts = min(datetime.now(timezone.utc), ends - timedelta(minutes=1))
    body = [{"labels": labels, "annotations": {"summary": "test."}, "startsAt": starts.isoformat(),
             "endsAt": ends.isoformat()}
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


def test_every_inhibition_and_group_keeps_hosts_apart():
    """A fault on one host explains that host's alerts only, and is notified apart from the same fault elsewhere."""
    config = yaml.safe_load(CONFIG.read_text())
    assert "host" in config["route"]["group_by"]
    per_host = [rule for rule in config["inhibit_rules"] if 'host=""' not in rule["target_matchers"]]
    assert all("host" in rule.get("equal", []) for rule in per_host), per_host
    assert len(per_host) == len(config["inhibit_rules"]) - 1  # the fleet's burn-rate alert, below


def test_a_critical_alert_holds_back_its_warning_twin_in_the_place_notifications_are_grouped_by():
    """inhibit_rules.yml names the place again (a YAML anchor cannot reach across files): the two stay equal."""
    config = yaml.safe_load(CONFIG.read_text())
    [twin] = [rule for rule in config["inhibit_rules"] if rule["source_matchers"] == ['severity="critical"']]
    assert twin["equal"] == config["route"]["group_by"]


def test_a_host_burning_its_error_budget_holds_back_the_fleet_s_alert_of_that_job(alertmanager):
    fleet = {"alertname": "OpsmonErrorBudgetBurnFast", "severity": "critical", "team": "app"}
    post(alertmanager, {**fleet, "job": "app-1", "host": "host-f"}, {**fleet, "job": "app-1"}, {**fleet, "job": "app-2"})

    def fleet_alert(job: str) -> dict:
        return wait_for(lambda: next((a for a in requests.get(f"{alertmanager}/api/v2/alerts", timeout=5).json()
                                      if a["labels"]["alertname"] == fleet["alertname"]
                                      and a["labels"]["job"] == job and "host" not in a["labels"]), None),
                        what=f"the fleet's alert of {job}")

    assert fleet_alert("app-1")["status"]["inhibitedBy"]
    assert not fleet_alert("app-2")["status"]["inhibitedBy"]  # no host of app-2 burns: the fleet's alert speaks
    assert not inhibited(alertmanager, "OpsmonErrorBudgetBurnFast", host="host-f")


# Each test below uses hosts of its own: what one posts stays active for an hour.
def test_target_down_holds_back_the_alerts_of_its_job_on_its_host_only(alertmanager):
    a = {"job": "opsmon-exporter", "host": "host-a", "instance": "a:9877"}
    b = {"job": "opsmon-exporter", "host": "host-b", "instance": "b:9877"}
    post(alertmanager, {"alertname": "OpsmonTargetDown", "severity": "critical", "team": "ops", **a},
         *({"alertname": "OpsmonCollectorFailing", "severity": "warning", "team": "ops", "collector": "x", **where}
           for where in (a, b)),
         *({"alertname": "OpsmonBackupMetricsAbsent", "severity": "critical", "team": "ops", **where} for where in (a, b)),
         {"alertname": "OpsmonLitestreamDown", "severity": "warning", "team": "ops", "job": "opsmon-backup",
          "host": "host-a", "instance": "a:9878"})
    assert inhibited(alertmanager, "OpsmonCollectorFailing", host="host-a")
    assert inhibited(alertmanager, "OpsmonBackupMetricsAbsent", host="host-a")
    assert not inhibited(alertmanager, "OpsmonCollectorFailing", host="host-b")
    assert not inhibited(alertmanager, "OpsmonBackupMetricsAbsent", host="host-b")
    assert not inhibited(alertmanager, "OpsmonLitestreamDown", host="host-a")  # another job of host-a
    assert not inhibited(alertmanager, "OpsmonTargetDown", host="host-a")


def test_critical_inhibits_the_warning_of_the_same_alert_and_place(alertmanager):
    place = {"job": "opsmon-exporter", "host": "host-c", "instance": "c:9877", "mountpoint": "/data"}
    post(alertmanager, {"alertname": "OpsmonDiskSpaceLow", "severity": "critical", "team": "ops", **place},
         {"alertname": "OpsmonDiskSpaceLow", "severity": "warning", "team": "ops", **place},
         {"alertname": "OpsmonDiskSpaceLow", "severity": "warning", "team": "ops", **place, "mountpoint": "/"})
    assert inhibited(alertmanager, "OpsmonDiskSpaceLow", host="host-c", mountpoint="/data", severity="warning")
    assert not inhibited(alertmanager, "OpsmonDiskSpaceLow", host="host-c", mountpoint="/", severity="warning")


def test_full_disk_inhibits_backup_failures_on_that_host_only(alertmanager):
    exporter = {"job": "opsmon-exporter", "instance": "exporter:9877"}
    post(alertmanager, {"alertname": "OpsmonDiskSpaceLow", "severity": "critical", "team": "ops", "host": "host-d",
                        "mountpoint": "/data", **exporter},
         *({"alertname": "OpsmonBackupFailing", "severity": "warning", "team": "ops", "host": host, "database": "demo",
            "tier": "daily", **exporter} for host in ("host-d", "host-e")),
         {"alertname": "OpsmonBackupVerificationFailing", "severity": "critical", "team": "ops", "host": "host-d",
          "database": "demo", **exporter})
    assert inhibited(alertmanager, "OpsmonBackupFailing", host="host-d")
    assert not inhibited(alertmanager, "OpsmonBackupFailing", host="host-e")
    assert not inhibited(alertmanager, "OpsmonBackupVerificationFailing", host="host-d")  # damage is news


def test_down_service_inhibits_its_slow_alert_from_the_same_host(alertmanager):
    f, g = ({"job": "opsmon-exporter", "host": f"host-{x}", "instance": f"{x}:9877"} for x in "fg")
    post(alertmanager, {"alertname": "OpsmonExternalServiceDown", "severity": "critical", "team": "app",
                        "service": "payments", **f},
         *({"alertname": "OpsmonExternalServiceSlow", "severity": "warning", "team": "app", "service": service,
            **where} for service, where in (("payments", f), ("search", f), ("payments", g))))
    assert inhibited(alertmanager, "OpsmonExternalServiceSlow", host="host-f", service="payments")
    assert not inhibited(alertmanager, "OpsmonExternalServiceSlow", host="host-f", service="search")
    assert not inhibited(alertmanager, "OpsmonExternalServiceSlow", host="host-g", service="payments")


def test_a_stopped_backup_service_holds_back_its_host_s_3_2_1_rule_but_not_a_missed_objective(alertmanager):
    """Copies stop arriving while the service is down (the 3-2-1 rule follows); the RTO and RPO of the last
    passing drills stay as they were measured, so a miss is news of its own. Another host's copies are its own."""
    post(alertmanager, {"alertname": "OpsmonTargetDown", "severity": "critical", "team": "ops", "job": "opsmon-backup",
                        "host": "host-h", "instance": "h:9878"},
         *({"alertname": alertname, "severity": "warning", "team": "ops", "job": "opsmon-exporter", "host": host,
            "instance": f"{host[-1]}:9877", "database": "demo", **extra}
           for host in ("host-h", "host-i")
           for alertname, extra in (("OpsmonBackupThreeTwoOneUnsatisfied", {}),
                                    ("OpsmonRestoreDrillStale", {"location": "offsite"}),
                                    ("OpsmonRestoreDrillRtoMissed", {"location": "offsite"}),
                                    ("OpsmonBackupRpoMissed", {}))))
    assert inhibited(alertmanager, "OpsmonBackupThreeTwoOneUnsatisfied", host="host-h")
    assert inhibited(alertmanager, "OpsmonRestoreDrillStale", host="host-h")
    assert not inhibited(alertmanager, "OpsmonRestoreDrillRtoMissed", host="host-h")
    assert not inhibited(alertmanager, "OpsmonBackupRpoMissed", host="host-h")
    assert not inhibited(alertmanager, "OpsmonBackupThreeTwoOneUnsatisfied", host="host-i")
    assert not inhibited(alertmanager, "OpsmonRestoreDrillStale", host="host-i")


def test_litestream_down_and_a_dead_app_hold_back_what_follows_on_their_own_host(alertmanager):
    post(alertmanager, {"alertname": "OpsmonLitestreamDown", "severity": "warning", "team": "ops",
                        "job": "litestream", "host": "host-j", "instance": "j:9879"},
         {"alertname": "OpsmonProcessDown", "severity": "critical", "team": "app", "job": "opsmon-exporter",
          "host": "host-j", "instance": "j:9877", "process": "demo"},
         *({"alertname": "OpsmonPitrReplicationLagging", "severity": "warning", "team": "ops", "host": host,
            "database": "demo"} for host in ("host-j", "host-k")),
         *({"alertname": "OpsmonVideoProcessingStalled", "severity": "critical", "team": "business",
            "job": "opsmon-exporter", "host": host, "instance": f"{host[-1]}:9877"} for host in ("host-j", "host-k")))
    assert inhibited(alertmanager, "OpsmonPitrReplicationLagging", host="host-j")
    assert inhibited(alertmanager, "OpsmonVideoProcessingStalled", host="host-j")
    assert not inhibited(alertmanager, "OpsmonPitrReplicationLagging", host="host-k")
    assert not inhibited(alertmanager, "OpsmonVideoProcessingStalled", host="host-k")


def test_a_dead_process_holds_back_its_own_restarts_and_the_demo_s_services_not_another_s(alertmanager):
    """A worker down on host-m explains none of a payments API outage, nor the demo's restart loop; the demo
    down on host-n explains its own checks and pipeline, not the payments API's."""
    exporter = {"job": "opsmon-exporter", "team": "app"}
    post(alertmanager,
         *({"alertname": "OpsmonProcessDown", "severity": "critical", "host": host, "process": process, **exporter}
           for host, process in (("host-m", "worker"), ("host-n", "demo"))),
         *({"alertname": "OpsmonProcessRestarting", "severity": "warning", "host": "host-m", "process": process,
            **exporter} for process in ("worker", "demo")),
         *({"alertname": "OpsmonExternalServiceDown", "severity": "critical", "host": host, "service": service,
            **exporter} for host in ("host-m", "host-n") for service in ("payments", "demo-api")),
         *({"alertname": "OpsmonVideoProcessingStalled", "severity": "critical", "team": "business", "host": host,
            "job": "opsmon-exporter"} for host in ("host-m", "host-n")))
    assert inhibited(alertmanager, "OpsmonProcessRestarting", host="host-m", process="worker")
    assert not inhibited(alertmanager, "OpsmonProcessRestarting", host="host-m", process="demo")
    assert not inhibited(alertmanager, "OpsmonExternalServiceDown", host="host-m", service="payments")
    assert not inhibited(alertmanager, "OpsmonExternalServiceDown", host="host-m", service="demo-api")
    assert not inhibited(alertmanager, "OpsmonVideoProcessingStalled", host="host-m")
    assert inhibited(alertmanager, "OpsmonExternalServiceDown", host="host-n", service="demo-api")
    assert inhibited(alertmanager, "OpsmonVideoProcessingStalled", host="host-n")
    assert not inhibited(alertmanager, "OpsmonExternalServiceDown", host="host-n", service="payments")


def test_a_full_disk_holds_back_backup_warnings_only_from_the_mount_that_holds_them(alertmanager):
    """A full /boot explains no failing backup; a full /data explains the warnings, never the page for two
    missed backups, nor the copy kept offsite."""
    exporter = {"job": "opsmon-exporter", "team": "ops", "database": "demo"}
    post(alertmanager,
         *({"alertname": "OpsmonDiskSpaceLow", "severity": "critical", "team": "ops", "job": "opsmon-exporter",
            "host": host, "mountpoint": mountpoint} for host, mountpoint in (("host-o", "/boot"), ("host-p", "/data"))),
         *({"alertname": "OpsmonBackupFailing", "severity": "warning", "host": host, "tier": "daily", **exporter}
           for host in ("host-o", "host-p")),
         *({"alertname": "OpsmonBackupStale", "severity": severity, "host": "host-p", "tier": tier, **exporter}
           for severity, tier in (("warning", "weekly"), ("critical", "daily"))),
         {"alertname": "OpsmonBackupCopyStale", "severity": "warning", "host": "host-p", "location": "offsite",
          **exporter})
    assert not inhibited(alertmanager, "OpsmonBackupFailing", host="host-o")
    assert inhibited(alertmanager, "OpsmonBackupFailing", host="host-p")
    assert inhibited(alertmanager, "OpsmonBackupStale", host="host-p", severity="warning")
    assert not inhibited(alertmanager, "OpsmonBackupStale", host="host-p", severity="critical")
    assert not inhibited(alertmanager, "OpsmonBackupCopyStale", host="host-p")


def test_only_the_api_the_pipeline_calls_holds_back_the_business_team_s_stalled_pipeline(alertmanager):
    """The app team's payments check failing is no cause of the business team's stalled pipeline."""
    post(alertmanager,
         *({"alertname": "OpsmonExternalServiceDown", "severity": "critical", "team": "app", "job": "opsmon-exporter",
            "host": host, "service": service} for host, service in (("host-q", "payments"), ("host-r", "external-api"))),
         *({"alertname": "OpsmonVideoProcessingStalled", "severity": "critical", "team": "business",
            "job": "opsmon-exporter", "host": host} for host in ("host-q", "host-r")))
    assert not inhibited(alertmanager, "OpsmonVideoProcessingStalled", host="host-q")
    assert inhibited(alertmanager, "OpsmonVideoProcessingStalled", host="host-r")


def test_only_a_stopped_backup_service_holds_back_litestream_and_on_its_own_host(alertmanager):
    """The backup service down on host-s explains its Litestream; host-t's Litestream is its own news, and so is
    host-u's while only host-u's exporter is down."""
    post(alertmanager,
         *({"alertname": "OpsmonTargetDown", "severity": "critical", "team": "ops", "job": job, "host": host}
           for job, host in (("opsmon-backup", "host-s"), ("opsmon-exporter", "host-u"))),
         *({"alertname": "OpsmonLitestreamDown", "severity": "warning", "team": "ops", "job": "litestream",
            "host": host} for host in ("host-s", "host-t", "host-u")))
    assert inhibited(alertmanager, "OpsmonLitestreamDown", host="host-s")
    assert not inhibited(alertmanager, "OpsmonLitestreamDown", host="host-t")
    assert not inhibited(alertmanager, "OpsmonLitestreamDown", host="host-u")


def test_the_long_term_store_down_holds_back_remote_writing_to_it_not_prometheus_s_other_troubles(alertmanager):
    prometheus = {"team": "ops", "job": "prometheus", "instance": "localhost:9090"}
    remote = {"remote_name": "vm", "url": "http://victoriametrics:8428/api/v1/write", **prometheus}
    post(alertmanager, {"alertname": "OpsmonLongTermStoreDown", "severity": "warning", "team": "ops",
                        "job": "victoriametrics", "instance": "victoriametrics:8428"},
         {"alertname": "OpsmonPrometheusRemoteWriteFailing", "severity": "warning", **remote},
         {"alertname": "OpsmonPrometheusRemoteWriteBehind", "severity": "warning", **remote},
         {"alertname": "OpsmonPrometheusErrorSendingAlerts", "severity": "critical", **prometheus})
    assert inhibited(alertmanager, "OpsmonPrometheusRemoteWriteFailing")
    assert inhibited(alertmanager, "OpsmonPrometheusRemoteWriteBehind")
    assert not inhibited(alertmanager, "OpsmonPrometheusErrorSendingAlerts")


class Notifications(LoopbackServer):
    """Every receiver of the shipped config turned into a webhook to here: what a person would get."""

    def __init__(self):
        received = self.received = []

        class Handler(QuietHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                received.append((self.path.strip("/"), body))
                self.send_response(200)
                self.end_headers()

        super().__init__(Handler)

    def about(self, fault: str, label: str = "alertname") -> list[tuple[str, str, list[str]]]:
        """(receiver, status, the alerts' values of label) of each notification whose alerts carry fault=..."""
        return [(receiver, body["status"], sorted(a["labels"].get(label, "") for a in body["alerts"]))
                for receiver, body in list(self.received)
                if any(a["labels"].get("fault") == fault for a in body["alerts"])]


def notifying_config(notifications: Notifications) -> dict:
    """The shipped routes and inhibition rules; only the waits are short (group_wait 1s) and every
    receiver posts to notifications instead of mailing or paging."""
    config = yaml.safe_load(CONFIG.read_text())
    config["templates"] = [str(ALERTMANAGER / "templates" / "*.tmpl")]
    config["route"]["group_wait"] = "1s"
    for receiver in config["receivers"]:
        receiver.pop("email_configs", None)
        if receiver["name"] != "blackhole":
            receiver["webhook_configs"] = [{"url": f"{notifications.url}/{receiver['name']}", "send_resolved": True}]
    return config


@pytest.fixture(scope="module")
def notifying_alertmanager(tmp_path_factory):
    """The real Alertmanager with the shipped routes and inhibition rules, notifying here."""
    notifications = Notifications()
    try:
        for url in run_alertmanager(tmp_path_factory.mktemp("alertmanager-notify"), notifying_config(notifications)):
            yield url, notifications
    finally:
        notifications.close()


def fault(url: str, notifications: Notifications, name: str, cause: dict, *effects: dict) -> list:
    """Post the cause, then what follows from it (as Prometheus would, the cause's `for` being
    shortest), and return the notifications about the fault once every group has had its turn.
    The fault's alerts are resolved at the end, so that they hold back nothing of the next test."""
    alerts = [{**alert, "fault": name} for alert in (cause, *effects)]
    post(url, alerts[0])
    assert not inhibited(url, cause["alertname"], fault=name)
    post(url, *alerts[1:])
    for effect in alerts[1:]:
        assert inhibited(url, **effect), effect
    wait_for(lambda: notifications.about(name), what=f"a notification about {name}")
    time.sleep(3)  # group_wait is 1s: any other group of this fault would have been sent by now
    sent = notifications.about(name)
    post(url, *alerts, ends=datetime.now(timezone.utc) - timedelta(seconds=1))
    return sent


# Each fault: its cause first, then what follows from it, with the labels the shipped rules give
# (test_the_faults_carry_the_labels_of_the_shipped_rules checks severity and team).
EXPORTER = {"job": "opsmon-exporter", "host": "demo", "instance": "exporter:9877"}
BACKUP = {"job": "opsmon-backup", "host": "demo", "instance": "backup:9878"}
FAULTS = {
    "demo-outage": [
        {"alertname": "OpsmonProcessDown", "severity": "critical", "team": "app", "process": "demo", **EXPORTER},
        {"alertname": "OpsmonExternalServiceDown", "severity": "critical", "team": "app", "service": "demo-api",
         **EXPORTER},
        {"alertname": "OpsmonExternalServiceDown", "severity": "critical", "team": "app", "service": "external-api",
         **EXPORTER},
        {"alertname": "OpsmonExternalServiceSlow", "severity": "warning", "team": "app", "service": "external-api",
         **EXPORTER},
        {"alertname": "OpsmonVideoProcessingStalled", "severity": "critical", "team": "business", **EXPORTER},
    ],
    "backup-stopped": [
        {"alertname": "OpsmonTargetDown", "severity": "critical", "team": "ops", **BACKUP},
        {"alertname": "OpsmonLitestreamDown", "severity": "warning", "team": "ops", "job": "litestream", "host": "demo",
         "instance": "backup:9879"},
        {"alertname": "OpsmonPitrReplicationLagging", "severity": "warning", "team": "ops", "host": "demo",
         "database": "demo"},
        {"alertname": "OpsmonBackupJobOverdue", "severity": "warning", "team": "ops", "backup_job": "backup-daily",
         **BACKUP},
        {"alertname": "OpsmonBackupStale", "severity": "warning", "team": "ops", "database": "demo", "tier": "daily",
         **EXPORTER},
        {"alertname": "OpsmonRestoreDrillStale", "severity": "warning", "team": "ops", "database": "demo",
         "location": "offsite", **EXPORTER},
        {"alertname": "OpsmonBackupThreeTwoOneUnsatisfied", "severity": "warning", "team": "ops", "database": "demo",
         **EXPORTER},
    ],
    "litestream-down": [
        {"alertname": "OpsmonLitestreamDown", "severity": "warning", "team": "ops", **BACKUP},
        {"alertname": "OpsmonPitrReplicationLagging", "severity": "warning", "team": "ops", "host": "demo",
         "database": "demo"},
        {"alertname": "OpsmonLitestreamNotSyncing", "severity": "warning", "team": "ops", "host": "demo",
         "database": "demo"},
    ],
}


def test_the_faults_carry_the_labels_of_the_shipped_rules():
    # The kit's rules and the demo's own (its pipeline's alerts, where the demo keeps them).
    shipped = {(rule["alert"], rule["labels"]["severity"], rule["labels"]["team"])
               for path in (*(REPO / "prometheus" / "rules").glob("*.rules.yml"), *(REPO / "demo").rglob("*.rules.yml"))
               for group in yaml.safe_load(path.read_text())["groups"] for rule in group["rules"] if "alert" in rule}
    for alerts in FAULTS.values():
        for alert in alerts:
            assert (alert["alertname"], alert["severity"], alert["team"]) in shipped, alert


def test_a_demo_outage_is_one_page(notifying_alertmanager):
    url, notifications = notifying_alertmanager
    sent = fault(url, notifications, "demo-outage", *FAULTS["demo-outage"])
    assert sent == [("pager-app", "firing", ["OpsmonProcessDown"])]


def test_a_stopped_backup_service_is_one_page(notifying_alertmanager):
    url, notifications = notifying_alertmanager
    sent = fault(url, notifications, "backup-stopped", *FAULTS["backup-stopped"])
    assert sent == [("pager-ops", "firing", ["OpsmonTargetDown"])]


def test_litestream_down_alone_is_one_email_that_holds_back_replication_lag(notifying_alertmanager):
    url, notifications = notifying_alertmanager
    sent = fault(url, notifications, "litestream-down", *FAULTS["litestream-down"])
    assert sent == [("email-ops", "firing", ["OpsmonLitestreamDown"])]


def test_a_stopped_backup_service_pages_for_its_host_while_another_host_s_stale_backup_still_mails(
        notifying_alertmanager):
    """The backup-stopped fault on host-a, and host-b's daily backup missing at the same time: host-a's
    TargetDown holds back host-a's alerts, not host-b's."""
    url, notifications = notifying_alertmanager
    stopped = [{**alert, "host": "host-a", "fault": "two-hosts"} for alert in FAULTS["backup-stopped"]]
    stale = {**next(a for a in stopped if a["alertname"] == "OpsmonBackupStale"), "host": "host-b"}
    post(url, stopped[0])
    post(url, *stopped[1:], stale)
    for effect in stopped[1:]:
        assert inhibited(url, **effect), effect
    assert not inhibited(url, **stale)
    wait_for(lambda: len(notifications.about("two-hosts")) == 2, what="a notification for each host")
    time.sleep(3)  # group_wait is 1s: any other group of this fault would have been sent by now
    assert sorted(notifications.about("two-hosts")) == [("email-ops", "firing", ["OpsmonBackupStale"]),
                                                      ("pager-ops", "firing", ["OpsmonTargetDown"])]
    assert sorted(notifications.about("two-hosts", "host")) == [("email-ops", "firing", ["host-b"]),
                                                              ("pager-ops", "firing", ["host-a"])]
    post(url, *stopped, stale, ends=datetime.now(timezone.utc) - timedelta(seconds=1))


def test_the_same_alert_on_two_hosts_is_two_notifications(notifying_alertmanager):
    """Replication lag carries no instance: only `host` in group_by keeps the hosts' notifications apart. Hosts
    of its own: a group that exists already waits group_interval (5m), not group_wait."""
    url, notifications = notifying_alertmanager
    lagging = [{"alertname": "OpsmonPitrReplicationLagging", "severity": "warning", "team": "ops", "host": host,
                "database": "demo", "fault": "same-alert"} for host in ("host-c", "host-d")]
    post(url, *lagging)
    wait_for(lambda: len(notifications.about("same-alert")) == 2, what="a notification for each host")
    time.sleep(3)
    assert sorted(notifications.about("same-alert", "host")) == [("email-ops", "firing", ["host-c"]),
                                                               ("email-ops", "firing", ["host-d"])]
    post(url, *lagging, ends=datetime.now(timezone.utc) - timedelta(seconds=1))


@pytest.fixture(scope="module")
def maintenance_alertmanager(tmp_path_factory):
    """The shipped config notifying here, with the maintenance window open at every hour of every day. The
    critical route waits a second longer than the others, so that its page comes after every warning's turn."""
    notifications = Notifications()
    config = notifying_config(notifications)
    config["time_intervals"] = [{"name": "maintenance", "time_intervals": [{"times": [{"start_time": "00:00",
                                                                                       "end_time": "24:00"}]}]}]
    next(r for r in config["route"]["routes"] if r["matchers"] == ['severity="critical"'])["group_wait"] = "2s"
    try:
        for url in run_alertmanager(tmp_path_factory.mktemp("alertmanager-maintenance"), config):
            yield url, notifications
    finally:
        notifications.close()


def test_the_maintenance_window_mutes_the_warnings_of_every_team_not_the_pages(maintenance_alertmanager):
    url, notifications = maintenance_alertmanager
    warnings = [{"alertname": "OpsmonSomething", "severity": "warning", "team": team, "host": "host-w",
                 "fault": "maintenance"} for team in ("ops", "app", "business")]
    post(url, *warnings)
    wait_for(lambda: len(requests.get(f"{url}/api/v2/alerts/groups", timeout=5).json()) >= 3,
             what="the warnings' groups")
    # Another alert: the critical twin of a warning would hold it back, and no mute would be needed to pass.
    post(url, {"alertname": "OpsmonSomethingElse", "severity": "critical", "team": "ops", "host": "host-w",
               "fault": "maintenance"})
    for warning in warnings:
        assert not inhibited(url, **warning), warning
    wait_for(lambda: notifications.about("maintenance"), what="the page")
    assert notifications.about("maintenance", "severity") == [("pager-ops", "firing", ["critical"])]
