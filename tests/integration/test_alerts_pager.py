"""The stand-in pager and dead man's switch (demo/pager.py): a process of its own, apart from the app it watches."""

from __future__ import annotations

import subprocess
import sys

import pytest
import requests

from demo.pager import Pager, describe
from tests.conftest import REPO, free_port, stop, wait_for
from tests.fakes import FakeClock


@pytest.fixture
def pager(python_env):
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "demo.pager", "--listen", f"127.0.0.1:{port}",
                                "--heartbeat-late-after", "300"], cwd=REPO, env=python_env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    wait_for(lambda: requests.get(f"{url}/heartbeat", timeout=1).status_code in (200, 503), what="the pager")
    yield url
    stop(process)


def test_the_pager_keeps_what_alertmanager_posts(pager):
    assert requests.get(f"{pager}/webhook/pager", timeout=5).json() == {"received": 0, "last": []}
    payload = {"status": "firing", "alerts": [{"labels": {"alertname": "OpsmonTargetDown"}}]}
    assert requests.post(f"{pager}/webhook/pager", json=payload, timeout=5).ok
    assert requests.get(f"{pager}/webhook/pager", timeout=5).json() == {"received": 1, "last": [payload]}
    assert requests.get(f"{pager}/webhook/../etc", timeout=5).status_code == 404


def test_the_heartbeat_is_late_until_the_first_comes_and_then_on_time(pager):
    waiting = requests.get(f"{pager}/heartbeat", timeout=5)
    assert waiting.status_code == 503 and waiting.json()["late"] and waiting.json()["last_at"] is None
    assert "no heartbeat yet" in requests.get(pager, timeout=5).text
    requests.post(f"{pager}/webhook/heartbeat", json={"status": "firing", "alerts": []}, timeout=5)
    beat = requests.get(f"{pager}/heartbeat", timeout=5)
    assert beat.status_code == 200 and not beat.json()["late"] and beat.json()["age_seconds"] < 5
    assert "on time" in requests.get(pager, timeout=5).text


def test_a_heartbeat_older_than_the_limit_is_late_and_said_once(caplog):
    clock = FakeClock()
    pager = Pager(late_after=300, clock=clock)
    pager.receive("heartbeat", {"status": "firing"})
    clock.advance(299)
    pager.check()
    assert not pager.heartbeat()["late"]
    clock.advance(2)
    pager.check()
    pager.check()
    state = pager.heartbeat()
    assert state["late"] and state["age_seconds"] == 301
    assert "LATE (over 300 s): Prometheus or Alertmanager is down" in describe(state)
    assert [r.getMessage() for r in caplog.records if r.levelname == "ERROR"] == [
        f"heartbeat late: {describe(state)}"]
    pager.receive("heartbeat", {"status": "firing"})
    assert not pager.heartbeat()["late"]


def test_the_demo_app_no_longer_takes_alertmanager_s_posts():
    """The pages about the app must not go through the app: its outage would fail them too."""
    source = (REPO / "demo" / "app.py").read_text()
    assert "/webhook" not in source.split('"""', 2)[2]
