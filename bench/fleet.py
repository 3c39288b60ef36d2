"""The fleet as the end-to-end tests and bench/fleet_bench.py run it: hosts (a demo app, an exporter and
a backup service each) on loopback ports, one target file per host, and the shipped prometheus.yml
pointed at that folder, its relabelling and labels left as they are."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import requests
import yaml

from bench.harness import REPO, free_port, stop, wait_for

HOSTS = ("alpha", "bravo", "charlie")

# The jobs a host's target file names, and the port (by service name) each one scrapes.
HOST_JOBS = {"opsmon-exporter": "exporter", "opsmon-backup": "backup", "litestream": "litestream"}


def write_host_config(path: Path, ports: dict[str, int]) -> Path:
    """The demo's opsmon.yml for one host: its files beside `path`, its services on `ports`, and
    the business queries refreshed every second."""
    work = path.parent
    text = (REPO / "opsmon.yml").read_text().replace(".run/", f"{work}/").replace(":8080/", f":{ports['demo']}/")
    document = yaml.safe_load(text)
    document["exporter"]["listen_address"] = f"127.0.0.1:{ports['exporter']}"
    document["backups"]["listen_address"] = f"127.0.0.1:{ports['backup']}"
    document["backups"]["litestream"]["metrics_address"] = f"127.0.0.1:{ports['litestream']}"
    for query in document["business"]:
        query["refresh_seconds"] = 1
    path.write_text(yaml.safe_dump(document))
    return path


def write_host_file(folder: Path, host: str, ports: dict[str, int]) -> Path:
    """`folder/<host>.yml` as a user writes it, a group per job the host runs (those in `ports`).

    Written whole and renamed: Prometheus rereads the folder on every change and would log a
    half-written file as broken."""
    groups = [{"targets": [f"127.0.0.1:{ports[service]}"],
               "labels": {"job": job, "host": host, "env": "test", "role": "app"}}
              for job, service in HOST_JOBS.items() if service in ports]
    folder.mkdir(exist_ok=True)
    path = folder / f"{host}.yml"
    part = folder / f".{host}.yml.part"
    part.write_text(yaml.safe_dump(groups))
    os.replace(part, path)
    return path


def prometheus_config(rules: Path, targets: Path, ports: dict[str, int], scrape: float,
                      exporter_scrape: float, jobs: set[str] | None = None) -> dict:
    """The shipped prometheus.yml with every interval `scrape` (the exporter's `exporter_scrape`),
    the fleet read from `targets/*.yml`, and only `jobs` when given."""
    prometheus = yaml.safe_load((REPO / "prometheus/prometheus.yml").read_text())
    prometheus["global"].update({"scrape_interval": f"{scrape}s", "evaluation_interval": f"{scrape}s",
                                 "scrape_timeout": f"{scrape}s"})
    prometheus["rule_files"] = [str(rules / "*.rules.yml")]
    prometheus["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] = [f"127.0.0.1:{ports['alertmanager']}"]
    if jobs is not None:
        prometheus["scrape_configs"] = [job for job in prometheus["scrape_configs"] if job["job_name"] in jobs]
    for job in prometheus["scrape_configs"]:
        if "file_sd_configs" in job:
            job["file_sd_configs"] = [{"files": [str(targets / "*.yml")]}]  # reread on change, else every 5 min
        else:
            job["static_configs"] = [{"targets": [f"127.0.0.1:{ports[job['job_name']]}"]}]
        if job["job_name"] == "opsmon-exporter":
            job.update({"scrape_interval": f"{exporter_scrape}s", "scrape_timeout": f"{exporter_scrape}s"})
    return prometheus


class Fleet:
    def __init__(self, work: Path):
        self.work = work
        self.ports = {name: free_port() for name in ("prometheus", "alertmanager", "victoriametrics", "smtp")}
        self.hosts = {host: {name: free_port() for name in ("demo", "exporter", "backup", "litestream")}
                      for host in HOSTS}
        self.processes: dict[str, subprocess.Popen] = {}

    def start(self, name: str, args: list[str]) -> None:
        log = open(self.work / f"{name}.log", "ab")
        self.processes[name] = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)

    def start_host(self, host: str) -> None:
        """A host as `make run` starts one: the demo app on a fresh database, its exporter and backups."""
        folder, ports = self.work / host, self.hosts[host]
        (folder / "logs").mkdir(parents=True)
        config = str(write_host_config(folder / "opsmon.yml", ports))
        self.start(f"{host}-demo", [sys.executable, "-m", "demo", "serve", "--db", str(folder / "demo.db"),
                                    "--listen", f"127.0.0.1:{ports['demo']}", "--metrics-dir",
                                    str(folder / "app-metrics"), "--log-file", str(folder / "logs/demo.jsonl"),
                                    "--pidfile", str(folder / "demo.pid"), "--rate", "5"])
        wait_for(lambda: requests.get(f"http://127.0.0.1:{ports['demo']}/health", timeout=1).ok,
                 what=f"the demo app of {host}")
        self.start(f"{host}-backup", [sys.executable, "-m", "backup_jobs", "--config.file", config, "serve"])
        self.start(f"{host}-exporter", [sys.executable, "-m", "exporter", "--config.file", config])

    def backup_cli(self, host: str, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "backup_jobs", "--config.file",
                               str(self.work / host / "opsmon.yml"), *args], capture_output=True, text=True,
                              timeout=120)

    def query(self, expr: str, store: str = "prometheus", at: float | None = None) -> list:
        params = {"query": expr, **({"time": f"{at:.3f}"} if at is not None else {})}
        answer = requests.get(f"http://127.0.0.1:{self.ports[store]}/api/v1/query", params=params, timeout=10).json()
        assert answer["status"] == "success", answer
        return answer["data"]["result"]

    def hosts_of(self, expr: str) -> set[str]:
        return {series["metric"].get("host") for series in self.query(expr)}

    def alertmanager_alerts(self, alertname: str | None = None) -> list[dict]:
        alerts = requests.get(f"http://127.0.0.1:{self.ports['alertmanager']}/api/v2/alerts", timeout=5).json()
        return [a for a in alerts if alertname in (None, a["labels"]["alertname"])]

    def start_stores(self, prometheus_flags: tuple[str, ...] = (), victoriametrics_flags: tuple[str, ...] = ()) -> None:
        """VictoriaMetrics, and Prometheus on `work/prometheus.yml` (which remote-writes to it)."""
        work, ports = self.work, self.ports
        self.start("victoriametrics", ["victoria-metrics", f"-storageDataPath={work / 'victoria-metrics'}",
                                       f"-httpListenAddr=127.0.0.1:{ports['victoriametrics']}", "-loggerLevel=WARN",
                                       *victoriametrics_flags])
        self.start("prometheus", ["prometheus", f"--config.file={work / 'prometheus.yml'}",
                                  f"--storage.tsdb.path={work / 'prometheus'}",
                                  f"--web.listen-address=127.0.0.1:{ports['prometheus']}", *prometheus_flags])

    def stop_all(self) -> None:
        """Prometheus first (it flushes to the long-term store while that still answers), then the rest
        at once: each takes its time to stop."""
        if "prometheus" in self.processes:
            stop(self.processes.pop("prometheus"))
        for process in self.processes.values():
            process.terminate()
        for process in self.processes.values():
            stop(process)
