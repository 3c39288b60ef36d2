"""docker-compose.yml, checked without Docker: services, pinned images, named volumes, loopback ports,
mounted paths, health checks, and the compose config kept in step with opsmon.yml."""

from __future__ import annotations

import re

import yaml

from opsmon.config import load_config
from tests.conftest import REPO

COMPOSE = yaml.safe_load((REPO / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]


def test_the_whole_stack_is_there():
    assert set(SERVICES) == {"demo", "pager", "exporter", "backup", "prometheus", "alertmanager", "grafana",
                             "mailpit", "victoriametrics"}


def test_the_long_term_store_is_a_profile_that_prometheus_writes_to_when_switched_on():
    assert SERVICES["victoriametrics"]["profiles"] == ["long-term"]
    assert "profiles" not in SERVICES["prometheus"]
    start = SERVICES["prometheus"]["command"][0]
    assert '"${OPSMON_LONG_TERM:-0}" = 1 ]; then config=prometheus.long-term.yml; else config=prometheus.yml' in start
    long_term = yaml.safe_load((REPO / "prometheus/prometheus.long-term.yml").read_text())
    assert [re.match(r"http://(\w+):8428/", r["url"]).group(1) for r in long_term["remote_write"]] == [
        "victoriametrics"]
    assert {"job_name": "victoriametrics", "static_configs": [{"targets": ["victoriametrics:8428"]}]} in long_term[
        "scrape_configs"]


def test_the_demo_its_pager_and_the_smtp_sink_are_the_demo_profile_and_the_kit_starts_without_them():
    demo = {name for name, service in SERVICES.items() if service.get("profiles") == ["demo"]}
    assert demo == {"demo", "pager", "mailpit"}
    kit = {name for name, service in SERVICES.items() if "profiles" not in service}
    assert kit == {"exporter", "backup", "prometheus", "alertmanager", "grafana"}
    for name in kit:
        service = SERVICES[name]
        # `docker compose up -d` refuses a service that needs one of a profile not switched on.
        needed = {dependency for dependency, how in service.get("depends_on", {}).items() if how.get("required", True)}
        assert not needed & demo, f"{name} needs {needed & demo}"
        assert not str(service.get("pid", "")).startswith("service:"), f"{name} shares a service's processes"


def test_images_are_pinned_by_version():
    for name, service in SERVICES.items():
        image = service["image"]
        repository, _, tag = image.rpartition(":")
        assert repository and re.fullmatch(r"v?\d+\.\d+\.\d+", tag), f"{name}: {image} is not pinned"


def test_ports_are_published_on_loopback_only():
    for name, service in SERVICES.items():
        for port in service.get("ports", []):
            assert port.startswith("127.0.0.1:"), f"{name}: {port}"


def test_data_lives_in_named_volumes_and_mounted_files_exist():
    declared = set(COMPOSE["volumes"])
    for name, service in SERVICES.items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (REPO / source).exists(), f"{name}: {source} is not in the repository"
            else:
                assert source in declared, f"{name}: volume {source} is not declared"
    assert {"prometheus-data", "alertmanager-data", "grafana-data", "run-data", "backups"} <= declared


def test_every_service_has_a_health_check():
    for name, service in SERVICES.items():
        assert service["healthcheck"]["test"][0] == "CMD", name


def test_grafana_password_comes_from_the_environment_with_a_documented_default():
    password = SERVICES["grafana"]["environment"]["GF_SECURITY_ADMIN_PASSWORD"]
    assert password == "${GRAFANA_ADMIN_PASSWORD:-change-me}"
    assert "GRAFANA_ADMIN_PASSWORD=change-me" in (REPO / ".env.example").read_text()


def test_prometheus_and_alertmanager_reach_the_compose_services():
    prometheus = yaml.safe_load((REPO / "prometheus/prometheus.yml").read_text())
    groups = [group for job in prometheus["scrape_configs"] for group in job.get("static_configs", [])]
    for path in (REPO / "prometheus/targets").glob("*.yml"):
        groups += yaml.safe_load(path.read_text())
    hosts = {target.split(":")[0] for group in groups for target in group["targets"]} - {"localhost"}
    assert hosts <= set(SERVICES), hosts - set(SERVICES)
    alertmanager = yaml.safe_load((REPO / "alertmanager/alertmanager.yml").read_text())
    assert alertmanager["global"]["smtp_smarthost"].split(":")[0] in SERVICES
    for receiver in alertmanager["receivers"]:
        for hook in receiver.get("webhook_configs", []):
            assert re.match(r"http://(\w+):", hook["url"]).group(1) in SERVICES


def differences(a, b, path=""):
    if isinstance(a, dict) and isinstance(b, dict):
        for key in set(a) | set(b):
            yield from differences(a.get(key), b.get(key), f"{path}.{key}" if path else key)
    elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for index, (x, y) in enumerate(zip(a, b)):
            yield from differences(x, y, f"{path}[{index}]")
    elif a != b:
        yield path


def test_the_compose_config_differs_from_opsmon_yml_only_in_paths_and_addresses():
    native = load_config(REPO / "opsmon.yml").model_dump(mode="json")
    compose = load_config(REPO / "opsmon.compose.yml").model_dump(mode="json")
    assert sorted(differences(native, compose)) == sorted([
        "database.path", "exporter.listen_address", "exporter.state_directory", "exporter.app_metrics_directory",
        "exporter.processes[0].pidfile", "exporter.probes[0].url", "exporter.probes[1].url", "exporter.logs[0].path",
        "backups.directory", "backups.secondary_directory", "backups.litestream.replica_directory",
        "backups.litestream.metrics_address", "backups.listen_address", "backups.console.users_file",
        "stack.hosts[0].exporter", "stack.hosts[0].backup", "stack.hosts[0].litestream", "stack.prometheus.address",
        "stack.alertmanager.address", "stack.alertmanager.data_mounts", "stack.grafana.dashboards_directory",
        "stack.grafana.app_dashboards_directory", "stack.long_term.address",
        "stack.receivers.smtp.smarthost", "stack.receivers.pager_url", "stack.receivers.heartbeat_url"])
