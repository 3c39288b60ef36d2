"""Lines per second through the logs collector, levels only side by side with levels and Drain patterns,
on a generated JSON-lines log like the demo's; and the scrape time while a backlog is worked off.

    .venv/bin/python bench/logs_bench.py [--lines 1000000] [--format json|text]
    .venv/bin/python bench/logs_bench.py --tool      # `opsmon-exporter logs report|find` instead

Target: at least 50,000 lines/s with patterns on a 2-core machine. Each collect reads for
at most READ_SECONDS, so a backlog costs scrapes that long, never a scrape timeout. `logs report` takes
time linear in the lines whatever their variety (a 5 MB log of lines that share no template in a few
seconds, about as long as the same size of the usual kinds), and `logs find` holds the same memory
on any size of file.
"""

from __future__ import annotations

import argparse
import io
import json
import random
import statistics
import string
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from exporter.collectors.logs import READ_SECONDS, LogsCollector  # noqa: E402
from opsmon.config import LogSourceConfig  # noqa: E402

# (level, message) kinds as an app writes them; {n} is a number, {h} a reference, {w} a word.
KINDS = [
    ("INFO", "video {n} queued by user {n}"),
    ("INFO", "video {n} processed in {f}s"),
    ("INFO", "GET /videos/{n} answered 200 in {f} ms"),
    ("INFO", "POST /videos answered 201 in {f} ms"),
    ("DEBUG", "cache hit for key video:{n}"),
    ("DEBUG", "claimed video {n} from the queue"),
    ("INFO", "worker {n} started"),
    ("WARNING", "video {n} waits for the external API: external API answered {c}"),
    ("WARNING", "slow request GET /stats took {f}s"),
    ("WARNING", "http_get_video failed: video {n} does not exist"),
    ("INFO", "http_create_video failed: title missing or too long"),
    ("ERROR", "process_video failed: transcoding video {n} failed: ffmpeg exited with status {c}"),
    ("ERROR", "process_video failed: checksum of video {n} does not match its upload ({h})"),
    ("ERROR", "external API timed out after {n}s"),
    ("CRITICAL", "process_video failed: no space left on device writing video {n}"),
    ("INFO", "faults changed: {{'error_rate': {f}}}"),
    ("INFO", "webhook {w}: firing OpsmonErrorBudgetBurn"),
    ("WARNING", "retrying upload {n} to bucket {w} (attempt {c})"),
]
WEIGHTS = [30, 30, 60, 20, 40, 30, 1, 5, 3, 4, 2, 3, 1, 1, 0.2, 0.1, 0.5, 2]


def generate(path: Path, lines: int, fmt: str, seed: int = 16) -> None:
    rng = random.Random(seed)
    moment = datetime(2026, 11, 26, tzinfo=timezone.utc)
    words = ["pager", "ops", "mail", "backup", "offsite", "archive"]
    with open(path, "w") as out:
        for _ in range(lines):
            level, text = rng.choices(KINDS, WEIGHTS)[0]
            message = text.format(n=rng.randint(1, 10**6), f=round(rng.uniform(0, 30), 3),
                                  c=rng.choice([1, 2, 3, 502, 503]), h=f"{rng.getrandbits(48):012x}",
                                  w=rng.choice(words))
            moment += timedelta(milliseconds=rng.randint(1, 50))
            if fmt == "json":
                out.write(json.dumps({"time": moment.isoformat(timespec="milliseconds"), "level": level,
                                      "logger": "demo", "message": message, "process": rng.randint(100, 104),
                                      "request_id": f"{rng.getrandbits(48):012x}"}) + "\n")
            else:
                out.write(f"{moment:%Y-%m-%d %H:%M:%S},{moment.microsecond // 1000:03d} {level} demo: {message}\n")


def work_off(log: Path, fmt: str, max_patterns: int, state: Path) -> dict:
    """Scrape (collect) until the whole file is read; each collect reads for at most READ_SECONDS."""
    source = LogSourceConfig(source="bench", path=log, format=fmt, max_patterns=max_patterns)
    collector = LogsCollector([source], state)
    durations = []
    started = time.perf_counter()
    while True:
        begun = time.perf_counter()
        families = {family.name: family for family in collector.collect()}
        durations.append(time.perf_counter() - begun)
        if families["opsmon_log_backlog_bytes"].samples[0].value == 0:
            break
    elapsed = time.perf_counter() - started
    idle = []
    for _ in range(20):  # caught up: what a scrape costs with nothing new to read
        begun = time.perf_counter()
        list(collector.collect())
        idle.append(time.perf_counter() - begun)
    counted = sum(s.value for s in families["opsmon_log_messages"].samples)
    patterns = len(families["opsmon_log_pattern_info"].samples)
    collector.close()
    return {"lines": counted, "seconds": elapsed, "rate": counted / elapsed, "scrapes": len(durations),
            "max_scrape": max(durations), "idle_scrape": statistics.median(idle), "patterns": patterns}


def generate_varied(path: Path, megabytes: float, seed: int = 25) -> None:
    """Lines that share no template: one length, one start, and random words, as Drain's worst case."""
    rng = random.Random(seed)
    size = int(megabytes * 2**20)
    with open(path, "w") as out:
        while out.tell() < size:
            words = " ".join("".join(rng.choices(string.ascii_lowercase, k=rng.randint(3, 9))) for _ in range(6))
            out.write(f"2026-11-26T10:00:00Z ERROR request failed: {words}\n")


def report_seconds(log: Path) -> float:
    from exporter import logtool

    begun = time.perf_counter()
    assert logtool.main(["report", str(log)], out=io.StringIO()) == 0
    return time.perf_counter() - begun


def find_peak_rss(log: Path, word: str) -> int:
    """Peak resident bytes of `logs find` in a process of its own, its matches thrown away."""
    code = ("import resource, sys; from exporter import logtool; "
            f"logtool.main(['find', {word!r}, {str(log)!r}], out=open('/dev/null', 'w')); "
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    return int(result.stdout) * 1024


def tool(tmp: Path) -> None:
    usual, varied, half = tmp / "usual.log", tmp / "varied.log", tmp / "varied-half.log"
    generate(usual, 75_000, "text")  # about 5 MB
    megabytes = usual.stat().st_size / 2**20
    generate_varied(varied, megabytes)
    generate_varied(half, megabytes / 2)
    baseline, seconds, half_seconds = report_seconds(usual), report_seconds(varied), report_seconds(half)
    print(f"logs report, {megabytes:.1f} MB: usual kinds {baseline:.2f} s (the baseline), lines sharing no "
          f"template {seconds:.2f} s: ratio {seconds / baseline:.1f} (no line found in a cache; the same at any "
          f"size); half their size {half_seconds:.2f} s: ratio {seconds / half_seconds:.1f} (linear: about 2)")
    small, large = tmp / "small.jsonl", tmp / "large.jsonl"
    generate(small, 20_000, "json")
    generate(large, 400_000, "json")
    small_rss, large_rss = find_peak_rss(small, "video"), find_peak_rss(large, "video")
    print(f"logs find of a word on most lines: peak RSS {small_rss / 2**20:.0f} MiB on "
          f"{small.stat().st_size / 2**20:.0f} MiB (the baseline), {large_rss / 2**20:.0f} MiB on "
          f"{large.stat().st_size / 2**20:.0f} MiB: ratio {large_rss / small_rss:.2f} "
          f"(streamed: the same past the 4 MB window of a request's lines)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--format", choices=["json", "text"], default="json")
    parser.add_argument("--tool", action="store_true", help="time `logs report` and measure `logs find` instead")
    args = parser.parse_args()
    if args.tool:
        with tempfile.TemporaryDirectory() as tmp:
            tool(Path(tmp))
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / f"app.{args.format}"
        generate(log, args.lines, args.format)
        size = log.stat().st_size
        print(f"{args.lines:,} {args.format} lines, {size / 2**20:.0f} MiB; each scrape reads for at most "
              f"{READ_SECONDS:g} s\n")
        results = {"levels only": work_off(log, args.format, 0, Path(tmp) / "levels.json"),
                   "levels + patterns": work_off(log, args.format, 50, Path(tmp) / "patterns.json")}
    print(f"{'':20} {'lines/s':>10} {'total s':>8} {'scrapes':>8} {'max scrape s':>13} {'idle scrape ms':>15} "
          f"{'patterns':>9}")
    for name, r in results.items():
        print(f"{name:20} {r['rate']:>10,.0f} {r['seconds']:>8.1f} {r['scrapes']:>8} {r['max_scrape']:>13.2f} "
              f"{r['idle_scrape'] * 1000:>15.1f} {r['patterns']:>9}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
