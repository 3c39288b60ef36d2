"""A failing, hanging or unanswered collector costs only its own metrics, in bounded time."""

from __future__ import annotations

import socket
import threading
import time

import pytest
from prometheus_client.core import GaugeMetricFamily

from exporter.collectors.probes import ProbesCollector
from opsmon.config import ProbeConfig
from exporter.scrape import Scraper


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
    """A loopback TCP server that accepts connections and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    accepted = []
    stop = threading.Event()

    def accept():
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join()
    for connection in accepted:
        connection.close()
    server.close()


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
    probes = [ProbeConfig(service="silent", url=f"http://127.0.0.1:{silent_server}/", timeout_seconds=30)]
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
