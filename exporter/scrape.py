"""One scrape: every collector run concurrently under a deadline, each timed and its success published.

A collector that raises or hangs costs only its own metrics: it shows as
`opsmon_scrape_collector_success{collector="..."} 0` and the rest of the scrape is served.
A scraper replaced by a reload is closed only once the scrapes still using it have finished.
"""

from __future__ import annotations

import logging
import contextlib
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Iterator

from prometheus_client.core import GaugeMetricFamily

from exporter import deadline

log = logging.getLogger(__name__)


class Scraper:
    def __init__(self, collectors: list):
        self._collectors = collectors
        # One thread per collector is enough: a collector never runs twice at once.
        self._pool = ThreadPoolExecutor(max_workers=max(1, len(collectors)), thread_name_prefix="collector")
        self._in_flight: dict[str, Future] = {}
        self._failing: set[str] = set()
        self._lock = threading.Lock()  # scrapes may overlap; each collector still starts once
        self._users = 0
        self._closing = False

    @property
    def names(self) -> list[str]:
        return [c.name for c in self._collectors]

    def _start(self, collector, until: float) -> Future:
        """Start a run, or join the one still going from an earlier scrape (a hung collector is not piled up)."""
        running = self._in_flight.get(collector.name)
        if running is not None and not running.done():
            return running
        future = self._pool.submit(deadline.run_until, until, _timed, collector)
        self._in_flight[collector.name] = future
        return future

    def scrape(self, timeout: float) -> list:
        started = time.monotonic()
        until = started + timeout
        with self._lock:
            futures = {c.name: self._start(c, until) for c in self._collectors}
        wait(futures.values(), timeout=timeout)
        families = []
        success = GaugeMetricFamily("opsmon_scrape_collector_success", "1 when the collector succeeded.",
                                    labels=["collector"])
        duration = GaugeMetricFamily("opsmon_scrape_collector_duration_seconds", "How long the collector took.",
                                     labels=["collector"])
        for name, future in futures.items():
            if future.done():
                collected, seconds, error = future.result()
            else:
                collected, seconds, error = None, time.monotonic() - started, f"did not finish within {timeout:.3g}s"
            self._note(name, error)
            if error is None:
                families.extend(collected)
            success.add_metric([name], 0 if error else 1)
            duration.add_metric([name], seconds)
        return families + [success, duration]

    def _note(self, name: str, error: str | None) -> None:
        """Log a failure once when it starts and once when it ends, not at every scrape."""
        if error and name not in self._failing:
            self._failing.add(name)
            log.error("collector %s failed: %s", name, error)
        elif not error and name in self._failing:
            self._failing.discard(name)
            log.info("collector %s works again", name)

    @contextlib.contextmanager
    def in_use(self) -> Iterator[Scraper]:
        """Hold the scraper open for one scrape: a close() meanwhile waits for the scrape to end."""
        with self._lock:
            self._users += 1
        try:
            yield self
        finally:
            with self._lock:
                self._users -= 1
                last = self._closing and self._users == 0
            if last:
                self._shut()

    def close(self) -> None:
        """Close now, or when the last scrape still using the scraper ends."""
        with self._lock:
            self._closing = True
            idle = self._users == 0
        if idle:
            self._shut()

    def _shut(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        for collector in self._collectors:
            if hasattr(collector, "close"):
                collector.close()


def _timed(collector):
    """Run one collector to the end; returns (families, seconds, error text or None)."""
    started = time.monotonic()
    try:
        families = list(collector.collect())
    except Exception as err:  # noqa: BLE001 - any failure of a collector is reported, never raised
        return None, time.monotonic() - started, f"{type(err).__name__}: {err}"
    return families, time.monotonic() - started, None
