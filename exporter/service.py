"""The running exporter: the config in force, its collectors, and a reload that keeps the old on failure."""

from __future__ import annotations

import contextlib
import logging
import threading
import time

import requests
from prometheus_client.core import GaugeMetricFamily

from exporter import __version__
from exporter.collectors import build_collectors
from opsmon.config import load_config
from exporter.health import check_health
from exporter.scrape import Scraper

log = logging.getLogger(__name__)


class Exporter:
    def __init__(self, config_file: str, enabled: set[str]):
        self._config_file = config_file
        self._enabled = enabled
        self._lock = threading.Lock()
        self._session = requests.Session()
        self.config = load_config(config_file)  # InvalidConfig here stops the start
        self._scraper = Scraper(build_collectors(self.config, enabled))
        self._reload_ok = 1
        self._reload_at = time.time()

    @property
    def collector_names(self) -> list[str]:
        return self._scraper.names

    def reload(self) -> bool:
        """Read the config again; a bad one is logged and the running one kept."""
        try:
            config = load_config(self._config_file)
            scraper = Scraper(build_collectors(config, self._enabled))
        except Exception as err:  # noqa: BLE001 - whatever the reason, the running config stays
            log.error("config reload failed, keeping the running config:\n%s", err)
            self._reload_ok = 0
            return False
        with self._lock:
            old_scraper, old_config = self._scraper, self.config
            self._scraper, self.config = scraper, config
        old_scraper.close()
        if config.exporter.listen_address != old_config.exporter.listen_address:
            log.warning("a new listen_address takes effect at the next restart")
        self._reload_ok, self._reload_at = 1, time.time()
        log.info("config reloaded from %s", self._config_file)
        return True

    def scrape(self, timeout: float | None = None) -> list:
        with contextlib.ExitStack() as stack:
            with self._lock:  # taken and marked in use at once, so a reload cannot close it in between
                scraper, config = self._scraper, self.config
                stack.enter_context(scraper.in_use())
            families = scraper.scrape(timeout or config.exporter.scrape_timeout_seconds)
        return families + self._self_metrics()

    def _self_metrics(self) -> list:
        info = GaugeMetricFamily("opsmon_exporter_build_info", "The exporter's version; always 1.",
                                 labels=["version"])
        info.add_metric([__version__], 1)
        return [
            info,
            GaugeMetricFamily("opsmon_config_last_reload_successful",
                              "1 when the last config (re)load worked.", value=self._reload_ok),
            GaugeMetricFamily("opsmon_config_last_reload_success_timestamp_seconds",
                              "When the config was last loaded, in Unix seconds.", value=self._reload_at),
        ]

    def close(self) -> None:
        """Stop the collectors' work in flight (a running business query is interrupted)."""
        with self._lock:
            scraper = self._scraper
        scraper.close()

    def health(self) -> dict:
        return check_health(self.config, self._session)
