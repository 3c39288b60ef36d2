"""How the stack runs its alerting, natively (Procfile, make) and under compose: 35 days of data, one
setting for each external URL and for the heartbeat, rendered where they are used, and the stand-in
pager in a process of its own."""

from __future__ import annotations

import re
import shlex
import subprocess

import pytest
import yaml

from tests.conftest import REPO

PROCFILE = dict(line.split(": ", 1) for line in (REPO / "Procfile").read_text().splitlines() if line.strip())
COMPOSE = yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]
SETTINGS = {"OPSMON_GRAFANA_URL": "https://grafana.example.com", "OPSMON_PROMETHEUS_URL": "https://prom.example.com",
            "OPSMON_ALERTMANAGER_URL": "https://am.example.com", "OPSMON_HEARTBEAT_URL": "https://hc-ping.com/f00d"}


def flags(command: str) -> dict[str, str]:
    return dict(arg.split("=", 1) for arg in shlex.split(command) if arg.startswith("--") and "=" in arg)


def days(duration: str) -> float:
    return int(duration[:-1]) * {"d": 1, "w": 7, "y": 365}[duration[-1]]


def compose(text: str, env: dict) -> str:
    """docker compose's interpolation of ${VAR:-default}, then its $$ escape."""
    text = re.sub(r"\$\{(\w+):-([^}]*)\}", lambda m: env.get(m.group(1)) or m.group(2), text)
    return text.replace("$$", "$")


def test_prometheus_keeps_more_than_the_slo_window_natively_and_under_compose():
    native = flags(PROCFILE["prometheus"])
    composed = flags(" ".join(COMPOSE["prometheus"]["command"]))
    assert days(native["--storage.tsdb.retention.time"]) >= 35
    assert days(composed["--storage.tsdb.retention.time"]) >= 35


def test_prometheus_and_alertmanager_know_the_url_people_reach_them_by():
    for command in (PROCFILE["prometheus"], " ".join(COMPOSE["prometheus"]["command"])):
        assert flags(command)["--web.external-url"] == "${OPSMON_PROMETHEUS_URL:-http://localhost:9090}"
        assert flags(command)["--web.route-prefix"] == "/"  # a URL with a path must not move the health checks
    for command in (PROCFILE["alertmanager"], " ".join(COMPOSE["alertmanager"]["command"])):
        assert flags(command)["--web.external-url"] == "${OPSMON_ALERTMANAGER_URL:-http://localhost:9093}"
        assert flags(command)["--web.route-prefix"] == "/"


def test_the_procfile_takes_the_urls_from_dot_env(tmp_path):
    """honcho runs each line through the shell with .env loaded: the default, or the setting."""
    line = PROCFILE["prometheus"].replace("exec prometheus", "echo")
    for env, expected in (({}, "http://localhost:9090"),
                          ({"OPSMON_PROMETHEUS_URL": "https://prom.example.com"}, "https://prom.example.com")):
        out = subprocess.run(["sh", "-c", line], env=env, capture_output=True, text=True, check=True).stdout
        assert f"--web.external-url={expected} " in out


def test_the_pager_runs_apart_from_the_app_it_watches():
    assert PROCFILE["pager"].startswith("exec python -m demo.pager ")
    assert COMPOSE["pager"]["command"][:3] == ["python", "-m", "demo.pager"]
    config = yaml.safe_load((REPO / "alertmanager" / "alertmanager.yml").read_text())
    hooks = [hook["url"] for receiver in config["receivers"] for hook in receiver.get("webhook_configs", [])]
    assert hooks and all(url.startswith("http://pager:8081/") for url in hooks)


@pytest.mark.parametrize("env", [{}, SETTINGS], ids=["defaults", "settings"])
def test_compose_renders_the_rules_and_the_heartbeat_receiver_at_start(tmp_path, env):
    """The services' shell commands, run here on the repository's files instead of the containers'."""
    rendered_by_compose(tmp_path, env)
    grafana = env.get("OPSMON_GRAFANA_URL", "http://localhost:3000")
    rendered = sorted(tmp_path.glob("rules/*.rules.yml"))
    # The kit's rules and the demo's own (docker-compose.yml mounts demo/rules/ as app-rules/).
    shipped = [*(REPO / "prometheus" / "rules").glob("*.rules.yml"), *(REPO / "demo" / "rules").glob("*.rules.yml")]
    assert [p.name for p in rendered] == sorted(p.name for p in shipped)
    links = {rule["annotations"]["dashboard_url"].split("/d/")[0] for path in rendered
             for group in yaml.safe_load(path.read_text())["groups"] for rule in group["rules"] if "alert" in rule}
    assert links == {grafana}

    alertmanager = compose(COMPOSE["alertmanager"]["command"][0], env)
    alertmanager = (alertmanager.replace("/etc/alertmanager/", f"{REPO}/alertmanager/")
                    .replace("/tmp/alertmanager.yml", str(tmp_path / "alertmanager.yml"))
                    .split("exec /bin/alertmanager")[0] + "true")
    subprocess.run(["sh", "-c", alertmanager], check=True)
    checked = subprocess.run(["amtool", "check-config", str(tmp_path / "alertmanager.yml")], capture_output=True,
                             text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    config = yaml.safe_load((tmp_path / "alertmanager.yml").read_text())
    # The rendering keeps the grouping and inhibition per host (group_by is shared by an anchor).
    twins = next(rule for rule in config["inhibit_rules"] if rule["source_matchers"] == ['severity="critical"'])
    assert "host" in config["route"]["group_by"] and twins["equal"] == config["route"]["group_by"]
    heartbeat = next(r for r in config["receivers"] if r["name"] == "heartbeat")["webhook_configs"][0]["url"]
    assert heartbeat == env.get("OPSMON_HEARTBEAT_URL", "http://pager:8081/webhook/heartbeat")


def test_make_run_renders_the_same_settings(tmp_path):
    run_dir = tmp_path / "run"
    settings = [f"{name}={value}" for name, value in SETTINGS.items()]
    subprocess.run(["make", "-s", "native-configs", f"RUN_DIR={run_dir}", *settings], cwd=REPO, check=True,
                   capture_output=True, timeout=60)
    checked = subprocess.run(["promtool", "check", "config", str(run_dir / "prometheus.yml")], capture_output=True,
                             text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    links = {rule["annotations"]["dashboard_url"].split("/d/")[0] for path in run_dir.glob("rules/*.rules.yml")
             for group in yaml.safe_load(path.read_text())["groups"] for rule in group["rules"] if "alert" in rule}
    assert links == {SETTINGS["OPSMON_GRAFANA_URL"]}
    config = yaml.safe_load((run_dir / "alertmanager.yml").read_text())
    hooks = {r["name"]: r["webhook_configs"][0]["url"] for r in config["receivers"] if "webhook_configs" in r}
    assert hooks["heartbeat"] == SETTINGS["OPSMON_HEARTBEAT_URL"]
    assert hooks["pager-ops"] == "http://127.0.0.1:8081/webhook/pager"


def test_the_settings_are_documented_in_the_env_example():
    example = (REPO / ".env.example").read_text()
    for name in SETTINGS:
        assert re.search(rf"^{name}=", example, re.M), name
    assert "https://hc-ping.com/" in example  # a real service of that kind, as the example


def rendered_by_compose(tmp_path, env: dict) -> dict:
    """Prometheus's start command under compose, run here on the repository's files: its config."""
    prometheus = compose(COMPOSE["prometheus"]["command"][0], env)
    prometheus = (prometheus.replace("/etc/prometheus/app-rules/", f"{REPO}/demo/rules/")
                  .replace("/etc/prometheus/", f"{REPO}/prometheus/").replace("/tmp/opsmon", str(tmp_path))
                  .split("exec /bin/prometheus")[0] + "true")
    subprocess.run(["sh", "-c", prometheus], check=True)
    checked = subprocess.run(["promtool", "check", "config", str(tmp_path / "prometheus.yml")], capture_output=True,
                             text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    return yaml.safe_load((tmp_path / "prometheus.yml").read_text())


@pytest.mark.parametrize("switch", ["", "1"], ids=["off", "on"])
def test_the_fleet_file_and_the_long_term_store_natively_and_under_compose(tmp_path, switch):
    """The one-host target file is where each Prometheus looks, with its own addresses, and
    OPSMON_LONG_TERM=1 (and only that) adds remote_write to VictoriaMetrics and its scrape job, and natively
    starts it."""
    run_dir = tmp_path / "run"
    subprocess.run(["make", "-s", "native-configs", f"RUN_DIR={run_dir}", f"OPSMON_LONG_TERM={switch}"], cwd=REPO,
                   check=True, capture_output=True, timeout=60)
    native = yaml.safe_load((run_dir / "prometheus.yml").read_text())
    under_compose = rendered_by_compose(tmp_path / "compose", {"OPSMON_LONG_TERM": switch})
    for config, folder, address in ((native, run_dir, "127.0.0.1"), (under_compose, tmp_path / "compose", "exporter")):
        assert config["scrape_configs"][0]["file_sd_configs"][0]["files"] == ["targets/*.yml"]
        hosts = yaml.safe_load((folder / "targets/local.yml").read_text())
        assert hosts[0]["targets"] == [f"{address}:9877"] and hosts[0]["labels"]["host"] == "demo"
        store = "127.0.0.1" if folder == run_dir else "victoriametrics"
        expected = [f"http://{store}:8428/api/v1/write"] if switch else []
        assert [r["url"] for r in config.get("remote_write", [])] == expected
        assert ("victoriametrics" in {job["job_name"] for job in config["scrape_configs"]}) == bool(switch)
    procfile = (run_dir / "Procfile").read_text()
    assert ("victoriametrics: exec victoria-metrics " in procfile) == bool(switch)
    if switch:
        assert "-httpListenAddr=127.0.0.1:8428" in procfile and "-retentionPeriod=13" in procfile
