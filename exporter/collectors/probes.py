"""HTTP checks of external services, run concurrently, e.g. `opsmon_probe_success{service="external-api"} 1`."""

from __future__ import annotations

import logging
import re
import threading
import time
from concurrent.futures import Future, wait
from dataclasses import dataclass

import requests
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from exporter import deadline

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class ProbeResult:
    service: str
    success: bool
    duration_seconds: float
    status_code: int  # 0 when no HTTP answer came
    detail: str
    timed_out: bool = False


def no_answer_in_time(config, duration: float) -> ProbeResult:
    return ProbeResult(config.service, False, duration, 0, "no answer in time", timed_out=True)


def probe(session: requests.Session, config, until: float, clock=time.monotonic) -> ProbeResult:
    """One check: the expected status and, when configured, a body matching the regex, within the probe's
    timeout and the time left before `until` (on time.monotonic's clock)."""
    timeout = max(0.001, min(config.timeout_seconds, until - time.monotonic()))
    started = clock()
    try:
        response = session.request(config.method, str(config.url), timeout=timeout, allow_redirects=True)
    except requests.Timeout:
        return no_answer_in_time(config, clock() - started)
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


class Prober:
    """Runs every check at once, each on a thread of its own, each service's check at most once at a time.

    requests' timeout bounds each socket read, not the whole answer: a server that trickles bytes
    outlasts it. Such a check is reported as timed out and joined by the next scrape instead of started
    again, so hung services hold one thread each, never one more per scrape; daemon threads, so that
    none holds back the exporter's exit.
    """

    def __init__(self, probes, session: requests.Session, clock=time.monotonic):
        self._probes = probes
        self._session = session
        self._clock = clock
        self._running: dict[str, Future] = {}

    def run(self, until: float) -> list[ProbeResult]:
        """A result for every configured service by `until`: those without an answer by then as timed out."""
        started = time.monotonic()
        futures = [self._start(config, until) for config in self._probes]
        wait(futures, timeout=max(0.0, until - time.monotonic()))
        return [future.result() if future.done() else no_answer_in_time(config, time.monotonic() - started)
                for config, future in zip(self._probes, futures)]

    def _start(self, config, until: float) -> Future:
        running = self._running.get(config.service)
        if running is not None and not running.done():
            return running
        future: Future = Future()
        threading.Thread(target=self._check, args=(future, config, until), name=f"probe {config.service}",
                         daemon=True).start()
        self._running[config.service] = future
        return future

    def _check(self, future: Future, config, until: float) -> None:
        try:
            future.set_result(probe(self._session, config, until, self._clock))
        except Exception as err:  # noqa: BLE001 - handed to the scrape, which reports the collector failed
            future.set_exception(err)


def probe_session(checks: int) -> requests.Session:
    """A session that keeps a connection for every check that runs at once: past the default of 10 per
    host, urllib3 would log "Connection pool is full" for each one at every scrape."""
    session = requests.Session()
    adapter = requests.adapters.HTTPAdapter(pool_maxsize=max(10, checks))
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def run_probes(session: requests.Session, probes, budget: float) -> list[ProbeResult]:
    """Every check once, within `budget` seconds (for /health's occasional asks)."""
    return Prober(probes, session).run(time.monotonic() + budget)


class ProbesCollector:
    name = "probes"

    def __init__(self, probes, session: requests.Session | None = None, default_budget: float = 10.0,
                 clock=time.monotonic):
        self._prober = Prober(probes, session or probe_session(len(probes)), clock)
        self._default_budget = default_budget
        self._timeouts = {config.service: 0 for config in probes}

    def describe(self):
        return []

    def collect(self):
        # Leave a little of the scrape for encoding the answer.
        until = time.monotonic() + max(0.05, deadline.remaining(self._default_budget) - 0.1)
        labels = ["service"]
        success = GaugeMetricFamily("opsmon_probe_success", "1 when the service answered as expected.",
                                    labels=labels)
        duration = GaugeMetricFamily("opsmon_probe_duration_seconds", "How long the check took.", labels=labels)
        status = GaugeMetricFamily("opsmon_probe_http_status_code", "HTTP status of the answer; 0 when none came.",
                                   labels=labels)
        for result in self._prober.run(until):
            success.add_metric([result.service], 1 if result.success else 0)
            duration.add_metric([result.service], result.duration_seconds)
            status.add_metric([result.service], result.status_code)
            self._timeouts[result.service] += result.timed_out
        timeouts = CounterMetricFamily(
            "opsmon_probe_timeouts", "Checks that got no answer in time: within the probe's timeout, or "
            "before the end of the scrape when more services hang than can be checked in it.", labels=labels)
        for service, count in self._timeouts.items():
            timeouts.add_metric([service], count)
        yield from (success, duration, status, timeouts)


def build(config):
    return ProbesCollector(config.exporter.probes, default_budget=config.exporter.scrape_timeout_seconds)
