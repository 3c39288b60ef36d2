"""The three-host demo remote-writing to VictoriaMetrics, side by side with Prometheus's own storage:
samples written per second, disk bytes per sample, and the latency of the 30-day error-budget
query from each.

    .venv/bin/python bench/fleet_bench.py [--minutes 10] [--queries 30]

The shipped prometheus.yml and rules at their real intervals (15 s); Prometheus cuts a block every
5 minutes (instead of 2 hours) so that its compacted size can be measured within the run.
Everything runs on 127.0.0.1. Needs prometheus and victoria-metrics (make test installs both).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import requests
import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.conftest import wait_for  # noqa: E402
from tests.fleet import HOSTS, Fleet, prometheus_config, write_host_file  # noqa: E402

# The error budget left over 30 days: the recording rule's expression, and the same from raw counters.
BUDGET_QUERIES = {
    "30-day error budget (recorded rates)":
        "1 - (avg_over_time(job:app_request_errors:rate5m[30d]) / avg_over_time(job:app_requests:rate5m[30d])) / 0.01",
    "30-day error budget (raw counters)":
        "1 - (sum by (job, host) (rate(app_request_errors_total{kind=\"server\"}[30d]))"
        " / sum by (job, host) (rate(app_requests_total[30d]))) / 0.01",
}


def folder_bytes(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


def store_metrics(fleet: Fleet, store: str) -> dict[str, float]:
    """The store's own /metrics, summed by name (labels dropped)."""
    sums: dict[str, float] = {}
    text = requests.get(f"http://127.0.0.1:{fleet.ports[store]}/metrics", timeout=10).text
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.split("{")[0].split(" ")[0], line.rsplit(" ", 1)[1]
            sums[name] = sums.get(name, 0.0) + float(value)
    return sums


def prometheus_blocks(data: Path) -> tuple[int, int]:
    """Bytes and samples of Prometheus's compacted blocks (each block's meta.json counts its samples)."""
    size = samples = 0
    for meta in data.glob("*/meta.json"):
        size += folder_bytes(meta.parent)
        samples += json.loads(meta.read_text())["stats"]["numSamples"]
    return size, samples


def latencies(fleet: Fleet, store: str, expr: str, count: int) -> tuple[float, float]:
    """Median and 95th percentile, in milliseconds, of `count` instant queries."""
    timings = []
    for _ in range(count):
        began = time.perf_counter()
        fleet.query(expr, store)
        timings.append((time.perf_counter() - began) * 1000)
    return statistics.median(timings), statistics.quantiles(timings, n=20)[-1]


def start(fleet: Fleet) -> None:
    work, ports = fleet.work, fleet.ports
    prometheus = prometheus_config(REPO / "prometheus/rules", work / "targets", ports, 15, 15)
    prometheus["remote_write"] = yaml.safe_load((REPO / "prometheus/remote_write.yml").read_text())["remote_write"]
    prometheus["remote_write"][0]["url"] = f"http://127.0.0.1:{ports['victoriametrics']}/api/v1/write"
    (work / "prometheus.yml").write_text(yaml.safe_dump(prometheus))
    for host in HOSTS:
        fleet.start_host(host)
        write_host_file(work / "targets", host, fleet.hosts[host])
    fleet.start_stores(("--storage.tsdb.min-block-duration=5m", "--storage.tsdb.max-block-duration=5m"),
                       ("-retentionPeriod=13",))
    wait_for(lambda: {s["metric"]["host"] for s in fleet.query('up{job="opsmon-exporter"} == 1')} == set(HOSTS),
             timeout=120, interval=1, what="every host's exporter up")


def measure(fleet: Fleet, minutes: float, queries: int) -> list[tuple[str, float, float]]:
    began_at, prometheus_before = time.monotonic(), store_metrics(fleet, "prometheus")
    vm_before = store_metrics(fleet, "victoriametrics")
    time.sleep(minutes * 60)
    elapsed = time.monotonic() - began_at
    prometheus_after, vm_after = store_metrics(fleet, "prometheus"), store_metrics(fleet, "victoriametrics")

    def per_second(before: dict, after: dict, name: str) -> float:
        return (after.get(name, 0) - before.get(name, 0)) / elapsed

    block_bytes, block_samples = prometheus_blocks(fleet.work / "prometheus")
    vm_rows = vm_after.get("vm_rows", 0)  # rows stored, in every part
    rows = [
        ("samples written per second",
         per_second(prometheus_before, prometheus_after, "prometheus_tsdb_head_samples_appended_total"),
         per_second(vm_before, vm_after, "vm_rows_inserted_total")),
        ("disk bytes per sample (blocks / all data)",
         block_bytes / block_samples if block_samples else float("nan"),
         folder_bytes(fleet.work / "victoria-metrics") / vm_rows if vm_rows else float("nan")),
    ]
    for name, expr in BUDGET_QUERIES.items():
        prometheus_median, prometheus_p95 = latencies(fleet, "prometheus", expr, queries)
        vm_median, vm_p95 = latencies(fleet, "victoriametrics", expr, queries)
        rows += [(f"{name}, median ms", prometheus_median, vm_median), (f"{name}, p95 ms", prometheus_p95, vm_p95)]
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--queries", type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="opsmon-fleet-bench-") as work:
        fleet = Fleet(Path(work))
        try:
            start(fleet)
            rows = measure(fleet, args.minutes, args.queries)
        finally:
            fleet.stop_all()
    print(f"\nthree hosts, {args.minutes:g} minutes, scrape and evaluation every 15 s")
    print(f"| {'measure':52} | {'Prometheus':>10} | {'VictoriaMetrics':>15} | {'VM / Prometheus':>15} |")
    print(f"|{'-' * 54}|{'-' * 11}:|{'-' * 16}:|{'-' * 16}:|")
    for name, prometheus, vm in rows:
        print(f"| {name:52} | {prometheus:10.2f} | {vm:15.2f} | {vm / prometheus:15.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
