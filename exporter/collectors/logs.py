"""Log lines by level and by pattern from tailed files, e.g. `opsmon_log_pattern_lines_total{level="error",...} 3`."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from exporter import deadline
from exporter.logs.parse import LEVELS, parse_json, parse_text
from exporter.logs.patterns import OTHER, Patterns
from exporter.logs.tail import SourceError, Tail
from opsmon.config import LogSourceConfig
from opsmon.files import write_json_atomically

log = logging.getLogger(__name__)

TEMPLATE_LABEL_CHARS = 200
# Each scrape reads for at most this long (and half the scrape's time left): a backlog is worked
# off over several scrapes, and the scrape stays well inside Prometheus's timeout.
READ_SECONDS = 1.0
STATE_VERSION = 2


def label_template(template: str) -> str:
    return template if len(template) <= TEMPLATE_LABEL_CHARS else template[: TEMPLATE_LABEL_CHARS - 1] + "…"


class LogSource:
    """One configured file: its lines counted by level and mined into patterns. Its position, counts and
    patterns are saved after each read, so a restart resumes where it stopped, the counters carry on and
    pattern ids stay; a source that cannot be read is reported on its own, never the others."""

    def __init__(self, config: LogSourceConfig, saved: dict | None = None, clock=time.time):
        self.name = config.source
        self.tail = Tail(Path(config.path), config.max_line_bytes)
        self._parse = parse_json if config.format == "json" else parse_text
        self._max_patterns = config.max_patterns
        self._clock = clock
        self.error: str | None = None
        self._reset()
        if saved is not None:
            try:
                self._restore(saved)
            except (KeyError, TypeError, ValueError, AttributeError) as err:
                log.warning("saved state of log source %s is not usable (%s); reading %s from the start",
                            self.name, err, self.tail.path)
                self._reset()

    def _reset(self) -> None:
        self.tail.reset()
        self.counts = {level: 0 for level in LEVELS}
        self.patterns = Patterns(self._max_patterns, self._clock) if self._max_patterns else None

    def _restore(self, saved: dict) -> None:
        self.tail.restore(saved)
        counts = saved.get("counts", {})
        self.counts = {level: int(counts.get(level, 0)) for level in LEVELS}
        if self._max_patterns and saved.get("patterns"):
            self.patterns = Patterns(self._max_patterns, self._clock, saved["patterns"])
        if min(self.counts.values()) < 0:
            raise ValueError("a count is negative")

    def state(self) -> dict:
        state = {**self.tail.state(), "counts": dict(self.counts)}
        if self.patterns is not None:
            state["patterns"] = self.patterns.state()
        return state

    def read_chunk(self) -> bool:
        """Read, count and mine the next chunk of lines; False when there is nothing more to read now."""
        lines = self.tail.read_lines()
        if lines is None:
            return False
        parse, counts = self._parse, self.counts
        if self.patterns is None:
            for line in lines:
                level = parse(line)[0]
                if level is not None:
                    counts[level] += 1
            return True
        add = self.patterns.add
        for line in lines:
            level, message, when = parse(line)
            if level is not None:
                counts[level] += 1
                add(level, message, when)
        return True


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
        reading = [source for source in self._sources.values() if self._run(source, source.tail.check)]
        while reading:
            reading = [source for source in reading if self._run(source, source.read_chunk)]
            if time.monotonic() >= stop:
                break
        for source in self._sources.values():
            source.tail.measure_backlog()
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
            source.tail.close()
            return False
        self._note(source, None)
        return result

    @staticmethod
    def _note(source: LogSource, error: str | None, exc_info: bool = False) -> None:
        if error and error != source.error:
            log.warning("log source %s: %s %s", source.name, source.tail.path, error, exc_info=exc_info)
        elif not error and source.error:
            log.info("log source %s: %s is readable again", source.name, source.tail.path)
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
            truncated.add_metric([name], source.tail.truncated)
            invalid.add_metric([name], source.tail.invalid_utf8)
            backlog.add_metric([name], source.tail.backlog)
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
            source.tail.close()


def build(config):
    return LogsCollector(config.exporter.logs, config.exporter.state_directory / "logs.json")
