"""The three-host demo remote-writing to VictoriaMetrics, side by side with Prometheus's own storage:
samples written per second, disk bytes per sample, and the latency of the 30-day error-budget
query from each; or (--rule-cost) the rule groups' evaluation time for a synthetic fleet.

    .venv/bin/python bench/fleet_bench.py [--minutes 10] [--queries 30]
    .venv/bin/python bench/fleet_bench.py --rule-cost 100,300,1000 [--minutes 3] [--baseline RULES_DIR]

The shipped prometheus.yml and rules at their real intervals (15 s); Prometheus cuts a block every
5 minutes (instead of 2 hours) so that its compacted size can be measured within the run.
--rule-cost runs one real host (demo app, exporter, backup service) for a minute, keeps each job's
exposition, and serves it as that many hosts (one target per host and job, told apart by `host`);
Prometheus scrapes them with the shipped rules for `--minutes` at each size, and
prometheus_rule_group_last_duration_seconds gives each group's time; the samples each group reads a
minute per host once its windows are full are counted from the rules and the series they match.
--baseline names another rules folder (say main's: `git archive main prometheus/rules | tar -x -C
/tmp/main`), measured on the same captured host right before the shipped rules at each size; the
table gains each group's ratio.
Everything runs on 127.0.0.1. Needs prometheus and victoria-metrics (make test installs both).
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
import statistics
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import requests
import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.fleet import HOST_JOBS, HOSTS, Fleet, prometheus_config, write_host_file  # noqa: E402
from bench.harness import wait_for  # noqa: E402

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
    prometheus["remote_write"] = yaml.safe_load((REPO / "prometheus/prometheus.long-term.yml").read_text())[
        "remote_write"]
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


# ---- --rule-cost: the rule groups' evaluation time for a synthetic fleet ---------------------

HOST_TARGET = 10_000  # the fleet size the figures are extrapolated to
SCRAPE_SECONDS = 15  # every job's scrape interval and the global evaluation interval in the bench
RANGE_SELECTION = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(\{[^}]*\})?\s*\[(\d+)([smhdwy])\]")
UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}


def capture_host(work: Path, seconds: float) -> dict[str, bytes]:
    """Each job's exposition (by job name) of one real host, after `seconds` of the demo's traffic."""
    fleet = Fleet(work)
    host, ports = HOSTS[0], fleet.hosts[HOSTS[0]]
    url = {job: f"http://127.0.0.1:{ports[service]}/metrics" for job, service in HOST_JOBS.items()}
    try:
        fleet.start_host(host)
        wait_for(lambda: all(requests.get(url[job], timeout=2).ok for job in ("opsmon-exporter", "opsmon-backup")),
                 timeout=120, what="the host's exporter and backup service")
        time.sleep(seconds)  # the app's traffic fills its histograms and counters by handler
        captured = {}
        for job, address in url.items():
            try:
                captured[job] = requests.get(address, timeout=10).content
            except requests.RequestException:  # Litestream is not installed everywhere
                print(f"  {job}: no answer at {address}, left out")
        return captured
    finally:
        fleet.stop_all()


class QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        """A Prometheus stopped between two sizes drops its open scrapes: not worth a traceback."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class StaticExposition:
    """A loopback server answering every scrape with one exposition, gzip-encoded once for all."""

    def __init__(self, body: bytes):
        encoded = gzip.compress(body)

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # Prometheus keeps its connections open

            def do_GET(self):
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Encoding", "gzip")
                self.send_header("Content-Length", str(len(encoded)))
                self.end_headers()
                self.wfile.write(encoded)

            def log_message(self, *args):
                pass

        self.server = QuietServer(("127.0.0.1", 0), Handler)
        self.address = f"127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def write_synthetic_fleet(folder: Path, hosts: int, servers: dict[str, StaticExposition]) -> None:
    """One target file for `hosts` hosts: per host a target per job, all at that job's static server."""
    folder.mkdir(parents=True, exist_ok=True)
    groups = [{"targets": [server.address], "labels": {"job": job, "host": f"host-{n:05d}", "env": "bench",
                                                       "role": "app"}}
              for n in range(hosts) for job, server in servers.items()]
    (folder / "fleet.yml").write_text(yaml.safe_dump(groups))


def own_metrics(port: int) -> dict[tuple[str, str], float]:
    """Prometheus's /metrics by (name, rule_group) of the few figures the table uses."""
    found = {}
    for line in requests.get(f"http://127.0.0.1:{port}/metrics", timeout=30).text.splitlines():
        if line.startswith(("prometheus_rule_group_last_duration_seconds", "prometheus_rule_group_interval_seconds",
                            "prometheus_tsdb_head_series ", "process_resident_memory_bytes",
                            "process_cpu_seconds_total")):
            name, value = line.rsplit(" ", 1)
            group = name.split('rule_group="')[1].split('"')[0].rsplit(";", 1)[-1] if "rule_group" in name else ""
            found[(name.split("{")[0], group)] = float(value)
    return found


def interval_seconds(duration: str | None) -> float:
    """A group's `interval` in seconds; a group without one runs at the global interval."""
    return int(duration[:-1]) * UNIT_SECONDS[duration[-1]] if duration else SCRAPE_SECONDS


def rule_file_groups(rules: Path) -> list[dict]:
    return [group for path in sorted(rules.glob("*.rules.yml")) for group in yaml.safe_load(path.read_text())["groups"]]


def samples_read_per_minute(fleet: Fleet, rules: Path) -> dict[tuple[str, str], float]:
    """Each group's samples read per minute by its range selections once every window is full: the
    series each selection matches now, times its window over the interval that series is written at
    (a scrape, or the evaluation of the group recording it), times the group's evaluations a minute.

    The clock time of a group is noisy on a shared machine and a run of minutes reads only minutes
    of samples; this count of the work does not depend on either."""
    groups = rule_file_groups(rules)
    written_every = {rule["record"]: interval_seconds(group.get("interval")) for group in groups
                     for rule in group["rules"] if "record" in rule}
    counted: dict[str, float] = {}
    read: dict[tuple[str, str], float] = {}
    for group in groups:
        per_evaluation = 0.0
        for rule in group["rules"]:
            for metric, matchers, number, unit in RANGE_SELECTION.findall(rule["expr"]):
                selection = metric + matchers
                if selection not in counted:
                    answer = fleet.query(f"count({selection})")
                    counted[selection] = float(answer[0]["value"][1]) if answer else 0.0
                window = int(number) * UNIT_SECONDS[unit]
                per_evaluation += counted[selection] * window / written_every.get(metric, SCRAPE_SECONDS)
        read[("samples_read_per_minute", group["name"])] = per_evaluation * 60 / interval_seconds(group.get("interval"))
    return read


def summarised(readings: list[dict], seconds: float) -> dict[tuple[str, str], float]:
    """The median of each figure over the readings (one evaluation is a noisy sample), and the CPU
    Prometheus used meanwhile, in cores. A group's duration reads 0 until its first evaluation: those
    readings are left out."""
    summary = {key: statistics.median([r[key] for r in readings if r.get(key)] or [0.0]) for key in readings[-1]}
    cpu = ("process_cpu_seconds_total", "")
    summary[("cpu_cores", "")] = (readings[-1][cpu] - readings[0][cpu]) / seconds
    return summary


def measure_rule_cost(work: Path, hosts: int, servers: dict[str, StaticExposition], minutes: float,
                      rules: Path) -> dict:
    """Prometheus with the `rules` folder over `hosts` synthetic hosts for `minutes`: its own figures."""
    fleet = Fleet(work)
    targets = work / "targets"
    write_synthetic_fleet(targets, hosts, servers)
    prometheus = prometheus_config(rules, targets, fleet.ports, 15, 15, set(servers))
    (work / "prometheus.yml").write_text(yaml.safe_dump(prometheus))
    fleet.start("prometheus", ["prometheus", f"--config.file={work / 'prometheus.yml'}",
                               f"--storage.tsdb.path={work / 'prometheus'}",
                               f"--web.listen-address=127.0.0.1:{fleet.ports['prometheus']}"])
    try:
        expected = hosts * len(servers)
        wait_for(lambda: fleet.query("count(up == 1)") and int(fleet.query("count(up == 1)")[0]["value"][1]) >= expected,
                 timeout=600, interval=5, what=f"{expected} targets up")
        time.sleep(30)  # the first evaluations over next to no data are left out
        # Long enough for every group to run at least once, those evaluated every few minutes too.
        seconds = max([minutes * 60] + [interval_seconds(group.get("interval")) + 15
                                        for group in rule_file_groups(rules)])
        began, readings = time.monotonic(), []
        while not readings or time.monotonic() - began < seconds:
            readings.append(own_metrics(fleet.ports["prometheus"]))
            time.sleep(15)
        return {**summarised(readings, time.monotonic() - began), **samples_read_per_minute(fleet, rules)}
    finally:
        fleet.stop_all()


def rule_cost(sizes: list[int], minutes: float, baseline: Path | None) -> int:
    rule_sets = {"shipped": REPO / "prometheus/rules"}
    if baseline:
        rule_sets = {"baseline": baseline, **rule_sets}  # the baseline first: neither always runs on a warmer machine
    with tempfile.TemporaryDirectory(prefix="opsmon-rule-cost-") as work:
        print("one real host, a minute of the demo's traffic ...", flush=True)
        captured = capture_host(Path(work) / "host", 60)
        servers = {job: StaticExposition(body) for job, body in captured.items()}
        series = {job: sum(1 for line in body.decode().splitlines() if line and not line.startswith("#"))
                  for job, body in captured.items()}
        print(f"series per host: {series}", flush=True)
        results: dict[str, dict[int, dict]] = {name: {} for name in rule_sets}
        try:
            for hosts in sizes:
                for name, rules in rule_sets.items():
                    print(f"{hosts} hosts, {name} rules, {minutes:g} minutes ...", flush=True)
                    results[name][hosts] = measure_rule_cost(Path(work) / f"size-{hosts}-{name}", hosts, servers,
                                                             minutes, rules)
        finally:
            for server in servers.values():
                server.close()
    print(f"\nseries per host: {sum(series.values())} ({', '.join(f'{j} {n}' for j, n in series.items())})")
    for name, rules in rule_sets.items():
        print(f"\n{name} rules ({rules})")
        print_rule_cost(results[name])
    if baseline:
        print_ratios(results["baseline"], results["shipped"])
    return 0


def rule_groups(results: dict[int, dict]) -> list[str]:
    return sorted({group for figures in results.values() for name, group in figures
                   if name == "prometheus_rule_group_last_duration_seconds"})


def duration(results: dict[int, dict], hosts: int, group: str) -> float:
    return results[hosts].get(("prometheus_rule_group_last_duration_seconds", group), float("nan"))


def interval(results: dict[int, dict], group: str) -> float:
    return results[max(results)].get(("prometheus_rule_group_interval_seconds", group), float("nan"))


def per_host(results: dict[int, dict], group: str) -> float:
    """The cost of one more host, from the smallest and the largest size: what a group pays per host."""
    small, large = min(results), max(results)
    if large == small:
        return duration(results, large, group) / large
    return (duration(results, large, group) - duration(results, small, group)) / (large - small)


def samples_per_host(results: dict[int, dict], group: str) -> float:
    """Samples the group reads a minute per host, full windows (samples_read_per_minute), at the largest size."""
    large = max(results)
    return results[large].get(("samples_read_per_minute", group), float("nan")) / large


def evaluation_load(results: dict[int, dict], hosts: int) -> float:
    """The share of one core all groups together spend evaluating: each group's time over its interval."""
    return sum(duration(results, hosts, group) / interval(results, group) for group in rule_groups(results))


def hosts_at_half_interval(results: dict[int, dict]) -> float:
    """Hosts at which the first group takes half its interval (the headroom to keep for a slow moment)."""
    large = max(results)
    limits = [large + (interval(results, group) / 2 - duration(results, large, group)) / per_host(results, group)
              for group in rule_groups(results) if per_host(results, group) > 0]
    return min(limits, default=float("inf"))


def print_rule_cost(results: dict[int, dict]) -> None:
    sizes = sorted(results)
    large = sizes[-1]
    print(f"| rule group | interval s | {' | '.join(f'{n} hosts ms' for n in sizes)} | ms per host | "
          f"{HOST_TARGET:,} hosts s (extrapolated) | samples read a minute per host, full windows |")
    print(f"|---|---:|{'---:|' * len(sizes)}---:|---:|---:|")
    for group in rule_groups(results):
        at_target = duration(results, large, group) + per_host(results, group) * (HOST_TARGET - large)
        cells = " | ".join(f"{duration(results, n, group) * 1000:.1f}" for n in sizes)
        print(f"| {group} | {interval(results, group):g} | {cells} | {per_host(results, group) * 1000:.3f} | "
              f"{at_target:.1f} | {samples_per_host(results, group):,.0f} |")
    cells = " | ".join(f"{evaluation_load(results, n) * 100:.1f}" for n in sizes)
    total = sum(samples_per_host(results, group) for group in rule_groups(results))
    print(f"| (all groups: % of a core; samples) | | {cells} | | | {total:,.0f} |")
    for name, unit, scale in (("prometheus_tsdb_head_series", "head series", 1),
                              ("process_resident_memory_bytes", "resident MiB", 2**20), ("cpu_cores", "CPU, % of a core", 0.01)):
        cells = " | ".join(f"{results[n].get((name, ''), 0) / scale:.0f}" for n in sizes)
        print(f"| ({unit}) | | {cells} | | | |")
    print("hosts at which the first group takes half its interval (straight line): "
          f"{hosts_at_half_interval(results):,.0f}")


def ratio_cell(baseline: float | None, shipped: float | None, number: str) -> str:
    if baseline is None or shipped is None:
        return f"{'-' if baseline is None else format(baseline, ',' + number)} / " \
               f"{'-' if shipped is None else format(shipped, ',' + number)} / -"
    ratio = f"{shipped / baseline:.2f}" if baseline else "-"
    return f"{baseline:,{number}} / {shipped:,{number}} / {ratio}"


def print_ratios(baseline: dict[int, dict], shipped: dict[int, dict]) -> None:
    """Each group's time and samples read with the shipped rules beside the baseline's, and their ratio
    (a dash where a group is only on one side)."""
    sizes = sorted(shipped)
    print(f"\n| rule group | {' | '.join(f'{n} hosts: baseline ms / shipped ms / ratio' for n in sizes)} | "
          "samples read a minute per host: baseline / shipped / ratio |")
    print(f"|---|{'---:|' * (len(sizes) + 1)}")

    def figure(results: dict[int, dict], group: str, value) -> float | None:
        return value(results, group) if group in rule_groups(results) else None

    for group in sorted(set(rule_groups(baseline)) | set(rule_groups(shipped))):
        cells = [ratio_cell(figure(baseline, group, lambda r, g: duration(r, n, g) * 1000),
                            figure(shipped, group, lambda r, g: duration(r, n, g) * 1000), ".1f") for n in sizes]
        cells.append(ratio_cell(figure(baseline, group, samples_per_host), figure(shipped, group, samples_per_host),
                                ".0f"))
        print(f"| {group} | {' | '.join(cells)} |")
    cells = [ratio_cell(evaluation_load(baseline, n) * 100, evaluation_load(shipped, n) * 100, ".1f") for n in sizes]
    cells.append(ratio_cell(sum(samples_per_host(baseline, g) for g in rule_groups(baseline)),
                            sum(samples_per_host(shipped, g) for g in rule_groups(shipped)), ".0f"))
    print(f"| (all groups: % of a core; samples) | {' | '.join(cells)} |")
    print(f"hosts at which the first group takes half its interval: baseline {hosts_at_half_interval(baseline):,.0f}, "
          f"shipped {hosts_at_half_interval(shipped):,.0f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--queries", type=int, default=30)
    parser.add_argument("--rule-cost", metavar="SIZES",
                        help="comma-separated fleet sizes (hosts): measure the rule groups' evaluation time instead")
    parser.add_argument("--baseline", metavar="RULES_DIR", type=Path,
                        help="with --rule-cost: another rules folder measured alongside, for the ratio")
    args = parser.parse_args()
    if args.rule_cost:
        if args.baseline and not sorted(args.baseline.glob("*.rules.yml")):
            parser.error(f"--baseline {args.baseline}: no *.rules.yml in that folder")
        return rule_cost([int(size) for size in args.rule_cost.split(",")], args.minutes, args.baseline)
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
