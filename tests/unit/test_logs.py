"""Log tailing: rotation, truncation, partial lines, no line counted twice across restarts, and bad input."""

from __future__ import annotations

import logging
import os
import shutil

import pytest

from exporter.collectors.logs import LogsCollector
from opsmon.config import InvalidConfig, LogSourceConfig, parse_config


def counts(collector) -> dict:
    family = next(iter(collector.collect()))
    assert family.name == "opsmon_log_messages"
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


def copytruncate(log) -> None:
    """What logrotate's copytruncate does: copy the file aside, then empty it in place (same inode)."""
    shutil.copyfile(log, log.with_name(log.name + ".1"))
    with open(log, "r+") as out:
        out.truncate(0)


def rename(log) -> None:
    os.rename(log, log.with_name(log.name + ".1"))


@pytest.mark.parametrize("rotate", [copytruncate, rename])
@pytest.mark.parametrize("after", [1500, 500])
def test_same_looking_lines_across_a_rotation_are_each_counted_once(tmp_path, rotate, after, caplog):
    """The 64-byte fingerprint of a file of identical lines matches at any offset: copytruncate followed by
    more lines than were read looks like a file that only grew. The lines written between the last scrape
    and the rotation count too."""
    caplog.set_level(logging.INFO)
    log = tmp_path / "app.log"
    append(log, "ERROR the same line\n" * 1000)
    collector = make(tmp_path)
    assert counts(collector) == {"error": 1000}
    append(log, "ERROR the same line\n" * 200)
    rotate(log)
    append(log, "ERROR the same line\n" * after)
    assert counts(collector) == {"error": 1200 + after}
    if rotate is copytruncate:
        assert f"{log} was copied to app.log.1 and truncated" in caplog.text
    append(log, "ERROR the same line\n" * 10)
    assert counts(collector) == {"error": 1210 + after}


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


# ---- bad input: one source's trouble is counted or reported, never a failed scrape ----

def scrape(collector) -> dict:
    """{family name: {label values tuple: value}} of one collect()."""
    return {family.name: {tuple(sorted(s.labels.items())): s.value for s in family.samples}
            for family in collector.collect()}


def value(result, family, **labels):
    return result[family][tuple(sorted(labels.items()))]


def test_a_line_longer_than_a_read_is_cut_and_counted_and_the_lines_after_it_are_read(tmp_path):
    log = tmp_path / "app.log"
    with open(log, "wb") as out:  # 20 MB in one line: it used to stall the file at offset 0 for good
        out.write(b"ERROR " + b"x" * (20 * 1024 * 1024) + b"\nERROR after the long line\n")
    collector = make(tmp_path)
    result = scrape(collector)
    assert value(result, "opsmon_log_messages", source="app", level="error") == 2
    assert value(result, "opsmon_log_lines_truncated", source="app") == 1
    assert value(result, "opsmon_log_backlog_bytes", source="app") == 0
    assert value(result, "opsmon_log_source_up", source="app") == 1
    append(log, "INFO later\n")
    assert counts(collector) == {"error": 2, "info": 1}


def test_a_long_line_still_being_written_is_cut_once_even_across_a_restart(tmp_path):
    log = tmp_path / "app.log"
    append(log, "ERROR " + "y" * 100_000)  # no newline yet, and already over max_line_bytes
    first = make(tmp_path)
    assert counts(first) == {"error": 1}
    first.close()
    append(log, "z" * 3_000_000)
    second = make(tmp_path)  # restarted in the middle of the cut line: the rest is skipped
    assert counts(second) == {"error": 1}
    append(log, "z\nINFO next\n")
    result = scrape(second)
    assert value(result, "opsmon_log_lines_truncated", source="app") == 1
    assert value(result, "opsmon_log_messages", source="app", level="info") == 1


def test_a_cut_json_line_keeps_its_level(tmp_path):
    log = tmp_path / "app.log"
    append(log, '{"level": "ERROR", "message": "upload failed", "exception": "' + "t" * 200_000 + '"}\n')
    assert counts(make(tmp_path, "json")) == {"error": 1}


def test_invalid_utf8_and_binary_garbage_are_counted_not_fatal(tmp_path):
    log = tmp_path / "app.log"
    garbage = bytes(range(128, 256)) * 50 + b"\x00\x01\x02\n" + bytes(range(0x80, 0x100)) + b"\n"
    log.write_bytes(b"ERROR caf\xe9 is not UTF-8\n" + garbage + b"INFO fine\n")
    result = scrape(make(tmp_path))
    assert value(result, "opsmon_log_source_up", source="app") == 1
    assert value(result, "opsmon_log_lines_invalid_utf8", source="app") == 3
    assert value(result, "opsmon_log_messages", source="app", level="error") == 1
    assert value(result, "opsmon_log_messages", source="app", level="info") == 1


def two_sources(tmp_path):
    (tmp_path / "bad").mkdir()
    sources = [LogSourceConfig(source="good", path=tmp_path / "good.log"),
               LogSourceConfig(source="bad", path=tmp_path / "bad" / "app.log")]
    append(tmp_path / "good.log", "ERROR one\n")
    return sources


@pytest.mark.parametrize("breakage", ["folder", "fifo", "parent is a file", "missing"])
def test_one_unreadable_source_is_down_and_the_others_go_on(tmp_path, breakage, caplog):
    sources = two_sources(tmp_path)
    bad = tmp_path / "bad" / "app.log"
    if breakage == "folder":
        bad.mkdir()
    elif breakage == "fifo":
        os.mkfifo(bad)  # opening it for reading would block: it must not hang the scrape
    elif breakage == "parent is a file":
        (tmp_path / "bad").rmdir()
        (tmp_path / "bad").write_text("a file where the folder was\n")
    collector = LogsCollector(sources, tmp_path / "state" / "logs.json")
    for _ in range(2):
        result = scrape(collector)
        assert value(result, "opsmon_log_source_up", source="good") == 1
        assert value(result, "opsmon_log_source_up", source="bad") == 0
        assert value(result, "opsmon_log_messages", source="good", level="error") == 1
        assert value(result, "opsmon_log_messages", source="bad", level="error") == 0
    assert len([r for r in caplog.records if "log source bad" in r.getMessage()]) == 1  # once, not every scrape


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_a_file_without_read_permission_is_down(tmp_path):
    sources = two_sources(tmp_path)
    bad = tmp_path / "bad" / "app.log"
    bad.write_text("ERROR secret\n")
    bad.chmod(0)
    result = scrape(LogsCollector(sources, tmp_path / "state.json"))
    assert value(result, "opsmon_log_source_up", source="bad") == 0
    assert value(result, "opsmon_log_source_up", source="good") == 1


def test_a_file_replaced_by_a_folder_keeps_its_counts_and_recovers(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    log = tmp_path / "app.log"
    append(log, "ERROR one\n")
    collector = make(tmp_path)
    assert counts(collector) == {"error": 1}
    log.unlink()
    log.mkdir()
    result = scrape(collector)
    assert value(result, "opsmon_log_source_up", source="app") == 0
    assert value(result, "opsmon_log_messages", source="app", level="error") == 1  # no counter reset
    log.rmdir()
    append(log, "ERROR two\n")
    result = scrape(collector)
    assert value(result, "opsmon_log_source_up", source="app") == 1
    assert value(result, "opsmon_log_messages", source="app", level="error") == 2
    assert "is readable again" in caplog.text


def test_a_file_rotated_away_and_not_yet_recreated_is_not_down(tmp_path):
    log = tmp_path / "app.log"
    append(log, "INFO a\n")
    collector = make(tmp_path)
    scrape(collector)
    os.rename(log, tmp_path / "app.log.1")
    assert value(scrape(collector), "opsmon_log_source_up", source="app") == 1
    collector.close()
    restarted = make(tmp_path)  # it was seen before: the saved state says so
    assert value(scrape(restarted), "opsmon_log_source_up", source="app") == 1


@pytest.mark.parametrize("state", [
    b"\xff\xfe\x00\x9c broken bytes",
    b"[1, 2]",
    b'{"version": 2, "sources": ["app"]}',
    b'{"version": 2, "sources": {"app": {"offset": "far", "counts": {"info": 5}}}}',
    b'{"version": 2, "sources": {"app": {"offset": 7, "counts": {"info": -1}}}}',
    b'{"version": 2, "sources": {"app": {"offset": 7, "fingerprint": "zz"}}}',
    b'{"version": 2, "sources": {"app": {"offset": 7, "patterns": {"patterns": [{"id": "x"}]}}}}',
    b'{"version": 2, "sources": {"app": {"offset": 7, "patterns": {"patterns": [{"id": "x", "level": "loud", '
    b'"template": "t", "first_seen": 1, "lines": 1}]}}}}',
    b'{"version": 2, "sources": {"app": {"offset": 0, "patterns": {"patterns": 5}}}}',
    b'{"version": 2, "sources": {"app": {"offset": 0, "patterns": {"patterns": [{"id": "other", "level": "info", '
    b'"template": "t", "first_seen": 1, "lines": 1}]}}}}',
    b'{"version": 2, "sources": {"app": {"offset": 0, "patterns": {"patterns": [{"id": "0badcafe", "level": "info", '
    b'"template": "t", "first_seen": NaN, "lines": 1}]}}}}',
    b"[" * 100_000,
])
def test_a_broken_state_file_means_starting_fresh_never_a_crash(tmp_path, state, caplog):
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "logs.json").write_bytes(state)
    append(tmp_path / "app.log", "INFO a\nERROR b\n")
    assert counts(make(tmp_path, "text")) == {"info": 1, "error": 1}
    assert len([r for r in caplog.records if r.levelname == "WARNING"]) == 1


def test_a_backlog_is_worked_off_over_several_scrapes_without_losing_a_line(tmp_path):
    log = tmp_path / "app.log"
    append(log, "".join(f"INFO line {n} of a backlog\n" for n in range(300_000)))  # about 8 MiB
    collector = LogsCollector([LogSourceConfig(source="app", path=log)], tmp_path / "state.json", read_seconds=0)
    backlogs = []
    while not backlogs or backlogs[-1]:
        result = scrape(collector)  # with no time to read, one chunk per scrape
        backlogs.append(value(result, "opsmon_log_backlog_bytes", source="app"))
    assert len(backlogs) > 4 and backlogs == sorted(backlogs, reverse=True)
    assert value(result, "opsmon_log_messages", source="app", level="info") == 300_000


@pytest.mark.parametrize("key, bad, message", [
    ("max_line_bytes", 100, "Input should be greater than or equal to 1024"),
    ("max_line_bytes", 2 * 1024 * 1024, "Input should be less than or equal to 1048576"),
    ("max_patterns", -1, "Input should be greater than or equal to 0"),
    ("max_pattern", 10, "unknown key"),
])
def test_the_new_source_settings_are_validated(tmp_path, key, bad, message):
    document = {"database": {"path": "app.db"}, "exporter": {"logs": [{"source": "s", "path": "a.log", key: bad}]}}
    with pytest.raises(InvalidConfig) as raised:
        parse_config(document, "opsmon.yml", tmp_path)
    assert raised.value.problems == [f"opsmon.yml: exporter.logs[0].{key}: {message}"]
