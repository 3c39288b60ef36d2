"""End to end: the whole stack on loopback, faults injected, and what reaches a person asserted.

The real binaries run with the shipped rule and routing files. The overlay only shortens time:
scrape and evaluation every second, each rule's `for` and `keep_firing_for` divided by 60 (minutes
become seconds), and the external-service alerts' windows alike, Alertmanager's waits and repeats
divided by 1800 (4 h becomes 8 s); no threshold changes.
Each scenario prints the time from the fault to the notification and the bound it expects.
"""

from __future__ import annotations

import json
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from contextlib import closing
from pathlib import Path

import pytest
import requests
import yaml

from tests.conftest import REPO, free_port, stop, wait_for
from bench.fleet import prometheus_config, write_host_config, write_host_file
from bench.harness import LoopbackServer, QuietHandler

pytestmark = pytest.mark.slow

FOR_SCALE = 60
AM_SCALE = 1800
# Every target is scraped each second but the exporter, every 3: its probes need room to time
# a slow service (1.5 s) inside the scrape timeout.
SCRAPE, EXPORTER_SCRAPE, EVALUATION, GROUP_WAIT = 1, 3, 1, 1
TIMINGS: list[tuple[str, float, float]] = []


def seconds(duration: str) -> float:
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    return sum(float(n) * units[u] for n, u in re.findall(r"(\d+)([smhd])", duration))


def scaled(duration: str, factor: float) -> str:
    return f"{max(1, round(seconds(duration) / factor))}s"


def scaled_window(duration: str) -> str:
    """A range scaled like `for`, but holding at least two of the exporter's samples."""
    return f"{max(2 * EXPORTER_SCRAPE, round(seconds(duration) / FOR_SCALE))}s"


def rule_files() -> list[Path]:
    """The kit's rules and the demo's own, as `make run` renders them for the demo's config."""
    return [*(REPO / "prometheus/rules").glob("*.rules.yml"), *(REPO / "demo/rules").glob("*.rules.yml")]


def rule_for(alertname: str) -> float:
    for path in rule_files():
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                if rule.get("alert") == alertname:
                    return seconds(scaled(rule.get("for", "0s"), FOR_SCALE))
    raise KeyError(alertname)


def bound(alertname: str) -> float:
    """Scrape + evaluation + the (scaled) `for` + group_wait, and a second of slack each."""
    return EXPORTER_SCRAPE + EVALUATION + rule_for(alertname) + GROUP_WAIT + 4


class Stack:
    def __init__(self, work: Path):
        self.work = work
        self.ports = {name: free_port() for name in ("demo", "pager", "exporter", "backup", "litestream",
                                                    "prometheus", "alertmanager", "smtp", "mail")}
        self.processes: dict[str, subprocess.Popen] = {}
        self.config = work / "opsmon.yml"
        self.started = time.monotonic()

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"

    def start(self, name: str, args: list[str]) -> None:
        log = open(self.work / f"{name}.log", "ab")
        # From the repository: a folder named like a package in the working directory would shadow it.
        self.processes[name] = subprocess.Popen(args, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)

    def stop(self, name: str, kill: bool = False) -> None:
        process = self.processes.pop(name)
        if kill:
            process.kill()
            process.wait()
        else:
            stop(process)

    def stop_all(self) -> None:
        for name in list(self.processes):
            self.stop(name)

    def python(self, name: str, *args: str) -> None:
        self.start(name, [sys.executable, *args])

    def start_mail(self) -> None:
        """The SMTP sink Alertmanager mails to; its messages are read over HTTP."""
        maildump = Path(sys.executable).parent / "maildump"
        self.start("mail", [str(maildump), "--smtp-port", str(self.ports["smtp"]), "--http-port",
                            str(self.ports["mail"]), "-f"])

    def start_pager(self) -> None:
        """The stand-in pager Alertmanager's webhooks post to."""
        self.python("pager", "-m", "demo.pager", "--listen", f"127.0.0.1:{self.ports['pager']}")

    def start_demo(self, rate: float) -> None:
        """The demo app on a fresh database, queueing `rate` videos a second, its log in work/logs; returns
        once it answers."""
        work = self.work
        (work / "logs").mkdir()
        self.python("demo", "-m", "demo", "serve", "--db", str(work / "demo.db"), "--listen",
                    f"127.0.0.1:{self.ports['demo']}", "--metrics-dir", str(work / "app-metrics"), "--log-file",
                    str(work / "logs/demo.jsonl"), "--pidfile", str(work / "demo.pid"), "--rate", str(rate))
        wait_for(lambda: requests.get(f"{self.url('demo')}/health", timeout=1).ok, what="the demo app")

    def start_alerting(self) -> None:
        """Prometheus and Alertmanager on the work folder's prometheus.yml and alertmanager.yml."""
        work, ports = self.work, self.ports
        self.start("prometheus", ["prometheus", f"--config.file={work / 'prometheus.yml'}",
                                  f"--storage.tsdb.path={work / 'prometheus'}",
                                  f"--web.listen-address=127.0.0.1:{ports['prometheus']}"])
        self.start("alertmanager", ["prometheus-alertmanager", f"--config.file={work / 'alertmanager.yml'}",
                                    f"--storage.path={work / 'alertmanager'}", "--cluster.listen-address=",
                                    f"--web.listen-address=127.0.0.1:{ports['alertmanager']}"])

    def backup_cli(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "backup_jobs", "--config.file", str(self.config), *args],
                              capture_output=True, text=True, timeout=120)

    def faults(self, **settings) -> None:
        requests.post(f"{self.url('demo')}/admin/faults", json=settings, timeout=5).raise_for_status()

    def query(self, expr: str) -> list:
        answer = requests.get(f"{self.url('prometheus')}/api/v1/query", params={"query": expr}, timeout=10).json()
        assert answer["status"] == "success", answer
        return answer["data"]["result"]

    def emails(self) -> list[dict]:
        return requests.get(f"{self.url('mail')}/messages/", timeout=5).json()["messages"]

    def webhooks(self, name: str) -> list[dict]:
        return requests.get(f"{self.url('pager')}/webhook/{name}", timeout=5).json()["last"]

    def am_alert(self, alertname: str) -> dict | None:
        for alert in requests.get(f"{self.url('alertmanager')}/api/v2/alerts", timeout=5).json():
            if alert["labels"]["alertname"] == alertname:
                return alert
        return None


def write_configs(stack: Stack) -> None:
    work, ports = stack.work, stack.ports
    write_host_config(stack.config, ports)
    rules = write_scaled_rules(work / "rules")
    write_host_file(work / "targets", "demo", ports)
    prometheus = prometheus_config(rules, work / "targets", ports, SCRAPE, EXPORTER_SCRAPE)
    (work / "prometheus.yml").write_text(yaml.safe_dump(prometheus))
    (work / "alertmanager.yml").write_text(yaml.safe_dump(scaled_alertmanager(stack.url("pager"), ports["smtp"])))


def write_scaled_rules(rules: Path) -> Path:
    """The shipped rules with every `for` and `keep_firing_for` (and the external checks' windows)
    divided by FOR_SCALE, in the folder `rules`."""
    rules.mkdir()
    for path in rule_files():
        document = yaml.safe_load(path.read_text())
        for group in document["groups"]:
            if "interval" in group:  # the long-window groups, evaluated once a minute
                group["interval"] = scaled(group["interval"], FOR_SCALE)
            for rule in group["rules"]:
                for key in ("for", "keep_firing_for"):
                    if key in rule:
                        rule[key] = scaled(rule[key], FOR_SCALE)
                if path.name == "external.rules.yml":  # their windows too: a share of checks over 5 minutes
                    rule["expr"] = re.sub(r"\[(\d+[smh])\]", lambda m: f"[{scaled_window(m.group(1))}]", rule["expr"])
        (rules / path.name).write_text(yaml.safe_dump(document, sort_keys=False))
    return rules


def scaled_alertmanager(pager: str, smtp_port: int) -> dict:
    """The shipped alertmanager.yml with its waits and repeats divided by AM_SCALE, mail to the SMTP
    sink on `smtp_port` and webhooks to the pager at `pager`."""
    alertmanager = yaml.safe_load((REPO / "alertmanager/alertmanager.yml").read_text())
    alertmanager["global"]["smtp_smarthost"] = f"127.0.0.1:{smtp_port}"
    alertmanager["templates"] = [str(REPO / "alertmanager/templates/*.tmpl")]
    routes = [alertmanager["route"], *alertmanager["route"]["routes"]]
    routes += [child for route in alertmanager["route"]["routes"] for child in route.get("routes", [])]
    for route in routes:
        for key in ("group_wait", "group_interval", "repeat_interval"):
            if key in route:
                route[key] = scaled(route[key], AM_SCALE)
    for receiver in alertmanager["receivers"]:
        for hook in receiver.get("webhook_configs", []):
            hook["url"] = hook["url"].replace("http://pager:8081", pager)
    return alertmanager


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    stack = Stack(tmp_path_factory.mktemp("e2e"))
    write_configs(stack)
    stack.start_mail()
    stack.start_pager()
    stack.start_demo(rate=20)
    wait_for(lambda: requests.get(f"{stack.url('pager')}/webhook/pager", timeout=1).ok, what="the pager")
    stack.python("backup", "-m", "backup_jobs", "--config.file", str(stack.config), "serve")
    stack.python("exporter", "-m", "exporter", "--config.file", str(stack.config))
    stack.start_alerting()
    wait_for(lambda: requests.get(f"{stack.url('mail')}/messages/", timeout=1).ok, what="the SMTP sink")
    # The backup service catches up at start: a backup of every tier, verify, drill, check.
    wait_for(lambda: len(stack.query('opsmon_backup_last_success_timestamp_seconds > 0')) == 3, timeout=90,
             interval=1, what="the first backups, seen by Prometheus")
    wait_for(lambda: all(t["health"] == "up" for t in requests.get(
        f"{stack.url('prometheus')}/api/v1/targets", timeout=5).json()["data"]["activeTargets"]),
        timeout=60, what="every target up")
    yield stack
    stack.stop_all()
    print("\nfault to notification (scaled stack):")
    for scenario, took, expected in TIMINGS:
        print(f"  {scenario:58} {took:6.1f} s  (bound {expected:.0f} s)")


def notified(stack: Stack, alertname: str, since: int, to: str) -> dict | None:
    """The first new email about `alertname` to `to`, with its body."""
    for message in stack.emails():
        if message["id"] > since and alertname in message["subject"] and to in message["recipients"]["to"]:
            return message
    return None


def paged(stack: Stack, alertname: str, since: int) -> list[dict]:
    return [post for post in stack.webhooks("pager")[since:] if post["status"] == "firing"
            and any(a["labels"]["alertname"] == alertname for a in post["alerts"])]


def expect(stack: Stack, scenario: str, alertname: str, to: str, pager: bool, fault_at: float,
           expected: float | None = None) -> dict:
    expected = expected or bound(alertname)
    last_mail = max((m["id"] for m in stack.emails()), default=0)
    pages = len(stack.webhooks("pager"))
    limit = expected + 120
    message = wait_for(lambda: notified(stack, alertname, last_mail, to), timeout=limit, interval=0.5,
                       what=f"an email about {alertname} to {to}")
    took = time.monotonic() - fault_at
    if pager:
        wait_for(lambda: paged(stack, alertname, pages), timeout=30, interval=0.5, what=f"a page for {alertname}")
    TIMINGS.append((scenario, took, expected))
    body = requests.get(f"{stack.url('mail')}/messages/{message['id']}.plain", timeout=5).text
    assert "Runbook: https://github.com/opsmon/opsmon/blob/main/docs/runbooks.md#" + alertname.lower() in body
    return message


def test_1_exporter_killed_pages_target_down_and_holds_back_its_other_alerts(stack):
    stack.stop("exporter", kill=True)
    fault = time.monotonic()
    try:
        message = expect(stack, "1 exporter killed: OpsmonTargetDown", "OpsmonTargetDown", "ops@localhost",
                         pager=True, fault_at=fault)
        assert message["subject"].startswith("[FIRING")
        # With the exporter gone, its backup metrics vanish too: that alert must be held back.
        absent = wait_for(lambda: stack.am_alert("OpsmonBackupMetricsAbsent"), timeout=bound(
            "OpsmonBackupMetricsAbsent") + 30, interval=0.5, what="OpsmonBackupMetricsAbsent in Alertmanager")
        assert absent["status"]["inhibitedBy"]
        assert not any("OpsmonBackupMetricsAbsent" in m["subject"] for m in stack.emails())
    finally:
        stack.python("exporter", "-m", "exporter", "--config.file", str(stack.config))
        wait_for(lambda: stack.query('up{job="opsmon-exporter"} == 1'), timeout=30, what="the exporter back")


def test_2_error_rate_of_twenty_percent_pages_and_half_a_percent_does_not(stack):
    stack.faults(error_rate=0.005)
    quiet_until = time.monotonic() + 20
    wait_for(lambda: time.monotonic() > quiet_until, timeout=30, interval=1, what="20 s at 0.5 % errors")
    assert not stack.query('ALERTS{alertname="OpsmonErrorBudgetBurnFast"}')
    stack.faults(error_rate=0.2)
    fault = time.monotonic()
    # The 6x pair needs the error ratio over its 30-minute and 6-hour windows (all the data there
    # is, here) above 6 %: at 20 % errors that takes 0.43 times the error-free time before.
    windows = 0.43 * (fault - stack.started)
    try:
        expect(stack, "2 error rate 20 %: OpsmonErrorBudgetBurnFast", "OpsmonErrorBudgetBurnFast",
               "app-team@localhost", pager=True, fault_at=fault, expected=bound("OpsmonErrorBudgetBurnFast") + windows)
    finally:
        stack.faults(error_rate=0.0)


def test_3_and_7_external_api_down_pages_once_per_repeat_and_its_slow_alert_is_held(stack):
    stack.faults(external_available=False, external_latency_seconds=1.5)  # down, and slow to say so
    fault = time.monotonic()
    pages = len(stack.webhooks("pager"))
    try:
        expect(stack, "3 external API down: OpsmonExternalServiceDown", "OpsmonExternalServiceDown",
               "app-team@localhost", pager=True, fault_at=fault)
        slow = wait_for(lambda: stack.am_alert("OpsmonExternalServiceSlow"), timeout=bound(
            "OpsmonExternalServiceSlow") + 30, interval=0.5, what="OpsmonExternalServiceSlow in Alertmanager")
        assert slow["status"]["inhibitedBy"]
        # 7: the problem goes on; the page repeats every (scaled) repeat_interval, not every evaluation.
        repeat = seconds(scaled("2h", AM_SCALE))
        wait_for(lambda: len(paged(stack, "OpsmonExternalServiceDown", pages)) >= 3, timeout=6 * repeat + 30,
                 interval=0.5, what="two repeats of the page")
        assert not any("OpsmonExternalServiceSlow" in m["subject"] for m in stack.emails())
    finally:
        stack.faults(external_available=True, external_latency_seconds=0.01)
    posts = paged(stack, "OpsmonExternalServiceDown", pages)
    starts = {a["startsAt"] for post in posts for a in post["alerts"]}
    assert len(starts) == 1, "one alert, repeated; not a new alert at each evaluation"
    # Counted from the fault, as the pages are: the first, then one per repeat interval at most.
    assert len(posts) <= (time.monotonic() - fault) / repeat + 2, "pages came faster than the repeat interval"


def test_4_a_corrupted_backup_fails_verification_and_the_drill_uses_the_newest_good_one(stack):
    backups = json.loads(stack.backup_cli("list", "--json").stdout)
    newest = max(backups, key=lambda b: b["created_at"])
    data = bytearray(Path(newest["path"]).read_bytes())
    data[len(data) // 2] ^= 0xFF
    Path(newest["path"]).write_bytes(bytes(data))
    fault = time.monotonic()
    assert stack.backup_cli("verify", "--all").returncode == 3
    expect(stack, "4 backup corrupted: OpsmonBackupVerificationFailing", "OpsmonBackupVerificationFailing",
           "ops@localhost", pager=True, fault_at=fault)
    drill = stack.backup_cli("drill")
    assert drill.returncode == 0, drill.stderr
    good = [b for b in backups if b["id"] != newest["id"]]
    assert f"local: restored backup {max(good, key=lambda b: b['created_at'])['id']} and proved it" in drill.stdout


def test_5_when_backups_stop_the_stale_alert_fires_for_the_tier_past_its_threshold(stack):
    # Fresh backups of every tier, then no more: the service runs on (its next scheduled runs are
    # hours away). Stopping it instead would be one page for the stopped service, the stale alert
    # rightly held back by inhibition.
    for tier in ("daily", "weekly", "monthly"):
        assert stack.backup_cli("create", "--tier", tier).returncode == 0
    # The one overlay that touches an expression, as this scenario allows: OpsmonBackupStale's
    # thresholds divided by 3600 (daily 26 h -> 26 s, weekly 8 d -> 192 s, monthly 32 d -> 768 s).
    path = stack.work / "rules" / "backups.rules.yml"
    original = path.read_text()
    document = yaml.safe_load(original)
    stale = next(rule for group in document["groups"] for rule in group["rules"]
                 if rule.get("alert") == "OpsmonBackupStale")
    stale["expr"] = stale["expr"].replace("26 * 3600", "26").replace("8 * 86400", "8 * 24").replace(
        "32 * 86400", "32 * 24")
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    stack.processes["prometheus"].send_signal(signal.SIGHUP)
    fault = time.monotonic()
    try:
        # A daily backup 26 (scaled) hours late is an e-mail for the morning; only two missed runs page.
        message = expect(stack, "5 backups stopped: OpsmonBackupStale (daily, 26 s)", "OpsmonBackupStale",
                         "ops@localhost", pager=False, fault_at=fault, expected=26 + bound("OpsmonBackupStale"))
        firing = {a["metric"]["tier"] for a in stack.query('ALERTS{alertname="OpsmonBackupStale"}')}
        assert "daily" in firing and "monthly" not in firing
        assert "OpsmonBackupStale" in message["subject"]
    finally:
        path.write_text(original)  # the real thresholds again, for the scenarios after this one
        stack.processes["prometheus"].send_signal(signal.SIGHUP)


def test_6_a_foreign_key_violation_reaches_a_person(stack):
    with closing(sqlite3.connect(stack.work / "demo.db", timeout=30)) as connection:
        connection.execute("INSERT INTO approvals (video_id, approved_at) VALUES (987654321, 0)")
        connection.commit()
    fault = time.monotonic()
    assert stack.backup_cli("check").returncode == 3
    expect(stack, "6 foreign key violation: OpsmonForeignKeyViolations", "OpsmonForeignKeyViolations",
           "ops@localhost", pager=False, fault_at=fault)


def test_11_a_new_kind_of_error_sends_the_new_pattern_alert_naming_it(stack):
    """The demo's storage_full fault logs an error of a kind never logged before."""
    since = max((m["id"] for m in stack.emails()), default=0)
    stack.faults(storage_full=True)
    fault = time.monotonic()

    def naming_the_new_kind():
        for message in stack.emails():
            if message["id"] > since and "OpsmonLogPatternNew" in message["subject"]:
                body = requests.get(f"{stack.url('mail')}/messages/{message['id']}.plain", timeout=5).text
                if "no space left on device" in body:
                    return body
        return None

    try:
        body = wait_for(naming_the_new_kind, timeout=bound("OpsmonLogPatternNew") + 60, interval=0.5,
                        what="an email about the new kind of error, with its template")
        TIMINGS.append(("11 a new kind of error: OpsmonLogPatternNew names it", time.monotonic() - fault,
                        bound("OpsmonLogPatternNew")))
        assert "app-team@localhost" in str([m["recipients"] for m in stack.emails() if m["id"] > since])
        assert "Runbook: https://github.com/opsmon/opsmon/blob/main/docs/runbooks.md#opsmonlogpatternnew" in body
        assert stack.query('opsmon_log_pattern_info{template=~".*no space left on device.*"}')
    finally:
        stack.faults(storage_full=False)


def panels():
    # The kit's boards and the demo's, which `make run` provisions for the demo's config.
    for path in sorted([*(REPO / "grafana/dashboards").glob("*.json"), *(REPO / "demo/dashboards").glob("*.json")]):
        for panel in json.loads(path.read_text())["panels"]:
            for target in panel["targets"]:
                yield path.stem, panel["title"], target["expr"]


# Panels with no data on a healthy machine without a GPU, the week-ago comparison, and the last
# restore (there is none before scenario 10).
# The error-pattern panels fill once the app has logged an error (scenario 2 does; a healthy app may not).
EMPTY_WHEN_HEALTHY = {("system", "GPU utilisation"), ("system", "GPU memory used"), ("system", "GPU temperature"),
                      ("system", "GPU power"), ("demo-video", "Processed per day"), ("backups", "Last restore"),
                      ("logs", "Error patterns"), ("logs", "Newest error pattern")}


def filled(expr: str) -> str:
    """A panel's expression as Grafana sends it with every variable at All."""
    return re.sub(r'=~"\$\w+"', '=~".*"', expr).replace("$__rate_interval", "1m")


def test_9_every_grafana_panel_shows_data(stack):
    missing: set = set()

    def all_shown() -> bool:
        empty = {(dashboard, title) for dashboard, title, expr in panels() if not stack.query(filled(expr))}
        missing.clear()
        missing.update(empty - EMPTY_WHEN_HEALTHY)
        return not missing

    # Once the demo has run a while: rates need a few scrapes, day ratios a few business refreshes.
    wait_for(all_shown, timeout=120, interval=2, what=lambda: f"data in {sorted(missing)}")


def test_10_a_restore_while_the_app_writes(stack):
    """The app keeps answering, its processes survive, and its work goes on after the restore.

    Work in flight on rows the restore takes away may fail (a job on a video that is gone):
    an error the app survives, as a person restoring a live database would expect.
    """
    daily = next(b for b in json.loads(stack.backup_cli("list", "--json").stdout) if b["tier"] == "daily")
    restored_before = stack.query("max(opsmon_restore_last_success_timestamp_seconds)")
    done = {}
    thread = threading.Thread(target=lambda: done.setdefault("result", stack.backup_cli("restore", daily["id"])))
    thread.start()
    answers = []
    while thread.is_alive():
        answers.append(requests.get(f"{stack.url('demo')}/stats", timeout=30).status_code)
    thread.join()
    assert done["result"].returncode == 0, done["result"].stderr
    assert "restored backup" in done["result"].stdout and "safety backup" in done["result"].stdout
    assert answers and set(answers) == {200}
    assert stack.processes["demo"].poll() is None
    processed = float(stack.query('sum(app_requests_total{handler="process_video"})')[0]["value"][1])
    wait_for(lambda: float(stack.query('sum(app_requests_total{handler="process_video"})')[0]["value"][1])
             > processed + 10, timeout=30, what="the pipeline to go on after the restore")
    assert not stack.query('ALERTS{alertname="OpsmonProcessDown"}')
    # The metrics show the restore: its time, published by the exporter from the backup catalog.
    started = restored_before[0]["value"][1] if restored_before else "0"
    wait_for(lambda: stack.query(f"max(opsmon_restore_last_success_timestamp_seconds) > {started}"), timeout=30,
             what="the restore in the metrics")


class Receiver(LoopbackServer):
    """A webhook receiver and a scrape target on loopback: keeps POSTs, answers GET /metrics."""

    def __init__(self):
        posts = self.posts = []

        class Handler(QuietHandler):
            def do_GET(self):
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.end_headers()

            def do_POST(self):
                posts.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(200)
                self.end_headers()

        super().__init__(Handler)

    def firing(self, alertname: str) -> list[dict]:
        return [a for post in self.posts if post["status"] == "firing" for a in post["alerts"]
                if a["labels"]["alertname"] == alertname]


def test_8_two_alertmanagers_in_a_cluster_notify_once_and_survive_one_loss(tmp_path):
    receiver, target = Receiver(), Receiver()
    ports = {name: free_port() for name in ("am1", "am2", "gossip1", "gossip2", "prometheus")}
    config = yaml.safe_load((REPO / "alertmanager/alertmanager.yml").read_text())
    config["global"]["smtp_smarthost"] = f"127.0.0.1:{free_port()}"  # mail is not what this scenario checks
    config["templates"] = [str(REPO / "alertmanager/templates/*.tmpl")]
    config["route"]["group_wait"] = "1s"
    for receiver_config in config["receivers"]:
        for hook in receiver_config.get("webhook_configs", []):
            hook["url"] = f"http://127.0.0.1:{receiver.port}/"
    (tmp_path / "alertmanager.yml").write_text(yaml.safe_dump(config))
    rules = yaml.safe_load((REPO / "prometheus/rules/meta.rules.yml").read_text())
    for rule in rules["groups"][0]["rules"]:
        rule["for"] = scaled(rule["for"], FOR_SCALE)
    (tmp_path / "meta.rules.yml").write_text(yaml.safe_dump(rules))
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump({
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s", "scrape_timeout": "1s"},
        "rule_files": [str(tmp_path / "meta.rules.yml")],
        "alerting": {"alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{ports['am1']}",
                                                                        f"127.0.0.1:{ports['am2']}"]}]}]},
        "scrape_configs": [{"job_name": "gone", "static_configs": [{"targets": [f"127.0.0.1:{free_port()}"]}]},
                           {"job_name": "later", "static_configs": [{"targets": [f"127.0.0.1:{target.port}"]}]}]}))
    processes = {}
    for n in (1, 2):
        peer = [f"--cluster.peer=127.0.0.1:{ports['gossip1']}"] if n == 2 else []
        processes[f"am{n}"] = subprocess.Popen(
            ["prometheus-alertmanager", f"--config.file={tmp_path / 'alertmanager.yml'}",
             f"--storage.path={tmp_path / f'am{n}'}", f"--web.listen-address=127.0.0.1:{ports[f'am{n}']}",
             f"--cluster.listen-address=127.0.0.1:{ports[f'gossip{n}']}", "--cluster.settle-timeout=2s", *peer],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        def settled(port: int) -> bool:
            cluster = requests.get(f"http://127.0.0.1:{port}/api/v2/status", timeout=1).json()["cluster"]
            return cluster["status"] == "ready" and len(cluster["peers"]) == 2

        # Both must know each other before the first alert, or each would think itself alone and send.
        wait_for(lambda: settled(ports["am1"]) and settled(ports["am2"]), timeout=60,
                 what="the two Alertmanagers to meet")
        processes["prometheus"] = subprocess.Popen(
            ["prometheus", f"--config.file={tmp_path / 'prometheus.yml'}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{ports['prometheus']}"], stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)
        fault = time.monotonic()
        wait_for(lambda: any(a["labels"]["job"] == "gone" for a in receiver.firing("OpsmonTargetDown")),
                 timeout=60, interval=0.2, what="the page for the target that is gone")
        TIMINGS.append(("8 cluster of two: OpsmonTargetDown, once", time.monotonic() - fault,
                        bound("OpsmonTargetDown")))
        settle = time.monotonic() + 8  # several group intervals: a duplicate would have come by now
        wait_for(lambda: time.monotonic() > settle, timeout=15, interval=0.5, what="the cluster to settle")
        assert len([a for a in receiver.firing("OpsmonTargetDown") if a["labels"]["job"] == "gone"]) == 1

        processes.pop("am1").kill()
        target.close()  # a new problem while one Alertmanager is gone
        fault = time.monotonic()
        wait_for(lambda: any(a["labels"]["job"] == "later" for a in receiver.firing("OpsmonTargetDown")),
                 timeout=60, interval=0.2, what="the page through the remaining Alertmanager")
        # The survivor waits its turn in the cluster (peer timeout, 15 s by default) for the dead peer.
        TIMINGS.append(("8 one Alertmanager killed: OpsmonTargetDown still", time.monotonic() - fault,
                        bound("OpsmonTargetDown") + 15))
        assert len([a for a in receiver.firing("OpsmonTargetDown") if a["labels"]["job"] == "later"]) == 1
    finally:
        for process in processes.values():
            stop(process)
        receiver.close()
