"""Log tailing: rotation, truncation, partial lines, and no line counted twice across restarts."""

from __future__ import annotations

import os

from exporter.collectors.logs import LogsCollector
from opsmon.config import LogSourceConfig


def counts(collector) -> dict:
    family = next(iter(collector.collect()))
    return {s.labels["level"]: s.value for s in family.samples if s.value}


def make(tmp_path, fmt="text"):
    return LogsCollector([LogSourceConfig(source="app", path=tmp_path / "app.log", format=fmt)],
                         tmp_path / "state" / "logs.json")


def append(path, text):
    with open(path, "a") as out:
        out.write(text)


def test_restart_resumes_without_recounting(tmp_path):
    log = tmp_path / "app.log"
    append(log, "ERROR one\nINFO two\n")
    first = make(tmp_path)
    assert counts(first) == {"error": 1, "info": 1}
    first.close()
    append(log, "ERROR three\n")
    second = make(tmp_path)  # a new exporter process reading the saved state
    assert counts(second) == {"error": 2, "info": 1}


def test_partial_line_waits_for_its_newline(tmp_path):
    log = tmp_path / "app.log"
    append(log, "ERROR whole\nWARNING half")
    collector = make(tmp_path)
    assert counts(collector) == {"error": 1}
    append(log, " of a line\n")
    assert counts(collector) == {"error": 1, "warning": 1}


def test_rotation_reads_the_old_file_to_its_end_then_the_new(tmp_path):
    log = tmp_path / "app.log"
    append(log, "INFO a\n")
    collector = make(tmp_path)
    assert counts(collector) == {"info": 1}
    append(log, "ERROR written just before rotation\n")
    os.rename(log, tmp_path / "app.log.1")
    append(log, "CRITICAL in the new file\n")
    assert counts(collector) == {"info": 1, "error": 1, "critical": 1}


def test_file_missing_between_rotation_and_recreation(tmp_path):
    log = tmp_path / "app.log"
    append(log, "INFO a\n")
    collector = make(tmp_path)
    counts(collector)
    os.rename(log, tmp_path / "app.log.1")
    assert counts(collector) == {"info": 1}
    append(log, "INFO b\n")
    assert counts(collector) == {"info": 2}


def test_truncation_starts_again_from_zero(tmp_path):
    log = tmp_path / "app.log"
    append(log, "INFO a\nINFO b\nINFO c\n")
    collector = make(tmp_path)
    assert counts(collector) == {"info": 3}
    with open(log, "w") as out:  # copytruncate, as logrotate does
        out.write("ERROR after truncation\n")
    assert counts(collector) == {"info": 3, "error": 1}


def test_json_levels(tmp_path):
    log = tmp_path / "app.log"
    append(log, '{"level": "DEBUG"}\n{"levelname": "fatal"}\n{"severity": "Warning"}\n[1, 2]\n{"level": 5}\n')
    assert counts(make(tmp_path, "json")) == {"debug": 1, "critical": 1, "warning": 1}


def test_corrupt_state_file_is_not_fatal(tmp_path, caplog):
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "logs.json").write_text("{not json")
    append(tmp_path / "app.log", "INFO a\n")
    assert counts(make(tmp_path)) == {"info": 1}
    assert "not valid JSON" in caplog.text
