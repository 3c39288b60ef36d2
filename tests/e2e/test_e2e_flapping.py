"""End to end: a fault that comes and goes is one notification and one resolution per alert.

The real binaries on loopback with the shipped rules and routing, every duration divided by one
scale (SCALE): `for`, `keep_firing_for`, the windows and offsets inside expressions, group intervals,
and Alertmanager's waits and repeats. With the same scale for all of them the scaled stack behaves
as the real one does, only faster; thresholds and expressions are left as they are.

The external API the demo's pipeline calls goes down and up every (scaled) two minutes for
(scaled) twenty minutes. It must page once (the share of failed checks is what counts, not the
last one) and resolve once when it is over (keep_firing_for holds it through the swings), and no
alert of the whole stack may notify twice about the same thing meanwhile.

An exporter whose scrapes fail one in five while its disk is full (the scrape interval and the
evaluation interval scaled too, as the ratio of a failed scrape to `for` is what matters): the
disk pages once, the failing scrapes are an e-mail, and the target is never called down.
"""

from __future__ import annotations

import re
import time
from collections import Counter

import pytest
import requests
import yaml

from tests.conftest import REPO, wait_for
from bench.fleet import prometheus_config, write_host_file
from bench.harness import LoopbackServer, QuietHandler
from tests.e2e.test_e2e import Receiver, Stack

pytestmark = pytest.mark.slow

SCALE = 30  # 1 scaled minute = 2 s; the flapping scenario takes 40 s
SCRAPE, EXPORTER_SCRAPE = 1, 2
WINDOW_FLOOR = 3 * EXPORTER_SCRAPE  # a window needs a few of the exporter's samples
UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}


def seconds(duration: str) -> float:
    return sum(float(n) * UNITS[u] for n, u in re.findall(r"(\d+)(ms|[smhdwy])", duration))


def shrink(duration: str, floor: float = 1) -> str:
    return f"{int(max(floor, seconds(duration) / SCALE) * 1000)}ms"


def shrink_expr(expr: str) -> str:
    expr = re.sub(r"\[(\d+[smhdwy])\]", lambda m: f"[{shrink(m.group(1), WINDOW_FLOOR)}]", expr)
    return re.sub(r"offset (\d+[smhdwy])", lambda m: f"offset {shrink(m.group(1), WINDOW_FLOOR)}", expr)


def write_configs(stack: Stack) -> None:
    work, ports = stack.work, stack.ports
    text = (REPO / "opsmon.yml").read_text().replace(".run/", f"{work}/").replace(":8080/", f":{ports['demo']}/")
    document = yaml.safe_load(text)
    document["exporter"]["listen_address"] = f"127.0.0.1:{ports['exporter']}"
    for query in document["business"]:
        query["refresh_seconds"] = 1
    stack.config.write_text(yaml.safe_dump(document))

    (work / "rules").mkdir()
    for path in (REPO / "prometheus" / "rules").glob("*.rules.yml"):
        rules = yaml.safe_load(path.read_text())
        for group in rules["groups"]:
            if "interval" in group:
                group["interval"] = shrink(group["interval"])
            for rule in group["rules"]:
                rule["expr"] = shrink_expr(rule["expr"])
                for key in ("for", "keep_firing_for"):
                    if key in rule:
                        rule[key] = shrink(rule[key])
        (work / "rules" / path.name).write_text(yaml.safe_dump(rules, sort_keys=False))

    # The backup service is not part of this scenario: its jobs are not scraped.
    write_host_file(work / "targets", "demo", {"exporter": ports["exporter"]})
    prometheus = prometheus_config(work / "rules", work / "targets", ports, SCRAPE, EXPORTER_SCRAPE,
                                   jobs={"opsmon-exporter", "prometheus", "alertmanager"})
    (work / "prometheus.yml").write_text(yaml.safe_dump(prometheus))

    # Every receiver also posts to a tap, which sees each notification a person would get.
    alertmanager = yaml.safe_load((REPO / "alertmanager" / "alertmanager.yml").read_text())
    alertmanager["global"]["smtp_smarthost"] = f"127.0.0.1:{ports['smtp']}"
    alertmanager["templates"] = [str(REPO / "alertmanager" / "templates" / "*.tmpl")]

    def shrink_route(route: dict) -> None:
        for key in ("group_wait", "group_interval", "repeat_interval"):
            if key in route:
                route[key] = shrink(route[key])
        for child in route.get("routes", []):
            shrink_route(child)

    shrink_route(alertmanager["route"])
    for receiver in alertmanager["receivers"]:
        for hook in receiver.get("webhook_configs", []):
            hook["url"] = hook["url"].replace("http://pager:8081", stack.url("pager"))
        if receiver["name"] not in ("blackhole", "heartbeat"):  # a new list: YAML aliases share the pager's
            receiver["webhook_configs"] = [*receiver.get("webhook_configs", []),
                                           {"url": stack.tap_url, "send_resolved": True}]
    (work / "alertmanager.yml").write_text(yaml.safe_dump(alertmanager))


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    stack = Stack(tmp_path_factory.mktemp("e2e-flapping"))
    tap = Receiver()
    stack.tap_url, stack.tap = f"{tap.url}/", tap
    write_configs(stack)
    stack.start_mail()
    stack.start_pager()
    stack.start_demo(rate=10)
    stack.python("exporter", "-m", "exporter", "--config.file", str(stack.config))
    stack.start_alerting()
    wait_for(lambda: requests.get(f"{stack.url('pager')}/webhook/pager", timeout=1).ok, what="the pager")
    wait_for(lambda: stack.query('opsmon_probe_success{service="external-api"} == 1'), timeout=60, interval=0.5,
             what="the external API's checks passing")
    yield stack
    stack.stop_all()
    tap.close()


def pages(stack: Stack, alertname: str) -> list[str]:
    posts = requests.get(f"{stack.url('pager')}/webhook/pager", timeout=5).json()["last"]
    return [post["status"] for post in posts if any(a["labels"]["alertname"] == alertname for a in post["alerts"])]


def notifications(stack: Stack) -> Counter:
    """How often each alert (its labels) was notified firing, and resolved, through any receiver."""
    counts = Counter()
    for post in list(stack.tap.posts):
        for alert in post["alerts"]:
            labels = tuple(sorted(alert["labels"].items()))
            counts[(post["receiver"], labels, alert["status"])] += 1
    return counts


def test_a_fault_that_comes_and_goes_is_one_page_and_one_resolution(stack):
    flip, duration = seconds("2m") / SCALE, seconds("20m") / SCALE
    started = time.monotonic()
    down = True
    try:
        while time.monotonic() - started < duration:
            stack.faults(external_available=not down)
            down = not down
            time.sleep(flip)
    finally:
        stack.faults(external_available=True)
    paged = wait_for(lambda: pages(stack, "OpsmonExternalServiceDown"), timeout=5,
                     what="a page for OpsmonExternalServiceDown while the API came and went")
    assert paged == ["firing"]
    # Resolved once the share of good checks is back and keep_firing_for has passed: 10 (scaled) minutes.
    wait_for(lambda: "resolved" in pages(stack, "OpsmonExternalServiceDown"),
             timeout=(seconds("5m") + seconds("10m") + seconds("5m")) / SCALE + 30, interval=0.5,
             what="the resolution of OpsmonExternalServiceDown")
    time.sleep(seconds("5m") / SCALE + 2)  # one more group interval: a late duplicate would be here now
    assert pages(stack, "OpsmonExternalServiceDown") == ["firing", "resolved"]
    sent = notifications(stack)
    twice = {key: count for key, count in sent.items() if count > 1}
    assert not twice, f"notified more than once: {twice}"
    external = [key for key in sent if dict(key[1]).get("alertname") == "OpsmonExternalServiceDown"]
    assert sorted((receiver, status) for receiver, _, status in external) == [
        ("pager-app", "firing"), ("pager-app", "resolved")]


class FlakyScrapes(LoopbackServer):
    """Between Prometheus and the exporter: every fifth scrape fails (503), and the others report the root
    filesystem 99 % full, the disk this machine cannot be made to fill. Everything else is the exporter's."""

    def __init__(self, exporter: str):
        scrapes = iter(range(1, 10**9))

        class Handler(QuietHandler):
            def do_GET(self):
                if next(scrapes) % 5 == 0:
                    self.send_response(503)
                    self.end_headers()
                    return
                body = full_root(requests.get(f"{exporter}/metrics", timeout=2).text).encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        super().__init__(Handler)


def full_root(exposition: str) -> str:
    """The exposition with 1 % of the root filesystem's size as its free space."""
    root = r'\{fstype="[^"]*",mountpoint="/"\}|\{mountpoint="/",fstype="[^"]*"\}'
    size = float(re.search(rf"^opsmon_filesystem_size_bytes(?:{root}) (\S+)$", exposition, re.M).group(1))
    return re.sub(rf"^(opsmon_filesystem_avail_bytes(?:{root})) \S+$", lambda m: f"{m.group(1)} {size / 100}",
                  exposition, flags=re.M)


@pytest.fixture(scope="module")
def flaky_stack(tmp_path_factory):
    """The exporter (its system collector alone), Prometheus and Alertmanager with the shipped rules and
    routes scaled, the pager; the exporter scraped through FlakyScrapes every 15 s and rules evaluated
    every 15 s, scaled."""
    stack = Stack(tmp_path_factory.mktemp("e2e-flaky-scrapes"))
    tap = Receiver()
    stack.tap_url, stack.tap = f"{tap.url}/", tap
    work = stack.work
    write_configs(stack)
    proxy = FlakyScrapes(stack.url("exporter"))
    write_host_file(work / "targets", "demo", {"exporter": proxy.port})
    prometheus = yaml.safe_load((work / "prometheus.yml").read_text())
    interval = f"{int(seconds('15s') / SCALE * 1000)}ms"
    prometheus["global"]["evaluation_interval"] = interval
    exporter_job = next(job for job in prometheus["scrape_configs"] if job["job_name"] == "opsmon-exporter")
    exporter_job.update({"scrape_interval": interval, "scrape_timeout": interval})
    (work / "prometheus.yml").write_text(yaml.safe_dump(prometheus))
    stack.start_pager()
    stack.python("exporter", "-m", "exporter", "--config.file", str(stack.config),
                 *(f"--no-collector.{name}" for name in ("process", "gpu", "probes", "logs", "database", "backup",
                                                         "business", "app")))
    wait_for(lambda: requests.get(f"{stack.url('exporter')}/metrics", timeout=1).ok, what="the exporter")
    stack.start_alerting()
    wait_for(lambda: requests.get(f"{stack.url('pager')}/webhook/pager", timeout=1).ok, what="the pager")
    yield stack
    proxy.close()
    stack.stop_all()
    tap.close()


def test_a_full_disk_behind_scrapes_that_fail_one_in_five_pages_once(flaky_stack):
    stack = flaky_stack
    paged = wait_for(lambda: pages(stack, "OpsmonDiskSpaceLow"), timeout=60, interval=0.5,
                     what="a page for the full disk behind the failing scrapes")
    assert paged == ["firing"]
    # The failing scrapes are a warning of their own, 10 (scaled) minutes later: by then the disk's page
    # has had two group intervals to repeat, resolve or flap, and Prometheus to call the target down.
    wait_for(lambda: any(alert["labels"]["alertname"] == "OpsmonTargetScrapesFailing"
                         for post in list(stack.tap.posts) for alert in post["alerts"]),
             timeout=90, interval=0.5, what="the e-mail about the failing scrapes")
    assert pages(stack, "OpsmonDiskSpaceLow") == ["firing"]
    assert pages(stack, "OpsmonTargetDown") == []
    disk = [dict(labels) for receiver, labels, status in notifications(stack)
            if dict(labels)["alertname"] == "OpsmonDiskSpaceLow"]
    assert [(d["severity"], d["host"], d["mountpoint"]) for d in disk] == [("critical", "demo", "/")]
    scrapes = [(receiver, status) for receiver, labels, status in notifications(stack)
               if dict(labels)["alertname"] == "OpsmonTargetScrapesFailing"]
    assert scrapes == [("email-ops", "firing")]
