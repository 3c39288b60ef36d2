"""HTTP checks of external services, run concurrently, e.g. `opsmon_probe_success{service="external-api"} 1`."""

from __future__ import annotations

import logging
import re
import time
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass

import requests
from prometheus_client.core import GaugeMetricFamily

from exporter import deadline

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ProbeResult:
    service: str
    success: bool
    duration_seconds: float
    status_code: int  # 0 when no HTTP answer came
    detail: str


def probe(session: requests.Session, config, budget: float, clock=time.monotonic) -> ProbeResult:
    """One check: the expected status and, when configured, a body matching the regex, within the timeout."""
    timeout = max(0.001, min(config.timeout_seconds, budget))
    started = clock()
    try:
        response = session.request(config.method, str(config.url), timeout=timeout, allow_redirects=True)
    except requests.RequestException as err:
        return ProbeResult(config.service, False, clock() - started, 0, f"no answer: {type(err).__name__}")
    duration = clock() - started
    if response.status_code not in config.expected_status:
        return ProbeResult(config.service, False, duration, response.status_code,
                           f"status {response.status_code}, expected {config.expected_status}")
    if config.body_regex and not re.search(config.body_regex, response.text):
        return ProbeResult(config.service, False, duration, response.status_code,
                           f"body does not match {config.body_regex!r}")
    return ProbeResult(config.service, True, duration, response.status_code, f"status {response.status_code}")


def run_probes(session: requests.Session, probes, budget: float, clock=time.monotonic) -> list[ProbeResult]:
    """All checks at once, so the total takes as long as the slowest, never longer than `budget`."""
    if not probes:
        return []
    pool = ThreadPoolExecutor(max_workers=min(len(probes), 16), thread_name_prefix="probe")
    futures = [pool.submit(probe, session, config, budget, clock) for config in probes]
    # requests' timeout bounds each socket read, not the whole answer: a server that trickles
    # bytes could outlast it, so the wait itself is bounded too and such a probe counts as failed.
    wait(futures, timeout=budget + 0.05)
    pool.shutdown(wait=False, cancel_futures=True)
    return [future.result() if future.done() else ProbeResult(config.service, False, budget, 0, "timed out")
            for config, future in zip(probes, futures)]


class ProbesCollector:
    name = "probes"

    def __init__(self, probes, session: requests.Session | None = None, default_budget: float = 10.0,
                 clock=time.monotonic):
        self._probes = probes
        self._session = session or requests.Session()
        self._default_budget = default_budget
        self._clock = clock

    def describe(self):
        return []

    def collect(self):
        # Leave a little of the scrape for encoding the answer.
        budget = max(0.05, deadline.remaining(self._default_budget) - 0.1)
        labels = ["service"]
        success = GaugeMetricFamily("opsmon_probe_success", "1 when the service answered as expected.",
                                    labels=labels)
        duration = GaugeMetricFamily("opsmon_probe_duration_seconds", "How long the check took.", labels=labels)
        status = GaugeMetricFamily("opsmon_probe_http_status_code", "HTTP status of the answer; 0 when none came.",
                                   labels=labels)
        for result in run_probes(self._session, self._probes, budget, self._clock):
            success.add_metric([result.service], 1 if result.success else 0)
            duration.add_metric([result.service], result.duration_seconds)
            status.add_metric([result.service], result.status_code)
        yield from (success, duration, status)


def build(config):
    return ProbesCollector(config.exporter.probes, default_budget=config.exporter.scrape_timeout_seconds)
