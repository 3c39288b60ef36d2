"""`opsmon render`: the rendered stack passes promtool, amtool and systemd-analyze, a user's own receivers get
a real Alertmanager's mail, compose's committed files are a render of opsmon.compose.yml, bad keys are named."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import sysconfig
import venv
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace

import pytest
import requests
import yaml

from grafana.boards import lint
from opsmon.config import load_config
from opsmon.render import data_mounts
from tests.conftest import REPO, free_port, running, stop, wait_for, write_config
from tests.e2e.test_own_app import build_wheel, clone_of_repository
from tests.integration.test_alertmanager import inhibited, post, run_alertmanager

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
    # The kit's rules and the demo's own (opsmon.yml's stack.prometheus.rule_files).
    assert f"{len(list((REPO / 'prometheus/rules').glob('*.rules.yml'))) + 1} rule files found" in checked.stdout
    assert (out / "rules/video.rules.yml").is_file()
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
    # The shipped grouping and maintenance window, whatever the receivers.
    shipped = yaml.safe_load((REPO / "alertmanager/alertmanager.yml").read_text())
    assert config["time_intervals"] == shipped["time_intervals"]
    assert config["route"]["group_by"] == shipped["route"]["group_by"]


KIT_INHIBITIONS = yaml.safe_load((REPO / "alertmanager/inhibit_rules.yml").read_text())["inhibit_rules"]


def mount_of(path: Path) -> str:
    """The mount point holding a path, as util-linux finds it."""
    return subprocess.run(["findmnt", "--noheadings", "--output", "TARGET", "--target", str(path)],
                          check=True, capture_output=True, text=True, timeout=60).stdout.strip()


def shop_config(tmp_path: Path, processes: list[dict], stack: dict | None = None) -> Path:
    """A shop of one's own: its database and backups in tmp_path, a checkout API and a payments API it probes."""
    sqlite3.connect(tmp_path / "shop.db").close()
    (tmp_path / "shop-backups").mkdir()
    probes = [{"service": service, "url": f"http://127.0.0.1:1/{service}"} for service in ("checkout", "payments")]
    return write_config(tmp_path / "shop.yml", {"database": {"path": "shop.db"},
                                                "exporter": {"processes": processes, "probes": probes},
                                                "backups": {"directory": "shop-backups"}, "stack": stack or {}})


def test_a_config_without_relations_of_its_own_gets_the_kit_s_inhibitions_and_its_data_mount(tmp_path):
    """No process that serves a service, no rules of its own: nothing of the demo's is left pointing at "demo"."""
    config = shop_config(tmp_path, [{"name": "shop", "match": "shop"}])
    rendered = render(config, tmp_path / "stack") / "alertmanager.yml"
    checked = subprocess.run(["amtool", "check-config", str(rendered)], capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    mounts = "|".join(sorted({mount_of(tmp_path / "shop.db"), mount_of(tmp_path / "shop-backups")}))
    assert yaml.safe_load(rendered.read_text())["inhibit_rules"] == [*KIT_INHIBITIONS, {
        "source_matchers": ['alertname="OpsmonDiskSpaceLow"', 'severity="critical"', f'mountpoint=~"{mounts}"'],
        "target_matchers": ['alertname=~"OpsmonBackup(Stale|Failing)|OpsmonRestoreDrillStale"', 'severity="warning"'],
        "equal": ["host"]}]
    assert "demo" not in rendered.read_text().lower()


def test_the_data_mounts_are_the_longest_mounted_prefix_of_the_database_and_the_backups(tmp_path):
    config = load_config(shop_config(tmp_path, []))
    partitions = [SimpleNamespace(mountpoint=mount) for mount in ("/", "/boot", str(tmp_path), f"{tmp_path}/shop")]
    # shop.db is under tmp_path, not under tmp_path/shop (a prefix of its name only).
    assert data_mounts(config, lambda all: partitions) == [str(tmp_path)]
    partitions.append(SimpleNamespace(mountpoint=f"{tmp_path}/shop-backups"))
    assert data_mounts(config, lambda all: partitions) == sorted([str(tmp_path), f"{tmp_path}/shop-backups"])


def test_a_served_service_is_named_among_the_probes(tmp_path):
    config = shop_config(tmp_path, [{"name": "shop", "match": "shop", "serves": ["checkout", "search"]}])
    result = opsmon("--config.file", str(config), "render", "--out", str(tmp_path / "out"))
    assert result.returncode == 2
    assert f"{config}: exporter.processes[0].serves: search: no such service in exporter.probes" in result.stderr


@pytest.mark.slow
def test_a_shop_s_process_down_holds_back_its_own_service_and_a_full_disk_only_the_mount_of_its_data(tmp_path):
    """On a real Alertmanager with the rendered shop config: the shop down explains its checkout API failing, not
    the payments API; a full disk on the mount of the database explains a failing backup, another mount does not;
    the shop's own rule holds back what it names."""
    own = {"source_matchers": ['alertname="OpsmonProcessDown"', 'process="shop"'],
           "target_matchers": ['alertname="ShopOrdersStalled"'], "equal": ["host"]}
    config = shop_config(tmp_path, [{"name": "shop", "match": "shop", "serves": ["checkout"]},
                                    {"name": "worker", "match": "worker"}],
                         {"receivers": {"smtp": {"smarthost": f"127.0.0.1:{free_port()}"}},
                          "alertmanager": {"inhibit_rules": [own]}})
    out = render(config, tmp_path / "stack")
    database_mount = mount_of(tmp_path / "shop.db")
    other_mount = "/mnt/not-the-shop-s"
    exporter = {"job": "opsmon-exporter", "team": "ops"}
    for url in run_alertmanager(out, yaml.safe_load((out / "alertmanager.yml").read_text())):
        post(url, *({"alertname": "OpsmonProcessDown", "severity": "critical", "host": host, "process": process,
                     **exporter} for host, process in (("shop-1", "shop"), ("shop-2", "worker"))),
             *({"alertname": "OpsmonExternalServiceDown", "severity": "critical", "host": host, "service": service,
                **exporter} for host in ("shop-1", "shop-2") for service in ("checkout", "payments")),
             *({"alertname": "ShopOrdersStalled", "severity": "critical", "host": host, **exporter}
               for host in ("shop-1", "shop-2")),
             *({"alertname": "OpsmonDiskSpaceLow", "severity": "critical", "host": host, "mountpoint": mount,
                **exporter} for host, mount in (("shop-1", database_mount), ("shop-2", other_mount))),
             *({"alertname": "OpsmonBackupFailing", "severity": "warning", "host": host, "database": "shop",
                "tier": "daily", **exporter} for host in ("shop-1", "shop-2")))
        assert inhibited(url, "OpsmonExternalServiceDown", host="shop-1", service="checkout")
        assert not inhibited(url, "OpsmonExternalServiceDown", host="shop-1", service="payments")
        assert not inhibited(url, "OpsmonExternalServiceDown", host="shop-2", service="checkout")  # another process
        assert inhibited(url, "ShopOrdersStalled", host="shop-1")
        assert not inhibited(url, "ShopOrdersStalled", host="shop-2")
        assert inhibited(url, "OpsmonBackupFailing", host="shop-1")
        assert not inhibited(url, "OpsmonBackupFailing", host="shop-2")


def test_compose_mounts_a_render_of_opsmon_compose_yml(tmp_path):
    """The committed files compose mounts cannot drift from what the renderer makes of compose's config."""
    out = render(REPO / "opsmon.compose.yml", tmp_path / "compose")
    long_term = render(REPO / "opsmon.compose.yml", tmp_path / "long-term", env={"OPSMON_LONG_TERM": "1"})
    assert yaml.safe_load((REPO / "prometheus/prometheus.long-term.yml").read_text()) == yaml.safe_load(
        (long_term / "prometheus.yml").read_text()), "prometheus/prometheus.long-term.yml differs from " \
        "`OPSMON_LONG_TERM=1 opsmon --config.file opsmon.compose.yml render`: render it again"
    for committed, rendered in (("prometheus/prometheus.yml", "prometheus.yml"),
                                ("prometheus/targets/local.yml", "targets/local.yml"),
                                ("alertmanager/alertmanager.yml", "alertmanager.yml"),
                                *((name, name) for name in ("grafana/provisioning/datasources/datasources.yml",
                                                            "grafana/provisioning/dashboards/dashboards.yml"))):
        assert yaml.safe_load((REPO / committed).read_text()) == yaml.safe_load((out / rendered).read_text()), \
            f"{committed} differs from `opsmon --config.file opsmon.compose.yml render`: render it again"
    # Grafana reads the rendered boards from demo/dashboards/, Prometheus the demo's rules from demo/rules/.
    boards = sorted(p.name for p in (out / "grafana/app-dashboards").glob("*.json"))
    assert boards == sorted(p.name for p in (REPO / "demo/dashboards").glob("*.json"))
    for name in boards:
        assert (REPO / "demo/dashboards" / name).read_text() == (out / "grafana/app-dashboards" / name).read_text(), \
            f"demo/dashboards/{name} differs from `opsmon --config.file opsmon.compose.yml render`: render it again"
    assert {path.parent for path in load_config(REPO / "opsmon.compose.yml").stack.prometheus.rule_files} == {
        REPO / "demo/rules"}


SHOP_BUSINESS = [
    {"name": "shop_orders_open", "help": "Orders placed and not yet shipped.",
     "query": "SELECT count(*) AS value FROM orders WHERE shipped_at IS NULL"},
    {"name": "shop_customers", "help": "Customers with an account, by country.", "labels": ["country"],
     "query": "SELECT country, count(*) AS value FROM customers GROUP BY country"},
    {"name": "shop_orders_placed_total", "help": "Orders the shop took, counted by the app.", "type": "counter"},
    # As the app names it, Counter("shop_refunds"): /metrics shows shop_refunds_total.
    {"name": "shop_refunds", "help": "Refunds, counted by the app.", "type": "counter"},
]


def test_a_config_that_is_not_the_demo_gets_the_kit_s_rules_and_a_business_board_of_its_own_metrics(tmp_path):
    config = write_config(tmp_path / "shop.yml", {"database": {"path": "shop.db"}, "business": SHOP_BUSINESS})
    out = render(config, tmp_path / "stack")
    assert sorted(p.name for p in (out / "rules").glob("*.rules.yml")) == sorted(
        p.name for p in (REPO / "prometheus/rules").glob("*.rules.yml"))
    rendered_boards = sorted((out / "grafana/app-dashboards").glob("*.json"))
    assert [p.name for p in rendered_boards] == ["business.json"]
    for path in [*(out / "rules").glob("*.rules.yml"), *rendered_boards]:
        assert "video" not in path.read_text().lower(), f"{path.name} speaks of the demo's videos"
    board = json.loads((out / "grafana/app-dashboards/business.json").read_text())
    assert [(p["title"], p["description"].split(" (")[0]) for p in board["panels"]] == [
        (metric["name"], metric["help"]) for metric in SHOP_BUSINESS]
    exprs = [p["targets"][0]["expr"] for p in board["panels"]]
    assert exprs[1] == 'sum by (host, country) (shop_customers{host=~"$host"})'
    assert exprs[2].startswith('sum by (host) (rate(shop_orders_placed_total{host=~"$host"}[$__rate_interval]))')
    assert exprs[3].startswith('sum by (host) (rate(shop_refunds_total{host=~"$host"}[$__rate_interval]))')
    # The board passes the dashboard lint beside the kit's boards, and Grafana is pointed at it.
    kit = {path.stem: json.loads(path.read_text()) for path in (REPO / "grafana/dashboards").glob("*.json")}
    problems = lint.lint({**kit, "business": board})
    assert not problems, "\n".join(map(str, problems))
    providers = yaml.safe_load((out / "grafana/provisioning/dashboards/dashboards.yml").read_text())["providers"]
    assert [p["options"]["path"] for p in providers] == [str(REPO / "grafana/dashboards"),
                                                          str(out / "grafana/app-dashboards")]


def test_a_config_without_business_metrics_gets_a_board_that_says_how_to_add_them(tmp_path):
    out = render(own_app_config(tmp_path, {}), tmp_path / "stack")
    [panel] = json.loads((out / "grafana/app-dashboards/business.json").read_text())["panels"]
    assert panel["type"] == "text" and "`business:`" in panel["options"]["content"]


def test_one_s_own_rules_and_boards_are_rendered_beside_the_kit_s_and_a_missing_one_is_named(tmp_path):
    (tmp_path / "shop.rules.yml").write_text("groups: []\n")
    (tmp_path / "shop.json").write_text('{"uid": "shop"}\n')
    (tmp_path / "broken.rules.yml").write_text("groups: [\n")
    (tmp_path / "empty.rules.yml").write_text("")
    out = render(own_app_config(tmp_path, {"prometheus": {"rule_files": ["shop.rules.yml"]},
                                           "grafana": {"dashboard_files": ["shop.json"]}}), tmp_path / "stack")
    assert (out / "rules/shop.rules.yml").read_text() == "groups: []\n"
    assert (out / "grafana/app-dashboards/shop.json").read_text() == '{"uid": "shop"}\n'
    # Dropped from the config, dropped from the stack: Prometheus and Grafana would still load them.
    render(own_app_config(tmp_path, {}), out)
    assert not (out / "rules/shop.rules.yml").exists() and not (out / "grafana/app-dashboards/shop.json").exists()
    for stack, message in (
            ({"prometheus": {"rule_files": ["gone.rules.yml"]}},
             f"stack.prometheus.rule_files[0]: {tmp_path / 'gone.rules.yml'}: No such file or directory"),
            ({"prometheus": {"rule_files": ["shop.json"]}}, "stack.prometheus.rule_files[0]: "
                                                            f"{tmp_path / 'shop.json'}: name it *.rules.yml"),
            ({"prometheus": {"rule_files": ["slo.rules.yml"]}}, "stack.prometheus.rule_files[0]: "
                                                                f"{tmp_path / 'slo.rules.yml'}: a rules file named "
                                                                "slo.rules.yml is rendered already"),
            ({"grafana": {"dashboard_files": ["business.json"]}}, "stack.grafana.dashboard_files[0]: "
                                                                  f"{tmp_path / 'business.json'}: a board file "
                                                                  "named business.json is provisioned already"),
            # One bad rules file would stop Prometheus loading any.
            ({"prometheus": {"rule_files": ["broken.rules.yml"]}}, "stack.prometheus.rule_files[0]: "
                                                                   f"{tmp_path / 'broken.rules.yml'}: cannot be parsed"),
            ({"prometheus": {"rule_files": ["empty.rules.yml"]}}, "stack.prometheus.rule_files[0]: "
                                                                  f"{tmp_path / 'empty.rules.yml'}: no 'groups' in it"),
            ({"grafana": {"dashboard_files": ["shop.rules.yml"]}}, "stack.grafana.dashboard_files[0]: "
                                                                   f"{tmp_path / 'shop.rules.yml'}: cannot be parsed")):
        refused = opsmon("--config.file", str(own_app_config(tmp_path, stack)), "render", "--out",
                         str(tmp_path / "refused"))
        assert refused.returncode == 2 and message in refused.stderr, refused.stderr
        assert not (tmp_path / "refused").exists()


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
    (out / "targets/db2.yml").write_text('- targets: ["there.lan:9877"]\n  labels: {job: opsmon-exporter}\n')
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


def long_term_store_down_case(job: str, instance: str) -> dict:
    """The store's scrape failing for 6 minutes, from the rendered rules: a warning, not the page of OpsmonTargetDown."""
    description = (f"VictoriaMetrics at {instance} has not answered Prometheus for 5 minutes: the samples written to "
                   "it wait in Prometheus's WAL, for about 2 hours.")
    annotations = {"summary": "The long-term store cannot be reached.", "description": description,
                   "runbook_url": "https://github.com/opsmon/opsmon/blob/main/docs/runbooks.md#opsmonlongtermstoredown",
                   "dashboard_url": "http://localhost:3000/d/opsmon-overview"}
    return {"rule_files": ["rules/meta.rules.yml"], "evaluation_interval": "1m", "tests": [{
        "name": "the long-term store's scrape failing", "interval": "30s",
        "input_series": [{"series": f'up{{job="{job}",instance="{instance}"}}', "values": "1x4 0x14"}],
        "alert_rule_test": [
            {"eval_time": "8m", "alertname": "OpsmonLongTermStoreDown", "exp_alerts": [{
                "exp_labels": {"severity": "warning", "team": "ops", "job": job, "instance": instance},
                "exp_annotations": annotations}]},
            {"eval_time": "8m", "alertname": "OpsmonTargetDown", "exp_alerts": []}]}]}


@pytest.mark.parametrize("enabled", [False, True], ids=["off", "on"])
def test_the_long_term_store_is_scraped_when_enabled_and_its_scrape_failing_raises_its_alert(tmp_path, enabled):
    config = own_app_config(tmp_path, {"long_term": {"enabled": enabled, "address": "vm.shop.example:8428"}})
    out = render(config, tmp_path / "stack")
    checked = subprocess.run(["promtool", "check", "config", str(out / "prometheus.yml")], capture_output=True,
                             text=True, timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    prometheus = yaml.safe_load((out / "prometheus.yml").read_text())
    stores = [job for job in prometheus["scrape_configs"]
              if job.get("static_configs", [{}])[0].get("targets") == ["vm.shop.example:8428"]]
    assert len(stores) == enabled
    assert ("remote_write" in prometheus) == enabled
    if enabled:
        write_config(out / "long-term.test.yml", long_term_store_down_case(stores[0]["job_name"],
                                                                           "vm.shop.example:8428"))
        tested = subprocess.run(["promtool", "test", "rules", "long-term.test.yml"], cwd=out, capture_output=True,
                                text=True, timeout=60)
        assert tested.returncode == 0, tested.stdout + tested.stderr


def test_a_bad_stack_key_is_named_with_its_file_and_nothing_is_written(tmp_path):
    config = own_app_config(tmp_path, {"receivers": {"email": {"critical": "not-an-address"},
                                                     "smtp": {"pasword": "x"}}, "slo": {"objective": 99},
                                       "alertmanager": {"inhibit_rules": [{"source_matchers": ["alertname=ShopDown"],
                                                                           "target_matchers": []}]}})
    result = opsmon("--config.file", str(config), "render", "--out", str(tmp_path / "out"))
    assert result.returncode == 2
    assert f"{config}: stack.alertmanager.inhibit_rules[0].source_matchers[0]: String should match pattern" \
        in result.stderr
    assert f"{config}: stack.alertmanager.inhibit_rules[0].target_matchers: List should have at least 1 item" \
        in result.stderr
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
    with running(sink, f"http://127.0.0.1:{web}/messages/", "the SMTP sink"):
        yield smtp, web


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


def test_a_host_is_scraped_where_the_config_s_services_listen_and_not_where_none_runs(tmp_path):
    config = write_config(tmp_path / "lend.yml", {
        "database": {"path": "lend.db"}, "exporter": {"listen_address": "127.0.0.1:19877"},
        "stack": {"hosts": [{"name": "here"}, {"name": "there", "exporter": "there.lan:9877"}]}})
    out = render(config, tmp_path / "stack")
    targets = {(group["labels"]["host"], group["labels"]["job"]): group["targets"]
               for group in yaml.safe_load((out / "targets/local.yml").read_text())}
    # No backups section: no backup service nor Litestream to scrape; an address a host names is kept.
    assert targets == {("here", "opsmon-exporter"): ["127.0.0.1:19877"],
                       ("there", "opsmon-exporter"): ["there.lan:9877"]}
