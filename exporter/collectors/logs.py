"""Log lines by level and by pattern from tailed files, e.g. `opsmon_log_pattern_lines_total{level="error",...} 3`.

Each source's lines are grouped into templates with Drain (drain3): `upload of video 8812 failed: 503`
and `upload of video 97 failed: 502` are one pattern `upload of video <*> failed: <*>`. JSON lines are
mined on their message, text lines on what follows the level. Offsets, counts and patterns are saved
after each read, so a restart resumes where it stopped, the counters carry on and pattern ids stay.
A rotated file (or the copy copytruncate leaves) is read to its end before the new one, a truncated one
from 0; a line longer than the limit is cut (and counted), and a source that cannot be read is reported
on its own, never the others.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
import stat as stat_module
import time
from datetime import datetime
from pathlib import Path

from drain3.drain import Drain, LogCluster
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from exporter import deadline
from opsmon.files import write_json_atomically

log = logging.getLogger(__name__)

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
# Values that vary between lines of one kind, masked before mining so that the first line of a
# kind already gives a template: uuids, hex ids (references, hashes), quoted values, numbers.
MASK = re.compile(
    r"(?<![\w.])(?:"
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
    r"|(?=[0-9a-f]*\d)(?=[0-9a-f]*[a-f])[0-9a-f]{8,}\b"
    r"|[-+]?\d+(?:[.:,]\d+)*(?:[a-zA-Z]{1,3}\b|%|\b)"  # with a unit: 1.5s, 200ms, 3%
    r")"
    r"|\"[^\"]*\"|'[^']*'"
)
WILDCARD = "<*>"
PATTERN_ID = re.compile(r"[0-9a-f]{8}")
MINED_CHARS = 1000  # a message is mined on its start: templates (and the state file) stay small
TEMPLATE_LABEL_CHARS = 200
OTHER = "other"
# Each scrape reads for at most this long (and half the scrape's time left): a backlog is worked
# off over several scrapes, and the scrape stays well inside Prometheus's timeout.
READ_SECONDS = 1.0
CHUNK_BYTES = 1024 * 1024
# The last bytes read are kept and compared before reading on: a file truncated and written past
# our offset again (copytruncate between two scrapes) is noticed although it is not smaller.
FINGERPRINT_BYTES = 64
# Names logrotate gives the copy of app.log: app.log.1, app.log-20261203 (a compressed one cannot be
# compared with what was read).
ROTATED_SUFFIX = re.compile(r"[.-]\d[\d.-]*")
STATE_VERSION = 2
_CACHE_ENTRIES = 10_000  # per cache and source: memory stays bounded whatever the log holds


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


def log_timestamp(value: object) -> float | None:
    """Unix seconds from a log line's time: ISO 8601 (naive means local time, as loggers write it),
    or Unix seconds or milliseconds; None when it is neither."""
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


def masked(message: str) -> str:
    """The message as Drain mines it: cut, variable values replaced by <*>."""
    text = MASK.sub(WILDCARD, message[:MINED_CHARS]).strip()
    return text or "<empty>"


def label_template(template: str) -> str:
    return template if len(template) <= TEMPLATE_LABEL_CHARS else template[: TEMPLATE_LABEL_CHARS - 1] + "…"


def new_pattern_id(level: str, template: str, taken) -> str:
    """8 hex digits of a hash of the level and the first template: the same kind gets the same id after
    the state was lost, another kind another id; on a collision, the next link of the hash chain."""
    digest = hashlib.sha256(f"{level}\n{template}".encode()).hexdigest()
    while digest[:8] in taken:
        digest = hashlib.sha256(digest.encode()).hexdigest()
    return digest[:8]


class Pattern:
    """One template of one level: a Drain cluster with the id it is published under."""

    __slots__ = ("id", "level", "cluster", "first_seen", "lines")

    def __init__(self, pattern_id: str, level: str, cluster: LogCluster, first_seen: float | None, lines: int = 0):
        self.id = pattern_id
        self.level = level
        self.cluster = cluster
        self.first_seen = first_seen
        self.lines = lines

    @property
    def template(self) -> str:
        return self.cluster.get_template()


class Patterns:
    """The patterns of one source: one Drain per level, at most `limit` patterns in all.

    Levels below error may take only three quarters of the limit, so a chatty info log cannot
    leave no room for a new kind of error. Past the limit, lines that fit no pattern count as other.
    Ids come from new_pattern_id: an id is never given to another template, even after the state was lost.
    """

    def __init__(self, limit: int | None, clock=None, saved: dict | None = None):
        self.limit = limit
        self._clock = clock
        self._miners: dict[str, Drain] = {}
        self._by_cluster: dict[tuple[str, int], Pattern] = {}
        self.patterns: dict[str, Pattern] = {}
        self.other = {level: 0 for level in LEVELS}
        self._below_error = 0
        self._raw_cache: dict[tuple[str, str], Pattern | None] = {}
        self._cache: dict[tuple[str, str], Pattern | None] = {}
        if saved:
            self._restore(saved)

    def _miner(self, level: str) -> Drain:
        miner = self._miners.get(level)
        if miner is None:
            miner = self._miners[level] = Drain(depth=4, sim_th=0.5, max_children=100, param_str=WILDCARD)
        return miner

    def add(self, level: str, message: str, when: object = None) -> Pattern | None:
        """Count one line; returns its pattern, or None when it counted under other."""
        key = (level, message[:MINED_CHARS])
        pattern = self._raw_cache.get(key, self)
        if pattern is self:
            text = masked(message)
            pattern = self._cache.get((level, text), self)
            if pattern is self:
                pattern = self._mine(level, text, when)
                if len(self._cache) >= _CACHE_ENTRIES:
                    self._cache.clear()
                self._cache[(level, text)] = pattern
            if len(self._raw_cache) >= _CACHE_ENTRIES:
                self._raw_cache.clear()
            self._raw_cache[key] = pattern
        if pattern is None:
            self.other[level] += 1
        else:
            pattern.lines += 1
        return pattern

    def _room(self, level: str) -> bool:
        if self.limit is None:
            return True
        if len(self.patterns) >= self.limit:
            return False
        return level in ("error", "critical") or self._below_error < self.limit - self.limit // 4

    def _mine(self, level: str, text: str, when: object) -> Pattern | None:
        miner = self._miner(level)
        if not self._room(level):
            tokens = miner.get_content_as_tokens(text)
            if miner.tree_search(miner.root_node, tokens, miner.sim_th, False) is None:
                return None
        cluster, change = miner.add_log_message(text)
        if change != "cluster_created":
            return self._by_cluster[(level, cluster.cluster_id)]
        return self._publish(level, cluster, self._first_seen(when))

    def _first_seen(self, when: object) -> float | None:
        """The line's own time (a backlog read late is not new), never later than now."""
        written = log_timestamp(when) if when is not None else None
        now = self._clock() if self._clock else None
        if now is None or written is None:
            return written if now is None else now
        return min(written, now)

    def _publish(self, level: str, cluster: LogCluster, first_seen: float | None, pattern_id: str | None = None):
        if pattern_id is None:
            pattern_id = new_pattern_id(level, cluster.get_template(), self.patterns)
        pattern = Pattern(pattern_id, level, cluster, first_seen)
        self.patterns[pattern_id] = pattern
        self._by_cluster[(level, cluster.cluster_id)] = pattern
        if level not in ("error", "critical"):
            self._below_error += 1
        return pattern

    def state(self) -> dict:
        return {"patterns": [{"id": p.id, "level": p.level, "template": p.template, "first_seen": p.first_seen,
                              "lines": p.lines} for p in self.patterns.values()],
                "other": dict(self.other)}

    def _restore(self, saved: dict) -> None:
        """Rebuild each level's Drain tree from the saved templates, in the order they were created."""
        entries = saved["patterns"]
        if not isinstance(entries, list):
            raise ValueError("patterns is not a list")
        for entry in entries[: self.limit]:  # a lowered limit keeps the oldest patterns
            pattern_id, level, template = str(entry["id"]), entry["level"], entry["template"]
            first_seen, lines = entry["first_seen"], int(entry["lines"])
            if not PATTERN_ID.fullmatch(pattern_id) or level not in LEVELS or not isinstance(template, str) \
                    or not template.split() or lines < 0:
                raise ValueError(f"pattern {pattern_id!r} is not valid")
            if first_seen is not None and not (isinstance(first_seen, (int, float)) and math.isfinite(first_seen)):
                raise ValueError(f"pattern {pattern_id!r} has no valid first_seen")
            if pattern_id in self.patterns:
                raise ValueError(f"pattern {pattern_id!r} appears twice")
            miner = self._miner(level)
            miner.clusters_counter += 1
            cluster = LogCluster(template.split(), miner.clusters_counter)
            miner.id_to_cluster[cluster.cluster_id] = cluster
            miner.add_seq_to_prefix_tree(miner.root_node, cluster)
            self._publish(level, cluster, first_seen, pattern_id).lines = lines
        other = saved.get("other", {})
        self.other = {level: int(other.get(level, 0)) for level in LEVELS}


class SourceError(Exception):
    """This source cannot be read now; the message says why."""


def open_regular_file(path: Path):
    """The file opened for reading in binary; SourceError when it is not a regular file. O_NONBLOCK: a FIFO
    put in the file's place must not hang the scrape in open()."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    if not stat_module.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise SourceError("is not a regular file")
    return os.fdopen(fd, "rb")


class LogSource:
    """One configured file, followed across rotation and truncation, its lines counted and mined."""

    def __init__(self, config, saved: dict | None = None, clock=time.time):
        self.name = config.source
        self.path = Path(config.path)
        self._parse = parse_json if config.format == "json" else parse_text
        self._max_line = config.max_line_bytes
        self._max_patterns = config.max_patterns
        self._clock = clock
        self._handle = None
        self._rotated = False
        self._siblings: set[int] | None = None  # inodes of the rotated copies seen at the last check
        self.error: str | None = None
        self.backlog = 0
        self._reset()
        if saved is not None:
            try:
                self._restore(saved)
            except (KeyError, TypeError, ValueError, AttributeError) as err:
                log.warning("saved state of log source %s is not usable (%s); reading %s from the start",
                            self.name, err, self.path)
                self._reset()

    def _reset(self) -> None:
        self.inode = None
        self.offset = 0
        self.fingerprint = b""
        self.skipping = False  # inside a line already cut: drop bytes up to its newline
        self.counts = {level: 0 for level in LEVELS}
        self.truncated = 0
        self.invalid_utf8 = 0
        self.patterns = Patterns(self._max_patterns, self._clock) if self._max_patterns else None

    def _restore(self, saved: dict) -> None:
        inode = saved.get("inode")
        if inode is not None and not isinstance(inode, int):
            raise ValueError("inode is not a number")
        self.inode = inode
        self.offset = int(saved.get("offset", 0))
        self.fingerprint = bytes.fromhex(saved.get("fingerprint", ""))
        if self.offset < 0 or len(self.fingerprint) > self.offset:
            raise ValueError("offset and fingerprint do not agree")
        self.skipping = bool(saved.get("skipping", False))
        counts = saved.get("counts", {})
        self.counts = {level: int(counts.get(level, 0)) for level in LEVELS}
        self.truncated = int(saved.get("truncated", 0))
        self.invalid_utf8 = int(saved.get("invalid_utf8", 0))
        if self._max_patterns and saved.get("patterns"):
            self.patterns = Patterns(self._max_patterns, self._clock, saved["patterns"])
        if min(self.counts.values()) < 0 or self.truncated < 0 or self.invalid_utf8 < 0:
            raise ValueError("a count is negative")

    def state(self) -> dict:
        state = {"inode": self.inode, "offset": self.offset, "fingerprint": self.fingerprint.hex(),
                 "skipping": self.skipping, "counts": dict(self.counts), "truncated": self.truncated,
                 "invalid_utf8": self.invalid_utf8}
        if self.patterns is not None:
            state["patterns"] = self.patterns.state()
        return state

    # ---- following the file -------------------------------------------------------------------

    def check(self) -> bool:
        """Once per scrape: open the file, notice rotation and truncation; SourceError when unreadable."""
        try:
            stat = os.stat(self.path)
        except FileNotFoundError:
            if self._handle is not None:
                self._rotated = True  # moved away and not yet recreated: read the old file to its end
            elif self.inode is None:
                raise SourceError("does not exist") from None
            return True
        except OSError as err:
            raise SourceError(err.strerror or str(err)) from None
        if not stat_module.S_ISREG(stat.st_mode):
            self.close()
            raise SourceError("is not a regular file")
        new_copies = self._new_siblings()
        if self._handle is None:
            self._open()
        elif stat.st_ino != self.inode:
            self._rotated = True
        elif found := self._copy_of_what_was_read(new_copies):
            self._read_copy_first(*found)
        elif not self._still_same_content(stat.st_size):
            log.info("%s was truncated; reading it from the start", self.path)
            self._restart()
        return True

    def _new_siblings(self) -> list[Path]:
        """Rotated copies of this file that appeared since the last check, the first check only noting them.

        copytruncate copies the file and empties it in place: same inode, and written past our offset
        again before the next scrape, a file of same-looking lines shows the same size and fingerprint.
        The copy, a new file holding what was read, is what tells."""
        found = {}
        try:
            with os.scandir(self.path.parent) as entries:
                for entry in entries:
                    suffix = entry.name[len(self.path.name):]
                    if (entry.name.startswith(self.path.name) and ROTATED_SUFFIX.fullmatch(suffix)
                            and entry.is_file(follow_symlinks=False)):
                        found[entry.inode()] = Path(entry.path)
        except OSError:
            return []
        known, self._siblings = self._siblings, set(found)
        if known is None:
            return []
        return [path for inode, path in found.items() if inode not in known and inode != self.inode]

    def _copy_of_what_was_read(self, copies: list[Path]):
        """The copy that holds this file's bytes up to the offset read, and a handle open on it; or None."""
        for copy in copies if self.fingerprint else ():
            try:
                handle = open_regular_file(copy)
            except (OSError, SourceError):  # gone, or not a plain file: not a copy
                continue
            if os.fstat(handle.fileno()).st_size >= self.offset:
                handle.seek(self.offset - len(self.fingerprint))
                if handle.read(len(self.fingerprint)) == self.fingerprint:
                    return copy, handle
            handle.close()
        return None

    def _read_copy_first(self, copy: Path, handle) -> None:
        """Read the lines written before the copy from the copy, to its end, then the file from its start."""
        log.info("%s was copied to %s and truncated; reading the copy to its end, then the file from the start",
                 self.path, copy.name)
        self._handle.close()
        self._handle = handle
        self.inode = os.fstat(handle.fileno()).st_ino
        self._rotated = True

    def _open(self) -> None:
        try:
            self._handle = open_regular_file(self.path)
        except FileNotFoundError:
            return
        except OSError as err:
            raise SourceError(err.strerror or str(err)) from None
        stat = os.fstat(self._handle.fileno())
        resuming = stat.st_ino == self.inode
        self.inode = stat.st_ino
        if not (resuming and self._still_same_content(stat.st_size)):
            self._restart()

    def _still_same_content(self, size: int) -> bool:
        if size < self.offset:
            return False
        self._handle.seek(self.offset - len(self.fingerprint))
        return self._handle.read(len(self.fingerprint)) == self.fingerprint

    def _restart(self) -> None:
        self.offset = 0
        self.fingerprint = b""
        self.skipping = False

    def read_chunk(self) -> bool:
        """Read and count the next chunk; False when there is nothing more to read now."""
        if self._handle is None:
            return False
        try:
            if self._read_chunk():
                return True
            if not self._rotated:
                return False
            self._rotated = False
            self._handle.close()
            self._handle = None
            self.check()  # the new file at the path, from its start
            return self._handle is not None
        except OSError as err:
            self.close()
            raise SourceError(err.strerror or str(err)) from None

    def _read_chunk(self) -> bool:
        self._handle.seek(self.offset)
        chunk = self._handle.read(max(CHUNK_BYTES, 2 * self._max_line))
        if not chunk:
            return False
        end = chunk.rfind(b"\n") + 1  # a line still being written waits for its newline...
        if self.skipping:
            newline = chunk.find(b"\n")
            if newline < 0:
                self._consumed(chunk, len(chunk))
                return True
            self.skipping = False
            start = newline + 1
        else:
            start = 0
        if end > start:
            self._count(chunk[start:end - 1])
        if len(chunk) - max(end, start) > self._max_line:  # ...unless it is already too long
            self._count(chunk[max(end, start):])
            self.skipping = True
            end = len(chunk)
        elif end == 0:
            return False if not self.skipping else True
        self._consumed(chunk, max(end, start))
        return True

    def _consumed(self, chunk: bytes, length: int) -> None:
        self.offset += length
        self.fingerprint = (self.fingerprint + chunk[max(0, length - FINGERPRINT_BYTES):length])[-FINGERPRINT_BYTES:]

    def _count(self, data: bytes) -> None:
        """Count and mine complete lines (joined by newlines, the last without one)."""
        raw = data.split(b"\n")
        limit = self._max_line
        if max(map(len, raw)) > limit:
            lines = []
            for line in raw:
                if len(line) > limit:
                    self.truncated += 1
                    lines.append(line[:limit].decode("utf-8", "replace"))
                else:
                    lines.append(self._decode(line))
        else:
            try:
                lines = data.decode("utf-8").split("\n")
            except UnicodeDecodeError:
                lines = [self._decode(line) for line in raw]
        parse, counts = self._parse, self.counts
        if self.patterns is None:
            for line in lines:
                level = parse(line)[0]
                if level is not None:
                    counts[level] += 1
            return
        add = self.patterns.add
        for line in lines:
            level, message, when = parse(line)
            if level is not None:
                counts[level] += 1
                add(level, message, when)

    def _decode(self, line: bytes) -> str:
        try:
            return line.decode("utf-8")
        except UnicodeDecodeError:
            self.invalid_utf8 += 1
            return line.decode("utf-8", "replace")

    def measure_backlog(self) -> None:
        try:
            self.backlog = max(0, os.fstat(self._handle.fileno()).st_size - self.offset) if self._handle else 0
        except OSError:
            self.backlog = 0

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None
        self._rotated = False


class LogsCollector:
    name = "logs"

    def __init__(self, sources, state_file: Path, clock=time.time, read_seconds: float = READ_SECONDS):
        self._state_file = Path(state_file)
        self._read_seconds = read_seconds
        saved = self._load_state()
        self._sources = {config.source: LogSource(config, saved.get(config.source), clock) for config in sources}

    def _load_state(self) -> dict:
        """The saved state by source; anything unreadable means starting from the start, said once."""
        try:
            document = json.loads(self._state_file.read_bytes())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, RecursionError) as err:
            log.warning("%s is not valid JSON (%s); counting log lines from the start", self._state_file, err)
            return {}
        if isinstance(document, dict) and document.get("version") == STATE_VERSION:
            document = document.get("sources")
        if not isinstance(document, dict):  # the first format was the mapping of sources alone
            log.warning("%s is not valid JSON state of the logs collector; counting log lines from the start",
                        self._state_file)
            return {}
        return {name: saved for name, saved in document.items() if isinstance(saved, dict)}

    def describe(self):
        return []

    def collect(self):
        # The scraper never runs a collector twice at once, so no two reads share an offset.
        stop = time.monotonic() + min(self._read_seconds, deadline.remaining(2 * self._read_seconds) / 2)
        reading = [source for source in self._sources.values() if self._run(source, source.check)]
        while reading:
            reading = [source for source in reading if self._run(source, source.read_chunk)]
            if time.monotonic() >= stop:
                break
        for source in self._sources.values():
            source.measure_backlog()
        write_json_atomically(self._state_file, {
            "version": STATE_VERSION, "sources": {name: source.state() for name, source in self._sources.items()}})
        yield from self._families()

    def _run(self, source: LogSource, step) -> bool:
        """One step of one source; its failure marks that source down (logged once), never the others."""
        try:
            result = step()
        except SourceError as err:
            self._note(source, str(err))
            return False
        except Exception as err:  # noqa: BLE001 - a bug met in one source's lines must not cost the rest
            self._note(source, f"failed: {type(err).__name__}: {err}", exc_info=True)
            source.close()
            return False
        self._note(source, None)
        return result

    @staticmethod
    def _note(source: LogSource, error: str | None, exc_info: bool = False) -> None:
        if error and error != source.error:
            log.warning("log source %s: %s %s", source.name, source.path, error, exc_info=exc_info)
        elif not error and source.error:
            log.info("log source %s: %s is readable again", source.name, source.path)
        source.error = error

    def _families(self):
        sources = sorted(self._sources.items())
        messages = CounterMetricFamily("opsmon_log_messages", "Log lines read, by level.", labels=["source", "level"])
        up = GaugeMetricFamily("opsmon_log_source_up", "1 when the log file could be read at this scrape.",
                               labels=["source"])
        truncated = CounterMetricFamily("opsmon_log_lines_truncated",
                                        "Lines longer than max_line_bytes, cut before they were parsed.",
                                        labels=["source"])
        invalid = CounterMetricFamily("opsmon_log_lines_invalid_utf8",
                                      "Lines that were not valid UTF-8 (read with replacement characters).",
                                      labels=["source"])
        backlog = GaugeMetricFamily("opsmon_log_backlog_bytes",
                                    "Bytes written to the log file and not read yet (worked off over scrapes).",
                                    labels=["source"])
        lines = CounterMetricFamily("opsmon_log_pattern_lines",
                                    "Log lines by Drain pattern; past the limit of patterns, pattern=\"other\".",
                                    labels=["source", "level", "pattern"])
        info = GaugeMetricFamily("opsmon_log_pattern_info", "The template of a pattern; always 1.",
                                 labels=["source", "level", "pattern", "template"])
        first_seen = GaugeMetricFamily("opsmon_log_pattern_first_seen_timestamp_seconds",
                                       "When the first line of a pattern was written (or read, without a time), "
                                       "in Unix seconds.", labels=["source", "pattern"])
        for name, source in sources:
            for level in LEVELS:
                messages.add_metric([name, level], source.counts[level])
            up.add_metric([name], 0 if source.error else 1)
            truncated.add_metric([name], source.truncated)
            invalid.add_metric([name], source.invalid_utf8)
            backlog.add_metric([name], source.backlog)
            if source.patterns is None:
                continue
            for pattern in sorted(source.patterns.patterns.values(), key=lambda p: (LEVELS.index(p.level), p.id)):
                lines.add_metric([name, pattern.level, pattern.id], pattern.lines)
                info.add_metric([name, pattern.level, pattern.id, label_template(pattern.template)], 1)
                if pattern.first_seen is not None:
                    first_seen.add_metric([name, pattern.id], pattern.first_seen)
            for level in LEVELS:
                lines.add_metric([name, level, OTHER], source.patterns.other[level])
        yield from (messages, up, truncated, invalid, backlog, lines, info, first_seen)

    def close(self) -> None:
        for source in self._sources.values():
            source.close()


def build(config):
    return LogsCollector(config.exporter.logs, config.exporter.state_directory / "logs.json")
