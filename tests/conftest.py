"""Shared test helpers: config files, golden comparison, child processes, and a real S3-compatible server
(moto) on loopback; free ports, polling and stopping come from bench/harness.py, which the benchmarks share."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path

import boto3
import pytest
import requests
import yaml
from prometheus_client import CollectorRegistry, generate_latest

from bench.harness import REPO, free_port, stop, wait_for

GOLDEN = Path(__file__).resolve().parent / "golden"
FIXTURES = Path(__file__).resolve().parent / "fixtures"


def write_config(path: Path, document: dict) -> Path:
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


class _Sorted:
    def __init__(self, registry):
        self._registry = registry

    def collect(self):
        return sorted(self._registry.collect(), key=lambda family: family.name)


def exposition(*collectors, sort: bool = False) -> str:
    """The text exposition of collectors, as Prometheus would scrape it; `sort` orders families by name."""
    registry = CollectorRegistry()
    for collector in collectors:
        registry.register(collector)
    return generate_latest(_Sorted(registry) if sort else registry).decode()


def assert_golden(case: str, text: str) -> None:
    """Compare with tests/golden/<case>.prom; UPDATE_GOLDEN=1 rewrites the file instead."""
    path = GOLDEN / f"{case}.prom"
    if os.environ.get("UPDATE_GOLDEN"):
        path.write_text(text)
    assert path.exists(), f"{path} is missing: run with UPDATE_GOLDEN=1 once and review it"
    assert text == path.read_text()


@pytest.fixture
def python_env():
    """The environment for child Python processes, without a multiprocess folder of ours leaking in."""
    env = dict(os.environ)
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def start(args: list[str], env: dict, cwd: Path = REPO, log: Path | None = None) -> subprocess.Popen:
    out = open(log, "wb") if log else subprocess.DEVNULL
    return subprocess.Popen([sys.executable, *args], cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)


@contextlib.contextmanager
def running(process: subprocess.Popen, ready_url: str, what: str):
    """`process` once `ready_url` answers 2xx; stopped at the end, also when it never got ready."""
    try:
        wait_for(lambda: requests.get(ready_url, timeout=1).ok, what=what)
        yield process
    finally:
        stop(process)


@contextlib.contextmanager
def exporter_with(tmp_path: Path, env: dict, document: dict, collector: str):
    """The real exporter process on a config of `document` (a state folder added) with only `collector` on;
    yields its URL and process, stopped at the end."""
    from exporter.collectors import REGISTRY

    document = {**document, "exporter": {"state_directory": str(tmp_path / "state"), **document.get("exporter", {})}}
    config = write_config(tmp_path / "opsmon.yml", document)
    port = free_port()
    others = [f"--no-collector.{name}" for name in REGISTRY if name != collector]
    process = start(["-m", "exporter", "--config.file", str(config), "--web.listen-address", f"127.0.0.1:{port}",
                     *others], env, log=tmp_path / "exporter.out")
    url = f"http://127.0.0.1:{port}"
    with running(process, f"{url}/-/ready", "the exporter"):
        yield url, process


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """A config's folder for the property tests: a database file, a backups folder and a readable file exist;
    the rest does not."""
    root = tmp_path_factory.mktemp("properties")
    (root / "app.db").write_bytes(b"")
    (root / "backups").mkdir()
    (root / "secret").write_text("s3cret\n")
    return root


@pytest.fixture(scope="module")
def s3():
    """moto's S3 server, a real HTTP server on 127.0.0.1."""
    port = free_port()
    server = subprocess.Popen([str(Path(sys.executable).with_name("moto_server")), "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    wait_for(lambda: requests.get(endpoint, timeout=1).status_code < 500, what="the S3 server")
    yield endpoint
    stop(server)


def new_bucket(s3: str, tmp_path: Path):
    """A bucket of the test's own, a client for it, and the credential files a config names."""
    bucket = f"opsmon-{tmp_path.name.lower().replace('_', '-')}"[:60]
    client = boto3.client("s3", endpoint_url=s3, region_name="us-east-1", aws_access_key_id="test",
                          aws_secret_access_key="test")
    client.create_bucket(Bucket=bucket)
    (tmp_path / "key-id").write_text("test\n")
    (tmp_path / "secret").write_text("test\n")
    return client, bucket
