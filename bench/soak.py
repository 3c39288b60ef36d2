"""The soak: the whole native stack on the demo for DURATION under traffic, faults and scaled schedules, sampled and judged.

Run with `make soak DURATION=3h` (default 30m). It uses the ports of `make run` (stop that first) and
keeps everything under .soak/: samples.csv, plots/, the services' logs and the table (report.md).
"""

from __future__ import annotations

import argparse
import os
import random
import re
import shutil
import signal
import sys
import threading
import time
from contextlib import nullcontext
from functools import partial
from datetime import datetime, timezone
from pathlib import Path

import psutil
import requests
import yaml
from croniter import croniter

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.chaos_tools import Children, tmpfs  # noqa: E402
from bench.soak_judge import (Row, alert_problems, cpu_per_scrape_rises, error_ratio_problem,  # noqa: E402
                              judge_series, markdown, per_scrape)
from bench.soak_sampler import Sampler, plot, read_samples  # noqa: E402
from exporter.collectors.footprint import folder_bytes  # noqa: E402
from opsmon.catalog import read_catalog  # noqa: E402
from opsmon.config import Retention, StackPrometheus  # noqa: E402

DEMO = "http://127.0.0.1:8080"
PROMETHEUS = "http://127.0.0.1:9090"
READY = {"demo": f"{DEMO}/health", "exporter": "http://127.0.0.1:9877/metrics",
         "backup": "http://127.0.0.1:9878/metrics", "prometheus": f"{PROMETHEUS}/-/ready",
         "alertmanager": "http://127.0.0.1:9093/-/ready", "pager": "http://127.0.0.1:8081/"}
# The schedules of opsmon.yml, many times an hour: retention (7 dailies) takes effect after 35 minutes.
SCALED_SCHEDULES = {"schedule": {"daily": "*/5 * * * *", "weekly": "2-59/20 * * * *", "monthly": "4 * * * *"},
                    "verify_schedule": "*/7 * * * *", "drill_schedule": "*/15 * * * *", "check_schedule": "*/3 * * * *"}
SCRAPE_SECONDS = 15.0  # prometheus/prometheus.yml's scrape_interval
ERROR_RATE = 0.005
# OpsmonExternalServiceDown: a 5-minute average, 1 minute `for`, 10 minutes `keep_firing_for`. A probe
# fault held this long fires it; it resolves within RESOLVE_SECONDS of the end of the fault.
PROBE_FAULT_SECONDS = 180.0
RESOLVE_SECONDS = 16 * 60.0
SHORTEST_JUDGED = 30 * 60.0
LITESTREAM_RETENTION_HOURS = 24.0  # Litestream's default: the kit sets no retention of its own


def duration(text: str) -> float:
    """'30m', '3h', '35d', '90s' or plain seconds."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([smhd]?)", text.strip())
    if not match:
        raise argparse.ArgumentTypeError(f"DURATION {text!r}: give e.g. 5m, 30m or 3h")
    return float(match.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)]


class Stack:
    """The Procfile's processes under .soak/, each in a process group of its own, with a scaled config."""

    def __init__(self, root: Path):
        self.root = root
        env = dict(os.environ, PATH=f"{REPO / '.venv' / 'bin'}:{os.environ['PATH']}", PYTHONUNBUFFERED="1")
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        self.children = Children(env, REPO)
        self.processes = {}
        self.config = root / "opsmon.soak.yml"

    def write_config(self) -> dict:
        document = yaml.safe_load((REPO / "opsmon.yml").read_text())
        text = yaml.safe_dump(document).replace(".run/", f"{self.root}/")
        document = yaml.safe_load(text)
        document["backups"].update(SCALED_SCHEDULES)
        self.config.write_text(yaml.safe_dump(document))
        return document

    def start(self) -> None:
        for line in (self.root / "Procfile").read_text().splitlines():
            name, _, command = line.partition(":")
            command = command.strip().replace("opsmon.yml", str(self.config)).replace(".run/", f"{self.root}/")
            self.processes[name] = self.children.start(["bash", "-c", command], log=self.root / "logs" / f"{name}.log")

    def pid(self, name: str):
        return lambda: self.processes[name].pid if self.processes[name].poll() is None else None

    def litestream_pid(self):
        """Litestream runs under the backup service, which restarts it when it dies."""
        try:
            children = psutil.Process(self.processes["backup"].pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return None
        return next((c.pid for c in children if "litestream" in c.name()), None)

    def wait_ready(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        waiting = dict(READY)
        while waiting and time.monotonic() < deadline:
            for name, url in list(waiting.items()):
                if self.processes[name].poll() is not None:
                    raise RuntimeError(f"{name} exited at start: see {self.root / 'logs' / (name + '.log')}")
                try:
                    if requests.get(url, timeout=2).ok:
                        del waiting[name]
                except requests.RequestException:
                    pass
            time.sleep(0.5)
        if waiting:
            raise RuntimeError(f"not ready after {timeout:.0f}s: {', '.join(waiting)}")

    def close(self) -> None:
        for process in self.processes.values():
            self.children.stop(process, timeout=10)
        self.children.close()


class Traffic(threading.Thread):
    """Uploads and reads at a few a second, a burst every two minutes, ERROR_RATE injected failures."""

    def __init__(self, stop: threading.Event, rng: random.Random):
        super().__init__(name="soak-traffic", daemon=True)
        self.stop, self.rng = stop, rng
        self.requests = self.errors = 0

    def run(self) -> None:
        session = requests.Session()
        started = time.monotonic()
        while not self.stop.is_set():
            burst = (time.monotonic() - started) % 120 < 10
            self.one(session)
            self.stop.wait(0.02 if burst else 0.25)

    def one(self, session) -> None:
        try:
            if self.rng.random() < 0.3:
                answer = session.post(f"{DEMO}/videos", json={"title": f"soak {self.requests}"}, timeout=5)
            else:
                answer = session.get(f"{DEMO}/stats", timeout=5)
            failed = answer.status_code >= 500
        except requests.RequestException:
            failed = True
        self.requests += 1
        self.errors += failed


def set_faults(**values) -> None:
    requests.post(f"{DEMO}/admin/faults", json=values, timeout=5).raise_for_status()


def rotate_log(log: Path, how: str) -> None:
    """As logrotate would: `rename` (the demo reopens its log: WatchedFileHandler) or `copytruncate`."""
    rotated = log.with_name(log.name + ".1")
    if how == "rename":
        os.replace(log, rotated)
    else:
        shutil.copyfile(log, rotated)
        with log.open("r+b") as handle:
            handle.truncate(0)


class Faults:
    """Every `every` seconds the next fault, each healing itself; the alerts each should raise."""

    def __init__(self, stack: Stack, document: dict, end: float, stop: threading.Event):
        self.stack, self.document, self.end, self.stop = stack, document, end, stop
        self.injected: list[str] = []
        self.log: list[str] = []

    def probe_down(self) -> None:
        hold = PROBE_FAULT_SECONDS if self.end - time.time() > PROBE_FAULT_SECONDS + RESOLVE_SECONDS else 20.0
        set_faults(external_available=False)
        self.stop.wait(hold)
        set_faults(external_available=True)
        if hold == PROBE_FAULT_SECONDS:
            self.injected.append("OpsmonExternalServiceDown")
        self.log.append(f"probe down for {hold:.0f}s")

    def kill_litestream(self) -> None:
        pid = self.stack.litestream_pid()
        if pid:
            os.kill(pid, signal.SIGKILL)
        self.log.append(f"Litestream (pid {pid}) killed; the backup service restarts it")

    def full_secondary(self) -> None:
        secondary = Path(self.document["backups"]["secondary_directory"])
        if not os.path.ismount(secondary):
            self.log.append("second folder not filled: it is a tmpfs only when the soak runs as root")
            return  # filling it would fill the disk the whole host writes to
        filler = secondary / ".soak-filler"
        try:
            with filler.open("wb") as handle:
                while True:
                    handle.write(b"\0" * 2**20)
        except OSError:
            pass  # full: what the copies meet until the filler goes
        self.stop.wait(60)
        filler.unlink(missing_ok=True)
        self.log.append("second folder full for 60s")

    def new_log_pattern(self) -> None:
        """Jobs fail for a moment with an error the log has not shown before: OpsmonLogPatternNew, which
        looks back 10 minutes (so it resolves only in a run of RESOLVE_SECONDS or more)."""
        set_faults(storage_full=True)
        self.stop.wait(2)
        set_faults(storage_full=False)
        self.injected.append("OpsmonLogPatternNew")
        self.log.append("a new log pattern")

    def run(self, every: float, rotations: list[str]) -> None:
        kinds = [self.probe_down, self.kill_litestream, self.full_secondary]
        log = Path(self.document["exporter"]["logs"][0]["path"])
        number = 0
        while not self.stop.wait(every):
            if time.time() > self.end - every / 2:
                return
            kinds[number % len(kinds)]()
            how = ("rename", "copytruncate")[number % 2]
            rotate_log(log, how)
            rotations.append(how)
            if number == 0:
                self.new_log_pattern()
            number += 1


def catalog_bytes(backups: Path) -> int:
    """The catalog: status.json and a manifest beside each backup."""
    return sum(path.stat().st_size for path in backups.rglob("*.json") if path.is_file())


def sizes(root: Path, document: dict) -> dict:
    """The kit's folders the soak watches, and how to measure each."""
    backups = Path(document["backups"]["directory"])
    folders = {"tsdb": root / "prometheus", "backups": backups,
               "secondary": Path(document["backups"]["secondary_directory"]),
               "replica": Path(document["backups"]["litestream"]["replica_directory"]),
               "logs": root / "logs", "exporter_state": Path(document["exporter"]["state_directory"])}
    measures = {name: partial(folder_bytes, folder) for name, folder in folders.items()}
    measures["catalog"] = partial(catalog_bytes, backups)
    return measures


def alert_episodes(start: float, end: float) -> list[tuple[str, bool]]:
    """(alertname, resolved) per firing episode, from Prometheus's ALERTS series."""
    answer = requests.get(f"{PROMETHEUS}/api/v1/query_range", timeout=30, params={
        "query": 'ALERTS{alertstate="firing"}', "start": start, "end": end, "step": SCRAPE_SECONDS}).json()
    episodes = []
    for series in answer["data"]["result"]:
        times = [float(t) for t, _ in series["values"]]
        starts = 1 + sum(1 for a, b in zip(times, times[1:]) if b - a > SCRAPE_SECONDS * 1.5)
        resolved = end - times[-1] > SCRAPE_SECONDS * 2
        episodes += [(series["metric"]["alertname"], True)] * (starts - 1) + [(series["metric"]["alertname"], resolved)]
    return episodes


def retention_horizons(document: dict) -> dict[str, float]:
    """Hours until retention removes as much as each folder gains: the backups' longest-kept tier (its count
    times its scaled interval), Litestream's default 24 h of WAL, Prometheus's retention time."""
    retention = Retention(**document["backups"].get("retention", {}))
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    backups = max(getattr(retention, tier) * (croniter(cron, start).get_next(float) - croniter(cron, start).get_prev(float))
                  for tier, cron in SCALED_SCHEDULES["schedule"].items()) / 3600
    tsdb = duration(document.get("stack", {}).get("prometheus", {}).get("retention", StackPrometheus().retention))
    return {"backups": backups, "secondary": backups, "catalog": backups, "replica": LITESTREAM_RETENTION_HOURS,
            "tsdb": tsdb / 3600}


def judge(csv_path: Path, problems: list[str], horizons: dict[str, float]) -> tuple[str, bool]:
    samples = read_samples(csv_path)
    disk = shutil.disk_usage(csv_path.parent).total
    rows: list[tuple[str, Row]] = []
    for (kind, name), (times, values) in sorted(samples.items()):
        if kind != "cpu":
            horizon = horizons.get(name) if kind == "bytes" else None
            rows.append((kind, judge_series(f"{name} {kind}", kind, times, values, horizon_hours=horizon,
                                            disk_bytes=disk)))
    if ("cpu", "exporter") in samples:
        times, cpu = samples[("cpu", "exporter")]
        scrapes = [(t - times[0]) / SCRAPE_SECONDS for t in times]
        if cpu_per_scrape_rises(times[1:], per_scrape(cpu, scrapes)):
            problems.append("exporter CPU per scrape rises")
    failed = [row.series for _, row in rows if not row.passed]
    text = markdown(rows) + "\n\n" + "\n".join(f"- FAIL: {p}" for p in problems + [f"{s} grows" for s in failed])
    return text, not problems and not failed


def interrupted(signum, frame):
    raise KeyboardInterrupt


def run(stack: Stack, document: dict, args, root: Path) -> list[str]:
    """Start the stack, drive it for the duration, and return the problems the final checks found."""
    stop = threading.Event()
    stack.start()
    stack.wait_ready()
    set_faults(error_rate=ERROR_RATE)
    started = time.time()
    end = started + args.duration
    processes = {name: stack.pid(name) for name in READY}
    processes["litestream"] = stack.litestream_pid
    sampler = Sampler(processes, sizes(root, document), root / "samples.csv", args.interval).start()
    traffic = Traffic(stop, random.Random(args.seed))
    faults = Faults(stack, document, end, stop)
    rotations: list[str] = []
    fault_thread = threading.Thread(target=faults.run, args=(min(600.0, args.duration / 6), rotations), daemon=True)
    try:
        traffic.start()
        fault_thread.start()
        print(f"soak: {args.duration / 60:.0f} minutes, samples every {args.interval:.0f}s in {root}", flush=True)
        stop.wait(max(0.0, end - time.time()))
    finally:
        stop.set()
        fault_thread.join()
        traffic.join()
        sampler.stop()
    print(f"faults: {'; '.join(faults.log) or 'none'}; log rotations: {', '.join(rotations) or 'none'}")
    return final_checks(stack, document, traffic, faults, started)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=duration, default=duration(os.environ.get("DURATION") or "30m"),
                        help="how long: 5m, 30m, 3h (default $DURATION or 30m)")
    parser.add_argument("--interval", type=float, default=30.0, help="seconds between samples (default 30)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    root = REPO / ".soak"  # where `make soak` rendered the configs (make native-configs RUN_DIR=.soak)
    signal.signal(signal.SIGTERM, interrupted)  # a kill stops the stack as Ctrl-C does
    stack = Stack(root)
    document = stack.write_config()
    secondary = Path(document["backups"]["secondary_directory"])
    try:
        # The second folder on a small disk of its own, so that filling it fills nothing else.
        with tmpfs(secondary, "256m") if os.geteuid() == 0 else nullcontext():
            try:
                problems = run(stack, document, args, root)
            finally:
                stack.close()  # before the tmpfs goes: nothing may hold it
    except KeyboardInterrupt:
        print("soak: interrupted; everything it started is stopped", file=sys.stderr)
        return 130
    table, passed = judge(root / "samples.csv", problems, retention_horizons(document))
    plot(read_samples(root / "samples.csv"), root / "plots")
    (root / "report.md").write_text(table + "\n")
    print(table)
    if args.duration < SHORTEST_JUDGED:
        print(f"note: under {SHORTEST_JUDGED / 60:.0f} minutes the warm-up is most of the run and alerts cannot "
              "resolve: this run proves the machinery, not the verdicts")
    return 0 if passed else 1


def final_checks(stack: Stack, document: dict, traffic: Traffic, faults: Faults, started: float) -> list[str]:
    problems = alert_problems(faults.injected, alert_episodes(started, time.time()))
    problem = error_ratio_problem(traffic.requests, traffic.errors)
    if problem:
        problems.append(problem)
    verify = stack.children.run(["opsmon-backup", "--config.file", str(stack.config), "verify", "--all"], timeout=600)
    catalog = read_catalog(document["backups"]["directory"])
    unverified = [b.id for b in catalog.scheduled if not b.verified]
    if verify.returncode != 0 or unverified or not catalog.scheduled:
        problems.append(f"backups not all verified ({len(catalog.scheduled)} kept, unverified: {unverified}); "
                        f"{verify.stderr.strip()[-300:]}")
    return problems


if __name__ == "__main__":
    sys.exit(main())
