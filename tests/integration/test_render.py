"""`opsmon render`: the rendered stack passes promtool, amtool and systemd-analyze, a user's own receivers get
a real Alertmanager's mail, compose's committed files are a render of opsmon.compose.yml, bad keys are named."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import venv
from datetime import datetime, timezone
from pathlib import Path

import pytest
import requests
import yaml

from tests.conftest import REPO, free_port, stop, wait_for, write_config
from tests.e2e.test_own_app import build_wheel, clone_of_repository

BIN = Path(sys.executable).parent
DEBIAN_UNITS = Path("/lib/systemd/system")


def opsmon(*args: str, cwd: Path = REPO, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([BIN / "opsmon", *args], cwd=cwd, capture_output=True, text=True, timeout=60, env=env)


def render(config: Path, out: Path, env: dict | None = None) -> Path:
    """`opsmon render` with no OPSMON_* settings but those given: a developer's own .env does not count."""
    unset = {name: value for name, value in os.environ.items() if not name.startswith("OPSMON_")}
    result = opsmon("--config.file", str(config), "render", "--out", str(out), env={**unset, **(env or {})})
    assert result.returncode == 0, result.stderr
    return out


def own_app_config(tmp_path: Path, stack: dict) -> Path:
    """An app of one's own, not the demo: its database, and the stack section under test."""
    return write_config(tmp_path / "shop.yml", {"database": {"path": "shop.db"}, "stack": stack})


def amtool_route(config: Path, *labels: str) -> str:
    result = subprocess.run(["amtool", "config", "routes", "test", f"--config.file={config}", *labels],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout.strip()


def test_the_demo_s_rendered_prometheus_config_and_rules_pass_promtool(tmp_path):
    out = render(REPO / "opsmon.yml", tmp_path / "run")
    checked = subprocess.run(["promtool", "check", "config", str(out / "prometheus.yml")], capture_output=True,
                             text=True, timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"{len(list((REPO / 'prometheus/rules').glob('*.rules.yml')))} rule files found" in checked.stdout
    rules = subprocess.run(["promtool", "check", "rules", *map(str, sorted(out.glob("rules/*.rules.yml")))],
                           capture_output=True, text=True, timeout=60)
    assert rules.returncode == 0, rules.stdout + rules.stderr
    hosts = yaml.safe_load((out / "targets/local.yml").read_text())
    assert {(group["targets"][0], group["labels"]["job"], group["labels"]["host"]) for group in hosts} == {
        ("127.0.0.1:9877", "opsmon-exporter", "demo"), ("127.0.0.1:9878", "opsmon-backup", "demo"),
        ("127.0.0.1:9879", "litestream", "demo")}


def test_the_demo_s_teams_are_its_config_and_a_config_without_teams_routes_by_severity_alone(tmp_path):
    demo = render(REPO / "opsmon.yml", tmp_path / "demo") / "alertmanager.yml"
    assert amtool_route(demo, "severity=critical", "team=app") == "pager-app"
    assert amtool_route(demo, "severity=warning", "team=business") == "email-business"
    own = render(own_app_config(tmp_path, {"receivers": {"email": {"critical": "oncall@shop.example",
                                                                   "warning": "ops@shop.example"}}}),
                 tmp_path / "own") / "alertmanager.yml"
    checked = subprocess.run(["amtool", "check-config", str(own)], capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert amtool_route(own, "severity=critical", "team=app") == "pager-ops"
    assert amtool_route(own, "severity=warning", "team=business") == "email-ops"
    config = yaml.safe_load(own.read_text())
    assert {r["name"] for r in config["receivers"]} == {"blackhole", "heartbeat", "pager-ops", "email-ops"}
    assert "app-team@localhost" not in own.read_text()
    # The shipped grouping, inhibitions and maintenance window, whatever the receivers.
    shipped = yaml.safe_load((REPO / "alertmanager/alertmanager.yml").read_text())
    for key in ("inhibit_rules", "time_intervals"):
        assert config[key] == shipped[key], key
    assert config["route"]["group_by"] == shipped["route"]["group_by"]


def test_compose_mounts_a_render_of_opsmon_compose_yml(tmp_path):
    """The committed files compose mounts cannot drift from what the renderer makes of compose's config."""
    out = render(REPO / "opsmon.compose.yml", tmp_path / "compose")
    for committed, rendered in (("prometheus/prometheus.yml", "prometheus.yml"),
                                ("prometheus/targets/local.yml", "targets/local.yml"),
                                ("alertmanager/alertmanager.yml", "alertmanager.yml"),
                                *((name, name) for name in ("grafana/provisioning/datasources/datasources.yml",
                                                            "grafana/provisioning/dashboards/dashboards.yml"))):
        assert yaml.safe_load((REPO / committed).read_text()) == yaml.safe_load((out / rendered).read_text()), \
            f"{committed} differs from `opsmon --config.file opsmon.compose.yml render`: render it again"


def test_the_units_and_the_drop_ins_for_debian_s_own_pass_systemd_analyze_verify(tmp_path):
    out = render(REPO / "opsmon.yml", tmp_path / "rendered stack")  # a space: each path is one word
    units = out / "systemd"
    # Debian's units beside the rendered drop-ins: verify reads a unit's drop-ins from its folder.
    for name in ("prometheus.service", "prometheus-alertmanager.service"):
        shutil.copy(DEBIAN_UNITS / name, units / name)
    names = ["opsmon-exporter.service", "opsmon-backup.service", "prometheus.service",
             "prometheus-alertmanager.service"]
    verified = subprocess.run(["systemd-analyze", "verify", *names], cwd=units, capture_output=True, text=True,
                              timeout=60)
    assert (verified.returncode, verified.stderr) == (0, ""), verified.stderr
    exporter = (units / "opsmon-exporter.service").read_text()
    assert f"ExecStart={BIN / 'opsmon-exporter'} --config.file {REPO / 'opsmon.yml'}\n" in exporter
    drop_in = (units / "prometheus.service.d/opsmon.conf").read_text()
    assert f'--config.file="{out / "prometheus.yml"}" ' in drop_in and "--storage.tsdb.retention.time=35d" in drop_in
    assert f'--config.file="{out / "alertmanager.yml"}" ' in (
        units / "prometheus-alertmanager.service.d/opsmon.conf").read_text()


def test_environment_settings_override_the_config_and_files_of_one_s_own_stay(tmp_path):
    out = tmp_path / "run"
    (out / "targets").mkdir(parents=True)
    (out / "targets/db2.yml").write_text('- targets: ["10.0.0.2:9877"]\n  labels: {job: opsmon-exporter}\n')
    (out / "rules").mkdir()
    (out / "rules/retired.rules.yml").write_text("groups: []\n")
    env = {"OPSMON_GRAFANA_URL": "https://grafana.example.com", "OPSMON_LONG_TERM": "1",
           "OPSMON_HEARTBEAT_URL": "https://hc-ping.com/0f3e2b7c"}
    render(REPO / "opsmon.yml", out, env=env)
    links = {rule["annotations"]["dashboard_url"].split("/d/")[0] for path in out.glob("rules/*.rules.yml")
             for group in yaml.safe_load(path.read_text())["groups"] for rule in group["rules"] if "alert" in rule}
    assert links == {"https://grafana.example.com"}
    assert not (out / "rules/retired.rules.yml").exists()
    assert (out / "targets/db2.yml").exists()
    prometheus = yaml.safe_load((out / "prometheus.yml").read_text())
    assert prometheus["remote_write"] == [{"url": "http://127.0.0.1:8428/api/v1/write"}]
    alertmanager = yaml.safe_load((out / "alertmanager.yml").read_text())
    heartbeat = next(r for r in alertmanager["receivers"] if r["name"] == "heartbeat")
    assert heartbeat["webhook_configs"][0]["url"] == "https://hc-ping.com/0f3e2b7c"


def test_a_bad_stack_key_is_named_with_its_file_and_nothing_is_written(tmp_path):
    config = own_app_config(tmp_path, {"receivers": {"email": {"critical": "not-an-address"},
                                                     "smtp": {"pasword": "x"}}, "slo": {"objective": 99}})
    result = opsmon("--config.file", str(config), "render", "--out", str(tmp_path / "out"))
    assert result.returncode == 2
    assert f"{config}: stack.receivers.email.critical:" in result.stderr
    assert f"{config}: stack.receivers.smtp.pasword: unknown key" in result.stderr
    assert f"{config}: stack.slo.objective: Input should be less than 1" in result.stderr
    assert not (tmp_path / "out").exists()
    taken = own_app_config(tmp_path, {"receivers": {"teams": [{"name": "ops", "email": {}}]}})
    refused = opsmon("--config.file", str(taken), "render", "--out", str(tmp_path / "out"))
    assert refused.returncode == 2 and f"{taken}: stack: receivers.teams name ops is taken" in refused.stderr
    bad_env = opsmon("--config.file", str(REPO / "opsmon.yml"), "render", "--out", str(tmp_path / "out"),
                     env={"OPSMON_GRAFANA_URL": "grafana:3000"})
    assert bad_env.returncode == 2 and "OPSMON_GRAFANA_URL" in bad_env.stderr


@pytest.fixture
def smtp_sink(tmp_path):
    smtp, web = free_port(), free_port()
    sink = subprocess.Popen([BIN / "maildump", "--smtp-ip", "127.0.0.1", "--smtp-port", str(smtp), "--http-ip",
                             "127.0.0.1", "--http-port", str(web), "--db", str(tmp_path / "mail.db"), "-f"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: requests.get(f"http://127.0.0.1:{web}/messages/", timeout=1).ok, what="the SMTP sink")
        yield smtp, web
    finally:
        stop(sink)


@pytest.mark.slow
def test_a_critical_alert_reaches_the_user_s_own_address_through_a_real_alertmanager(tmp_path, smtp_sink):
    smtp, web = smtp_sink
    (tmp_path / "smtp-password").write_text("s3cret\n")
    port = free_port()
    config = own_app_config(tmp_path, {
        "alertmanager": {"address": f"127.0.0.1:{port}"},
        "receivers": {"smtp": {"smarthost": f"127.0.0.1:{smtp}", "from_address": "alerts@shop.example",
                               "username": "alerts", "password_file": "smtp-password"},
                      "email": {"critical": "oncall@shop.example", "warning": "ops@shop.example"}}})
    out = render(config, tmp_path / "stack")
    rendered = (out / "alertmanager.yml").read_text()
    assert "s3cret" not in rendered and f"smtp_auth_password_file: {tmp_path / 'smtp-password'}" in rendered
    drop_in = (out / "systemd/prometheus-alertmanager.service.d/opsmon.conf").read_text()
    command = drop_in.splitlines()[-1].removeprefix("ExecStart=").split()
    command = [arg for arg in command if not arg.startswith("--storage.path=")]
    alertmanager = subprocess.Popen(["prometheus-alertmanager", *command[1:], f"--storage.path={tmp_path / 'am'}"],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for(lambda: requests.get(f"{url}/-/ready", timeout=1).ok, what="Alertmanager")
        alert = {"labels": {"alertname": "OpsmonDatabaseDown", "severity": "critical", "host": "shop1"},
                 "annotations": {"summary": "The shop's database cannot be opened"},
                 "startsAt": datetime.now(timezone.utc).isoformat()}
        requests.post(f"{url}/api/v2/alerts", json=[alert], timeout=5).raise_for_status()

        def delivered() -> list[dict]:
            return [m for m in requests.get(f"http://127.0.0.1:{web}/messages/", timeout=5).json()["messages"]
                    if "OpsmonDatabaseDown" in m["subject"]]

        # The shipped group_wait (30s) holds the first notification back.
        messages = wait_for(delivered, timeout=90, interval=1, what="the alert's email in the SMTP sink")
        assert messages[0]["recipients"]["to"] == ["oncall@shop.example"]
        assert messages[0]["sender"] == "alerts@shop.example"
    finally:
        stop(alertmanager)


@pytest.mark.slow
def test_a_kit_installed_from_a_clone_renders_from_the_files_installed_with_it(tmp_path):
    """`pip install .` (not editable): the rules, Alertmanager file and boards come with the wheel."""
    build_wheel(clone_of_repository(tmp_path), tmp_path / "wheels")
    [wheel] = (tmp_path / "wheels").glob("opsmon-*.whl")
    env = tmp_path / "env"
    venv.create(env, with_pip=False)
    # The dependencies from this venv; a .pth inside it (this checkout, editable) is not read from there.
    [site] = (env / "lib").glob("python*/site-packages")
    (site / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", env / "bin/python", "install", "-q", "--no-deps", wheel],
                   check=True, capture_output=True, timeout=300)
    shutil.rmtree(tmp_path / "clone")
    config = own_app_config(tmp_path, {})
    result = subprocess.run([env / "bin/python", "-m", "opsmon", "--config.file", config, "render", "--out", "stack"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (tmp_path / "stack/rules").glob("*.rules.yml")) == sorted(
        p.name for p in (REPO / "prometheus/rules").glob("*.rules.yml"))
    assert (tmp_path / "stack/templates/opsmon.tmpl").is_file()
    provider = yaml.safe_load((tmp_path / "stack/grafana/provisioning/dashboards/dashboards.yml").read_text())
    boards = Path(provider["providers"][0]["options"]["path"])
    assert boards.is_relative_to(env) and (boards / "overview.json").is_file()


def burn_rate_case(objective: str) -> dict:
    """2 % of requests failing for 70 minutes: a fast burn of a 99.9 % objective's budget, not of 99 %'s."""
    alerts = []
    if objective == "99.9":
        description = ("2% of requests fail {where}; at this rate the 30-day budget of 0.1 % errors is gone in days.")
        annotations = {"summary": "The application is spending its error budget fast.",
                       "runbook_url": "https://github.com/opsmon/opsmon/blob/main/docs/runbooks.md"
                                      "#opsmonerrorbudgetburnfast",
                       "dashboard_url": "http://localhost:3000/d/opsmon-application"}
        alerts = [{"exp_labels": {"severity": "critical", "team": "app", "host": "web-1", "job": "opsmon-exporter"},
                   "exp_annotations": {**annotations, "description": description.format(where="on web-1")}},
                  {"exp_labels": {"severity": "critical", "team": "app", "job": "opsmon-exporter"},
                   "exp_annotations": {**annotations, "description": description.format(where="across the fleet")}}]
    series = 'app_request{}_total{{job="opsmon-exporter",host="web-1",handler="checkout"{}}}'
    return {"rule_files": ["rules/slo.rules.yml"], "evaluation_interval": "1m", "tests": [{
        "name": f"2 % of requests failing against a {objective} % objective", "interval": "1m",
        "input_series": [{"series": series.format("s", ""), "values": "0+100x90"},
                         {"series": series.format("_errors", ',kind="server"'), "values": "0+2x90"}],
        "alert_rule_test": [{"eval_time": "70m", "alertname": "OpsmonErrorBudgetBurnFast", "exp_alerts": alerts}]}]}


@pytest.mark.parametrize("objective", ["99", "99.9"])
def test_the_slo_objective_sets_the_burn_rate_thresholds_of_the_rendered_rules(tmp_path, objective):
    config = own_app_config(tmp_path, {"slo": {"objective": float(objective) / 100}})
    out = render(config, tmp_path / "stack")
    write_config(out / "slo.test.yml", burn_rate_case(objective))
    tested = subprocess.run(["promtool", "test", "rules", "slo.test.yml"], cwd=out, capture_output=True, text=True,
                            timeout=60)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    shipped = (REPO / "prometheus/rules/slo.rules.yml").read_text()
    assert ((out / "rules/slo.rules.yml").read_text() == shipped) == (objective == "99")
