"""The level, message and time of a log line, in JSON, logfmt or plain text."""

from __future__ import annotations

import json
import math
import re
from datetime import datetime

LEVELS = ("debug", "info", "warning", "error", "critical")
ALIASES = {"trace": "debug", "notice": "info", "warn": "warning", "err": "error", "fatal": "critical",
           "crit": "critical", "alert": "critical", "emerg": "critical"}
JSON_LEVEL_KEYS = ("level", "levelname", "severity", "lvl")
JSON_MESSAGE_KEYS = ("message", "msg", "event")
JSON_TIME_KEYS = ("time", "timestamp", "@timestamp", "ts", "asctime")
# Upper-case level words (Python, Java, Go loggers) or logfmt's level=...: a lower-case "info"
# in a sentence is not a level.
TEXT_LEVEL = re.compile(r"\b(DEBUG|TRACE|INFO|NOTICE|WARNING|WARN|ERROR|CRITICAL|FATAL)\b")
LOGFMT_LEVEL = re.compile(r"\blevel=\"?(\w+)", re.I)
LOGFMT_MESSAGE = re.compile(r"\bmsg=(?:\"((?:[^\"\\]|\\.)*)\"|(\S+))")
TEXT_TIME = re.compile(r"\[?(\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:[.,]\d+)?(?:Z|[+-]\d{2}:?\d{2})?)")
# A JSON line cut at the length limit no longer parses: its level and message are found by pattern.
JSON_LEVEL_FIELD = re.compile(r"\"(?:level|levelname|severity|lvl)\"\s*:\s*\"(\w+)\"")
JSON_MESSAGE_FIELD = re.compile(r"\"(?:message|msg|event)\"\s*:\s*\"((?:[^\"\\]|\\.)*)")


def normalise(level: str | None) -> str | None:
    if not level:
        return None
    known = _NORMALISED.get(level, _NORMALISED)
    if known is not _NORMALISED:
        return known
    word = level.lower()
    word = ALIASES.get(word, word)
    known = word if word in LEVELS else None
    if len(_NORMALISED) < 1000:  # the words seen as levels: a handful, unless a log is garbage
        _NORMALISED[level] = known
    return known


_NORMALISED: dict[str, str | None] = {}
_decode_json = json.JSONDecoder().decode


def parse_json(line: str) -> tuple[str | None, str, object]:
    """(level, message, time as written) of a JSON line; a line that does not parse is read by pattern."""
    try:
        record = _decode_json(line)
    except (ValueError, RecursionError):  # RecursionError: a line of deeply nested brackets
        match = JSON_LEVEL_FIELD.search(line)
        if match is None:
            return None, line, None
        message = JSON_MESSAGE_FIELD.search(line)
        return normalise(match.group(1)), message.group(1) if message else line, None
    if not isinstance(record, dict):
        return None, line, None
    level = None
    for key in JSON_LEVEL_KEYS:
        if isinstance(record.get(key), str):
            level = normalise(record[key])
            break
    message = line
    for key in JSON_MESSAGE_KEYS:
        if isinstance(record.get(key), str):
            message = record[key]
            break
    when = None
    for key in JSON_TIME_KEYS:
        if key in record:
            when = record[key]
            break
    return level, message, when


def parse_text(line: str) -> tuple[str | None, str, object]:
    """(level, message, time as written) of a plain-text or logfmt line; the message follows the level."""
    match = TEXT_LEVEL.search(line)
    if "=" in line:  # the first of a level word and a logfmt level= counts
        logfmt = LOGFMT_LEVEL.search(line)
        if logfmt is not None and (match is None or logfmt.start() < match.start()):
            match = logfmt
    level = normalise(match.group(1)) if match else None
    if level is None:
        return None, line, None
    quoted = LOGFMT_MESSAGE.search(line) if "msg=" in line else None
    if quoted:
        message = quoted.group(1) if quoted.group(1) is not None else quoted.group(2)
    else:
        message = line[match.end():].lstrip(" \t:]|-").rstrip() or line
    when = TEXT_TIME.match(line)
    return level, message, when.group(1) if when else None


def parse_any(line: str) -> tuple[str | None, str, object]:
    """JSON when the line is an object, text otherwise: for files whose format nobody told us."""
    return parse_json(line) if line.lstrip().startswith("{") else parse_text(line)


def line_time_seconds(value: object) -> float | None:
    """Unix seconds from a time as a log line writes it: ISO 8601 (naive means local time, as loggers write
    it, unlike a manifest's), or Unix seconds or milliseconds; None when it is neither."""
    if isinstance(value, str):
        text = value.strip()
        try:
            value = float(text)
        except ValueError:
            if text.endswith(("Z", "z")):  # Python 3.10's fromisoformat does not take the Z
                text = text[:-1] + "+00:00"
            try:
                moment = datetime.fromisoformat(text.replace(",", "."))
            except ValueError:
                return None
            return moment.timestamp()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    seconds = float(value)
    if seconds > 1e11:
        seconds /= 1000.0
    return seconds if math.isfinite(seconds) and seconds > 0 else None
