"""Log lines by level from tailed files, e.g. `opsmon_log_messages_total{level="error",source="demo"} 3`.

Offsets and counts are saved after each read, so a restart resumes where it stopped and the
counters carry on; a rotated file is read to its end before the new one, a truncated one from 0.
"""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path

from prometheus_client.core import CounterMetricFamily

from opsmon.files import write_json_atomically

log = logging.getLogger(__name__)

LEVELS = ("debug", "info", "warning", "error", "critical")
ALIASES = {"trace": "debug", "notice": "info", "warn": "warning", "err": "error", "fatal": "critical",
           "crit": "critical", "alert": "critical", "emerg": "critical"}
JSON_LEVEL_KEYS = ("level", "levelname", "severity", "lvl")
# Upper-case level words (Python, Java, Go loggers) or logfmt's level=...: a lower-case "info"
# in a sentence is not a level.
TEXT_LEVEL = re.compile(r"\b(DEBUG|TRACE|INFO|NOTICE|WARNING|WARN|ERROR|CRITICAL|FATAL)\b|\blevel=\"?(\w+)", re.I)
MAX_BYTES_PER_READ = 8 * 1024 * 1024  # a huge backlog is worked off over several scrapes
# The last bytes read are kept and compared before reading on: a file truncated and written past
# our offset again (copytruncate between two scrapes) is noticed although it is not smaller.
FINGERPRINT_BYTES = 64


def normalise(level: str | None) -> str | None:
    if not level:
        return None
    level = level.lower()
    level = ALIASES.get(level, level)
    return level if level in LEVELS else None


def json_level(line: str) -> str | None:
    try:
        record = json.loads(line)
    except ValueError:
        return None
    if not isinstance(record, dict):
        return None
    for key in JSON_LEVEL_KEYS:
        if isinstance(record.get(key), str):
            return normalise(record[key])
    return None


def text_level(line: str) -> str | None:
    for match in TEXT_LEVEL.finditer(line):
        word, logfmt = match.groups()
        if word and word.isupper():
            return normalise(word)
        if logfmt:
            return normalise(logfmt)
    return None


class LogTail:
    """One file followed across rotation and truncation."""

    def __init__(self, path: Path, parse, saved: dict | None = None):
        self.path = Path(path)
        self._parse = parse
        saved = saved or {}
        self.inode = saved.get("inode")
        self.offset = int(saved.get("offset", 0))
        self.fingerprint = bytes.fromhex(saved.get("fingerprint", ""))
        self.counts = {level: int(saved.get("counts", {}).get(level, 0)) for level in LEVELS}
        self._handle = None

    def state(self) -> dict:
        return {"inode": self.inode, "offset": self.offset, "fingerprint": self.fingerprint.hex(),
                "counts": dict(self.counts)}

    def read_new(self) -> None:
        try:
            stat = os.stat(self.path)
        except FileNotFoundError:
            self._drain_and_close()  # rotated away and not yet recreated
            return
        if self._handle is None or stat.st_ino != self.inode:
            self._drain_and_close()
            self._open(stat)
        elif not self._still_same_content(stat):
            log.info("%s was truncated; reading it from the start", self.path)
            self._restart()
        self._count_lines()

    def _still_same_content(self, stat) -> bool:
        if stat.st_size < self.offset:
            return False
        self._handle.seek(self.offset - len(self.fingerprint))
        return self._handle.read(len(self.fingerprint)) == self.fingerprint

    def _restart(self) -> None:
        self.offset = 0
        self.fingerprint = b""

    def _open(self, stat) -> None:
        resuming = stat.st_ino == self.inode
        self.inode = stat.st_ino
        self._handle = open(self.path, "rb")
        if not (resuming and self._still_same_content(stat)):
            self._restart()

    def _drain_and_close(self) -> None:
        if self._handle is not None:
            self._count_lines()
            self._handle.close()
            self._handle = None

    def _count_lines(self) -> None:
        self._handle.seek(self.offset)
        chunk = self._handle.read(MAX_BYTES_PER_READ)
        complete = chunk[: chunk.rfind(b"\n") + 1]  # a line still being written waits for its newline
        for line in complete.decode("utf-8", errors="replace").splitlines():
            level = self._parse(line)
            if level:
                self.counts[level] += 1
        self.offset += len(complete)
        if complete:
            self.fingerprint = complete[-FINGERPRINT_BYTES:]

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None


class LogsCollector:
    name = "logs"

    def __init__(self, sources, state_file: Path):
        self._state_file = Path(state_file)
        saved = self._load_state()
        self._tails = {
            source.source: LogTail(source.path, json_level if source.format == "json" else text_level,
                                   saved.get(source.source))
            for source in sources
        }

    def _load_state(self) -> dict:
        try:
            return json.loads(self._state_file.read_text())
        except FileNotFoundError:
            return {}
        except ValueError:
            log.warning("%s is not valid JSON; counting log lines from the start", self._state_file)
            return {}

    def describe(self):
        return []

    def collect(self):
        # The scraper never runs a collector twice at once, so no two reads share an offset.
        for tail in self._tails.values():
            tail.read_new()
        write_json_atomically(self._state_file, {name: tail.state() for name, tail in self._tails.items()})
        family = CounterMetricFamily("opsmon_log_messages", "Log lines read, by level.", labels=["source", "level"])
        for name, tail in sorted(self._tails.items()):
            for level in LEVELS:
                family.add_metric([name, level], tail.counts[level])
        yield family

    def close(self) -> None:
        for tail in self._tails.values():
            tail.close()


def build(config):
    return LogsCollector(config.exporter.logs, config.exporter.state_directory / "logs.json")
