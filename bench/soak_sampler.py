"""The soak's sampler: RSS, fds, threads and CPU seconds of each process (with its children), bytes of each folder, as CSV."""

from __future__ import annotations

import csv
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Callable

import psutil

from exporter.collectors.footprint import FootprintError

PROCESS_KINDS = ("rss", "fds", "threads", "cpu")
FIELDS = ("time", "kind", "name", "value")


def process_tree_usage(pid: int) -> dict[str, float] | None:
    """The process and its children together (a supervisor's restarted child counts); None when it is gone."""
    try:
        root = psutil.Process(pid)
        tree = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return None
    usage = dict.fromkeys(PROCESS_KINDS, 0.0)
    for proc in tree:
        try:
            with proc.oneshot():
                usage["rss"] += proc.memory_info().rss
                usage["fds"] += proc.num_fds()
                usage["threads"] += proc.num_threads()
                times = proc.cpu_times()
                usage["cpu"] += times.user + times.system
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue  # ended between the listing and the reading
    return usage


class Sampler:
    """Samples every `interval` seconds into `csv_path` until stopped; `samples()` reads them back."""

    def __init__(self, processes: dict[str, Callable[[], int | None]], sizes: dict[str, Callable[[], int]],
                 csv_path: Path, interval: float = 30.0, clock=time.time):
        self._processes = processes  # name -> a function giving its pid now (a restart changes it)
        self._sizes = sizes  # name -> a function giving the bytes it holds now (folder_bytes of a folder)
        self._csv_path = Path(csv_path)
        self._interval = interval
        self._clock = clock
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="soak-sampler", daemon=True)

    def start(self) -> Sampler:
        self._csv_path.parent.mkdir(parents=True, exist_ok=True)
        with self._csv_path.open("w", newline="") as out:
            csv.writer(out).writerow(FIELDS)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while True:
            self.sample_once()
            if self._stop.wait(self._interval):
                return

    def sample_once(self) -> None:
        now = self._clock()
        rows = []
        for name, pid_of in self._processes.items():
            pid = pid_of()
            usage = process_tree_usage(pid) if pid else None
            for kind, value in (usage or {}).items():
                rows.append((now, kind, name, value))
        for name, size in self._sizes.items():
            try:
                rows.append((now, "bytes", name, size()))
            except (FootprintError, OSError):
                continue  # a file removed while measured (retention, rotation): the next sample counts
        with self._csv_path.open("a", newline="") as out:
            csv.writer(out).writerows(rows)

    def samples(self) -> dict[tuple[str, str], tuple[list[float], list[float]]]:
        return read_samples(self._csv_path)


def read_samples(csv_path: Path) -> dict[tuple[str, str], tuple[list[float], list[float]]]:
    """(kind, name) -> (times, values), in time order."""
    series = defaultdict(lambda: ([], []))
    with Path(csv_path).open(newline="") as source:
        for row in csv.DictReader(source):
            times, values = series[(row["kind"], row["name"])]
            times.append(float(row["time"]))
            values.append(float(row["value"]))
    return dict(series)


def plot(samples: dict, folder: Path) -> list[Path]:
    """One PNG per series: value over hours since the start."""
    import matplotlib

    matplotlib.use("Agg")  # no display on a server
    from matplotlib import pyplot

    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for (kind, name), (times, values) in sorted(samples.items()):
        figure, axes = pyplot.subplots(figsize=(6, 3))
        axes.plot([(t - times[0]) / 3600 for t in times], values)
        axes.set_title(f"{name} {kind}")
        axes.set_xlabel("hours")
        path = folder / f"{name}-{kind}.png"
        figure.tight_layout()
        figure.savefig(path)
        pyplot.close(figure)
        written.append(path)
    return written
