"""The library the app imports: tracking, the error hierarchy, JSON logs, and worker processes adding up."""

from __future__ import annotations

import json
import logging
import subprocess
import sys

import pytest
from prometheus_client import CollectorRegistry

from exporter import instrument
from exporter.collectors.app import AppCollector
from exporter.instrument import AppMetrics, Track


@pytest.fixture
def metrics():
    return AppMetrics(registry=CollectorRegistry())


def sample(metrics: AppMetrics, name: str, **labels) -> float:
    value = metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


def test_decorator_and_context_manager_count_and_time(metrics):
    track = Track(metrics, "transcode")

    @track
    def work(fail: bool):
        if fail:
            raise instrument.ExternalServiceError("storage answered 503")

    work(False)
    with pytest.raises(instrument.ExternalServiceError):
        work(True)
    with Track(metrics, "upload"):
        pass
    assert sample(metrics, "app_requests_total", handler="transcode") == 2
    assert sample(metrics, "app_request_errors_total", handler="transcode") == 1
    assert sample(metrics, "app_request_duration_seconds_count", handler="transcode") == 2
    assert sample(metrics, "app_requests_in_progress", handler="transcode") == 0
    assert sample(metrics, "app_requests_total", handler="upload") == 1
    assert sample(metrics, "app_errors_total", category="external_service", severity="medium") == 1


def test_in_progress_while_running(metrics):
    with Track(metrics, "slow"):
        assert sample(metrics, "app_requests_in_progress", handler="slow") == 1


def test_nested_blocks_count_an_error_once_per_handler_and_once_in_total(metrics):
    with pytest.raises(ValueError):
        with Track(metrics, "request"):
            with Track(metrics, "stage"):
                raise ValueError("bug")
    assert sample(metrics, "app_request_errors_total", handler="request") == 1
    assert sample(metrics, "app_request_errors_total", handler="stage") == 1
    assert sample(metrics, "app_errors_total", category="unhandled", severity="high") == 1


def test_error_hierarchy_and_user_messages():
    error = instrument.DataIntegrityError("row 12 of approvals points at no video", table="approvals")
    assert isinstance(error, instrument.OpsmonError)
    assert (error.category, error.severity) == ("data_integrity", instrument.Severity.HIGH)
    assert error.user_message == (f"The data did not pass a consistency check, so nothing was changed. "
                                  f"(reference {error.reference})")
    assert "row 12" not in error.user_message  # internals stay out of what users read
    assert error.to_dict()["reference"] == error.reference
    assert error.context == {"table": "approvals"}
    custom = instrument.BackupError("gzip failed", user_message="The backup did not finish.",
                                    severity=instrument.Severity.CRITICAL)
    assert custom.severity is instrument.Severity.CRITICAL
    assert custom.user_message.startswith("The backup did not finish. (reference ")
    for cls in (instrument.ValidationError, instrument.ExternalServiceError, instrument.ResourceExhaustedError,
                instrument.ConfigError, instrument.BackupError):
        assert issubclass(cls, instrument.OpsmonError) and cls.default_user_message.endswith(".")
    assert instrument.classify(KeyError("x")) == ("unhandled", instrument.Severity.HIGH)


def test_json_logs_go_through_a_queue(tmp_path):
    path = tmp_path / "app.jsonl"
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    listener = instrument.setup_logging(str(path), level="INFO")
    try:
        log = logging.getLogger("app.test")
        log.debug("not written at INFO")
        log.warning("slow request %s", "/videos", extra={"reference": "abc123"})
        try:
            raise RuntimeError("boom")
        except RuntimeError:
            log.exception("failed")
        assert isinstance(root.handlers[0], logging.handlers.QueueHandler)
    finally:
        listener.stop()  # writes out what is queued
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [(e["level"], e["message"]) for e in lines] == [("WARNING", "slow request /videos"), ("ERROR", "failed")]
    assert lines[0]["reference"] == "abc123" and lines[0]["logger"] == "app.test"
    assert "RuntimeError: boom" in lines[1]["exception"]
    assert "boom" not in lines[1]["message"]


WORKER = """
import sys
from exporter import instrument
for _ in range(int(sys.argv[1])):
    with instrument.track("process_video"):
        pass
try:
    with instrument.track("process_video"):
        raise instrument.ExternalServiceError("down")
except instrument.ExternalServiceError:
    pass
"""


def test_three_worker_processes_add_up(tmp_path, python_env):
    directory = tmp_path / "multiproc"
    directory.mkdir()
    env = {**python_env, "PROMETHEUS_MULTIPROC_DIR": str(directory)}
    workers = [subprocess.Popen([sys.executable, "-c", WORKER, str(n)], env=env) for n in (10, 20, 30)]
    assert [w.wait(60) for w in workers] == [0, 0, 0]
    registry = CollectorRegistry()
    registry.register(AppCollector(directory))
    assert registry.get_sample_value("app_requests_total", {"handler": "process_video"}) == 63
    assert registry.get_sample_value("app_request_errors_total", {"handler": "process_video"}) == 3
    assert registry.get_sample_value("app_errors_total", {"category": "external_service", "severity": "medium"}) == 3
    assert registry.get_sample_value("app_request_duration_seconds_count", {"handler": "process_video"}) == 63
    assert registry.get_sample_value("app_requests_in_progress", {"handler": "process_video"}) == 0


def test_prepare_refuses_without_multiprocess_mode(monkeypatch):
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    with pytest.raises(instrument.ConfigError, match="set PROMETHEUS_MULTIPROC_DIR before"):
        instrument.prepare_multiprocess_dir()
