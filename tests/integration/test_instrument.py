"""The library the app imports: tracking, the error hierarchy, JSON logs, and worker processes adding up."""

from __future__ import annotations

import json
import logging
import subprocess
import sys

import pytest
from prometheus_client import CollectorRegistry

from opsmon import instrument
from exporter.collectors.app import AppCollector
from opsmon.instrument import AppMetrics, Track


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
    assert sample(metrics, "app_request_errors_total", handler="transcode", kind="server") == 1
    assert sample(metrics, "app_request_duration_seconds_count", handler="transcode") == 2
    assert sample(metrics, "app_requests_in_progress", handler="transcode") == 0
    assert sample(metrics, "app_requests_total", handler="upload") == 1
    assert sample(metrics, "app_errors_total", category="external_service", severity="medium") == 1


def test_a_client_error_is_counted_apart_from_server_errors(metrics):
    """A 404 or a validation error is the caller's mistake: kind client, which the error SLO leaves out."""

    class OrderNotFound(instrument.ValidationError):
        pass

    for error in (OrderNotFound("order 7 not found"), instrument.ValidationError("quantity is -1")):
        with pytest.raises(instrument.ValidationError):
            with Track(metrics, "get_order"):
                raise error
    with pytest.raises(instrument.ExternalServiceError):
        with Track(metrics, "get_order"):
            raise instrument.ExternalServiceError("payments answered 503")
    assert sample(metrics, "app_request_errors_total", handler="get_order", kind="client") == 2
    assert sample(metrics, "app_request_errors_total", handler="get_order", kind="server") == 1


def test_both_kinds_of_error_exist_at_zero_before_the_first_error(metrics):
    with Track(metrics, "quiet"):
        pass
    for kind in ("client", "server"):
        assert metrics.registry.get_sample_value("app_request_errors_total", {"handler": "quiet", "kind": kind}) == 0


def test_in_progress_while_running(metrics):
    with Track(metrics, "slow"):
        assert sample(metrics, "app_requests_in_progress", handler="slow") == 1


def test_nested_blocks_count_an_error_once_per_handler_and_once_in_total(metrics):
    with pytest.raises(ValueError):
        with Track(metrics, "request"):
            with Track(metrics, "stage"):
                raise ValueError("bug")
    assert sample(metrics, "app_request_errors_total", handler="request", kind="server") == 1
    assert sample(metrics, "app_request_errors_total", handler="stage", kind="server") == 1
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
from opsmon import instrument
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
    assert registry.get_sample_value("app_request_errors_total", {"handler": "process_video", "kind": "server"}) == 3
    assert registry.get_sample_value("app_errors_total", {"category": "external_service", "severity": "medium"}) == 3
    assert registry.get_sample_value("app_request_duration_seconds_count", {"handler": "process_video"}) == 63
    assert registry.get_sample_value("app_requests_in_progress", {"handler": "process_video"}) == 0


# An app as docs/own-app.md shows it: a handler decorated at import, prepare_multiprocess_dir() in main.
DECORATED_AT_IMPORT = """
from opsmon import instrument

@instrument.track("lend")
def lend():
    pass

instrument.prepare_multiprocess_dir()
lend()
"""


def test_a_handler_decorated_at_import_records_into_the_folder_prepared_after(tmp_path, python_env):
    directory = tmp_path / "not-yet-created"
    env = {**python_env, "PROMETHEUS_MULTIPROC_DIR": str(directory)}
    subprocess.run([sys.executable, "-c", DECORATED_AT_IMPORT], env=env, check=True, timeout=60)
    registry = CollectorRegistry()
    registry.register(AppCollector(directory))
    assert registry.get_sample_value("app_requests_total", {"handler": "lend"}) == 1


def test_prepare_refuses_without_multiprocess_mode(monkeypatch):
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    with pytest.raises(instrument.ConfigError, match="set PROMETHEUS_MULTIPROC_DIR before"):
        instrument.prepare_multiprocess_dir()


# ---- errors a person can find again: records carry the reference; track() logs an escaping error once ----

@pytest.fixture
def json_log(tmp_path):
    """The app's JSON log through instrument.setup_logging; call the fixture to stop it and read the records."""
    path = tmp_path / "app.jsonl"
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    listener = instrument.setup_logging(str(path), level="DEBUG")

    def records() -> list[dict]:
        listener.stop()
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
        return [json.loads(line) for line in path.read_text().splitlines()]

    yield records
    if listener._thread is not None:
        records()


def test_track_logs_an_escaping_error_once_at_the_level_of_its_severity(metrics, json_log):
    errors = [instrument.ValidationError("title too long"), instrument.ExternalServiceError("storage answered 503"),
              instrument.DataIntegrityError("row 12 points at no video", table="approvals"),
              instrument.ResourceExhaustedError("no space left on device")]
    for error in errors:
        with pytest.raises(instrument.OpsmonError):
            with Track(metrics, "request"):
                with Track(metrics, "stage"):  # the inner block logs it; the outer knows it was logged
                    raise error
    records = json_log()
    assert [(r["level"], r["message"], r["reference"], r["category"], r["severity"]) for r in records] == [
        ("INFO", "stage failed: title too long", errors[0].reference, "validation", "low"),
        ("WARNING", "stage failed: storage answered 503", errors[1].reference, "external_service", "medium"),
        ("ERROR", "stage failed: row 12 points at no video", errors[2].reference, "data_integrity", "high"),
        ("CRITICAL", "stage failed: no space left on device", errors[3].reference, "resource", "critical"),
    ]
    assert ["exception" in r for r in records] == [False, False, True, True]  # a traceback where it helps
    assert records[2]["context"] == {"table": "approvals"}
    assert records[0]["handler"] == "request"  # the request is the outermost block
    assert len({r["request_id"] for r in records}) == 4


def test_records_inside_a_tracked_block_name_its_request(metrics, json_log):
    log = logging.getLogger("app.test")
    with Track(metrics, "http_get_video", {"method": "GET", "path": "/videos/7"}):
        log.info("looking up video 7")
        with Track(metrics, "load"):
            log.debug("cache miss")
    log.info("between requests")
    with Track(metrics, "http_get_video"):
        log.info("the next request")
    first, second, between, third = json_log()
    assert first["request_id"] == second["request_id"] != third["request_id"]
    assert (first["handler"], first["method"], first["path"]) == ("http_get_video", "GET", "/videos/7")
    assert "request_id" not in between and "handler" not in between


def test_an_error_the_app_logged_itself_is_not_logged_again(metrics, json_log):
    log = logging.getLogger("app.test")
    with pytest.raises(instrument.DataIntegrityError):
        with Track(metrics, "check"):
            try:
                raise instrument.DataIntegrityError("approval without a video")
            except instrument.DataIntegrityError as err:
                log.exception("integrity check failed")  # at ERROR, the level its severity asks for
                raise err
    handled = instrument.ExternalServiceError("storage answered 503")
    with Track(metrics, "upload"):
        log.warning("retrying later: %s", handled)  # a handled error's record carries its fields too
    records = json_log()
    assert [r["message"] for r in records] == ["integrity check failed", "retrying later: storage answered 503"]
    assert (records[0]["category"], records[0]["severity"], records[0]["handler"]) == (
        "data_integrity", "high", "check")
    assert (records[1]["reference"], records[1]["category"], records[1]["handler"]) == (
        handled.reference, "external_service", "upload")


def test_an_unhandled_error_is_logged_with_a_reference_the_user_can_be_given(metrics, json_log):
    with pytest.raises(KeyError) as raised:
        with Track(metrics, "http_stats"):
            {}["videos"]
    shown = instrument.OpsmonError("unhandled error", reference=instrument.reference_of(raised.value))
    (record,) = json_log()
    assert (record["level"], record["message"]) == ("ERROR", "http_stats failed: KeyError: 'videos'")
    assert (record["reference"], record["category"], record["severity"]) == (shown.reference, "unhandled", "high")
    assert "Traceback" in record["exception"]
    assert shown.user_message.endswith(f"(reference {record['reference']})")


def test_an_error_logged_after_its_block_still_names_the_request(metrics, json_log):
    try:
        with Track(metrics, "process_video", {"video_id": 12}):
            raise instrument.ValidationError("not a video")
    except instrument.ValidationError as err:
        logging.getLogger("app.test").warning("rejected: %s", err)
    track_record, app_record = json_log()
    assert app_record["request_id"] == track_record["request_id"] and app_record["video_id"] == 12


def test_track_refuses_fields_that_would_shadow_a_log_record_attribute(metrics):
    with pytest.raises(ValueError, match="msg, request_id"):
        Track(metrics, "h", {"msg": "x", "request_id": "y"})


def test_the_app_collector_says_when_it_finds_no_metric_files(tmp_path, caplog):
    """The app started without PROMETHEUS_MULTIPROC_DIR, or writes elsewhere: a gauge at 0 and one log line,
    not a quiet success with every app_* series gone."""
    directory = tmp_path / "multiproc"
    directory.mkdir()
    registry = CollectorRegistry()
    registry.register(AppCollector(directory))
    with caplog.at_level(logging.WARNING, logger="exporter.collectors.app"):
        for _ in range(3):
            assert registry.get_sample_value("opsmon_app_metric_files") == 0
    warnings = [r.getMessage() for r in caplog.records if r.name == "exporter.collectors.app"]
    assert len(warnings) == 1 and str(directory) in warnings[0] and "PROMETHEUS_MULTIPROC_DIR" in warnings[0]


def test_the_app_collector_counts_the_files_it_reads(tmp_path, python_env):
    directory = tmp_path / "multiproc"
    directory.mkdir()
    registry = CollectorRegistry()
    registry.register(AppCollector(directory))
    assert registry.get_sample_value("opsmon_app_metric_files") == 0
    env = {**python_env, "PROMETHEUS_MULTIPROC_DIR": str(directory)}
    subprocess.run([sys.executable, "-c", WORKER, "1"], env=env, check=True, timeout=60)
    assert registry.get_sample_value("opsmon_app_metric_files") > 0
    assert registry.get_sample_value("app_requests_total", {"handler": "process_video"}) == 2


def test_the_app_collector_reports_a_missing_folder_as_no_files(tmp_path):
    registry = CollectorRegistry()
    registry.register(AppCollector(tmp_path / "never-created"))
    assert registry.get_sample_value("opsmon_app_metric_files") == 0


def test_preparing_a_multiprocess_folder_that_holds_other_files_leaves_them_and_says_so(tmp_path, python_env):
    """PROMETHEUS_MULTIPROC_DIR set to the app's data folder by mistake: nothing of the app's is deleted."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "shop.db").write_bytes(b"the app's data")
    (data / "counter_1.db").write_bytes(b"")
    prepare = "from opsmon.instrument import prepare_multiprocess_dir\nprepare_multiprocess_dir()"
    result = subprocess.run([sys.executable, "-c", prepare], env={**python_env, "PROMETHEUS_MULTIPROC_DIR": str(data)},
                            capture_output=True, text=True, timeout=60)
    assert (data / "shop.db").read_bytes() == b"the app's data"
    assert result.returncode != 0 and f"PROMETHEUS_MULTIPROC_DIR={data} holds files that are not" in result.stderr
    assert "shop.db" in result.stderr
    (data / "shop.db").unlink()  # only prometheus_client's own files left: emptied as before
    subprocess.run([sys.executable, "-c", prepare], env={**python_env, "PROMETHEUS_MULTIPROC_DIR": str(data)},
                   check=True, timeout=60)
    assert list(data.iterdir()) == []
