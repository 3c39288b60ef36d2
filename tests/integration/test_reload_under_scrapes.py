"""Reloads never fail a scrape: a real exporter scraped from four threads while SIGHUPs swap good and bad
configs under it."""

from __future__ import annotations

import signal
import threading
import time
from collections import Counter

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import free_port, start, stop, wait_for, write_config

pytestmark = pytest.mark.slow

SCRAPES, THREADS, RELOADS = 1000, 4, 50


def reload_ok(url: str) -> float:
    text = requests.get(url, timeout=10).text
    return next(s.value for f in text_string_to_metric_families(text) for s in f.samples
                if s.name == "opsmon_config_last_reload_successful")


def test_a_thousand_scrapes_during_fifty_reloads_all_answer_200(tmp_path, python_env):
    port = free_port()
    (tmp_path / "app.log").write_text('{"level": "error", "message": "x"}\n')
    good = {"database": {"path": str(tmp_path / "app.db")},
            "exporter": {"listen_address": f"127.0.0.1:{port}", "state_directory": str(tmp_path / "state"),
                         "logs": [{"source": "app", "path": str(tmp_path / "app.log"), "format": "json"}],
                         "probes": [{"service": "closed", "url": f"http://127.0.0.1:{free_port()}/",
                                     "timeout_seconds": 0.5}]}}
    config = write_config(tmp_path / "opsmon.yml", good)
    good_text, bad_text = config.read_text(), config.read_text() + "\nsurprise: 1\n"
    exporter = start(["-m", "exporter", "--config.file", str(config)], python_env, log=tmp_path / "exporter.out")
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        wait_for(lambda: requests.get(url, timeout=5).ok, what="the exporter")
        codes: Counter = Counter()
        remaining = iter(range(SCRAPES))
        lock = threading.Lock()

        def scraper():
            with requests.Session() as session:
                while True:
                    with lock:
                        if next(remaining, None) is None:
                            return
                    answer = session.get(url, timeout=15)
                    with lock:
                        codes[answer.status_code] += 1

        threads = [threading.Thread(target=scraper) for _ in range(THREADS)]
        for thread in threads:
            thread.start()
        for n in range(RELOADS):
            config.write_text(bad_text if n % 2 else good_text)
            exporter.send_signal(signal.SIGHUP)
            time.sleep(0.1)
        for thread in threads:
            thread.join(120)
        assert codes == {200: SCRAPES}, codes
        assert exporter.poll() is None

        # The gauge follows the last reload: a bad one shows 0, a good one 1 again.
        config.write_text(bad_text)
        exporter.send_signal(signal.SIGHUP)
        wait_for(lambda: reload_ok(url) == 0, what="the bad reload to show")
        config.write_text(good_text)
        exporter.send_signal(signal.SIGHUP)
        wait_for(lambda: reload_ok(url) == 1, what="the good reload to show")
    finally:
        stop(exporter)
    assert "Traceback" not in (tmp_path / "exporter.out").read_text()
