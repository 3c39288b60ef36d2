"""The chaos suite: faults injected into the real commands, and after each the kit is checked
as a person would check it. `make chaos`, not part of `make test`.

    .venv/bin/python bench/chaos.py [--runs 100] [--minutes 15] [--scenario kill ...] [--seed N] [--keep]

Scenarios (each bounded in count and time; all traffic on 127.0.0.1):
  kill       kill -9 at random moments of create, restore, restore --tables, check --fix, and the copies
             to a secondary folder and to S3 (moto's server)
  full-disk  5 MB tmpfs disks, mounted and removed by the suite, filled to a random level under the backup
             folder (create) and under the live database (restore); the app writes on after each restore
  s3         S3 answering 500/503 and dropping connections (before the body, mid-upload, mid-answer):
             a fault proxy in front of moto
  litestream Litestream killed -9 while `opsmon-backup serve` runs and the app writes, the replica restored
             (a dry run of restore --at now) after each; then the service itself killed -9 and started again
  load       the exporter under 50 parallel scrapers and 500 idle connections
  hostile    a hostile backup folder: .job.lock and .tmp planted as links (to the live database, to a
             folder of someone else's files), foreign `*.db.gz` files, and a clock that ran ahead (the
             newest backup's manifest stamped a year on) then was set back, each under a random command
  hung-service  20-150 probed services that never answer, trickle bytes or hang every other scrape, beside
             healthy ones: every service reported at every scrape in time, threads bounded, SIGTERM obeyed
  slow-query a minute-long business query beside a fast one while the app writes (WAL or rollback
             journal): the fast one published at every scrape, no write refused, SIGTERM obeyed

After each run: the next command (`opsmon-backup verify --all`, which also rolls back a killed restore
and removes what killed jobs left) must be clean; the live database must pass integrity_check and hold
one of the states it may hold (as before, or as restored or fixed, by row counts and id sums per
table); no orphan files in the backup folder or the copies; the exporter answers 200, its backup and
database collectors succeed and agree with the catalog. "data lost" counts runs that lost data (a
damaged or unexpected live database, rows the app wrote taken away, a replica that cannot give back
what was committed, no verified backup left of a tier); "wrong answers" counts every other broken
promise (an exit status, a traceback, a leftover file counted once, a copy that is not what its
manifest says, a scrape). Both must be 0: the exit status is 1 otherwise. Ctrl-C stops it; the temporary folder,
mounts and processes are removed in any case.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import closing
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import psutil
import requests
import yaml
from prometheus_client.parser import text_string_to_metric_families

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.chaos_services import HttpService, hung_service  # noqa: E402
from bench.chaos_tools import FAULTS, Children, FaultProxy, free_bytes, tmpfs  # noqa: E402
from bench.harness import fingerprint, free_port  # noqa: E402
from demo.db import seed  # noqa: E402
from exporter.collectors import REGISTRY  # noqa: E402
from opsmon import catalog  # noqa: E402

SCENARIOS = ("kill", "full-disk", "s3", "litestream", "load", "hostile", "hung-service", "slow-query")
# Shares of the time budget; a scenario that reaches its share stops after the run in progress.
WEIGHTS = {"kill": 50, "full-disk": 12, "s3": 14, "litestream": 16, "load": 8, "hostile": 8, "hung-service": 5,
           "slow-query": 5}
KILL_OPERATIONS = ("create", "restore", "restore --tables", "check --fix", "copy to secondary", "copy to S3")
MARKER = "restore-in-progress.json"
DAMAGED = "damaged"  # where a restore keeps a live file SQLite cannot read; every database here is healthy
# check --fix has something to fix: monetizations without revenue, which its fix deletes.
ZERO_REVENUE = {"name": "zero_revenue", "description": "A monetization earns something.",
                "query": "SELECT id FROM monetizations WHERE revenue_cents = 0",
                "fix": "DELETE FROM monetizations WHERE revenue_cents = 0", "fixable": True}
RETENTION = {"daily": 2, "weekly": 1, "monthly": 1, "safety_days": 7}


# ---- what a scenario found -----------------------------------------------------------------

@dataclass
class Tally:
    scenario: str
    runs: int = 0
    faults: int = 0
    lost_runs: set = field(default_factory=set)
    wrong: int = 0
    problems: list[str] = field(default_factory=list)
    details: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def lost(self, run: int, text: str) -> None:
        self.lost_runs.add(run)
        self.problems.append(f"run {run}: DATA LOST: {text}")
        print(f"    ! data lost: {text}", flush=True)

    def wrong_answer(self, run: int, text: str) -> None:
        self.wrong += 1
        self.problems.append(f"run {run}: wrong answer: {text}")
        print(f"    ! wrong answer: {text}", flush=True)


def tail(text: str, lines: int = 3) -> str:
    return " | ".join(line.strip() for line in text.strip().splitlines()[-lines:])


# ---- one kit: a live database, its backup folder, its configs, and an exporter reading them -------

class Kit:
    def __init__(self, suite: Suite, name: str, database: Path, backups: Path, **backup_settings):
        self.suite = suite
        self.name = name
        self.database = database
        self.backups = backups
        self.root = suite.root / name
        self.root.mkdir(parents=True, exist_ok=True)
        self.exporter_port = free_port()
        self.settings = {"directory": str(backups), "retention": dict(RETENTION),
                         "listen_address": f"127.0.0.1:{free_port()}", **backup_settings}
        self.configs: dict[str, Path] = {}
        self.config = self.variant("local")
        self.exporter = None
        self.damaged_seen: set[Path] = set()
        self._seen: set[str] = set()
        self.foreign: set[str] = set()  # files a person put in the backup folder: never orphans of opsmon's

    def first_time(self, problem: str) -> bool:
        """True the first time a lasting problem (a leftover file) is seen."""
        new = problem not in self._seen
        self._seen.add(problem)
        return new

    def variant(self, name: str, **settings) -> Path:
        """A config on the same database and backup folder (say, with or without the copies)."""
        document = {
            "database": {"path": str(self.database), "name": self.name},
            "exporter": {"listen_address": f"127.0.0.1:{self.exporter_port}",
                         "state_directory": str(self.root / "exporter-state")},
            "backups": {**self.settings, **settings},
            "integrity": {"rules": [ZERO_REVENUE]},
        }
        path = self.root / f"{name}.yml"
        path.write_text(yaml.safe_dump(document, sort_keys=False))
        self.configs[name] = path
        return path

    def command(self, *args, variant: str = "local") -> list[str]:
        return [sys.executable, "-m", "backup_jobs", "--config.file", str(self.configs[variant]), *map(str, args)]

    def run(self, *args, variant: str = "local", timeout: float = 300):
        return self.suite.children.run(self.command(*args, variant=variant), timeout=timeout)

    def close(self) -> None:
        if self.exporter is not None:
            self.suite.children.stop(self.exporter)

    def start_exporter(self) -> None:
        self.exporter = self.suite.children.start(
            [sys.executable, "-m", "exporter", "--config.file", str(self.config), "--no-collector.gpu"],
            log=self.root / "exporter.log")
        self.suite.wait(lambda: requests.get(f"{self.exporter_url}/-/ready", timeout=2).ok, 30, "the exporter")

    @property
    def exporter_url(self) -> str:
        return f"http://127.0.0.1:{self.exporter_port}"

    def catalog(self) -> catalog.Catalog:
        return catalog.read_catalog(self.backups)


# ---- the checks after a run ----------------------------------------------------------------

def integrity(database: Path) -> list[str]:
    try:
        with closing(sqlite3.connect(database, timeout=30)) as connection:
            return [row[0] for row in connection.execute("PRAGMA integrity_check")]
    except sqlite3.DatabaseError as err:
        return [str(err)]


def describe_difference(state: dict, expected: dict) -> str:
    tables = sorted(set(state) | set(expected))
    return ", ".join(f"{t} {state.get(t)} (expected {expected.get(t)})" for t in tables
                     if state.get(t) != expected.get(t)) or "same"


def backup_orphans(directory: Path) -> list[str]:
    """What the backup folder holds beyond its catalog, once the next command has cleaned up."""
    if not directory.exists():
        return []
    found = []
    known = {catalog.STATUS_FILE, catalog.LOCK_FILE, ".job.lock", "litestream.yml", ".tmp", *catalog.TIERS,
             catalog.SAFETY, DAMAGED}
    for path in sorted(directory.iterdir()):
        if path.name not in known:
            found.append(str(path))
        elif path.name == DAMAGED:
            continue  # the product keeps unreadable live files there; check_after judges what it holds
        elif path.name == ".tmp":
            found.extend(str(p) for p in sorted(path.iterdir()))
        elif path.is_dir():
            found.extend(_unpaired(path))
    return found


def database_orphans(database: Path) -> list[str]:
    """What the live database's folder holds beyond the database, its journal and Litestream's state,
    once the next command has cleaned up (a snapshot may be placed beside the database when the backup
    folder has no room)."""
    own = {database.name, f"{database.name}-wal", f"{database.name}-shm", f"{database.name}-journal",
           f".{database.name}-litestream"}
    return [str(p) for p in sorted(database.parent.iterdir()) if p.name not in own]


def _unpaired(folder: Path) -> list[str]:
    found = []
    for path in sorted(folder.iterdir()):
        if path.name.endswith(catalog.BACKUP_SUFFIX):
            partner = path.with_name(path.name.removesuffix(catalog.BACKUP_SUFFIX) + catalog.MANIFEST_SUFFIX)
        elif path.name.endswith(catalog.MANIFEST_SUFFIX) and not path.name.startswith("."):
            partner = path.with_name(path.name.removesuffix(catalog.MANIFEST_SUFFIX) + catalog.BACKUP_SUFFIX)
        else:
            found.append(str(path))
            continue
        if not partner.exists():
            found.append(str(path))
    return found


def samples(text: str) -> dict:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def check_exporter(kit: Kit, tally: Tally, run: int) -> None:
    """/metrics 200, the backup and database collectors up and agreeing with the catalog; /health not 500."""
    try:
        response = requests.get(f"{kit.exporter_url}/metrics", timeout=15)
    except requests.RequestException as err:
        tally.wrong_answer(run, f"the exporter does not answer /metrics: {err}")
        return
    if response.status_code != 200:
        tally.wrong_answer(run, f"the exporter answers /metrics with {response.status_code}: {response.text[:200]}")
        return
    values = samples(response.text)
    for collector in ("backup", "database"):
        if values.get(("opsmon_scrape_collector_success", (("collector", collector),))) != 1:
            tally.wrong_answer(run, f"collector {collector} fails (see {kit.root / 'exporter.log'})")
    current = kit.catalog()
    for tier in catalog.TIERS:
        published = values.get(("opsmon_backup_retained", (("database", kit.name), ("tier", tier))))
        if published is not None and published != len(current.of_tier(tier)):
            tally.wrong_answer(run, f"opsmon_backup_retained{{tier={tier}}} is {published:g}, the catalog holds "
                                    f"{len(current.of_tier(tier))}")
    try:
        health = requests.get(f"{kit.exporter_url}/health", timeout=15)
        report = health.json()
    except (requests.RequestException, ValueError) as err:
        tally.wrong_answer(run, f"/health does not answer JSON: {err}")
        return
    database = next((c for c in report.get("checks", []) if c.get("component") == "database"), {})
    if health.status_code not in (200, 503) or database.get("status") == "down":
        tally.wrong_answer(run, f"/health answers {health.status_code} with the database {database}")


def check_after(kit: Kit, tally: Tally, run: int, allowed: dict[str, dict]) -> str | None:
    """The checks every run ends with; returns the name of the state the database is in."""
    verified = kit.run("verify", "--all")
    if verified.returncode != 0 or "Traceback" in verified.stderr:
        tally.wrong_answer(run, f"verify --all (the next command) exits {verified.returncode}: {tail(verified.stderr)}")
    problems = integrity(kit.database)
    state = None
    if problems != ["ok"]:
        tally.lost(run, f"the live database fails integrity_check: {'; '.join(problems[:3])}")
    else:
        now = fingerprint(kit.database)
        state = next((name for name, expected in allowed.items() if expected == now), None)
        if state is None:
            differences = "; ".join(f"against {name}: {describe_difference(now, expected)}"
                                    for name, expected in allowed.items())
            tally.lost(run, f"the live database is in none of the states it may be in ({differences})")
    # A leftover is counted once, in the run that left it, however many runs it outlives.
    for orphan in backup_orphans(kit.backups):
        if orphan not in kit.foreign and kit.first_time(orphan):
            tally.wrong_answer(run, f"orphan in the backup folder after the next command: {orphan}")
    for orphan in database_orphans(kit.database):
        if kit.first_time(orphan):
            tally.wrong_answer(run, f"orphan beside the live database after the next command: {orphan}")
    if (kit.backups / MARKER).exists() and kit.first_time(f"marker {(kit.backups / MARKER).stat().st_mtime}"):
        tally.wrong_answer(run, f"{kit.backups / MARKER} is still there after the next command")
    damaged = set((kit.backups / DAMAGED).glob("*")) - kit.damaged_seen
    if damaged:
        kit.damaged_seen |= damaged
        tally.wrong_answer(run, f"a healthy live database was taken for one SQLite cannot read and kept aside in "
                                f"{', '.join(map(str, sorted(damaged)))}")
    if kit.exporter is not None:
        check_exporter(kit, tally, run)
    return state


# ---- the suite ------------------------------------------------------------------------------

class Suite:
    def __init__(self, args):
        self.args = args
        self.rng = random.Random(args.seed)
        self.root = Path(tempfile.mkdtemp(prefix="opsmon-chaos-"))
        env = {k: v for k, v in os.environ.items()
               if k not in ("PROMETHEUS_MULTIPROC_DIR", "HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy",
                            "ALL_PROXY", "all_proxy") and not k.startswith("AWS_")}
        # Loopback only: no proxy, no instance metadata, no shared AWS config of the machine.
        env.update(PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1", NO_PROXY="127.0.0.1,localhost",
                   AWS_EC2_METADATA_DISABLED="true", AWS_CONFIG_FILE=os.devnull,
                   AWS_SHARED_CREDENTIALS_FILE=os.devnull, PATH=f"{Path(sys.executable).parent}:{env.get('PATH', '')}")
        os.environ.update({k: env[k] for k in ("NO_PROXY", "AWS_EC2_METADATA_DISABLED", "AWS_CONFIG_FILE",
                                               "AWS_SHARED_CREDENTIALS_FILE")})
        self.env = env
        self.children = Children(env, self.root)
        self.tallies: list[Tally] = []
        self._moto: str | None = None
        self._seeded: dict[int, Path] = {}
        (self.root / "key-id").write_text("chaos\n")
        (self.root / "secret").write_text("chaos\n")

    def close(self) -> None:
        self.children.close()
        if self.args.keep:
            print(f"kept {self.root}")
        else:
            shutil.rmtree(self.root, ignore_errors=True)

    def wait(self, condition, timeout: float, what: str):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(Exception):
                result = condition()
                if result:
                    return result
            time.sleep(0.1)
        raise RuntimeError(f"timed out after {timeout:.0f}s waiting for {what}")

    def database(self, folder: Path, videos: int) -> Path:
        """A demo database of `videos` videos in a folder of its own (seeded once per size, then copied)."""
        if videos not in self._seeded:
            path = self.root / f"seed-{videos}.db"
            seed(path, videos, rng=random.Random(videos))
            self._seeded[videos] = path
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / "live.db"
        shutil.copyfile(self._seeded[videos], target)
        return target

    @property
    def s3(self) -> str:
        """moto's S3 server on loopback, started once."""
        if self._moto is None:
            port = free_port()
            self.children.start([str(Path(sys.executable).with_name("moto_server")), "-H", "127.0.0.1", "-p",
                                 str(port)], log=self.root / "moto.log")
            endpoint = f"http://127.0.0.1:{port}"
            self.wait(lambda: requests.get(endpoint, timeout=1).status_code < 500, 30, "moto's S3 server")
            self._moto = endpoint
        return self._moto

    def bucket(self, name: str):
        import boto3

        client = boto3.client("s3", endpoint_url=self.s3, region_name="us-east-1", aws_access_key_id="chaos",
                              aws_secret_access_key="chaos")
        client.create_bucket(Bucket=name)
        return client

    def offsite(self, bucket: str, endpoint: str) -> dict:
        return {"bucket": bucket, "prefix": "chaos", "endpoint_url": endpoint,
                "access_key_id_file": str(self.root / "key-id"), "secret_access_key_file": str(self.root / "secret")}


def execute(database: Path, *statements: str) -> None:
    with closing(sqlite3.connect(database, timeout=30, isolation_level=None)) as connection:
        for statement in statements:
            connection.execute(statement)


def mutate(database: Path, rng: random.Random) -> None:
    """Take some approvals and monetizations away, so a restore has something to bring back."""
    execute(database,
            f"DELETE FROM monetizations WHERE id IN (SELECT id FROM monetizations ORDER BY random() "
            f"LIMIT {rng.randint(20, 400)})",
            f"DELETE FROM approvals WHERE id IN (SELECT id FROM approvals ORDER BY random() "
            f"LIMIT {rng.randint(20, 400)})")


def fixed_state(database: Path, state: dict) -> dict:
    """The fingerprint once check --fix has deleted the monetizations without revenue."""
    with closing(sqlite3.connect(database)) as connection:
        kept = tuple(connection.execute(
            "SELECT count(*), total(rowid) FROM monetizations WHERE revenue_cents != 0").fetchone())
    return {**state, "monetizations": kept}


def copies_in_folder(root: Path) -> dict[str, Path]:
    """Every file one level down, hidden ones too (an unfinished copy is a hidden .partial)."""
    if not root.exists():
        return {}
    return {f"{folder.name}/{path.name}": path for folder in root.iterdir() if folder.is_dir()
            for path in folder.iterdir()}


def check_folder_copies(kit: Kit, folder: Path, tally: Tally, run: int, complete: bool) -> None:
    """Every copy with a manifest is whole; with `complete`, the folder is exactly the verified backups."""
    from backup_jobs.gzipfile import file_digest

    present = copies_in_folder(folder)
    for key, path in sorted(present.items()):
        if key.endswith(catalog.MANIFEST_SUFFIX) and not path.name.startswith("."):
            try:
                record = catalog.read_manifest(path)
            except catalog.CatalogError as err:
                tally.wrong_answer(run, f"secondary copy {key} cannot be read: {err}")
                continue
            if not record.path.exists() or file_digest(record.path).sha256 != record.sha256:
                tally.wrong_answer(run, f"secondary copy {key} names a backup file that is missing or different")
    if complete:
        wanted = {f"{r.tier}/{r.id}{s}" for r in kit.catalog().scheduled if r.verified
                  for s in (catalog.BACKUP_SUFFIX, catalog.MANIFEST_SUFFIX)}
        extra, missing = sorted(set(present) - wanted), sorted(wanted - set(present))
        if extra:
            tally.wrong_answer(run, f"after the next copy the secondary folder still holds {', '.join(extra)}")
        if missing:
            tally.wrong_answer(run, f"after the next copy the secondary folder lacks {', '.join(missing)}")


def check_bucket(kit: Kit, client, bucket: str, tally: Tally, run: int, complete: bool) -> None:
    """Every object with a manifest is whole (read back and hashed); with `complete`, exactly the verified backups."""
    import hashlib

    keys = {item["Key"].removeprefix("chaos/") for page in client.get_paginator("list_objects_v2").paginate(
        Bucket=bucket, Prefix="chaos/") for item in page.get("Contents", [])}
    for key in sorted(k for k in keys if k.endswith(catalog.MANIFEST_SUFFIX)):
        manifest = json.loads(client.get_object(Bucket=bucket, Key=f"chaos/{key}")["Body"].read())
        backup_key = key.removesuffix(catalog.MANIFEST_SUFFIX) + catalog.BACKUP_SUFFIX
        if backup_key not in keys:
            tally.wrong_answer(run, f"the bucket holds the manifest {key} without its backup")
            continue
        body = client.get_object(Bucket=bucket, Key=f"chaos/{backup_key}")["Body"].read()
        if hashlib.sha256(body).hexdigest() != manifest["backup"]["sha256"]:
            tally.wrong_answer(run, f"the bucket's {backup_key} differs from what its manifest says")
    if complete:
        wanted = {f"{r.tier}/{r.id}{s}" for r in kit.catalog().scheduled if r.verified
                  for s in (catalog.BACKUP_SUFFIX, catalog.MANIFEST_SUFFIX)}
        if keys != wanted:
            tally.wrong_answer(run, f"after a copy without faults the bucket differs from the catalog: extra "
                                    f"{sorted(keys - wanted)}, missing {sorted(wanted - keys)}")


def sleep_or_exit(process, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and process.poll() is None:
        time.sleep(min(0.005, max(0.0, deadline - time.monotonic())))


def work_started(process, directory: Path, timeout: float = 60) -> float | None:
    """When the command took the job lock (the lock file then names its pid): the moment its work
    begins, after Python's start-up. None when it ended first."""
    lock = directory / ".job.lock"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        with contextlib.suppress(OSError, ValueError):
            if json.loads(lock.read_bytes() or b"{}").get("pid") == process.pid:
                return time.monotonic()
        time.sleep(0.002)
    return None


# ---- scenario: kill -9 ----------------------------------------------------------------------

def scenario_kill(suite: Suite, tally: Tally, runs: int, until: float) -> None:
    rng = suite.rng
    database = suite.database(suite.root / "kill" / "db", suite.args.videos)
    kit = Kit(suite, "kill", database, suite.root / "kill" / "backups")
    secondary = suite.root / "kill" / "second-disk"
    client = suite.bucket("chaos-kill")
    kit.variant("secondary", secondary_directory=str(secondary))
    kit.variant("s3", offsite=suite.offsite("chaos-kill", suite.s3))
    known: dict[str, dict] = {}  # backup id -> the database's fingerprint when it was taken

    def learn(state: dict) -> None:
        for record in kit.catalog().backups:
            known.setdefault(record.id, state)

    for tier in catalog.TIERS:
        result = kit.run("create", "--tier", tier)
        if result.returncode != 0:
            raise RuntimeError(f"setting up: create --tier {tier} failed: {result.stderr}")
    learn(fingerprint(database))
    kit.start_exporter()

    def prepare(operation: str) -> tuple[list[str], dict[str, dict], str]:
        """The command, the states the database may be in afterwards, and a description."""
        if operation in ("restore", "restore --tables"):
            choices = [r for r in kit.catalog().scheduled if r.verified and r.id in known]
            source = rng.choice(choices)
            mutate(database, rng)
            before = fingerprint(database)
            if operation == "restore":
                return kit.command("restore", source.id), {"before": before, "restored": known[source.id]}, source.id
            tables = rng.choice([["monetizations"], ["approvals"], ["approvals", "monetizations"]])
            restored = {**before, **{t: known[source.id][t] for t in tables}}
            return (kit.command("restore", source.id, "--tables", ",".join(tables)),
                    {"before": before, "restored": restored}, f"{source.id} {','.join(tables)}")
        if operation == "check --fix":
            count = rng.randint(5, 200)
            execute(database, "INSERT INTO monetizations (video_id, monetized_at, revenue_cents) "
                              f"SELECT id, unixepoch(), 0 FROM videos ORDER BY random() LIMIT {count}")
            before = fingerprint(database)
            return kit.command("check", "--fix"), {"before": before, "fixed": fixed_state(database, before)}, \
                f"{count} rows to fix"
        before = fingerprint(database)
        if operation == "create":
            tier = rng.choice(catalog.TIERS)
            return kit.command("create", "--tier", tier), {"before": before}, tier
        if operation == "copy to secondary":  # a new, empty disk: every verified backup is copied again
            shutil.rmtree(secondary, ignore_errors=True)
            return kit.command("prune", variant="secondary"), {"before": before}, "all backups"
        for page in client.get_paginator("list_objects_v2").paginate(Bucket="chaos-kill"):
            for item in page.get("Contents", []):
                client.delete_object(Bucket="chaos-kill", Key=item["Key"])
        return kit.command("prune", variant="s3"), {"before": before}, "all backups"

    # How long each operation works uncut, from taking the job lock to its exit: kills land in that span.
    durations = {}
    for operation in KILL_OPERATIONS:
        command, _, _ = prepare(operation)
        process = suite.children.start(command, log=kit.root / "commands.log")
        began = work_started(process, kit.backups)
        process.wait(300)
        durations[operation] = time.monotonic() - (began or time.monotonic())
        if process.returncode not in (0, 3) or began is None:
            raise RuntimeError(f"setting up: {operation} failed uncut (see {kit.root / 'commands.log'})")
        learn(fingerprint(database))
    tally.details.append("work uncut (job lock to exit): "
                         + ", ".join(f"{op} {seconds:.2f}s" for op, seconds in durations.items())
                         + "; each kill lands at a uniform moment of that span (kept up to date as runs end uncut)")

    schedule = [KILL_OPERATIONS[i % len(KILL_OPERATIONS)] for i in range(runs)]
    rng.shuffle(schedule)
    landed = {"during the work": 0, "after it ended": 0, "restores killed midway": 0}
    for run, operation in enumerate(schedule, 1):
        if time.monotonic() > until:
            tally.details.append(f"stopped at the time budget after {run - 1} of {runs} runs")
            break
        command, allowed, what = prepare(operation)
        moment = rng.uniform(0, durations[operation])
        process = suite.children.start(command, log=kit.root / "commands.log")
        began = work_started(process, kit.backups)
        if began is not None:
            sleep_or_exit(process, moment)
            if process.poll() is not None:  # it ended first: aim the next kills by what it took this time
                durations[operation] = (durations[operation] + time.monotonic() - began) / 2
        killed = suite.children.kill(process)
        tally.runs += 1
        if killed:
            tally.faults += 1
            landed["during the work"] += 1
        else:
            landed["after it ended"] += 1
            if process.returncode not in (0, 3, 5):
                tally.wrong_answer(run, f"{operation} ({what}) exited {process.returncode} uncut "
                                        f"(see {kit.root / 'commands.log'})")
        midway = (kit.backups / MARKER).exists()
        if midway:
            landed["restores killed midway"] += 1
            allowed = {"before": allowed["before"]}  # a restore killed midway is rolled back
        print(f"  kill {run:3}/{runs} {operation:18} {what[:40]:40} at {moment:5.2f}s "
              f"{'killed' if killed else 'had ended'}{' (midway)' if midway else ''}", flush=True)
        before_ids = {r.id for r in kit.catalog().backups}
        state = check_after(kit, tally, run, allowed)
        if operation.startswith("copy"):
            complete_run = kit.run("prune", variant="secondary" if "secondary" in operation else "s3")
            if complete_run.returncode != 0:
                tally.wrong_answer(run, f"the next copy exits {complete_run.returncode}: {tail(complete_run.stderr)}")
            if "secondary" in operation:
                check_folder_copies(kit, secondary, tally, run, complete=True)
            else:
                check_bucket(kit, client, "chaos-kill", tally, run, complete=True)
        if state is not None:
            learn(allowed["before"])  # backups this run made hold the database as it was before it
        current = kit.catalog()
        for tier in catalog.TIERS:
            if not current.newest_verified(tier):
                tally.lost(run, f"no verified {tier} backup is left")
        gone = {i for i in before_ids if i in known} - {r.id for r in current.backups}
        if gone and operation == "check --fix":  # a fix never lets a backup go
            tally.lost(run, f"backups gone: {sorted(gone)}")
    kit.close()
    safety = len(kit.catalog().of_tier(catalog.SAFETY))
    tally.details.append("kills landed: " + ", ".join(f"{k} {v}" for k, v in landed.items())
                         + f"; safety backups kept at the end: {safety} (kept {RETENTION['safety_days']} days)")


# ---- scenario: a full filesystem ------------------------------------------------------------

def fill(directory: Path, leave: int) -> int:
    """Fill the filesystem of `directory` until `leave` bytes are free; returns the filler's size."""
    filler = directory / ".chaos-filler"
    filler.unlink(missing_ok=True)
    size = max(0, free_bytes(directory) - leave)
    if size:
        fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            os.posix_fallocate(fd, 0, size)
        finally:
            os.close(fd)
    return size


def unfill(directory: Path) -> None:
    (directory / ".chaos-filler").unlink(missing_ok=True)


def scenario_full_disk(suite: Suite, tally: Tally, runs: int, until: float) -> None:
    rng = suite.rng
    videos = suite.args.fs_videos
    # Two small disks: one holds a kit's backup folder (its database beside the suite), the other a
    # kit's live database (its backups beside the suite).
    with tmpfs(suite.root / "tmpfs-backups", "5m") as backups_disk, tmpfs(suite.root / "tmpfs-db", "5m") as db_disk:
        backup_kit = Kit(suite, "disk-backups", suite.database(suite.root / "disk-backups" / "db", videos),
                         backups_disk / "backups")
        restore_kit = Kit(suite, "disk-restore", suite.database(db_disk / "db", videos),
                          suite.root / "disk-restore" / "backups")
        try:
            _full_disk_runs(suite, tally, runs, until, rng, backup_kit, restore_kit)
        finally:
            backup_kit.close()  # nothing may hold a mount when it goes
            restore_kit.close()


def _full_disk_runs(suite: Suite, tally: Tally, runs: int, until: float, rng: random.Random,
                    backup_kit: Kit, restore_kit: Kit) -> None:
    live = restore_kit.database
    raw = backup_kit.database.stat().st_size
    for kit in (backup_kit, restore_kit):
        result = kit.run("create", "--tier", "daily")
        if result.returncode != 0:
            tally.details.append(f"{kit.name}: the first backup on an empty 5 MB disk fails: {tail(result.stderr, 1)}")
        kit.start_exporter()
    known = {r.id: fingerprint(live) for r in restore_kit.catalog().backups}
    for run in range(1, runs + 1):
        if time.monotonic() > until:
            tally.details.append(f"stopped at the time budget after {run - 1} of {runs} runs")
            break
        tally.runs += 1
        earlier = set(backup_orphans(backup_kit.backups) + database_orphans(backup_kit.database)
                      + backup_orphans(restore_kit.backups) + database_orphans(restore_kit.database))
        if run % 2:  # a backup into a filling disk
            kit = backup_kit
            leave = rng.randint(0, int(raw * 1.3))
            tier = rng.choice(catalog.TIERS)
            before = fingerprint(kit.database)
            disk = kit.backups.parent
            filled = fill(disk, leave)
            tally.faults += leave < raw
            result = kit.run("create", "--tier", tier)
            what = f"create --tier {tier} with {leave / 1e6:.2f} MB free"
            allowed = {"before": before}
        else:  # a restore into a database on a filling disk
            kit = restore_kit
            disk = live.parent.parent
            sources = [r for r in kit.catalog().scheduled if r.verified and r.id in known]
            if not sources:
                tally.wrong_answer(run, "no verified backup of the database on the small disk to restore")
                continue
            source = rng.choice(sources)
            mutate(live, rng)
            execute(live, "PRAGMA wal_checkpoint(TRUNCATE)")
            before = fingerprint(live)
            leave = rng.randint(0, int(live.stat().st_size * 1.3))
            filled = fill(disk, leave)
            tally.faults += leave < live.stat().st_size
            tables = rng.choice([None, ["approvals", "monetizations"]])
            args = ("restore", source.id, *(("--tables", ",".join(tables)) if tables else ()))
            result = kit.run(*args)
            restored = known[source.id] if not tables else {**before, **{t: known[source.id][t] for t in tables}}
            what = f"{' '.join(args)} with {leave / 1e6:.2f} MB free"
            allowed = {"before": before, "restored": restored}
        print(f"  full-disk {run:3}/{runs} {what}: exit {result.returncode} {tail(result.stderr, 1)[:90]}",
              flush=True)
        if "Traceback" in result.stderr:
            tally.wrong_answer(run, f"{what}: a traceback instead of a message: {tail(result.stderr, 1)}")
        elif result.returncode not in (0, 1, 5):
            tally.wrong_answer(run, f"{what}: exit {result.returncode}: {tail(result.stderr, 1)}")
        if result.returncode != 0:  # before the next command: a failed job must leave nothing behind
            left = [p for p in backup_orphans(kit.backups) + database_orphans(kit.database) if p not in earlier]
            if left:
                tally.wrong_answer(run, f"{what} failed and left {', '.join(left)}")
        if kit is backup_kit and filled:
            check = kit.run("verify", "--all")  # on the disk as it is
            if check.returncode == 3:
                tally.wrong_answer(run, f"verify --all on the full disk reports damage: {tail(check.stderr, 2)}")
            elif check.returncode != 0:
                tally.details.append(f"run {run}: verify --all with {leave / 1e6:.2f} MB free exits "
                                     f"{check.returncode}: {tail(check.stderr, 1)[:140]}")
        unfill(disk)
        if kit is restore_kit:
            allowed = _app_writes_after_restore(kit, tally, run, what, result, allowed)
            if allowed is None:
                continue
        state = check_after(kit, tally, run, allowed)
        if kit is restore_kit and state is not None:
            for record in kit.catalog().backups:
                known.setdefault(record.id, before)


def _app_writes_after_restore(kit: Kit, tally: Tally, run: int, what: str, result, allowed: dict) -> dict | None:
    """The restore's answer must match what happened; then the app writes on, as it would before anyone
    runs the next command: the next command must keep those rows. The states the database may then be in."""
    problems = integrity(kit.database)
    if problems != ["ok"]:
        tally.lost(run, f"{what}: the live database fails integrity_check: {'; '.join(problems[:3])}")
        return None
    now = fingerprint(kit.database)
    state = next((name for name, expected in allowed.items() if expected == now), None)
    if state is None:
        tally.lost(run, f"{what}: the live database is in none of the states it may be in")
        return None
    if result.returncode != 0 and state == "before" and result.returncode != 5:
        tally.wrong_answer(run, f"{what}: exit {result.returncode} ({tail(result.stderr, 1)[-120:]}) although the "
                                "restore did not happen and the database is as it was: exit 5 says that")
    if result.returncode == 5 and state != "before":
        tally.lost(run, f"{what}: exit 5 says the database is as it was, but it is {state}")
    with closing(sqlite3.connect(kit.database, timeout=30, isolation_level=None)) as connection:
        ids = [connection.execute("INSERT INTO videos (title, status, created_at, updated_at) "
                                  f"VALUES ('written by the app after run {run}', 'queued', 0, 0)").lastrowid
               for _ in range(3)]
    count, total = now["videos"]
    return {f"{state}, then 3 rows the app wrote": {**now, "videos": (count + len(ids), total + sum(ids))}}


# ---- scenario: S3 errors and dropped connections ----------------------------------------------

def scenario_s3(suite: Suite, tally: Tally, runs: int, until: float) -> None:
    rng = suite.rng
    client = suite.bucket("chaos-faults")
    proxy = FaultProxy(int(suite.s3.rsplit(":", 1)[1]), random.Random(rng.random()))
    kit = Kit(suite, "s3", suite.database(suite.root / "s3" / "db", suite.args.videos), suite.root / "s3" / "backups",
              offsite=suite.offsite("chaos-faults", proxy.url))
    try:
        kit.start_exporter()
        failed_copies = 0
        for run in range(1, runs + 1):
            if time.monotonic() > until:
                tally.details.append(f"stopped at the time budget after {run - 1} of {runs} runs")
                break
            tally.runs += 1
            before = fingerprint(kit.database)
            injected = proxy.injected()
            proxy.rate = rng.uniform(0.2, 0.6)
            tier = rng.choice(catalog.TIERS)
            result = kit.run("create", "--tier", tier)
            proxy.rate = 0.0
            faults = proxy.injected() - injected
            tally.faults += faults
            status = catalog.read_status(kit.backups).copies.get("offsite")
            print(f"  s3 {run:3}/{runs} create --tier {tier}, {faults} S3 faults: exit {result.returncode}"
                  f"{', copy failed' if status and status.last_error else ''}", flush=True)
            if result.returncode != 0 or "Traceback" in result.stderr:
                tally.wrong_answer(run, f"create with a flaky S3 exits {result.returncode} (the local backup must "
                                        f"be kept and the copy retried later): {tail(result.stderr)}")
            if status is None:
                tally.wrong_answer(run, "status.json records nothing about the offsite copy")
            elif status.last_error:
                failed_copies += 1
            check_bucket(kit, client, "chaos-faults", tally, run, complete=status is not None and not status.last_error)
            healed = kit.run("prune")  # S3 well again: the next sync completes the bucket
            if healed.returncode != 0:
                tally.wrong_answer(run, f"prune with S3 well again exits {healed.returncode}: {tail(healed.stderr)}")
            check_bucket(kit, client, "chaos-faults", tally, run, complete=True)
            status = catalog.read_status(kit.backups).copies.get("offsite")
            if status is None or status.last_error:
                tally.wrong_answer(run, f"after a good copy status.json still says {status}")
            check_after(kit, tally, run, {"before": before})
        kinds = ", ".join(f"{kind} {proxy.counts[kind]}" for kind in FAULTS)
        tally.details.append(f"S3 requests {sum(proxy.counts.values())}: passed {proxy.counts['passed']}, {kinds}; "
                             f"copies that failed and were retried at the next sync: {failed_copies}")
    finally:
        kit.close()
        proxy.close()


# ---- scenario: Litestream killed ------------------------------------------------------------

def litestream_processes(config: Path) -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter(["name", "cmdline"]):
        with contextlib.suppress(psutil.Error):
            if process.info["name"] == "litestream" and str(config) in " ".join(process.info["cmdline"] or []) \
                    and process.status() != psutil.STATUS_ZOMBIE:
                found.append(process)
    return found


class Writer(threading.Thread):
    """The app: one new video every few milliseconds, each in its own transaction; counts what committed."""

    def __init__(self, database: Path, journal_mode: str = "WAL", busy_timeout: float = 30.0):
        super().__init__(name="app-writer", daemon=True)
        self.database = database
        self.journal_mode = journal_mode
        self.busy_timeout = busy_timeout
        self.committed = 0
        self.errors: list[str] = []
        self.halt = threading.Event()

    def run(self) -> None:
        with closing(sqlite3.connect(self.database, timeout=self.busy_timeout, isolation_level=None)) as connection:
            connection.execute(f"PRAGMA journal_mode = {self.journal_mode}")
            while not self.halt.wait(0.02):
                try:
                    connection.execute("INSERT INTO videos (title, status, created_at, updated_at) "
                                       "VALUES ('chaos', 'queued', unixepoch(), unixepoch())")
                    self.committed += 1
                except sqlite3.Error as err:
                    self.errors.append(str(err))


def check_replica(kit: Kit, tally: Tally, run: int, when: str) -> None:
    """Everything the app committed must come back from the replica: the real point-in-time restore to a
    moment after the last write, as a dry run (retried while Litestream catches up)."""
    time.sleep(1.5)
    report = None
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline:
        moment = datetime.fromtimestamp(int(time.time()) - 1, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        report = kit.run("restore", "--at", moment, "--dry-run")
        if report.returncode == 0 and "row changes: none" in report.stdout or "integrity_check" in report.stderr:
            break
        time.sleep(2)
    print(f"  litestream: restore --at now --dry-run {when}: exit {report.returncode} "
          f"{tail(report.stdout + report.stderr, 1)[:100]}", flush=True)
    if "integrity_check" in report.stderr:
        tally.lost(run, f"{when}, the Litestream replica restores to a database that fails integrity_check, so no "
                        f"point-in-time restore is possible: {tail(report.stderr, 1)}")
    elif report.returncode != 0:
        tally.wrong_answer(run, f"{when}, restore --at now --dry-run exits {report.returncode}: {tail(report.stderr)}")
    elif "row changes: none" not in report.stdout or "Litestream replica" not in report.stdout:
        tally.lost(run, f"{when}, the replica lacks committed rows: {tail(report.stdout, 4)}")


def scenario_litestream(suite: Suite, tally: Tally, kills: int, until: float) -> None:
    rng = suite.rng
    database = suite.database(suite.root / "litestream" / "db", 5000)
    kit = Kit(suite, "litestream", database, suite.root / "litestream" / "backups",
              litestream={"enabled": True, "replica_directory": str(suite.root / "litestream" / "replica"),
                          "metrics_address": f"127.0.0.1:{free_port()}"})
    service_url = f"http://{kit.settings['listen_address']}"
    litestream_config = kit.backups / "litestream.yml"
    kit.start_exporter()

    def start_service():
        service = suite.children.start(kit.command("serve"), log=kit.root / "serve.log")
        suite.wait(lambda: requests.get(f"{service_url}/-/healthy", timeout=2).ok, 30, "the backup service")
        suite.wait(lambda: litestream_processes(litestream_config), 30, "Litestream under the service")
        return service

    def app_writes(phase):
        """Run `phase` while the app writes; True when the app's writes all committed."""
        writer = Writer(database)
        writer.start()
        try:
            phase()
        finally:
            writer.halt.set()
            writer.join(10)
        committed.append(writer.committed)
        if writer.errors:
            tally.wrong_answer(tally.runs, f"the app's writes failed {len(writer.errors)} times: {writer.errors[0]}")

    with closing(sqlite3.connect(database)) as connection:
        initial_videos = connection.execute("SELECT count(*) FROM videos").fetchone()[0]
    committed: list[int] = []
    service = start_service()

    def kill_litestream(run: int):
        time.sleep(rng.uniform(1.0, 4.0))
        old = litestream_processes(litestream_config)
        for process in old:
            process.kill()
        tally.runs += 1
        tally.faults += 1
        killed = time.monotonic()
        try:
            suite.wait(lambda: [p for p in litestream_processes(litestream_config) if p not in old],
                       2.0 ** run + 15, "Litestream to start again")
            suite.wait(lambda: samples(requests.get(f"{service_url}/metrics", timeout=5).text).get(
                ("opsmon_litestream_up", ())) == 1, 10, "opsmon_litestream_up 1")
            print(f"  litestream {run}/{kills} killed: running again after {time.monotonic() - killed:.1f}s",
                  flush=True)
        except RuntimeError as err:
            tally.wrong_answer(run, f"Litestream killed -9: {err}")
        time.sleep(rng.uniform(1.0, 4.0))

    def kill_service():
        """The service itself killed -9 (say, by the OOM killer), and started again by its supervisor."""
        nonlocal service
        run = tally.runs = tally.runs + 1
        tally.faults += 1
        time.sleep(rng.uniform(0.5, 3.0))
        os.kill(service.pid, signal.SIGKILL)
        service.wait(10)
        orphaned = litestream_processes(litestream_config)
        service_again = start_service()
        time.sleep(3)
        now_running = litestream_processes(litestream_config)
        print(f"  litestream: the service killed -9 and started again; Litestream processes on the database: "
              f"{len(now_running)}", flush=True)
        if len(now_running) > 1:
            tally.wrong_answer(run, f"after the service was killed -9 and started again, {len(now_running)} "
                                    f"Litestream processes replicate the same database (the killed service's "
                                    f"pid {', '.join(str(p.pid) for p in orphaned)} was left running)")
        for process in orphaned:  # what the product left; the suite cleans it up
            with contextlib.suppress(psutil.Error):
                process.kill()
        suite.children.kill(service)
        service = service_again
        time.sleep(rng.uniform(0.5, 3.0))

    for run in range(1, kills + 1):  # the app writes through each kill; the replica is checked after each
        if time.monotonic() > until:
            tally.details.append(f"stopped at the time budget after {run - 1} of {kills} kills")
            break
        app_writes(lambda: kill_litestream(run))
        check_replica(kit, tally, run, f"after Litestream was killed -9 ({run} of {kills}) and restarted")
    if time.monotonic() < until:
        app_writes(kill_service)
        check_replica(kit, tally, tally.runs, "after the service was killed and started again")
    run = tally.runs
    suite.children.stop(service)
    time.sleep(0.5)
    left = litestream_processes(litestream_config)
    if left:
        tally.wrong_answer(run, f"Litestream still runs after the service stopped: pids {[p.pid for p in left]}")
        for process in left:
            with contextlib.suppress(psutil.Error):
                process.kill()
    with closing(sqlite3.connect(database)) as connection:
        videos = connection.execute("SELECT count(*) FROM videos").fetchone()[0]
    if videos != initial_videos + sum(committed):
        tally.lost(run, f"the database holds {videos} videos, {initial_videos} + {sum(committed)} committed")
    check_after(kit, tally, run, {"as written": fingerprint(database)})
    kit.close()
    tally.details.append(f"the app committed {sum(committed)} rows while Litestream and the service were killed")


# ---- scenario: the exporter under load ------------------------------------------------------

def scenario_load(suite: Suite, tally: Tally, seconds: float, until: float) -> None:
    kit = Kit(suite, "load", suite.database(suite.root / "load" / "db", suite.args.videos),
              suite.root / "load" / "backups")
    for tier in catalog.TIERS:
        kit.run("create", "--tier", tier)
    kit.start_exporter()
    exporter = psutil.Process(kit.exporter.pid)
    threads_before = exporter.num_threads()
    seconds = max(3.0, min(seconds, until - time.monotonic() - 20))
    idle = []
    try:
        for _ in range(500):
            sock = socket.create_connection(("127.0.0.1", kit.exporter_port), timeout=5)
            if len(idle) % 2:
                sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # a request that never ends
            idle.append(sock)
        tally.faults += len(idle)
        latencies: list[float] = []
        failures: list[str] = []
        lock = threading.Lock()
        stop_at = time.monotonic() + seconds

        def scraper() -> None:
            session = requests.Session()
            while time.monotonic() < stop_at:
                started = time.monotonic()
                try:
                    response = session.get(f"{kit.exporter_url}/metrics", timeout=10)
                    ok = response.status_code == 200 and \
                        'opsmon_scrape_collector_success{collector="backup"} 1.0' in response.text
                    problem = None if ok else f"status {response.status_code}"
                except requests.RequestException as err:
                    problem = type(err).__name__
                with lock:
                    latencies.append(time.monotonic() - started)
                    if problem:
                        failures.append(problem)

        scrapers = [threading.Thread(target=scraper, daemon=True) for _ in range(50)]
        for thread in scrapers:
            thread.start()
        peak = 0
        while any(thread.is_alive() for thread in scrapers):
            with contextlib.suppress(psutil.Error):
                peak = max(peak, exporter.num_threads())
            time.sleep(0.5)
        for thread in scrapers:
            thread.join(15)
    finally:
        for sock in idle:
            sock.close()
    tally.runs = len(latencies)
    run = 1
    if failures:
        tally.wrong_answer(run, f"{len(failures)} of {len(latencies)} scrapes failed under load, e.g. "
                                f"{', '.join(sorted(set(failures))[:3])}")
    latencies.sort()
    p50 = statistics.median(latencies) if latencies else 0
    p99 = latencies[max(0, int(len(latencies) * 0.99) - 1)] if latencies else 0
    if p99 > 10:
        tally.wrong_answer(run, f"p99 scrape latency {p99:.1f}s is over a 10 s scrape timeout")
    try:
        suite.wait(lambda: exporter.num_threads() <= threads_before + 10, 15, "the exporter's threads to be freed")
    except RuntimeError:
        tally.wrong_answer(run, f"the exporter still has {exporter.num_threads()} threads (from {threads_before}) "
                                "15 s after the idle connections closed")
    print(f"  load: {len(latencies)} scrapes by 50 scrapers beside 500 idle connections in {seconds:.0f}s: "
          f"p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms, {len(failures)} failed", flush=True)
    tally.details.append(f"{len(latencies)} scrapes in {seconds:.0f}s by 50 scrapers beside 500 idle connections: "
                         f"p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms; exporter threads {threads_before} "
                         f"before, {peak} at the peak")
    check_after(kit, tally, run, {"before": fingerprint(kit.database)})
    kit.close()


# ---- scenarios: the exporter's probes and business queries under faults ---------------------

PROBE_FAULTS = ("silent", "trickling", "flapping")
SLOW_READ = ("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) "
             "SELECT count(*) AS value FROM n, (SELECT 1 FROM videos LIMIT 1)")
SCRAPES_PER_RUN = 4


def bare_exporter(suite: Suite, root: Path, document: dict, collector: str) -> tuple:
    """The exporter with one collector on, for a config of the scenario's own; returns (process, url)."""
    port = free_port()
    document["exporter"] = {"listen_address": f"127.0.0.1:{port}", "state_directory": str(root / "exporter-state"),
                            **document.get("exporter", {})}
    config = root / "opsmon.yml"
    config.write_text(yaml.safe_dump(document, sort_keys=False))
    others = [f"--no-collector.{name}" for name in REGISTRY if name != collector]
    process = suite.children.start([sys.executable, "-m", "exporter", "--config.file", str(config), *others],
                                   log=root / "exporter.log")
    url = f"http://127.0.0.1:{port}"
    suite.wait(lambda: requests.get(f"{url}/-/ready", timeout=2).ok, 30, "the exporter")
    return process, url


def timed_scrape(url: str, timeout: float, tally: Tally, run: int) -> dict | None:
    """One scrape as Prometheus sends it; a failure or an answer later than its timeout is a wrong answer."""
    started = time.monotonic()
    try:
        response = requests.get(f"{url}/metrics", headers={"X-Prometheus-Scrape-Timeout-Seconds": f"{timeout:g}"},
                                timeout=timeout + 10)
    except requests.RequestException as err:
        tally.wrong_answer(run, f"the exporter does not answer /metrics: {err}")
        return None
    took = time.monotonic() - started
    if response.status_code != 200 or took > timeout:
        tally.wrong_answer(run, f"/metrics answered {response.status_code} in {took:.1f}s (timeout {timeout:g}s)")
        return None
    return {(s.name, s.labels.get("service") or s.labels.get("query") or s.labels.get("collector")): s.value
            for family in text_string_to_metric_families(response.text) for s in family.samples}


def stops_at_once(suite: Suite, process, tally: Tally, run: int, within: float = 5.0) -> None:
    process.terminate()
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(within)
    if process.poll() is None:
        tally.wrong_answer(run, f"the exporter still runs {within:g}s after SIGTERM")
    suite.children.kill(process)


def scenario_hung_service(suite: Suite, tally: Tally, runs: int, until: float) -> None:
    """Many services that hang (never answer, trickle bytes, or hang every other scrape) beside healthy ones:
    every service reported at every scrape, within the scrape's timeout, threads bounded, SIGTERM obeyed."""
    healthy = HttpService()
    try:
        for run in range(1, runs + 1):
            if time.monotonic() > until:
                break
            fault, hung = suite.rng.choice(PROBE_FAULTS), suite.rng.randint(20, 150)
            timeout = suite.rng.choice((2.0, 3.0, 5.0))
            print(f"  run {run}: {hung} {fault} services, scrape timeout {timeout:g}s", flush=True)
            root = suite.root / "hung-service" / f"run-{run}"
            root.mkdir(parents=True)
            service = hung_service(fault)
            probes = ([{"service": f"hung-{n}", "url": service.url, "timeout_seconds": 10} for n in range(hung)]
                      + [{"service": f"healthy-{n}", "url": healthy.url} for n in range(3)])
            try:
                process, url = bare_exporter(suite, root, {"database": {"path": str(root / "app.db")},
                                                           "exporter": {"probes": probes}}, "probes")
                threads_before = psutil.Process(process.pid).num_threads()
                tally.runs += 1
                for scrape in range(SCRAPES_PER_RUN):
                    hanging = fault != "flapping" or scrape % 2 == 0
                    service.hang(hanging)
                    tally.faults += hung if hanging else 0
                    got = timed_scrape(url, timeout, tally, run)
                    if got is None:
                        continue
                    expected = {p["service"]: 0 if hanging and p["service"].startswith("hung") else 1 for p in probes}
                    reported = {p["service"]: got.get(("opsmon_probe_success", p["service"])) for p in probes}
                    wrong = sorted(name for name in expected if reported[name] != expected[name])
                    if got.get(("opsmon_scrape_collector_success", "probes")) != 1 or wrong:
                        tally.wrong_answer(run, f"scrape {scrape + 1}: the probes collector failed or "
                                                f"{len(wrong)} services were reported wrong, e.g. "
                                                f"{', '.join(f'{n}={reported[n]}' for n in wrong[:3])}")
                threads = psutil.Process(process.pid).num_threads()
                if threads > threads_before + len(probes) + 10:
                    tally.wrong_answer(run, f"the exporter holds {threads} threads for {len(probes)} services "
                                            f"({threads_before} before)")
                stops_at_once(suite, process, tally, run)
            finally:
                service.close()
    finally:
        healthy.close()
    tally.details.append(f"{tally.runs} runs of 20-150 hung services beside 3 healthy ones, "
                         f"{SCRAPES_PER_RUN} scrapes each")


def scenario_slow_query(suite: Suite, tally: Tally, runs: int, until: float) -> None:
    """A business query that would run for a minute beside a fast one while the app writes, on a WAL or a
    rollback-journal database: the fast one published at every scrape, no scrape late, no write of the app
    refused for a lock, SIGTERM obeyed while the slow query runs."""
    for run in range(1, runs + 1):
        if time.monotonic() > until:
            break
        journal = suite.rng.choice(("WAL", "DELETE"))
        timeout = suite.rng.choice((2.0, 3.0, 5.0))
        print(f"  run {run}: journal mode {journal}, scrape timeout {timeout:g}s", flush=True)
        root = suite.root / "slow-query" / f"run-{run}"
        database = suite.database(root, 2000)
        execute(database, f"PRAGMA journal_mode = {journal}")
        queries = [{"name": "business_slow", "help": "A query that runs for a minute.", "query": SLOW_READ,
                    "timeout_seconds": 60, "refresh_seconds": 1},
                   {"name": "business_videos", "help": "Videos now.", "query": "SELECT count(*) AS value FROM videos",
                    "refresh_seconds": 1}]
        process, url = bare_exporter(suite, root, {"database": {"path": str(database)}, "business": queries},
                                     "business")
        writer = Writer(database, journal_mode=journal, busy_timeout=2.0)
        writer.start()
        tally.runs += 1
        try:
            for scrape in range(SCRAPES_PER_RUN):
                tally.faults += 1
                got = timed_scrape(url, timeout, tally, run)
                if got is not None and (got.get(("business_videos", None)) is None
                                        or got.get(("opsmon_scrape_collector_success", "business")) != 1):
                    tally.wrong_answer(run, f"scrape {scrape + 1}: the fast query is not published beside the slow")
        finally:
            writer.halt.set()
            writer.join(10)
        if writer.errors:
            tally.wrong_answer(run, f"the app's writes failed {len(writer.errors)} times while the exporter read, "
                                    f"e.g. {writer.errors[0]}")
        stops_at_once(suite, process, tally, run, within=3.0)
    tally.details.append(f"{tally.runs} runs of a minute-long business query beside a fast one and the app's writes")


# ---- the table ------------------------------------------------------------------------------

# ---- scenario: a hostile backup folder -------------------------------------------------------

HOSTILE_FAULTS = ("lock link", "tmp link", "foreign files", "clock jump")
HOSTILE_COMMANDS = (("create", "--tier", "daily"), ("prune",), ("verify", "--all"), ("drill",))
YEAR = 365 * 86400


def scenario_hostile(suite: Suite, tally: Tally, runs: int, until: float) -> None:
    rng = suite.rng
    database = suite.database(suite.root / "hostile" / "db", suite.args.fs_videos)
    kit = Kit(suite, "hostile", database, suite.root / "hostile" / "backups")
    for tier in catalog.TIERS:
        if kit.run("create", "--tier", tier).returncode != 0:
            raise RuntimeError(f"setting up: create --tier {tier} failed")
    kit.start_exporter()
    try:
        for run in range(1, runs + 1):
            if time.monotonic() > until:
                tally.details.append(f"stopped at the time budget after {run - 1} of {runs} runs")
                break
            tally.runs += 1
            tally.faults += 1
            fault = HOSTILE_FAULTS[(run - 1) % len(HOSTILE_FAULTS)]
            command = HOSTILE_COMMANDS[0] if fault == "clock jump" else rng.choice(HOSTILE_COMMANDS)
            before = fingerprint(database)
            print(f"  hostile {run:3}/{runs} {fault:13} then {' '.join(command)}", flush=True)
            {"lock link": _planted_lock, "tmp link": _planted_tmp, "foreign files": _foreign_files,
             "clock jump": _clock_jump}[fault](kit, tally, run, command, rng)
            check_after(kit, tally, run, {"before": before})
            for tier in catalog.TIERS:
                if not kit.catalog().newest_verified(tier):
                    tally.lost(run, f"no verified {tier} backup is left")
        ahead = len(catalog.future_dated(kit.catalog().backups, time.time()))
        planted = sum(1 for f in kit.foreign if f.endswith(catalog.BACKUP_SUFFIX))
        tally.details.append(f"faults by kind: {', '.join(HOSTILE_FAULTS)} in turn; foreign files planted (all kept): "
                             f"{planted}; future-dated backups retained at the end: {ahead}")
    finally:
        kit.close()


def _refused(kit: Kit, tally: Tally, run: int, command, planted: Path) -> None:
    """The command under a planted link: exit 1, naming it, and no traceback."""
    result = kit.run(*command)
    if result.returncode != 1 or str(planted) not in result.stderr or "Traceback" in result.stderr:
        tally.wrong_answer(run, f"{' '.join(command)} with {planted} planted exits {result.returncode} "
                                f"({tail(result.stderr)}): it must refuse, naming it")


def _planted_lock(kit: Kit, tally: Tally, run: int, command, rng) -> None:
    lock = kit.backups / ".job.lock"
    database = kit.database.read_bytes()
    lock.unlink(missing_ok=True)
    lock.symlink_to(kit.database)
    _refused(kit, tally, run, command, lock)
    if kit.database.read_bytes() != database:
        tally.lost(run, f"{' '.join(command)} wrote through {lock}, a link to the live database")
    lock.unlink()  # the person removes the link, as the message says


def _planted_tmp(kit: Kit, tally: Tally, run: int, command, rng) -> None:
    bait = kit.root / f"someone-elses-{run}"
    (bait / "drill-local").mkdir(parents=True)
    for name in ("snapshot-1.db", "dry-run.db", "notes.txt", "drill-local/inside.db"):
        (bait / name).write_bytes(os.urandom(rng.randint(1, 4096)))
    kept = {p: p.read_bytes() for p in bait.rglob("*") if p.is_file()}
    tmp = kit.backups / ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.symlink_to(bait)
    _refused(kit, tally, run, command, tmp)
    if {p: p.read_bytes() for p in bait.rglob("*") if p.is_file()} != kept:
        tally.lost(run, f"{' '.join(command)} removed or changed files of {bait} through {tmp}")
    tmp.unlink()
    shutil.rmtree(bait)


def _foreign_files(kit: Kit, tally: Tally, run: int, command, rng) -> None:
    planted = {kit.backups / "manual" / f"x-{run}.db.gz": os.urandom(512),
               kit.backups / "daily" / f"hand-made-{run}.db.gz": os.urandom(512)}
    for path, data in planted.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    kit.foreign |= {str(kit.backups / "manual"), *map(str, planted)}
    result = kit.run(*command)
    if result.returncode not in (0, 3) or "Traceback" in result.stderr:
        tally.wrong_answer(run, f"{' '.join(command)} beside foreign files exits {result.returncode}: "
                                f"{tail(result.stderr)}")
    for path in sorted(map(Path, kit.foreign)):
        if path.suffix == ".gz" and not path.exists():
            tally.lost(run, f"{' '.join(command)} deleted {path}, a file opsmon did not write")


def _clock_jump(kit: Kit, tally: Tally, run: int, command, rng) -> None:
    """The newest daily backup taken under a clock a year ahead; then, with the clock set right, a create."""
    newest = max(kit.catalog().of_tier("daily"), key=catalog.creation_order)
    manifest = newest.manifest
    manifest.started_at = catalog.to_iso(time.time() + YEAR)
    manifest.finished_at = catalog.to_iso(time.time() + YEAR + 1)
    catalog.write_manifest(newest.manifest_path, manifest)
    result = kit.run(*command)
    made = result.stdout.strip()
    if result.returncode != 0 or not made:
        tally.wrong_answer(run, f"create after a clock set back exits {result.returncode}: {tail(result.stderr)}")
    elif made not in {r.id for r in kit.catalog().backups}:
        tally.lost(run, f"retention deleted {made}, the backup create had just made, after a clock set back")
    ahead = len(catalog.future_dated(kit.catalog().backups, time.time()))
    values = samples(requests.get(f"{kit.exporter_url}/metrics", timeout=15).text)
    published = values.get(("opsmon_backup_future_dated", (("database", kit.name),)))
    if published != ahead:
        tally.wrong_answer(run, f"opsmon_backup_future_dated is {published}, the catalog holds {ahead} future-dated")
    status = kit.run("status")
    if ahead and (status.returncode != 3 or "stamped in the future" not in status.stdout):
        tally.wrong_answer(run, f"status exits {status.returncode} without naming the {ahead} future-dated backup(s)")


LABELS = {
    "kill": "kill -9 during create, restore, restore --tables, check --fix, copies (folder, S3)",
    "full-disk": "full filesystem (5 MB tmpfs) under backup and restore",
    "s3": "S3 errors and dropped connections (fault proxy before moto)",
    "litestream": "Litestream killed -9 while serve runs (then serve itself)",
    "load": "exporter: 50 parallel scrapers, 500 idle connections",
    "hostile": "hostile backup folder: planted links, foreign files, a clock set back",
    "hung-service": "exporter: 20-150 probed services hung (silent, trickling, flapping)",
    "slow-query": "exporter: a minute-long business query beside a fast one (WAL, rollback journal)",
}


def table(tallies: list[Tally]) -> str:
    rows = ["| scenario | runs | faults injected | data lost | wrong answers |", "|---|---:|---:|---:|---:|"]
    for t in tallies:
        rows.append(f"| {LABELS[t.scenario]} | {t.runs} | {t.faults} | {len(t.lost_runs)} | {t.wrong} |")
    return "\n".join(rows)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=100,
                        help="kill -9 runs (default 100); the other scenarios scale with it: runs/8 full-disk and "
                             "S3 runs, up to 4 Litestream kills, runs/6 seconds of load")
    parser.add_argument("--minutes", type=float, default=15.0,
                        help="time budget (default 15); each scenario stops at its share of it")
    parser.add_argument("--scenario", action="append", choices=SCENARIOS,
                        help="run only this scenario (repeatable; default: all)")
    parser.add_argument("--seed", type=int, default=None, help="the random seed (printed; give it to replay a run)")
    parser.add_argument("--videos", type=int, default=40_000, help="videos in the demo databases (default 40000)")
    parser.add_argument("--fs-videos", type=int, default=15_000,
                        help="videos in the full-disk scenario's databases (default 15000, about 1.7 MB)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (logs, databases) at the end")
    args = parser.parse_args(argv)
    if args.seed is None:
        args.seed = random.SystemRandom().randrange(1 << 30)
    if args.runs < 1 or args.minutes <= 0:
        parser.error("--runs and --minutes must be positive")
    if os.geteuid() != 0 and "full-disk" in (args.scenario or SCENARIOS):
        parser.error("the full-disk scenario mounts a tmpfs: run as root, or leave it out with --scenario")
    chosen = [s for s in SCENARIOS if s in (args.scenario or SCENARIOS)]
    counts = {"kill": args.runs, "full-disk": max(4, args.runs // 8), "s3": max(3, args.runs // 8),
              "litestream": max(2, min(4, args.runs // 25)), "load": max(5, args.runs // 6),
              "hostile": max(4, args.runs // 8), "hung-service": max(2, args.runs // 25),
              "slow-query": max(2, args.runs // 25)}

    def interrupted(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupted)
    print(f"opsmon chaos suite: seed {args.seed}, runs {args.runs}, budget {args.minutes:g} min, "
          f"scenarios {', '.join(chosen)}", flush=True)
    suite = Suite(args)
    started = time.monotonic()
    end = started + args.minutes * 60
    try:
        for index, name in enumerate(chosen):
            remaining = sum(WEIGHTS[n] for n in chosen[index:])
            until = time.monotonic() + (end - time.monotonic()) * WEIGHTS[name] / remaining
            tally = Tally(name)
            suite.tallies.append(tally)
            suite.rng = random.Random(f"{args.seed}:{name}")  # each scenario replays alone with the same seed
            print(f"\n{name}: {LABELS[name]}", flush=True)
            begun = time.monotonic()
            try:
                {"kill": scenario_kill, "full-disk": scenario_full_disk, "s3": scenario_s3,
                 "litestream": scenario_litestream, "load": scenario_load, "hostile": scenario_hostile,
                 "hung-service": scenario_hung_service, "slow-query": scenario_slow_query}[name](suite, tally, counts[name], until)
            except (RuntimeError, OSError, requests.RequestException) as err:
                tally.wrong_answer(tally.runs, f"the scenario could not go on: {type(err).__name__}: {err}")
            finally:
                tally.seconds = time.monotonic() - begun
    except KeyboardInterrupt:
        print("\ninterrupted: cleaning up", flush=True)
        suite.close()
        return 130
    suite.close()
    minutes = (time.monotonic() - started) / 60
    print(f"\n{table(suite.tallies)}\n")
    print(f"{minutes:.1f} minutes on {os.cpu_count()} CPUs, seed {args.seed} "
          f"(--seed {args.seed} --runs {args.runs} replays the same choices, --scenario NAME one scenario's)")
    for tally in suite.tallies:
        print(f"\n{tally.scenario} ({tally.seconds:.0f}s):")
        for line in tally.details:
            print(f"  {line}")
        for line in tally.problems[:30]:
            print(f"  {line}")
        if len(tally.problems) > 30:
            print(f"  ... and {len(tally.problems) - 30} more")
    failed = any(t.lost_runs or t.wrong for t in suite.tallies)
    print("\nFAILED: data lost or wrong answers (above)" if failed else "\nPASSED: no data lost, no wrong answers")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
