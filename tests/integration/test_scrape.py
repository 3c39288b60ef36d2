"""A failing, hanging or unanswered collector costs only its own metrics, in bounded time."""

from __future__ import annotations

import threading
import time

import pytest
import requests
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.parser import text_string_to_metric_families

from bench.chaos_services import HttpService, TcpService
from exporter.collectors.probes import ProbesCollector
from opsmon.config import ProbeConfig
from exporter.scrape import Scraper
from tests.conftest import exporter_with


class Fine:
    name = "fine"

    def collect(self):
        yield GaugeMetricFamily("opsmon_fine", "Always there.", value=1)


class Raises:
    name = "raises"

    def collect(self):
        yield GaugeMetricFamily("opsmon_half", "Yielded before the failure.", value=1)
        raise RuntimeError("disk on fire")


class Hangs:
    name = "hangs"

    def __init__(self):
        self.release = threading.Event()
        self.started = 0

    def collect(self):
        self.started += 1
        self.release.wait(30)
        yield GaugeMetricFamily("opsmon_late", "Arrives after the release.", value=1)


def samples(families) -> dict:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for f in families for s in f.samples}


@pytest.fixture
def silent_server():
    """The URL of a loopback server that accepts connections and never answers."""
    service = TcpService(trickle=False)
    yield service.url
    service.close()


@pytest.fixture
def trickling_server():
    """The URL of a loopback server that sends a byte to each connection every tenth of a second and never
    finishes (a read timeout never fires on it)."""
    service = TcpService(trickle=True)
    yield service.url
    service.close()


@pytest.fixture
def healthy_server():
    """The URL of a loopback HTTP server that answers 200 at once."""
    service = HttpService()
    yield service.url
    service.close()


def test_raising_and_hanging_collectors_do_not_fail_the_scrape():
    hangs = Hangs()
    scraper = Scraper([Fine(), Raises(), hangs])
    started = time.monotonic()
    got = samples(scraper.scrape(timeout=0.5))
    elapsed = time.monotonic() - started
    assert elapsed < 2.0
    assert got[("opsmon_fine", ())] == 1
    assert ("opsmon_half", ()) not in got  # a failed collector publishes nothing half-done
    assert got[("opsmon_scrape_collector_success", (("collector", "fine"),))] == 1
    assert got[("opsmon_scrape_collector_success", (("collector", "raises"),))] == 0
    assert got[("opsmon_scrape_collector_success", (("collector", "hangs"),))] == 0
    assert got[("opsmon_scrape_collector_duration_seconds", (("collector", "hangs"),))] >= 0.5

    # The next scrape joins the hung run instead of starting another thread; once it ends, it counts.
    scraper.scrape(timeout=0.2)
    assert hangs.started == 1
    hangs.release.set()
    got = samples(scraper.scrape(timeout=2))
    assert got[("opsmon_late", ())] == 1
    assert got[("opsmon_scrape_collector_success", (("collector", "hangs"),))] == 1
    scraper.close()


def test_probe_target_that_never_answers(silent_server):
    probes = [ProbeConfig(service="silent", url=silent_server, timeout_seconds=30)]
    scraper = Scraper([ProbesCollector(probes), Fine()])
    started = time.monotonic()
    got = samples(scraper.scrape(timeout=1.0))
    assert time.monotonic() - started < 2.5  # bounded by the scrape, not by the probe's own 30 s
    assert got[("opsmon_probe_success", (("service", "silent"),))] == 0
    assert got[("opsmon_probe_http_status_code", (("service", "silent"),))] == 0
    assert got[("opsmon_scrape_collector_success", (("collector", "probes"),))] == 1
    assert got[("opsmon_fine", ())] == 1
    scraper.close()


def test_failure_is_logged_once_not_at_every_scrape(caplog):
    scraper = Scraper([Raises()])
    for _ in range(3):
        scraper.scrape(timeout=1)
    failures = [r for r in caplog.records if "collector raises failed" in r.getMessage()]
    assert len(failures) == 1
    assert "RuntimeError: disk on fire" in failures[0].getMessage()
    scraper.close()


def probe_threads() -> int:
    return sum(1 for thread in threading.enumerate() if thread.name.startswith("probe"))


def test_a_service_that_trickles_its_answer_holds_one_thread_not_one_per_scrape(trickling_server):
    probes = [ProbeConfig(service=f"trickling-{n}", url=trickling_server, timeout_seconds=1)
              for n in range(5)]
    scraper = Scraper([ProbesCollector(probes)])
    for _ in range(4):
        got = samples(scraper.scrape(timeout=0.6))
        assert [got[("opsmon_probe_success", (("service", c.service),))] for c in probes] == [0] * 5
        assert probe_threads() <= len(probes)
    assert got[("opsmon_probe_timeouts_total", (("service", "trickling-0"),))] == 4
    scraper.close()


def probes_exporter(tmp_path, env, probes: list[dict]):
    return exporter_with(tmp_path, env, {"database": {"path": str(tmp_path / "app.db")},
                                         "exporter": {"probes": probes}}, "probes")


def test_every_probe_is_reported_when_a_hundred_and_twenty_services_hang(tmp_path, python_env, silent_server,
                                                                           healthy_server):
    """Prometheus's scrape timeout cuts the checks short: the hung services are down and counted as timed
    out, the healthy ones up, and the probes collector itself succeeds."""
    hung = [{"service": f"hung-{n}", "url": silent_server} for n in range(120)]
    healthy = [{"service": f"healthy-{n}", "url": healthy_server} for n in range(3)]
    with probes_exporter(tmp_path, python_env, hung + healthy) as (url, _):
        for scrape in range(1, 4):
            started = time.monotonic()
            answer = requests.get(f"{url}/metrics", headers={"X-Prometheus-Scrape-Timeout-Seconds": "3"}, timeout=10)
            assert time.monotonic() - started < 3
            got = {(s.name, s.labels.get("service") or s.labels.get("collector")): s.value
                   for family in text_string_to_metric_families(answer.text) for s in family.samples}
            assert got[("opsmon_scrape_collector_success", "probes")] == 1
            assert {n: got[("opsmon_probe_success", p["service"])] for n, p in enumerate(hung + healthy)} == {
                n: 0 if n < len(hung) else 1 for n in range(len(hung + healthy))}
            assert [got[("opsmon_probe_timeouts_total", p["service"])] for p in hung] == [scrape] * len(hung)
            assert [got[("opsmon_probe_timeouts_total", p["service"])] for p in healthy] == [0] * len(healthy)


def test_sigterm_stops_the_exporter_at_once_while_a_service_trickles(tmp_path, python_env, trickling_server):
    probes = [{"service": "trickling", "url": trickling_server, "timeout_seconds": 1}]
    with probes_exporter(tmp_path, python_env, probes) as (url, exporter):
        answer = requests.get(f"{url}/metrics", headers={"X-Prometheus-Scrape-Timeout-Seconds": "1.5"}, timeout=10)
        assert 'opsmon_probe_success{service="trickling"} 0.0' in answer.text
        exporter.terminate()
        started = time.monotonic()
        assert exporter.wait(timeout=10) == 0
        assert time.monotonic() - started < 3
