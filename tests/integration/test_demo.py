"""The demo app: its fault switches, its error answers, and a clean stop with no orphaned workers."""

from __future__ import annotations

import signal

import psutil
import pytest
import requests

from tests.conftest import free_port, start, wait_for


@pytest.fixture
def demo(tmp_path, python_env):
    port = free_port()
    process = start(["-m", "demo", "serve", "--db", str(tmp_path / "demo.db"), "--listen", f"127.0.0.1:{port}",
                     "--metrics-dir", str(tmp_path / "metrics"), "--log-file", str(tmp_path / "demo.jsonl"),
                     "--pidfile", str(tmp_path / "demo.pid"), "--rate", "20"], python_env, log=tmp_path / "out")
    url = f"http://127.0.0.1:{port}"
    wait_for(lambda: requests.get(f"{url}/health", timeout=1).ok, what="the demo app")
    yield url, process, tmp_path
    if process.poll() is None:
        process.kill()
        process.wait()


def test_faults_change_at_run_time_and_bad_input_is_named(demo):
    url, _, _ = demo
    assert requests.post(f"{url}/admin/faults", json={"external_available": False}, timeout=5).json()[
        "external_available"] is False
    assert requests.get(f"{url}/external/api", timeout=5).status_code == 503
    bad = requests.post(f"{url}/admin/faults", json={"error_rate": 3}, timeout=5)
    assert bad.status_code == 400
    assert bad.json()["message"].startswith("error_rate must be a number from 0 to 1. (reference ")
    unknown = requests.post(f"{url}/admin/faults", json={"eror_rate": 0.1}, timeout=5)
    assert unknown.status_code == 400 and "Unknown setting(s): eror_rate." in unknown.json()["message"]
    assert requests.get(f"{url}/admin/faults", timeout=5).json()["error_rate"] == 0.0


def test_errors_answer_with_a_user_message_and_a_reference(demo):
    url, _, tmp_path = demo
    missing = requests.get(f"{url}/videos/999999", timeout=5)
    assert missing.status_code == 404
    body = missing.json()
    assert body["message"] == f"There is no such video. (reference {body['reference']})"
    assert requests.post(f"{url}/videos", data="not json", timeout=5).status_code == 400
    created = requests.post(f"{url}/videos", json={"title": "holiday"}, timeout=5)
    assert created.status_code == 201
    assert requests.get(f"{url}/videos/{created.json()['id']}", timeout=5).json()["title"] == "holiday"
    wait_for(lambda: body["reference"] in (tmp_path / "demo.jsonl").read_text(), what="the reference in the log")


def test_sigterm_stops_everything_cleanly(demo):
    url, process, tmp_path = demo
    workers = psutil.Process(process.pid).children()
    assert len(workers) == 3
    process.send_signal(signal.SIGTERM)
    assert process.wait(15) == 0
    wait_for(lambda: not any(w.is_running() and w.status() != psutil.STATUS_ZOMBIE for w in workers),
             what="the workers to exit")
    log = (tmp_path / "demo.jsonl").read_text()
    assert log.count("stopped") == 4  # three workers and the app, each wrote its last line
    assert not (tmp_path / "demo.pid").exists()


def test_workers_leave_when_the_app_is_killed(demo):
    _, process, _ = demo
    workers = psutil.Process(process.pid).children()
    process.kill()
    process.wait()
    wait_for(lambda: not any(w.is_running() and w.status() != psutil.STATUS_ZOMBIE for w in workers),
             what="the orphaned workers to exit")
