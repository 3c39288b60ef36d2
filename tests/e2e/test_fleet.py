"""End to end, a fleet: three hosts (a demo app, an exporter and a backup service each, on their own
ports and databases) discovered from target files by the real Prometheus, which remote-writes
to a real VictoriaMetrics; the real Alertmanager with the shipped routing. Durations are scaled as
in test_e2e.py. A fault on one host must alert for that host only, and hold back nothing of the
others'.
"""

from __future__ import annotations

import math
import signal
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import free_port, wait_for
from bench.fleet import HOSTS, Fleet, prometheus_config, write_host_file
from tests.e2e.test_e2e import (EMPTY_WHEN_HEALTHY, EXPORTER_SCRAPE, SCRAPE, filled, panels, scaled_alertmanager,
                            write_scaled_rules)

pytestmark = pytest.mark.slow

LATE = "charlie"  # its target file is added while Prometheus runs


def set_for(path: Path, alertname: str, duration: str) -> None:
    rules = yaml.safe_load(path.read_text())
    next(rule for group in rules["groups"] for rule in group["rules"] if rule.get("alert") == alertname)["for"] = duration
    path.write_text(yaml.safe_dump(rules, sort_keys=False))


def every_host(fleet: Fleet) -> None:
    """All three hosts scraped (the late one added if a test runs without the first), whatever ran before."""
    if not (fleet.hosts_folder / f"{LATE}.yml").exists():
        write_host_file(fleet.hosts_folder, LATE, fleet.hosts[LATE])
    wait_for(lambda: fleet.hosts_of("up == 1") >= set(HOSTS), timeout=60, interval=1, what="every host up")


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    fleet = Fleet(tmp_path_factory.mktemp("fleet"))
    work, ports = fleet.work, fleet.ports
    rules = write_scaled_rules(work / "rules")
    # A one-exporter-scrape miss must not be a TargetDown: the scaled `for` (2 s) is shorter than a scrape.
    # The 3-2-1 alert, which every demo host fires, sooner than its scaled hour.
    set_for(rules / "meta.rules.yml", "OpsmonTargetDown", f"{3 * EXPORTER_SCRAPE}s")
    set_for(rules / "backups.rules.yml", "OpsmonBackupThreeTwoOneUnsatisfied", "5s")
    # As compose has it: Prometheus reads the targets folder through a link to the folder people edit.
    fleet.hosts_folder = work / "hosts"
    fleet.hosts_folder.mkdir()
    (work / "targets").symlink_to(fleet.hosts_folder)
    prometheus = prometheus_config(rules, work / "targets", ports, SCRAPE, EXPORTER_SCRAPE)
    prometheus["remote_write"] = [{"url": f"http://127.0.0.1:{ports['victoriametrics']}/api/v1/write",
                                   "queue_config": {"batch_send_deadline": "1s"}}]
    (work / "prometheus.yml").write_text(yaml.safe_dump(prometheus))
    (work / "alertmanager.yml").write_text(yaml.safe_dump(
        scaled_alertmanager(f"http://127.0.0.1:{free_port()}", ports["smtp"])))  # nobody listens: no one is paged
    for host in HOSTS:
        fleet.start_host(host)
        if host != LATE:
            write_host_file(fleet.hosts_folder, host, fleet.hosts[host])
    # VictoriaMetrics answers with samples as soon as they arrive (30 s later by default, for late scrapes).
    fleet.start_stores(victoriametrics_flags=("-search.latencyOffset=0s",))
    fleet.start("alertmanager", ["prometheus-alertmanager", f"--config.file={work / 'alertmanager.yml'}",
                                 f"--storage.path={work / 'alertmanager'}", "--cluster.listen-address=",
                                 f"--web.listen-address=127.0.0.1:{ports['alertmanager']}"])
    wait_for(lambda: fleet.hosts_of('up{job="opsmon-exporter"} == 1') == set(HOSTS) - {LATE}, timeout=60,
             interval=1, what="the first two hosts' exporters up")
    yield fleet
    fleet.stop_all()


def test_a_host_added_as_a_file_is_scraped_without_a_restart(fleet):
    started = fleet.query('process_start_time_seconds{job="prometheus"}')[0]["value"][1]
    assert LATE not in fleet.hosts_of("up")
    write_host_file(fleet.hosts_folder, LATE, fleet.hosts[LATE])
    # Seen through the file watch: the periodic reread is 5 minutes away.
    wait_for(lambda: len(fleet.query(f'up{{host="{LATE}"}} == 1')) == 3, timeout=60, interval=1,
             what=f"the three jobs of {LATE} up")
    assert fleet.query('process_start_time_seconds{job="prometheus"}')[0]["value"][1] == started
    # Every host's job carries the labels of its file, and its backups are seen (the catch-up at start).
    assert {(s["metric"]["host"], s["metric"]["env"], s["metric"]["role"]) for s in fleet.query("up{host!=''}")} \
        == {(host, "test", "app") for host in HOSTS}
    wait_for(lambda: fleet.hosts_of('opsmon_backup_last_success_timestamp_seconds{tier="daily"} > 0') == set(HOSTS),
             timeout=120, interval=1, what="every host's first backups")


def test_a_broken_target_file_keeps_its_hosts_and_is_an_alert(fleet):
    every_host(fleet)
    path = fleet.hosts_folder / f"{LATE}.yml"
    good = path.read_text()

    def failed_reads() -> float:
        return sum(float(s["value"][1]) for s in fleet.query("prometheus_sd_file_read_errors_total"))

    before = failed_reads()
    path.write_bytes(b"- targets: [\"127.0.0.1:\xff\n  labels: {job: \x00")
    # A second change once the first was read: the alert wants two failed reads.
    wait_for(lambda: failed_reads() > before, timeout=30, interval=0.5, what="the broken file read")
    path.write_bytes(b"- targets: [\"127.0.0.1:\xff\n  labels: {job: \x00\n")
    try:
        wait_for(lambda: fleet.query('ALERTS{alertname="OpsmonTargetFileUnreadable", alertstate="firing"}'),
                 timeout=60, interval=1, what="OpsmonTargetFileUnreadable")
        assert len(fleet.query(f'up{{host="{LATE}"}} == 1')) == 3  # its last good version is kept
    finally:
        path.write_text(good)


def test_the_long_term_store_answers_as_prometheus_does(fleet):
    """What Prometheus remote-writes, VictoriaMetrics gives back: raw counters and recorded SLO series,
    at one instant, per host. Prometheus's external labels are on the written samples only."""
    every_host(fleet)
    external = set(yaml.safe_load((fleet.work / "prometheus.yml").read_text())["global"]["external_labels"])

    def answers(expr: str, store: str, at: float) -> dict:
        return {tuple(sorted((k, v) for k, v in s["metric"].items() if k not in external)): float(s["value"][1])
                for s in fleet.query(expr, store, at)}

    exprs = ("app_requests_total", "job:app_requests:rate5m", "job:app_request_errors:ratio_rate5m")

    def an_instant_every_host_has() -> float | None:
        at = time.time() - 2
        hosts = [{dict(labels).get("host") for labels in answers(expr, "prometheus", at)} for expr in exprs]
        return at if all(found == set(HOSTS) for found in hosts) else None

    at = wait_for(an_instant_every_host_has, timeout=60, interval=1, what="the SLO series of every host")
    for expr in exprs:
        expected = answers(expr, "prometheus", at)

        def same() -> bool:
            got = answers(expr, "victoriametrics", at)
            return got.keys() == expected.keys() and all(math.isclose(got[k], v, rel_tol=1e-12)
                                                         for k, v in expected.items())

        wait_for(same, timeout=30, interval=1, what=lambda: f"{expr} in VictoriaMetrics as in Prometheus at {at}: "
                 f"{answers(expr, 'victoriametrics', at)} != {expected}")


def shows(fleet: Fleet, expr: str, host: str) -> bool:
    """Whether a panel's expression, for one host, gives a number (not NaN) and nothing of another host."""
    answer = fleet.query(filled(expr.replace("$host", host)))
    return any(not math.isnan(float(s["value"][1])) for s in answer) and \
        all(s["metric"].get("host", host) == host for s in answer)


def test_every_dashboard_expression_returns_data_for_every_host(fleet):
    every_host(fleet)
    # Expressions with a fallback (`or vector(0)`: "none down") always answer; they prove nothing here.
    per_host = [(board, title, expr) for board, title, expr in panels()
                if "$host" in expr and "or vector(" not in expr and (board, title) not in EMPTY_WHEN_HEALTHY]
    assert len({board for board, _, _ in per_host}) >= 7, "boards without a host variable in their queries"
    missing: set = set()

    def all_shown() -> bool:
        missing.clear()
        missing.update((board, title, host) for board, title, expr in per_host for host in HOSTS
                       if not shows(fleet, expr, host))
        return not missing

    wait_for(all_shown, timeout=90, interval=2, what=lambda: f"data in {sorted(missing)}")


def test_stopped_backups_of_one_host_alert_for_that_host_only(fleet):
    # Backups stop on alpha and go on elsewhere. The daily threshold (26 h) becomes 30 s: alpha's
    # newest daily backup is made older than that, the others' are new.
    every_host(fleet)
    threshold = 30
    newest = float(fleet.query('opsmon_backup_last_success_timestamp_seconds{host="alpha", tier="daily"}')[0]
                   ["value"][1])
    time.sleep(max(0.0, newest + threshold + 3 - time.time()))
    made = time.time()
    for host in set(HOSTS) - {"alpha"}:
        assert fleet.backup_cli(host, "create", "--tier", "daily").returncode == 0
    wait_for(lambda: fleet.hosts_of(f'opsmon_backup_last_success_timestamp_seconds{{tier="daily"}} > {made}')
             == set(HOSTS) - {"alpha"}, timeout=30, interval=1, what="the new backups seen by Prometheus")
    path = fleet.work / "rules/backups.rules.yml"
    original = path.read_text()
    assert "26 * 3600" in original
    path.write_text(original.replace("26 * 3600", str(threshold)))
    fleet.processes["prometheus"].send_signal(signal.SIGHUP)
    try:
        stale = 'ALERTS{alertname="OpsmonBackupStale", alertstate="firing"}'
        wait_for(lambda: "alpha" in fleet.hosts_of(stale), timeout=60, interval=1, what="OpsmonBackupStale for alpha")
        assert fleet.hosts_of(stale) == {"alpha"}
        assert fleet.hosts_of('ALERTS{alertname="OpsmonBackupStale"}') == {"alpha"}  # the others not even pending
        assert {a["labels"]["host"] for a in fleet.alertmanager_alerts("OpsmonBackupStale")} <= {"alpha"}
    finally:
        path.write_text(original)
        fleet.processes["prometheus"].send_signal(signal.SIGHUP)


def test_one_hosts_exporter_killed_is_one_target_down_for_that_host(fleet):
    every_host(fleet)
    # In the demo every host misses 3-2-1 (no bucket): an alert of each host's exporter, firing.
    wait_for(lambda: {a["labels"]["host"] for a in fleet.alertmanager_alerts("OpsmonBackupThreeTwoOneUnsatisfied")}
             == set(HOSTS), timeout=60, interval=1, what="the 3-2-1 alert of every host")
    process = fleet.processes.pop("bravo-exporter")
    process.kill()
    process.wait()
    wait_for(lambda: fleet.alertmanager_alerts("OpsmonTargetDown"), timeout=60, interval=1,
             what="OpsmonTargetDown in Alertmanager")
    # The other hosts scraped well since: no TargetDown of theirs is pending, none can come from before.
    seen = time.time()
    wait_for(lambda: fleet.hosts_of(f'timestamp(up{{job="opsmon-exporter"}} == 1) > {seen}') == set(HOSTS) - {"bravo"},
             timeout=30, interval=1, what="the other hosts' exporters scraped after the fault")
    assert fleet.hosts_of('ALERTS{alertname="OpsmonTargetDown"}') == {"bravo"}
    down = fleet.alertmanager_alerts("OpsmonTargetDown")
    assert [(a["labels"]["host"], a["labels"]["job"]) for a in down] == [("bravo", "opsmon-exporter")]
    # The other hosts' alerts are not held back by bravo's: inhibition is per host.
    for alert in fleet.alertmanager_alerts():
        if alert["labels"].get("host") in ("alpha", "charlie"):
            assert alert["status"]["state"] == "active", alert
