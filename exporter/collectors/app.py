"""Metrics the application's processes record through opsmon.instrument, summed across processes,
e.g. `app_requests_total{handler="process_video"} 1042`, and how many files they were read from,
e.g. `opsmon_app_metric_files 3`."""

from __future__ import annotations

import logging
from pathlib import Path

from prometheus_client import multiprocess
from prometheus_client.core import GaugeMetricFamily

log = logging.getLogger(__name__)


class AppCollector:
    name = "app"

    def __init__(self, directory: Path):
        self._directory = Path(directory)
        self._silent = False  # said once, until files come back

    def describe(self):
        return []

    def collect(self):
        files = sorted(self._directory.glob("*.db")) if self._directory.is_dir() else []
        self._say_whether_silent(len(files))
        found = GaugeMetricFamily(
            "opsmon_app_metric_files",
            "Metric files the app's processes wrote in app_metrics_directory; 0: the app records nothing "
            "where the exporter reads (not started, or started without PROMETHEUS_MULTIPROC_DIR set to it).")
        found.add_metric([], len(files))
        yield found
        if files:
            # Built per scrape: it only remembers the path, and reads the files when collected.
            yield from multiprocess.MultiProcessCollector(None, path=str(self._directory)).collect()

    def _say_whether_silent(self, count: int) -> None:
        """Silence is a finding: logged once when it starts, and once when it ends."""
        if count == 0 and not self._silent:
            log.warning("no app metric files in %s: the app is not running, or runs without "
                        "PROMETHEUS_MULTIPROC_DIR=%s, so every app_* series is missing", self._directory,
                        self._directory)
        elif count and self._silent:
            log.info("app metric files found in %s again (%d)", self._directory, count)
        self._silent = count == 0


def build(config):
    if config.exporter.app_metrics_directory is None:
        return None
    return AppCollector(config.exporter.app_metrics_directory)
