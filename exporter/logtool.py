"""`opsmon-exporter logs report|find`: the patterns of log files, and the lines of one error, on a terminal."""

from __future__ import annotations

import argparse
import gzip
import json
import lzma
import os
import re
import stat
import sys
import time
from collections import deque
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import BinaryIO, Iterable, Iterator

from exporter.collectors.logs import LEVELS, OTHER, Patterns, log_timestamp, parse_any
from opsmon.config import LogSourceConfig

# As the collector's defaults: longer lines are cut before they are parsed, and past the limit of
# patterns a line that fits none counts as other, so mining stays linear in the lines however varied.
MAX_LINE_BYTES = LogSourceConfig.model_fields["max_line_bytes"].default
MAX_PATTERNS = LogSourceConfig.model_fields["max_patterns"].default
# Rotated logs are compressed under any name (logrotate's compressext, or none): known by their first bytes.
COMPRESSED = {b"\x1f\x8b": gzip.open, b"\xfd7zXZ\x00": lzma.open}
EXAMPLE_CHARS = 300
DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhdw])$")
UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


class Unreadable(Exception):
    """A file given on the command line cannot be read; the message names it."""


@contextmanager
def open_log(path: Path) -> Iterator[BinaryIO]:
    """The file's bytes, decompressed when its content says it is compressed; a device, FIFO or folder
    is refused (it never ends, or has no lines), and opening never waits for a FIFO's writer."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        kind = "a folder" if stat.S_ISDIR(mode) else "a FIFO" if stat.S_ISFIFO(mode) else "a device or socket"
        raise Unreadable(f"{path}: is {kind}, not a log file")
    with os.fdopen(fd, "rb") as raw:
        start = raw.read(6)
        raw.seek(0)
        decompress = next((opener for magic, opener in COMPRESSED.items() if start.startswith(magic)), None)
        if decompress is None:
            yield raw
        else:
            with decompress(raw, "rb") as handle:
                yield handle


def read_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, text) of a log file, plain or compressed (rotated logs), cut and decoded as the collector
    does."""
    try:
        with open_log(path) as handle:
            number = 0
            while raw := handle.readline(MAX_LINE_BYTES + 1):
                number += 1
                if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):  # skip the rest, never hold it all
                    while (rest := handle.readline(1024 * 1024)) and not rest.endswith(b"\n"):
                        pass
                yield number, raw[:MAX_LINE_BYTES].rstrip(b"\r\n").decode("utf-8", "replace")
    except (OSError, EOFError, lzma.LZMAError) as err:
        raise Unreadable(f"{path}: {getattr(err, 'strerror', None) or err}") from None


def parse_since(value: str, now: float) -> float:
    """`30m`, `1h`, `2d`, `1w` before now, or a moment in ISO 8601."""
    match = DURATION.match(value.strip())
    if match:
        return now - float(match.group(1)) * UNIT_SECONDS[match.group(2)]
    moment = log_timestamp(value) if not value.strip().replace(".", "").isdigit() else None
    if moment is None:
        raise argparse.ArgumentTypeError(f"--since {value!r}: give a duration (30m, 1h, 2d) or an ISO 8601 time")
    return moment


def iso(moment: float | None) -> str | None:
    if moment is None:
        return None
    return datetime.fromtimestamp(moment, timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def report(files: list[Path], since: float | None = None, level: str | None = None) -> tuple[dict, list[str]]:
    """Mine the files in order (oldest first, as rotation names them); returns the report and the problems."""
    patterns = Patterns(limit=MAX_PATTERNS)
    stats: dict[tuple[str, str], list] = {}  # (pattern id or other, level) -> [count, first, last seen, example]
    lowest = LEVELS.index(level) if level else 0
    problems, lines_read = [], 0
    for path in files:
        last_time = None  # a line without a time (a traceback's) belongs to the time of the line before
        try:
            for _, line in read_lines(path):
                lines_read += 1
                line_level, message, when = parse_any(line)
                moment = log_timestamp(when) if when is not None else None
                if moment is None:
                    moment = last_time
                last_time = moment
                if line_level is None or LEVELS.index(line_level) < lowest:
                    continue
                if since is not None and (moment is None or moment < since):
                    continue
                pattern = patterns.add(line_level, message, when)
                key = (pattern.id if pattern is not None else OTHER, line_level)
                entry = stats.get(key)
                if entry is None:
                    stats[key] = [1, moment, moment, line]
                    continue
                entry[0] += 1
                if moment is not None:
                    entry[1] = moment if entry[1] is None else min(entry[1], moment)
                    entry[2] = moment if entry[2] is None else max(entry[2], moment)
        except Unreadable as err:
            problems.append(str(err))
    rows = []
    other = f"(lines of no pattern: past the limit of {MAX_PATTERNS} patterns)"
    for (pattern_id, row_level), (count, first, last, example) in stats.items():
        template = other if pattern_id == OTHER else patterns.patterns[pattern_id].template
        rows.append({"id": pattern_id, "level": row_level, "template": template, "count": count,
                     "first_seen": iso(first), "last_seen": iso(last), "example": example})
    rows.sort(key=lambda row: (-row["count"], -LEVELS.index(row["level"]), row["id"]))
    return {"files": [str(path) for path in files], "lines": lines_read, "patterns": rows}, problems


def print_report(result: dict, out) -> None:
    rows = result["patterns"]
    matched = sum(row["count"] for row in rows)
    print(f"{len(rows)} patterns in {matched:,} of {result['lines']:,} lines ({', '.join(result['files'])})",
          file=out)
    if not rows:
        return
    width = max(5, len(f"{rows[0]['count']:,}"))
    print(f"{'COUNT':>{width}}  {'LEVEL':8}  {'FIRST SEEN':20}  {'LAST SEEN':20}  PATTERN", file=out)
    for row in rows:
        example = row["example"] if len(row["example"]) <= EXAMPLE_CHARS else row["example"][:EXAMPLE_CHARS] + "…"
        print(f"{row['count']:>{width},}  {row['level']:8}  {row['first_seen'] or '-':20}  "
              f"{row['last_seen'] or '-':20}  {row['template']}", file=out)
        print(f"{'':>{width}}  {'':8}  e.g. {example}", file=out)


def _request_of(line: str) -> str | None:
    if not line.lstrip().startswith("{"):
        return None
    try:
        record = json.loads(line)
    except (ValueError, RecursionError):
        return None
    value = record.get("request_id") if isinstance(record, dict) else None
    return value if isinstance(value, str) and value else None


class RequestLines:
    """The lines of requests, for `find`: a window of the recent lines of each request (printed when one of
    its lines names the reference), and the requests found so far, whose later lines print as they come.
    Both are bounded, so memory stays flat on any file: a request's lines lie close together."""

    WINDOW_CHARS = 4 * 1024 * 1024
    FOUND_REQUESTS = 1000

    def __init__(self):
        self._recent: dict[str, deque[tuple[int, str]]] = {}
        self._order: deque[tuple[str, int, int]] = deque()  # (request, line number, length), oldest first
        self._chars = 0
        self._found: dict[str, None] = {}  # insertion-ordered: the oldest is forgotten first

    def found(self, request: str) -> Iterable[tuple[int, str]]:
        """The request of a line naming the reference: its earlier lines still in the window."""
        self._found[request] = None
        if len(self._found) > self.FOUND_REQUESTS:
            del self._found[next(iter(self._found))]
        return self._recent.pop(request, ())

    def is_found(self, request: str) -> bool:
        return request in self._found

    def remember(self, request: str, number: int, line: str) -> None:
        self._recent.setdefault(request, deque()).append((number, line))
        self._order.append((request, number, len(line)))
        self._chars += len(line)
        while self._chars > self.WINDOW_CHARS:
            oldest, oldest_number, length = self._order.popleft()
            self._chars -= length
            lines = self._recent.get(oldest)
            if lines and lines[0][0] == oldest_number:  # not printed already when its request was found
                lines.popleft()
                if not lines:
                    del self._recent[oldest]


def find(reference: str, files: list[Path], out) -> tuple[int, list[str]]:
    """Print each line naming `reference` (FILE:N: line) and the lines of its request (FILE-N- line), as they
    are read; returns how many lines named it, and the problems."""
    found, problems = 0, []
    for path in files:
        requests = RequestLines()
        try:
            for number, line in read_lines(path):
                request = _request_of(line) if '"request_id"' in line else None
                if reference in line:
                    found += 1
                    earlier = requests.found(request) if request else []
                    for earlier_number, earlier_line in earlier:
                        print(f"{path}-{earlier_number}- {earlier_line}", file=out)
                    print(f"{path}:{number}: {line}", file=out)
                elif request is None:
                    continue
                elif requests.is_found(request):
                    print(f"{path}-{number}- {line}", file=out)
                else:
                    requests.remember(request, number, line)
        except Unreadable as err:
            problems.append(str(err))
    return found, problems


def parse_args(argv) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="opsmon-exporter logs", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    report_parser = commands.add_parser(
        "report", help="the patterns of log files: count, level, first and last seen, an example line",
        description=f"Group the lines of log files (JSON lines or text, compressed or not) into Drain patterns, "
                    f"as the logs collector does: at most {MAX_PATTERNS}, the rest count as other. Give rotated "
                    f"files oldest first.")
    report_parser.add_argument("files", nargs="+", type=Path, metavar="FILE")
    report_parser.add_argument("--since", help="only lines written in this last while (30m, 1h, 2d, 1w) or "
                                               "since this ISO 8601 time")
    report_parser.add_argument("--level", choices=LEVELS, help="only lines of this level and above")
    report_parser.add_argument("--json", action="store_true", help="one JSON document, for scripts")
    find_parser = commands.add_parser(
        "find", help="the log line of an error reference, and the lines of the same request",
        description="Print each line naming REFERENCE (FILE:N: line) and the other lines of its request "
                    "(FILE-N- line). Exits 1 when no line names it.")
    find_parser.add_argument("reference", help="the reference a user was shown, e.g. 021eb9032dc1")
    find_parser.add_argument("files", nargs="+", type=Path, metavar="FILE")
    args = parser.parse_args(argv)
    if args.command == "find" and len(args.reference.strip()) < 4:
        parser.error("find: give the whole reference (12 characters, as the user was shown it)")
    if getattr(args, "since", None):
        try:
            args.since = parse_since(args.since, time.time())
        except argparse.ArgumentTypeError as err:
            parser.error(str(err))
    return args


def main(argv=None, out=None) -> int:
    """0 when all went well; 1 when a file could not be read or the reference was not found; 2 for usage."""
    args = parse_args(argv)
    try:
        return _run(args, out or sys.stdout)
    except BrokenPipeError:  # `... | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


def _run(args: argparse.Namespace, out) -> int:
    if args.command == "report":
        result, problems = report(args.files, args.since, args.level)
        if args.json:
            json.dump(result, out, indent=2)
            out.write("\n")
        else:
            print_report(result, out)
    else:
        found, problems = find(args.reference.strip(), args.files, out)
        if not found and not problems:
            problems = [f"no line names {args.reference} in {', '.join(map(str, args.files))}"]
    for problem in problems:
        print(f"opsmon-exporter logs: {problem}", file=sys.stderr)
    return 1 if problems else 0
