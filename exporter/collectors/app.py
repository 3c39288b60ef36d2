"""Metrics the application's processes record through exporter.instrument, summed across processes,
e.g. `app_requests_total{handler="process_video"} 1042`."""

from __future__ import annotations

from pathlib import Path

from prometheus_client import multiprocess


class AppCollector:
    name = "app"

    def __init__(self, directory: Path):
        self._directory = Path(directory)

    def describe(self):
        return []

    def collect(self):
        if not self._directory.is_dir():
            return  # the app has not started yet: nothing recorded, nothing wrong
        # Built per scrape: it only remembers the path, and reads the files when collected.
        yield from multiprocess.MultiProcessCollector(None, path=str(self._directory)).collect()


def build(config):
    if config.exporter.app_metrics_directory is None:
        return None
    return AppCollector(config.exporter.app_metrics_directory)
