"""Watched processes, found by pidfile or by a regex on name and command line, e.g. `opsmon_process_up{process="demo"} 1`."""

from __future__ import annotations

import re
from pathlib import Path

import psutil
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily


def pid_from_file(path: Path) -> int | None:
    try:
        return int(Path(path).read_text().strip())
    except (OSError, ValueError):
        return None


class ProcessCollector:
    name = "process"

    def __init__(self, watched, ps=psutil):
        self._watched = watched
        self._ps = ps

    def describe(self):
        return []

    def _find(self, watch) -> list:
        """Every live process a watch entry names (a pattern may match a master and its workers)."""
        if watch.pidfile is not None:
            pid = pid_from_file(watch.pidfile)
            if pid is None or not self._ps.pid_exists(pid):
                return []
            return [self._ps.Process(pid)]
        pattern = re.compile(watch.match)
        found = []
        for proc in self._ps.process_iter(["name", "cmdline"]):
            cmdline = " ".join(proc.info.get("cmdline") or [])
            if pattern.search(proc.info.get("name") or "") or pattern.search(cmdline):
                found.append(proc)
        return found

    def collect(self):
        labels = ["process"]
        up = GaugeMetricFamily("opsmon_process_up", "1 when at least one process of this name runs.", labels=labels)
        cpu = CounterMetricFamily("opsmon_process_cpu_seconds", "CPU time, user and system, of its processes.",
                                  labels=labels)
        rss = GaugeMetricFamily("opsmon_process_resident_memory_bytes", "Resident memory of its processes.",
                                labels=labels)
        fds = GaugeMetricFamily("opsmon_process_open_fds", "Open file descriptors of its processes.", labels=labels)
        start = GaugeMetricFamily("opsmon_process_start_time_seconds",
                                  "Start time of its oldest process, in Unix seconds.", labels=labels)
        for watch in self._watched:
            totals = self._measure(self._find(watch))
            up.add_metric([watch.name], 1 if totals else 0)
            if totals:
                cpu.add_metric([watch.name], totals["cpu"])
                rss.add_metric([watch.name], totals["rss"])
                fds.add_metric([watch.name], totals["fds"])
                start.add_metric([watch.name], totals["start"])
        yield from (up, cpu, rss, fds, start)

    def _measure(self, processes) -> dict | None:
        totals = {"cpu": 0.0, "rss": 0, "fds": 0, "start": None}
        alive = 0
        for proc in processes:
            try:
                with proc.oneshot():
                    times = proc.cpu_times()
                    totals["cpu"] += times.user + times.system
                    totals["rss"] += proc.memory_info().rss
                    totals["fds"] += proc.num_fds()
                    created = proc.create_time()
            except (psutil.NoSuchProcess, psutil.ZombieProcess):
                continue  # it ended while we looked
            totals["start"] = created if totals["start"] is None else min(totals["start"], created)
            alive += 1
        return totals if alive else None


def build(config):
    return ProcessCollector(config.exporter.processes)
