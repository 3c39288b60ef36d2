"""`opsmon render` on setups that are not the demo's: hostile paths and names, one's own files clashing with the
kit's, and output folders the render reads from; each refusal names the key or folder and writes nothing."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import write_config
from tests.e2e.test_own_app import clone_of_repository
from tests.integration.test_render import BIN, opsmon, render

HOSTILE = "a dir with 'quotes\" ünïcödé: #not-a-comment & *star 100% $HOME \\"
# An output folder as hostile, but for what Prometheus reads as a pattern there (refused, as a test below shows).
OUT = "out 'quotes\" ünïcödé: #not-a-comment & 100% $HOME"


def refused(config: Path, out: Path) -> str:
    """The render's complaint: exit 2, no traceback, and nothing written."""
    result = opsmon("--config.file", str(config), "render", "--out", str(out))
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert not out.exists()
    return result.stderr


def shop(tmp_path: Path, **sections) -> Path:
    """A config of one's own app (not the demo) with the sections under test."""
    return write_config(tmp_path / "shop.yml", {"database": {"path": "shop.db"}, **sections})


def check(tool: list[str], path: Path) -> None:
    result = subprocess.run([*tool, str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_paths_and_names_with_quotes_unicode_and_yaml_characters_render_files_promtool_amtool_and_systemd_read(tmp_path):
    folder = tmp_path / HOSTILE
    folder.mkdir()
    config = write_config(folder / "shop.yml", {
        "database": {"path": "shop.db"}, "backups": {"directory": "back ups"},
        "exporter": {"probes": [{"service": "Shop", "url": "http://127.0.0.1:1/"},
                                {"service": "shop.v2|(x)", "url": "http://127.0.0.1:2/"}],
                     "processes": [{"name": 'we"ird\\proc', "match": "shop", "serves": ["Shop", "shop.v2|(x)"]}]},
        "stack": {"prometheus": {"external_url": "http://prometheus.example/ops%20team$x"}}})
    out = render(config, tmp_path / OUT)
    check(["promtool", "check", "config"], out / "prometheus.yml")
    check(["amtool", "check-config"], out / "alertmanager.yml")
    [served] = [rule for rule in yaml.safe_load((out / "alertmanager.yml").read_text())["inhibit_rules"]
                if 'alertname="OpsmonProcessDown"' in rule["source_matchers"] and len(rule["source_matchers"]) == 2]
    assert served["source_matchers"][1] == 'process="we\\"ird\\\\proc"'
    assert served["target_matchers"][1] == 'service=~"Shop|shop\\\\.v2\\\\|\\\\(x\\\\)"'
    assert exec_start(out / "systemd/opsmon-exporter.service") == [str(BIN / "opsmon-exporter"), "--config.file",
                                                                    str(config)]
    prometheus = exec_start(out / "systemd/prometheus.service.d/opsmon.conf")
    assert f"--config.file={out / 'prometheus.yml'}" in prometheus
    assert "--web.external-url=http://prometheus.example/ops%20team$x" in prometheus


def exec_start(unit: Path) -> list[str]:
    """The words of a unit's last ExecStart= as systemd reads them: quoted and escaped as in a POSIX shell,
    %% and $$ for a literal % and $."""
    line = [line for line in unit.read_text().splitlines() if line.startswith("ExecStart=")][-1]
    return [word.replace("%%", "%").replace("$$", "$") for word in shlex.split(line.removeprefix("ExecStart="))]


@pytest.mark.parametrize("folder", ["out*", "out [1]", "out?", "back\\slash"])
def test_an_output_folder_whose_path_prometheus_would_read_as_a_pattern_is_refused(tmp_path, folder):
    # rules/*.rules.yml under "out [1]" matches no file: Prometheus would load no rules, and say nothing.
    assert f"--out {tmp_path / folder}: Prometheus reads rules/*.rules.yml and targets/*.yml under it as patterns" \
        in refused(shop(tmp_path), tmp_path / folder)


@pytest.mark.parametrize("uid, whose", [("opsmon-overview", "overview.json"), ("opsmon-business", "business board"),
                                        ("shop-orders", "orders.json")])
def test_a_board_of_one_s_own_with_the_uid_of_a_board_provisioned_beside_it_is_refused(tmp_path, uid, whose):
    (tmp_path / "orders.json").write_text(json.dumps({"uid": "shop-orders", "title": "Orders", "panels": []}))
    (tmp_path / "mine.json").write_text(json.dumps({"uid": uid, "title": "Mine", "panels": []}))
    config = shop(tmp_path, stack={"grafana": {"dashboard_files": ["orders.json", "mine.json"]}})
    complaint = refused(config, tmp_path / "out")
    assert f"stack.grafana.dashboard_files[1]: {tmp_path / 'mine.json'}: uid {uid!r} is " in complaint
    assert whose in complaint


def test_a_board_of_one_s_own_whose_uid_is_no_string_is_refused(tmp_path):
    (tmp_path / "mine.json").write_text(json.dumps({"uid": ["shop"], "title": "Mine", "panels": []}))
    config = shop(tmp_path, stack={"grafana": {"dashboard_files": ["mine.json"]}})
    assert "stack.grafana.dashboard_files[0]: " in refused(config, tmp_path / "out")


@pytest.mark.parametrize("groups", [5, [{"rules": []}], [{"name": "shop", "rules": {"alert": "ShopDown"}}], ["shop"]])
def test_a_rules_file_of_one_s_own_whose_groups_prometheus_cannot_load_is_refused(tmp_path, groups):
    (tmp_path / "shop.rules.yml").write_text(yaml.safe_dump({"groups": groups}))
    config = shop(tmp_path, stack={"prometheus": {"rule_files": ["shop.rules.yml"]}})
    assert f"stack.prometheus.rule_files[0]: {tmp_path / 'shop.rules.yml'}: groups must be a list of groups" \
        in refused(config, tmp_path / "out")


def test_a_rules_file_of_one_s_own_may_share_a_group_name_with_the_kit_s(tmp_path):
    (tmp_path / "shop.rules.yml").write_text(yaml.safe_dump({"groups": [{"name": "opsmon-backup-alerts", "rules": [
        {"alert": "ShopDown", "expr": 'up{job="app"} == 0'}]}]}))
    out = render(shop(tmp_path, stack={"prometheus": {"rule_files": ["shop.rules.yml"]}}), tmp_path / "out")
    check(["promtool", "check", "config"], out / "prometheus.yml")


def test_an_inhibit_rule_whose_regex_alertmanager_refuses_is_named_by_its_key(tmp_path):
    config = shop(tmp_path, stack={"alertmanager": {"inhibit_rules": [
        {"source_matchers": ['alertname="ShopDown"'], "target_matchers": ['alertname=~"Shop(Orders"']},
        {"source_matchers": ['alertname="ShopDown"'], "target_matchers": ['service=~"a\\\\.b|c"']}]}})
    complaint = refused(config, tmp_path / "out")
    assert f"{config}: stack.alertmanager.inhibit_rules[0].target_matchers[0]: not a valid regular expression" \
        in complaint
    assert "inhibit_rules[1]" not in complaint


@pytest.mark.parametrize("name, kind", [("opsmon_db_size_bytes", "gauge"), ("app_requests", "counter")])
def test_a_business_metric_in_the_kit_s_namespaces_is_refused(tmp_path, name, kind):
    # The exporter would publish a second opsmon_db_size_bytes family, and Prometheus refuses the whole scrape.
    metric = {"name": name, "help": "Mine.", "type": kind, **({"query": "SELECT 1 AS value"} if kind == "gauge" else {})}
    complaint = refused(shop(tmp_path, business=[metric]), tmp_path / "out")
    assert f"business[0]: {name}: the prefixes opsmon_, app_ are the kit's own metrics" in complaint


def test_a_business_metric_labelled_with_a_label_prometheus_sets_on_every_target_is_refused(tmp_path):
    metric = {"name": "shop_orders_pending", "help": "Orders not shipped.", "labels": ["warehouse", "host", "job"],
              "query": "SELECT 'a' AS warehouse, 'b' AS host, 'c' AS job, 1 AS value"}
    complaint = refused(shop(tmp_path, business=[metric]), tmp_path / "out")
    assert "business[0]: shop_orders_pending: labels host, job: Prometheus sets these" in complaint


@pytest.fixture(scope="module")
def clone(tmp_path_factory) -> Path:
    return clone_of_repository(tmp_path_factory.mktemp("kit"))


def clone_render(clone: Path, config: Path, out: Path) -> subprocess.CompletedProcess:
    """`opsmon render` of the clone's own code, whose kit (rules, Alertmanager file, boards) is the clone's."""
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("OPSMON_")}, "PYTHONPATH": str(clone)}
    return subprocess.run([sys.executable, "-m", "opsmon", "--config.file", str(config), "render", "--out", str(out)],
                          cwd=clone, capture_output=True, text=True, timeout=60, env=env)


def texts(folder: Path) -> dict[Path, str]:
    return {path: path.read_text(encoding="utf-8") for path in folder.rglob("*") if path.is_file()}


@pytest.mark.parametrize("folder", ["prometheus", "alertmanager", "grafana/dashboards"])
def test_render_into_a_folder_of_the_kit_is_refused_and_leaves_the_kit_as_shipped(tmp_path, clone, folder):
    config = shop(tmp_path, stack={"grafana": {"url": "http://grafana.example:3000"}, "slo": {"objective": 0.995}})
    kit = {part: texts(clone / part) for part in ("prometheus", "alertmanager", "grafana/dashboards")}
    result = clone_render(clone, config, clone / folder)
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"--out {clone / folder}: it would write " in result.stderr and "Traceback" not in result.stderr
    assert {part: texts(clone / part) for part in kit} == kit


def test_render_over_one_s_own_rules_is_refused_and_leaves_them_alone(tmp_path):
    rules = tmp_path / "app" / "rules"
    rules.mkdir(parents=True)
    own = {"groups": [{"name": "shop", "rules": [{"alert": "ShopDown", "expr": "vector(1)", "annotations": {
        "dashboard": "http://localhost:3000/d/shop"}}]}]}
    (rules / "shop.rules.yml").write_text(yaml.safe_dump(own))
    (rules / "draft.rules.yml").write_text(yaml.safe_dump(own))
    config = shop(tmp_path, stack={"prometheus": {"rule_files": ["app/rules/shop.rules.yml"]},
                                   "grafana": {"url": "http://grafana.example:3000"}})
    result = opsmon("--config.file", str(config), "render", "--out", str(tmp_path / "app"))
    assert result.returncode == 2 and f"it would write over {rules / 'shop.rules.yml'}" in result.stderr
    assert sorted(path.name for path in rules.iterdir()) == ["draft.rules.yml", "shop.rules.yml"]
    assert yaml.safe_load((rules / "shop.rules.yml").read_text()) == own


def test_a_second_host_left_at_this_machine_s_listen_address_is_refused_as_one_service_scraped_twice(tmp_path):
    # The second machine names only its exporter: its backup service would be this machine's, scraped as its own.
    config = shop(tmp_path, backups={"directory": "backups"},
                  stack={"hosts": [{"name": "here"}, {"name": "there", "exporter": "there.lan:9877"}]})
    assert "stack.hosts: here and there both have backup at 127.0.0.1:9878" in refused(config, tmp_path / "out")
    named = shop(tmp_path, backups={"directory": "backups"},
                 stack={"hosts": [{"name": "here"}, {"name": "there", "exporter": "there.lan:9877",
                                                     "backup": "there.lan:9878", "litestream": None}]})
    targets = yaml.safe_load((render(named, tmp_path / "out") / "targets/local.yml").read_text())
    assert [(group["labels"]["host"], group["targets"]) for group in targets] == [
        ("here", ["127.0.0.1:9877"]), ("here", ["127.0.0.1:9878"]), ("there", ["there.lan:9877"]),
        ("there", ["there.lan:9878"])]


def test_a_host_label_that_prometheus_or_the_kit_sets_on_every_target_is_refused(tmp_path):
    # job would have the exporter's target dropped by its job's keep, __address__ scrape somewhere else.
    config = shop(tmp_path, stack={"hosts": [{"name": "web1", "labels": {"env": "prod", "job": "web",
                                                                         "__address__": "elsewhere:1"}}]})
    assert f"{config}: stack.hosts[0]: labels job, __address__: set by Prometheus and the kit" \
        in refused(config, tmp_path / "out")


def test_data_mounts_written_with_a_trailing_slash_match_the_mountpoint_the_exporter_labels(tmp_path):
    config = shop(tmp_path, stack={"alertmanager": {"data_mounts": ["/data/", "/srv/./backups"]}})
    out = render(config, tmp_path / "out")
    [full_disk] = [rule for rule in yaml.safe_load((out / "alertmanager.yml").read_text())["inhibit_rules"]
                   if 'alertname="OpsmonDiskSpaceLow"' in rule["source_matchers"]]
    assert 'mountpoint=~"/data|/srv/backups"' in full_disk["source_matchers"]


def test_a_business_gauge_named_as_a_business_counter_is_read_is_refused(tmp_path):
    # The exporter serves the app's shop_orders_total beside the gauge: a second family fails its whole scrape.
    business = [{"name": "shop_orders", "help": "Orders placed.", "type": "counter"},
                {"name": "shop_orders_total", "help": "Orders in the table.", "query": "SELECT 1 AS value"}]
    assert "business name (as Prometheus reads it: a counter's with _total) must be unique, repeated: " \
           "shop_orders_total" in refused(shop(tmp_path, business=business), tmp_path / "out")


@pytest.mark.parametrize("exporter, litestream", [("127.0.0.1:19878", "127.0.0.1:19879"), (":19877", "127.0.0.1:19877")])
def test_two_services_of_one_config_on_one_port_are_refused(tmp_path, exporter, litestream):
    config = shop(tmp_path, exporter={"listen_address": exporter}, backups={
        "directory": "backups", "listen_address": "127.0.0.1:19878",
        "litestream": {"enabled": True, "replica_directory": "replica", "metrics_address": litestream}})
    complaint = refused(config, tmp_path / "out")
    assert f": exporter.listen_address {exporter} listens there: give each service its port" in complaint


def test_a_rules_file_of_one_s_own_with_an_expression_prometheus_cannot_parse_is_refused(tmp_path):
    (tmp_path / "shop.rules.yml").write_text(yaml.safe_dump({"groups": [{"name": "shop", "rules": [
        {"alert": "ShopBroken", "expr": "sum(rate(shop_orders_total[5m]) by"}]}]}))
    config = shop(tmp_path, stack={"prometheus": {"rule_files": ["shop.rules.yml"]}})
    message = refused(config, tmp_path / "out")
    assert "stack.prometheus.rule_files[0]: " in message and "could not parse expression" in message
