"""Drain patterns of the logs collector: templates, the limit, stable ids across restart and rotation."""

from __future__ import annotations

import json
import os

import pytest

from exporter.collectors.logs import TEMPLATE_LABEL_CHARS, LogsCollector
from exporter.logs.parse import parse_json, parse_text
from exporter.logs.patterns import Patterns, new_pattern_id
from opsmon.config import LogSourceConfig
from tests.fakes import FakeClock


def make(tmp_path, fmt="text", clock=None, **options):
    return LogsCollector([LogSourceConfig(source="app", path=tmp_path / "app.log", format=fmt, **options)],
                         tmp_path / "state" / "logs.json", clock=clock or FakeClock(1_800_000_000.0))


def append(path, text):
    with open(path, "a") as out:
        out.write(text)


def patterns(collector) -> dict:
    """{template: (level, id, lines, first seen)} and the other counts of one scrape of source app."""
    families = {family.name: family for family in collector.collect()}
    info = {s.labels["pattern"]: s.labels for s in families["opsmon_log_pattern_info"].samples}
    first = {s.labels["pattern"]: s.value for s in families["opsmon_log_pattern_first_seen_timestamp_seconds"].samples}
    found, other = {}, {}
    for sample in families["opsmon_log_pattern_lines"].samples:
        pattern = sample.labels["pattern"]
        if pattern == "other":
            other[sample.labels["level"]] = sample.value
        else:
            labels = info[pattern]
            found[labels["template"]] = (labels["level"], pattern, sample.value, first.get(pattern))
    return {"patterns": found, "other": {level: n for level, n in other.items() if n}}


def test_lines_of_one_kind_are_one_pattern(tmp_path):
    append(tmp_path / "app.log",
           "2026-11-26 10:00:02 ERROR Upload of video 8812 failed after 3 retries: 503\n"
           "2026-11-26 10:00:03 ERROR Upload of video 97 failed after 1 retries: 502\n"
           "2026-11-26 10:00:04 INFO worker 4121 started\n")
    found = patterns(make(tmp_path))["patterns"]
    assert {template: entry[0::2] for template, entry in found.items()} == {
        "Upload of video <*> failed after <*> retries: <*>": ("error", 2),
        "worker <*> started": ("info", 1),
    }


def test_one_message_at_two_levels_is_two_patterns(tmp_path):
    append(tmp_path / "app.log", "INFO disk almost full\nERROR disk almost full\n")
    families = {family.name: family for family in make(tmp_path).collect()}
    info = [(s.labels["level"], s.labels["template"], s.labels["pattern"])
            for s in families["opsmon_log_pattern_info"].samples]
    assert [entry[:2] for entry in info] == [("info", "disk almost full"), ("error", "disk almost full")]
    assert info[0][2] != info[1][2]


def test_what_is_mined_json_message_and_text_after_the_level():
    assert parse_json('{"time": "2026-11-26T10:00:00+00:00", "level": "ERROR", "message": "upload failed", '
                      '"request_id": "ab12"}') == ("error", "upload failed", "2026-11-26T10:00:00+00:00")
    assert parse_text("2026-11-26 10:00:01,123 ERROR [worker-3] upload failed") == (
        "error", "[worker-3] upload failed", "2026-11-26 10:00:01,123")
    assert parse_text('ts=1 level=warning msg="disk almost full" free=3%') == ("warning", "disk almost full", None)
    assert parse_text("the info word in prose is no level")[0] is None


def test_variable_values_are_masked_before_mining():
    found = Patterns(limit=None)
    for message in ("request 021eb9032dc1 for user 'ann' took 1.5s from 10.0.0.7:8080",
                    "request 7fa2c0de11aa for user 'bob smith' took 12s from 192.168.1.20:443"):
        pattern = found.add("warning", message)
    assert pattern.template == "request <*> for user <*> took <*> from <*>"
    assert pattern.lines == 2


def test_at_most_the_limit_is_published_with_room_kept_for_errors(tmp_path):
    log = tmp_path / "app.log"
    kinds = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot"]
    append(log, "".join(f"INFO {kind} happened in {kind} {n}\n" for kind in kinds for n in range(2)))
    collector = make(tmp_path, max_patterns=4)
    result = patterns(collector)
    assert len(result["patterns"]) == 3  # info may take three quarters of 4
    assert result["other"] == {"info": 6}
    append(log, "ERROR disk on fire\nERROR network unplugged\nERROR disk on fire\n")
    result = patterns(collector)
    assert len(result["patterns"]) == 4
    assert result["patterns"]["disk on fire"][0::2] == ("error", 2)
    assert result["other"] == {"info": 6, "error": 1}


def test_pattern_lines_add_up_to_the_level_counts(tmp_path):
    lines = [f"{level} kind {k} of message number {n}\n" for n in range(30) for k in range(7)
             for level in ("INFO", "ERROR", "WARNING") if (n + k) % 3]
    append(tmp_path / "app.log", "".join(lines))
    collector = make(tmp_path, max_patterns=5)
    families = {family.name: family for family in collector.collect()}
    by_level = {}
    for sample in families["opsmon_log_pattern_lines"].samples:
        by_level[sample.labels["level"]] = by_level.get(sample.labels["level"], 0) + sample.value
    assert by_level == {s.labels["level"]: s.value for s in families["opsmon_log_messages"].samples}


def test_restart_keeps_ids_counts_and_first_seen(tmp_path):
    log = tmp_path / "app.log"
    append(log, "ERROR upload of video 1 failed\nINFO video 1 queued\n")
    first = make(tmp_path, clock=FakeClock(1_800_000_000.0))
    before = patterns(first)["patterns"]
    first.close()
    append(log, "ERROR upload of video 2 failed\nCRITICAL out of memory in worker 3\n")
    second = make(tmp_path, clock=FakeClock(1_800_000_900.0))
    after = patterns(second)["patterns"]
    upload = "upload of video <*> failed"
    assert after[upload] == ("error", before[upload][1], 2, 1_800_000_000.0)
    assert after["video <*> queued"] == before["video <*> queued"]
    assert after["out of memory in worker <*>"][3] == 1_800_000_900.0
    assert len({entry[1] for entry in after.values()}) == 3


def test_rotation_keeps_ids(tmp_path):
    log = tmp_path / "app.log"
    append(log, "ERROR upload of video 1 failed\n")
    collector = make(tmp_path)
    pattern_id = patterns(collector)["patterns"]["upload of video <*> failed"][1]
    os.rename(log, tmp_path / "app.log.1")
    append(log, "ERROR upload of video 2 failed\n")
    assert patterns(collector)["patterns"]["upload of video <*> failed"][1:3] == (pattern_id, 2)


def test_ids_are_never_given_to_another_template_even_after_the_state_is_lost(tmp_path):
    log = tmp_path / "app.log"
    append(log, "ERROR upload of video 1 failed\n")
    first = patterns(make(tmp_path))["patterns"]
    (tmp_path / "state" / "logs.json").unlink()
    log.unlink()
    append(log, "ERROR checksum of video 1 wrong\nERROR upload of video 2 failed\n")
    second = patterns(make(tmp_path))["patterns"]
    assert second["upload of video <*> failed"][1] == first["upload of video <*> failed"][1]
    assert second["checksum of video <*> wrong"][1] != first["upload of video <*> failed"][1]


def test_a_colliding_id_takes_the_next_link_of_the_hash_chain():
    taken = {new_pattern_id("error", "disk on fire", ())}
    again = new_pattern_id("error", "disk on fire", taken)
    assert again not in taken and len(again) == 8
    assert new_pattern_id("info", "disk on fire", ()) not in taken  # the level is part of the id


def test_first_seen_is_the_lines_own_time_never_later_than_now(tmp_path):
    append(tmp_path / "app.log",
           '{"time": "2026-11-26T10:00:00Z", "level": "ERROR", "message": "written before the exporter read it"}\n'
           '{"time": "2099-01-01T00:00:00Z", "level": "ERROR", "message": "a clock in the future"}\n'
           '{"time": 1795600000123, "level": "ERROR", "message": "in milliseconds"}\n'
           '{"level": "ERROR", "message": "no time at all"}\n'
           '{"time": "yesterday", "level": "ERROR", "message": "a time that is not one"}\n')
    found = patterns(make(tmp_path, "json", clock=FakeClock(1_800_000_000.0)))["patterns"]
    assert {template: entry[3] for template, entry in found.items()} == {
        "written before the exporter read it": 1_795_687_200.0,
        "a clock in the future": 1_800_000_000.0,
        "in milliseconds": 1_795_600_000.123,
        "no time at all": 1_800_000_000.0,
        "a time that is not one": 1_800_000_000.0,
    }


def test_a_long_template_is_cut_in_its_label(tmp_path):
    append(tmp_path / "app.log", "ERROR " + " ".join(f"word{chr(97 + n % 26)}x" for n in range(400)) + "\n")
    template = next(iter(patterns(make(tmp_path))["patterns"]))
    assert len(template) == TEMPLATE_LABEL_CHARS and template.endswith("…")


def test_max_patterns_zero_counts_levels_only(tmp_path):
    append(tmp_path / "app.log", "ERROR one\n")
    families = {family.name: family for family in make(tmp_path, max_patterns=0).collect()}
    assert families["opsmon_log_pattern_lines"].samples == []
    assert [s.value for s in families["opsmon_log_messages"].samples if s.labels["level"] == "error"] == [1]


def test_the_saved_state_is_json_with_a_version(tmp_path):
    append(tmp_path / "app.log", "ERROR one\n")
    list(make(tmp_path).collect())
    state = json.loads((tmp_path / "state" / "logs.json").read_text())
    assert state["version"] == 2
    assert [p["template"] for p in state["sources"]["app"]["patterns"]["patterns"]] == ["one"]


@pytest.mark.parametrize("garbage", [bytes(range(256)) * 40, b"\xff" * 5000 + b"\n", b"ERROR \x00\x00\xc3\x28 x\n"])
def test_binary_garbage_never_breaks_the_miner(tmp_path, garbage):
    (tmp_path / "app.log").write_bytes(garbage + b"\nERROR after the garbage\n")
    found = patterns(make(tmp_path))["patterns"]
    assert "after the garbage" in found


def test_rotation_while_the_exporter_is_stopped_keeps_ids_and_counts(tmp_path):
    log = tmp_path / "app.log"
    append(log, "ERROR upload of video 1 failed\nINFO video 1 queued\n")
    first = make(tmp_path)
    before = patterns(first)["patterns"]
    first.close()
    os.rename(log, tmp_path / "app.log.1")  # logrotate runs while the exporter is down
    append(log, "ERROR upload of video 2 failed\nINFO video 2 queued\nINFO video 3 queued\n")
    after = patterns(make(tmp_path))["patterns"]
    assert {t: (e[1], e[2]) for t, e in after.items()} == {
        "upload of video <*> failed": (before["upload of video <*> failed"][1], 2),
        "video <*> queued": (before["video <*> queued"][1], 3)}
