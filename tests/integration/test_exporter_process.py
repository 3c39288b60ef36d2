"""The exporter as a real process against the running demo app, on free loopback ports."""

from __future__ import annotations

import shutil
import signal
import subprocess

import pytest
import requests
import yaml
from prometheus_client.parser import text_string_to_metric_families

from opsmon.catalog import IntegrityStatus, record_integrity
from tests.conftest import FIXTURES, REPO, free_port, start, stop, wait_for, write_config

# Every exporter metric of docs/metrics.md that applies on a machine without a GPU.
PUBLISHED_METRICS = """
opsmon_exporter_build_info opsmon_scrape_collector_success opsmon_scrape_collector_duration_seconds
opsmon_cpu_seconds_total opsmon_cpus opsmon_load1 opsmon_load5 opsmon_load15
opsmon_memory_total_bytes opsmon_memory_available_bytes opsmon_swap_total_bytes opsmon_swap_used_bytes
opsmon_filesystem_size_bytes opsmon_filesystem_avail_bytes opsmon_filesystem_files opsmon_filesystem_files_free
opsmon_disk_read_bytes_total opsmon_disk_written_bytes_total opsmon_disk_io_time_seconds_total
opsmon_network_receive_bytes_total opsmon_network_transmit_bytes_total opsmon_boot_time_seconds opsmon_time_seconds
opsmon_process_up opsmon_process_cpu_seconds_total opsmon_process_resident_memory_bytes
opsmon_process_open_fds opsmon_process_start_time_seconds
opsmon_probe_success opsmon_probe_duration_seconds opsmon_probe_http_status_code
opsmon_log_messages_total
opsmon_db_size_bytes opsmon_db_wal_size_bytes opsmon_db_integrity_check_success
opsmon_db_integrity_check_last_timestamp_seconds opsmon_db_foreign_key_violations opsmon_db_rule_violations
opsmon_backup_last_success_timestamp_seconds opsmon_backup_last_failure_timestamp_seconds
opsmon_backup_last_duration_seconds opsmon_backup_last_size_bytes opsmon_backup_retained
opsmon_backup_verify_last_success_timestamp_seconds opsmon_backup_verify_failures
opsmon_backup_copy_last_success_timestamp_seconds opsmon_restore_drill_last_success_timestamp_seconds
opsmon_pitr_last_replicated_timestamp_seconds
app_requests_total app_request_errors_total app_request_duration_seconds app_requests_in_progress app_errors_total
business_videos_processed_total business_videos_approved_total business_videos_monetized_total
business_videos_queued
""".split()


def shipped_config_for(run_dir, demo_port: int) -> dict:
    """The repository's opsmon.yml, pointed at a test folder and the demo's test port."""
    document = yaml.safe_load((REPO / "opsmon.yml").read_text())
    text = yaml.safe_dump(document).replace(".run/", f"{run_dir}/").replace(":8080/", f":{demo_port}/")
    document = yaml.safe_load(text)
    for query in document["business"]:
        query["refresh_seconds"] = 1  # the test cannot wait a minute for the first refresh
    return document


def samples(text: str) -> dict:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("run")
    (run_dir / "logs").mkdir()
    shutil.copytree(FIXTURES / "catalog", run_dir / "backups")
    demo_port, exporter_port = free_port(), free_port()
    config = write_config(run_dir / "opsmon.yml", shipped_config_for(run_dir, demo_port))
    env = {**__import__("os").environ, "PYTHONUNBUFFERED": "1"}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    demo = start(["-m", "demo", "serve", "--db", str(run_dir / "demo.db"), "--listen", f"127.0.0.1:{demo_port}",
                  "--metrics-dir", str(run_dir / "app-metrics"), "--log-file", str(run_dir / "logs/demo.jsonl"),
                  "--pidfile", str(run_dir / "demo.pid"), "--rate", "20", "--workers", "3"],
                 env, log=run_dir / "demo.out")
    wait_for(lambda: requests.get(f"http://127.0.0.1:{demo_port}/health", timeout=1).ok, what="the demo app")
    exporter = start(["-m", "exporter", "--config.file", str(config),
                      "--web.listen-address", f"127.0.0.1:{exporter_port}"], env, log=run_dir / "exporter.out")
    url = f"http://127.0.0.1:{exporter_port}"
    wait_for(lambda: requests.get(f"{url}/-/ready", timeout=1).ok, what="the exporter")
    yield {"url": url, "run_dir": run_dir, "config": config, "exporter": exporter, "demo_port": demo_port}
    stop(exporter)
    stop(demo)


def test_every_published_metric_is_there(stack):
    record_integrity(stack["run_dir"] / "backups", IntegrityStatus(
        checked_at=1764129600.0, ok=True, foreign_key_violations=0, rule_violations={"rule": 0}))

    missing = list(PUBLISHED_METRICS)

    def complete():
        text = requests.get(f"{stack['url']}/metrics", timeout=15).text
        names = {s.name for f in text_string_to_metric_families(text) for s in f.samples}
        names |= {f.name for f in text_string_to_metric_families(text)}  # histograms by their family name
        missing[:] = [name for name in PUBLISHED_METRICS if name not in names]
        return text if not missing else None

    text = wait_for(complete, timeout=30, interval=0.5, what=lambda: f"every published metric, missing {missing}")
    got = samples(text)
    for collector in ("system", "process", "gpu", "probes", "logs", "database", "backup", "business", "app"):
        assert got[("opsmon_scrape_collector_success", (("collector", collector),))] == 1, collector
    assert got[("opsmon_process_up", (("process", "demo"),))] == 1
    assert got[("opsmon_probe_success", (("service", "external-api"),))] == 1
    assert got[("business_videos_processed_total", ())] > 0
    assert got[("app_requests_total", (("handler", "process_video"),))] > 0
    assert got[("opsmon_log_messages_total", (("level", "info"), ("source", "demo")))] > 0


def test_injected_fault_shows_in_metrics(stack):
    faults = f"http://127.0.0.1:{stack['demo_port']}/admin/faults"
    requests.post(faults, json={"external_available": False}, timeout=5).raise_for_status()
    try:
        wait_for(lambda: samples(requests.get(f"{stack['url']}/metrics", timeout=15).text)
                 [("opsmon_probe_success", (("service", "external-api"),))] == 0, what="the probe to fail")
        health = requests.get(f"{stack['url']}/health", timeout=15).json()
        service = next(c for c in health["checks"] if c["component"] == "service:external-api")
        assert service["status"] == "degraded" and "503" in service["detail"]
    finally:
        requests.post(faults, json={"external_available": True}, timeout=5).raise_for_status()


def test_openmetrics_by_accept_header(stack):
    response = requests.get(f"{stack['url']}/metrics", timeout=15,
                            headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    assert response.headers["Content-Type"].startswith("application/openmetrics-text")
    assert response.text.rstrip().endswith("# EOF")


def test_sighup_reload_keeps_the_old_config_when_the_new_is_bad(stack):
    config = stack["config"]
    good = config.read_text()
    url = stack["url"]
    reload_ok = ("opsmon_config_last_reload_successful", ())
    try:
        config.write_text(good + "\nsurprise: 1\n")
        stack["exporter"].send_signal(signal.SIGHUP)
        wait_for(lambda: samples(requests.get(f"{url}/metrics", timeout=15).text)[reload_ok] == 0,
                 what="the failed reload to show")
        assert "surprise: unknown key" in (stack["run_dir"] / "exporter.out").read_text()
        assert stack["exporter"].poll() is None
    finally:
        config.write_text(good)
    stack["exporter"].send_signal(signal.SIGHUP)
    wait_for(lambda: samples(requests.get(f"{url}/metrics", timeout=15).text)[reload_ok] == 1,
             what="the good reload to show")


def test_health_is_json_and_503_when_the_database_is_gone(stack):
    response = requests.get(f"{stack['url']}/health", timeout=15)
    assert response.status_code == 200
    report = response.json()
    components = [c["component"] for c in report["checks"]]
    assert components == ["database", "disk", "memory", "cpu", "service:external-api", "service:demo-api",
                          "backups"]
    assert report["status"] in ("ok", "degraded")
    disk = report["checks"][1]
    assert disk["thresholds"] == {"warning_free_ratio": 0.1, "critical_free_ratio": 0.03}

    (stack["run_dir"] / "demo.db").rename(stack["run_dir"] / "demo.db.moved")
    try:
        response = requests.get(f"{stack['url']}/health", timeout=15)
        assert response.status_code == 503
        assert response.json()["status"] == "down"
        assert response.json()["checks"][0]["status"] == "down"
        success = samples(requests.get(f"{stack['url']}/metrics", timeout=15).text)
        assert success[("opsmon_scrape_collector_success", (("collector", "database"),))] == 0
    finally:
        (stack["run_dir"] / "demo.db.moved").rename(stack["run_dir"] / "demo.db")


def test_tls_and_basic_auth(tmp_path, python_env):
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost",
                    "-keyout", str(tmp_path / "key.pem"), "-out", str(tmp_path / "cert.pem")],
                   check=True, capture_output=True)
    (tmp_path / "password").write_text("s3cret\n")
    (tmp_path / "app.db").write_bytes(b"")
    port = free_port()
    config = write_config(tmp_path / "opsmon.yml", {
        "database": {"path": "app.db"},
        "exporter": {"listen_address": f"127.0.0.1:{port}", "web": {
            "tls_cert_file": "cert.pem", "tls_key_file": "key.pem",
            "basic_auth_username": "prometheus", "basic_auth_password_file": "password"}}})
    exporter = start(["-m", "exporter", "--config.file", str(config), "--no-collector.gpu"], python_env,
                     log=tmp_path / "out")
    try:
        url = f"https://localhost:{port}"
        cert = str(tmp_path / "cert.pem")
        wait_for(lambda: requests.get(f"{url}/-/healthy", verify=cert, timeout=2).status_code == 401,
                 what="the TLS exporter")
        assert requests.get(f"{url}/metrics", verify=cert, auth=("prometheus", "wrong"), timeout=5).status_code == 401
        answer = requests.get(f"{url}/metrics", verify=cert, auth=("prometheus", "s3cret"), timeout=15)
        assert answer.status_code == 200 and "opsmon_exporter_build_info" in answer.text
        with pytest.raises(requests.ConnectionError):
            requests.get(f"http://localhost:{port}/metrics", timeout=5)
    finally:
        stop(exporter)
