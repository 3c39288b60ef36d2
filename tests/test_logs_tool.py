"""`opsmon-exporter logs report|find` on files, and on the demo's own log: a user's reference finds its line."""

from __future__ import annotations

import gzip
import io
import json
import os
import subprocess
import sys

import pytest
import requests

from exporter import logtool
from tests.conftest import REPO, free_port, start, stop, wait_for

TEXT_LOG = (
    "2026-11-26T10:00:00Z INFO worker 11 started\n"
    "2026-11-26T10:00:05Z ERROR Upload of video 8812 failed after 3 retries: 503\n"
    "Traceback (most recent call last): a continuation line without a level\n"
    "2026-11-26T10:20:00Z ERROR Upload of video 97 failed after 1 retries: 502\n"
    "2026-11-26T10:30:00Z CRITICAL disk full on /var\n"
    "2026-11-26T10:40:00Z INFO worker 12 started\n"
    "2026-11-26T10:45:00Z ERROR Upload of video 98 failed after 2 retries: 503\n"
)


def run(argv) -> tuple[int, str]:
    out = io.StringIO()
    return logtool.main(argv, out=out), out.getvalue()


def test_report_prints_each_pattern_with_count_first_and_last_seen_and_an_example(tmp_path):
    log = tmp_path / "app.log"
    log.write_text(TEXT_LOG)
    code, out = run(["report", str(log)])
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == f"3 patterns in 6 of 7 lines ({log})"
    assert lines[1].split() == ["COUNT", "LEVEL", "FIRST", "SEEN", "LAST", "SEEN", "PATTERN"]
    assert lines[2].split() == ["3", "error", "2026-11-26T10:00:05Z", "2026-11-26T10:45:00Z",
                                "Upload", "of", "video", "<*>", "failed", "after", "<*>", "retries:", "<*>"]
    assert lines[3].strip() == "e.g. 2026-11-26T10:00:05Z ERROR Upload of video 8812 failed after 3 retries: 503"
    assert lines[4].split()[:2] == ["2", "info"] and lines[6].split()[:2] == ["1", "critical"]


def test_report_filters_by_level_and_time_and_speaks_json(tmp_path):
    log = tmp_path / "app.log"
    log.write_text(TEXT_LOG)
    code, out = run(["report", "--level", "error", "--since", "2026-11-26T10:10:00Z", "--json", str(log)])
    assert code == 0
    result = json.loads(out)
    assert [(p["level"], p["count"], p["first_seen"], p["last_seen"]) for p in result["patterns"]] == [
        ("error", 2, "2026-11-26T10:20:00Z", "2026-11-26T10:45:00Z"),
        ("critical", 1, "2026-11-26T10:30:00Z", "2026-11-26T10:30:00Z")]
    assert result["patterns"][0]["template"] == "Upload of video <*> failed after <*> retries: <*>"
    assert result["lines"] == 7


def test_report_reads_rotated_gzip_files_and_reports_an_unreadable_one(tmp_path, capsys):
    with gzip.open(tmp_path / "app.log.1.gz", "wt") as out:
        out.write(TEXT_LOG)
    (tmp_path / "folder").mkdir()
    (tmp_path / "garbage").write_bytes(bytes(range(256)) * 100 + b"\n" + b"x" * 200_000 + b"\nERROR after\n")
    code, out = run(["report", "--json", str(tmp_path / "app.log.1.gz"), str(tmp_path / "folder"),
                     str(tmp_path / "garbage")])
    assert code == 1
    assert sum(p["count"] for p in json.loads(out)["patterns"]) == 7
    assert "folder: Is a directory" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["report", "--since", "yesterday", "x.log"], ["find", "", "x.log"], ["report"]])
def test_bad_arguments_exit_2_with_a_message(argv, capsys):
    with pytest.raises(SystemExit) as exit_:
        logtool.main(argv)
    assert exit_.value.code == 2 and "opsmon-exporter logs" in capsys.readouterr().err


def test_find_prints_the_line_and_the_lines_of_its_request(tmp_path, capsys):
    records = [
        {"level": "INFO", "message": "GET /videos/7", "request_id": "r1"},
        {"level": "INFO", "message": "other request", "request_id": "r2"},
        {"level": "INFO", "message": "looked up video 7", "request_id": "r1"},
        {"level": "WARNING", "message": "http_get_video failed: no video 7", "reference": "021eb9032dc1",
         "request_id": "r1"},
        {"level": "INFO", "message": "the message names r1 but is another request", "request_id": "r3"},
    ]
    log = tmp_path / "app.jsonl"
    log.write_text("".join(json.dumps(r) + "\n" for r in records))
    code, out = run(["find", "021eb9032dc1", str(log)])
    assert code == 0
    assert [line.split(" ", 1)[0] for line in out.splitlines()] == [f"{log}-1-", f"{log}-3-", f"{log}:4:"]
    code, out = run(["find", "ffffffffffff", str(log)])
    assert (code, out) == (1, "")
    assert "no line names ffffffffffff" in capsys.readouterr().err


@pytest.fixture(scope="module")
def demo_log(tmp_path_factory):
    """The demo app run for a few seconds with its faults: a missing video, failing jobs, a full disk."""
    tmp_path = tmp_path_factory.mktemp("demo")
    python_env = {key: value for key, value in os.environ.items() if key != "PROMETHEUS_MULTIPROC_DIR"}
    port = free_port()
    log = tmp_path / "demo.jsonl"
    process = start(["-m", "demo", "serve", "--db", str(tmp_path / "demo.db"), "--listen", f"127.0.0.1:{port}",
                     "--metrics-dir", str(tmp_path / "metrics"), "--log-file", str(log), "--rate", "40"],
                    python_env, log=tmp_path / "out")
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: requests.get(f"{url}/health", timeout=1).ok, what="the demo app")
        missing = requests.get(f"{url}/videos/999999", timeout=5).json()  # before the injected errors
        requests.post(f"{url}/admin/faults", json={"error_rate": 0.5}, timeout=5).raise_for_status()
        wait_for(lambda: log.read_text().count("checksum of video") >= 1, what="an integrity error in the log")
        requests.post(f"{url}/admin/faults", json={"error_rate": 0, "storage_full": True}, timeout=5)
        wait_for(lambda: "no space left on device" in log.read_text(), what="the new kind of error in the log")
    finally:
        stop(process)
    return log, missing


def test_a_users_reference_finds_exactly_one_line_of_the_demos_log(demo_log):
    log, missing = demo_log
    reference = missing["message"].rsplit("(reference ", 1)[1].rstrip(")")
    assert reference == missing["reference"]
    result = subprocess.run([sys.executable, "-m", "exporter", "logs", "find", reference, str(log)], cwd=REPO,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    found = [line for line in result.stdout.splitlines() if line.startswith(f"{log}:")]
    assert len(found) == 1
    record = json.loads(found[0].split(": ", 1)[1])
    assert (record["reference"], record["category"], record["severity"], record["level"]) == (
        reference, "not_found", "low", "INFO")
    assert record["handler"] == "http_get_video" and record["path"] == "/videos/999999" and record["request_id"]


def test_every_error_line_of_the_demo_carries_its_reference_once(demo_log):
    log, _ = demo_log
    errors = [json.loads(line) for line in log.read_text().splitlines() if '"reference"' in line]
    assert errors
    for record in errors:
        assert {"reference", "category", "severity", "request_id", "handler"} <= set(record), record
    references = [record["reference"] for record in errors if record["logger"] == "opsmon.instrument"]
    assert len(references) == len(set(references))  # track() logs an escaping error exactly once


def test_report_shows_the_demos_patterns_and_the_new_kind_of_error(demo_log):
    log, _ = demo_log
    code, out = run(["report", "--json", "--level", "error", str(log)])
    assert code == 0
    templates = {(p["level"], p["template"]) for p in json.loads(out)["patterns"]}
    assert ("critical", "process_video failed: no space left on device writing the transcoded file of video <*>") \
        in templates
    assert ("error", "process_video failed: checksum of video <*> does not match its upload (<*>)") in templates


def test_the_exporter_command_takes_logs_as_a_command_and_keeps_its_serving_flags(tmp_path, capsys):
    from exporter import cli

    log = tmp_path / "app.log"
    log.write_text(TEXT_LOG)
    assert cli.main(["logs", "report", str(log)]) == 0
    assert "Upload of video <*> failed after <*> retries: <*>" in capsys.readouterr().out
    args = cli.parse_args(["--config.file", "x.yml", "--web.listen-address", ":9", "--no-collector.gpu"])
    assert (args.config_file, args.listen_address, args.collector_gpu) == ("x.yml", ":9", False)
