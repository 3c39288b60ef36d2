"""`opsmon-exporter logs report|find` on files, and on the demo's own log: a user's reference finds its line."""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import lzma
import os
import subprocess
import sys
from pathlib import Path

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
    (tmp_path / "garbage").write_bytes(bytes(range(256)) * 100 + b"\n" + b"x" * 200_000 + b"\nERROR after\n")
    code, out = run(["report", "--json", str(tmp_path / "app.log.1.gz"), str(tmp_path / "missing.log"),
                     str(tmp_path / "garbage")])
    assert code == 1
    assert sum(p["count"] for p in json.loads(out)["patterns"]) == 7
    assert "missing.log: No such file or directory" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["app.log.1", "app.log-20261126", "app.log.1.xz"])
def test_a_compressed_file_is_read_by_its_content_whatever_its_name(tmp_path, name):
    compress = lzma.compress if name.endswith(".xz") else gzip.compress
    (tmp_path / name).write_bytes(compress(TEXT_LOG.encode()))
    code, out = run(["report", "--json", str(tmp_path / name)])
    assert code == 0
    assert json.loads(out)["lines"] == 7 and sum(p["count"] for p in json.loads(out)["patterns"]) == 6


def test_devices_fifos_and_folders_are_refused_by_name(tmp_path, capsys):
    os.mkfifo(tmp_path / "pipe")  # nobody writes it: opening it must not wait
    (tmp_path / "folder").mkdir()
    log = tmp_path / "app.log"
    log.write_text(TEXT_LOG)
    for command in (["report"], ["find", "8812"]):
        code, out = run([*command, "/dev/zero", str(tmp_path / "pipe"), str(tmp_path / "folder"), str(log)])
        assert code == 1 and "8812" in out  # the regular file is read all the same
        err = capsys.readouterr().err
        assert "/dev/zero: is a device or socket, not a log file" in err
        assert f"{tmp_path / 'pipe'}: is a FIFO, not a log file" in err
        assert f"{tmp_path / 'folder'}: is a folder, not a log file" in err


def test_lines_of_deeply_nested_json_are_read_by_pattern_not_a_traceback(tmp_path):
    log = tmp_path / "nested.jsonl"
    log.write_text('{"level": "ERROR", "message": "nested", "request_id": ' + "[" * 20_000 + "]" * 20_000 + "}\n"
                   + '{"level": "ERROR", "message": "failed", "reference": "021eb9032dc1"}\n')
    code, out = run(["report", "--json", str(log)])
    assert code == 0 and sum(p["count"] for p in json.loads(out)["patterns"]) == 2
    code, out = run(["find", "021eb9032dc1", str(log)])
    assert code == 0 and out.startswith(f"{log}:2: ")


def test_report_keeps_the_collectors_pattern_limit_on_a_high_cardinality_log(tmp_path):
    words = [f"{a}{b}{c}" for a in "bcdfg" for b in "aeiou" for c in "klmnprstvz"]
    lines = [f"2026-11-26T10:{i // 60 % 60:02d}:{i % 60:02d}Z ERROR request failed: "
             + " ".join(words[(i * k * 7 + k) % len(words)] for k in range(1, 7)) for i in range(3000)]
    log = tmp_path / "varied.log"
    log.write_text("\n".join(lines) + "\n")
    code, out = run(["report", "--json", str(log)])
    assert code == 0
    rows = json.loads(out)["patterns"]
    other = [row for row in rows if row["id"] == "other"]
    assert len(rows) - len(other) == logtool.MAX_PATTERNS == 50
    assert [(row["level"], row["template"]) for row in other] == [
        ("error", "(lines of no pattern: past the limit of 50 patterns)")]
    assert sum(row["count"] for row in rows) == 3000 and other[0] == rows[0]
    assert (other[0]["first_seen"], other[0]["last_seen"]) == ("2026-11-26T10:00:50Z", "2026-11-26T10:49:59Z")


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


def file_position(path) -> int | None:
    """Where this process's open file description of `path` is read up to (Linux's /proc), None when closed."""
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/self/fd/{fd}") == str(path):
                return int(Path(f"/proc/self/fdinfo/{fd}").read_text().split()[1])
    return None


def test_find_prints_a_match_before_reading_the_rest_of_the_file(tmp_path):
    log = tmp_path / "big.jsonl"
    with open(log, "w") as out:
        out.write(json.dumps({"level": "ERROR", "message": "failed", "reference": "021eb9032dc1"}) + "\n")
        line = json.dumps({"level": "INFO", "message": "a line of another request", "request_id": "r9"}) + "\n"
        out.write(line * (20 * 2**20 // len(line)))

    class FirstPrint(io.StringIO):
        position = None

        def write(self, text):
            if self.position is None:
                self.position = file_position(log)
            return super().write(text)

    out = FirstPrint()
    assert logtool.main(["find", "021eb9032dc1", str(log)], out=out) == 0
    assert out.position is not None and out.position < 2**20 < log.stat().st_size
    assert out.getvalue() == f"{log}:1: {log.read_text().splitlines()[0]}\n"


def test_find_keeps_a_bounded_window_of_a_requests_earlier_lines(tmp_path, monkeypatch):
    monkeypatch.setattr(logtool.RequestLines, "WINDOW_CHARS", 300)
    records = [{"message": "long ago", "request_id": "r1"}]
    records += [{"message": f"busy {n}", "request_id": f"o{n}"} for n in range(10)]
    records += [{"message": "just before", "request_id": "r1"}, {"message": "busy", "request_id": "o10"},
                {"message": "failed", "reference": "021eb9032dc1", "request_id": "r1"},
                {"message": "after", "request_id": "r1"}, {"message": "busy", "request_id": "o11"}]
    log = tmp_path / "app.jsonl"
    log.write_text("".join(json.dumps(r) + "\n" for r in records))
    code, out = run(["find", "021eb9032dc1", str(log)])
    assert code == 0
    assert [line.split(" ", 1)[0] for line in out.splitlines()] == [f"{log}-12-", f"{log}:14:", f"{log}-15-"]


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
