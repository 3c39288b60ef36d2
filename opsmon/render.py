"""`opsmon render`: Prometheus, Alertmanager, Grafana provisioning and systemd units from the config's `stack:`."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

import psutil
import yaml
from pydantic import ValidationError

from opsmon.boards import ALERTMANAGER_UID, LONG_TERM_UID, PROMETHEUS_UID, business_board
from opsmon.boards import UID as BUSINESS_UID  # the rendered business board's, which one's own may not take
from opsmon.config import OpsmonConfig, StackConfig
from opsmon.files import write_atomically


def _kit() -> Path:
    """The shipped rules, Alertmanager file and boards: the clone's, else where `pip install .` put them."""
    clone = Path(__file__).resolve().parent.parent
    return clone if (clone / "prometheus" / "rules").is_dir() else Path(sys.prefix) / "share" / "opsmon"


KIT = _kit()
INCOMPLETE = "the kit is incomplete: install opsmon again from a clone"
RULES = KIT / "prometheus" / "rules"
ALERTMANAGER = KIT / "alertmanager"
BOARDS = KIT / "grafana" / "dashboards"
# Where the boards rendered for the config go, under the output folder (apart from a clone's grafana/dashboards/,
# should one render into the clone); the business board's file there.
APP_BOARDS, BUSINESS_BOARD = "grafana/app-dashboards", "business.json"
# The dashboard links in the shipped rules, replaced by stack.grafana.url.
SHIPPED_GRAFANA_URL = "http://localhost:3000"
# The error budget slo.rules.yml is written for (a 99 % objective), replaced by stack.slo.objective's.
SHIPPED_ERROR_BUDGET = 0.01
# Settings people give per machine (.env, make's command line) over the config's: (variable, key path).
ENVIRONMENT_OVERRIDES = (
    ("OPSMON_GRAFANA_URL", ("grafana", "url")),
    ("OPSMON_PROMETHEUS_URL", ("prometheus", "external_url")),
    ("OPSMON_ALERTMANAGER_URL", ("alertmanager", "external_url")),
    ("OPSMON_HEARTBEAT_URL", ("receivers", "heartbeat_url")),
    ("OPSMON_LONG_TERM", ("long_term", "enabled")),
)
FLEET_JOBS = (("opsmon-exporter", "exporter"), ("opsmon-backup", "backup"), ("litestream", "litestream"))
# A target without a `host` label is named by its address, so every series of a host carries `host`.
HOST_FROM_ADDRESS = {"source_labels": ["host", "__address__"], "regex": r";(\[[^\]]+\]|[^:]+)(?::\d+)?",
                     "target_label": "host"}
# What a full disk that holds the database or backups explains: the warnings of failing backups and drills.
# Never the critical OpsmonBackupStale (two missed runs page whatever the cause), nor the copies kept elsewhere.
DISK_EXPLAINS = ['alertname=~"OpsmonBackup(Stale|Failing)|OpsmonRestoreDrillStale"', 'severity="warning"']
# What Go's filepath.Glob reads as a pattern: in the output folder's path, it breaks or widens Prometheus's globs.
GLOB_CHARACTERS = "*?[\\"
EMAIL_TEMPLATES = {"headers": {"Subject": '{{ template "opsmon.email.subject" . }}'},
                   "html": '{{ template "opsmon.email.html" . }}', "text": '{{ template "opsmon.email.text" . }}'}


class CannotRender(Exception):
    """A setting or a shipped file the renderer cannot use; the message names it."""


def with_environment(stack: StackConfig, environ: dict) -> StackConfig:
    """The stack with the OPSMON_* settings of the environment over its own; an empty one is unset."""
    settings = stack.model_dump()
    for variable, (section, key) in ENVIRONMENT_OVERRIDES:
        if environ.get(variable):
            settings[section][key] = environ[variable] == "1" if key == "enabled" else environ[variable]
    try:
        return StackConfig.model_validate(settings)
    except ValidationError as err:
        names = [v for v, _ in ENVIRONMENT_OVERRIDES if environ.get(v)]
        raise CannotRender(f"environment {', '.join(names)}: {err.errors()[0]['msg']}") from None


def prometheus_config(stack: StackConfig) -> dict:
    prometheus = stack.prometheus
    jobs = [{"job_name": job, "file_sd_configs": [{"files": ["targets/*.yml"]}],
             "relabel_configs": [{"source_labels": ["job"], "regex": job, "action": "keep"}, HOST_FROM_ADDRESS]}
            for job, _ in FLEET_JOBS]
    if prometheus.app_address:
        labels = {"host": stack.hosts[0].name} if stack.hosts else {}
        jobs.append({"job_name": "app", "static_configs": [{"targets": [prometheus.app_address], "labels": labels}]})
    port = prometheus.address.rpartition(":")[2]
    jobs.append({"job_name": "prometheus", "static_configs": [{"targets": [f"localhost:{port}"]}]})
    jobs.append({"job_name": "alertmanager", "static_configs": [{"targets": [stack.alertmanager.address]}]})
    if stack.long_term.enabled:
        # Its own /metrics: remote_write's alerts need to know the store is up, and OpsmonLongTermStoreDown says so.
        jobs.append({"job_name": "victoriametrics", "static_configs": [{"targets": [stack.long_term.address]}]})
    config = {
        "global": {"scrape_interval": prometheus.scrape_interval, "scrape_timeout": prometheus.scrape_timeout,
                   "evaluation_interval": prometheus.scrape_interval, "external_labels": {"stack": "opsmon"}},
        "rule_files": ["rules/*.rules.yml"],
        "alerting": {"alertmanagers": [{"static_configs": [{"targets": [stack.alertmanager.address]}]}]},
        "scrape_configs": jobs,
    }
    if stack.long_term.enabled:
        config["remote_write"] = [{"url": f"http://{stack.long_term.address}/api/v1/write"}]
    return config


def fleet_targets(stack: StackConfig) -> list[dict]:
    """One group per host and service, each naming its job (prometheus.yml keeps each job's own)."""
    return [{"targets": [address], "labels": {"job": job, "host": host.name, **host.labels}}
            for host in stack.hosts for job, service in FLEET_JOBS
            if (address := getattr(host, service)) is not None]


def _shipped_alertmanager() -> dict:
    try:
        return yaml.safe_load((ALERTMANAGER / "alertmanager.yml").read_text(encoding="utf-8"))
    except OSError as err:
        raise CannotRender(f"{ALERTMANAGER / 'alertmanager.yml'}: {err.strerror} ({INCOMPLETE})") from None


def _email(to: str) -> dict:
    return {"to": to, "send_resolved": True, **EMAIL_TEMPLATES}


def _receivers(stack: StackConfig) -> list[dict]:
    receivers = stack.receivers
    pager = [{"url": receivers.pager_url, "send_resolved": True}] if receivers.pager_url else []
    heartbeat = {"name": "heartbeat"}
    if receivers.heartbeat_url:
        heartbeat["webhook_configs"] = [{"url": receivers.heartbeat_url, "send_resolved": False}]
    addresses = [("ops", receivers.email), *((team.name, team.email) for team in receivers.teams)]
    paging = [{"name": f"pager-{who}", "email_configs": [_email(email.critical)],
               **({"webhook_configs": pager} if pager else {})} for who, email in addresses]
    mailing = [{"name": f"email-{who}", "email_configs": [_email(email.warning)]} for who, email in addresses]
    return [{"name": "blackhole"}, heartbeat, *paging, *mailing]


def _routes(stack: StackConfig, shipped: dict) -> list[dict]:
    """The shipped heartbeat route, then one receiver per severity, with a child per team when there are teams."""
    heartbeat = next(route for route in shipped["route"]["routes"] if route["receiver"] == "heartbeat")
    window = [interval["name"] for interval in shipped["time_intervals"]]
    critical = {"receiver": "pager-ops", "matchers": ['severity="critical"'], "repeat_interval": "2h"}
    warning = {"receiver": "email-ops", "matchers": ['severity="warning"'], "mute_time_intervals": window}
    teams = [team.name for team in stack.receivers.teams]
    if teams:
        critical["routes"] = [{"receiver": f"pager-{team}", "matchers": [f'team="{team}"']} for team in teams]
        warning["routes"] = [{"receiver": f"email-{team}", "matchers": [f'team="{team}"'],
                              "mute_time_intervals": window} for team in teams]
    return [heartbeat, {"receiver": "blackhole", "matchers": ['severity="info"']}, critical, warning]


def _quoted(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _any_of(label: str, values: Iterable[str]) -> str:
    """A matcher for any of the values, taken literally (Alertmanager anchors the regex)."""
    literal = ("".join(f"\\{c}" if c in r".^$*+?()[]{}|\\" else c for c in value) for value in values)
    return f"{label}=~{_quoted('|'.join(literal))}"


def data_mounts(config: OpsmonConfig, partitions: Callable = psutil.disk_partitions) -> list[str]:
    """The mount points that hold the database and the backups folder here: the longest mounted prefix of each."""
    mounted = [partition.mountpoint for partition in partitions(all=True)]
    paths = [config.database.path, *([config.backups.directory] if config.backups else [])]
    holding = set()
    for path in paths:
        real = os.path.realpath(path)
        holding.add(max((mount for mount in mounted if real == mount or real.startswith(mount.rstrip("/") + "/")),
                        key=len, default="/"))
    return sorted(holding)


def _inhibitions(config: OpsmonConfig, stack: StackConfig) -> list[dict]:
    """The kit's inhibitions, then the config's: its data mounts, each process's services, its own rules."""
    path = ALERTMANAGER / "inhibit_rules.yml"
    try:
        kit = yaml.safe_load(path.read_text(encoding="utf-8"))["inhibit_rules"]
    except OSError as err:
        raise CannotRender(f"{path}: {err.strerror} ({INCOMPLETE})") from None
    mounts = stack.alertmanager.data_mounts if stack.alertmanager.data_mounts is not None else data_mounts(config)
    full_disk = [{"source_matchers": ['alertname="OpsmonDiskSpaceLow"', 'severity="critical"',
                                      _any_of("mountpoint", mounts)],
                  "target_matchers": DISK_EXPLAINS, "equal": ["host"]}] if mounts else []
    served = [{"source_matchers": ['alertname="OpsmonProcessDown"', f"process={_quoted(process.name)}"],
               "target_matchers": ['alertname=~"OpsmonExternalService(Down|Slow)"', _any_of("service", process.serves)],
               "equal": ["host"]} for process in config.exporter.processes if process.serves]
    own = [rule.model_dump(exclude_defaults=True) for rule in stack.alertmanager.inhibit_rules]
    return [*kit, *full_disk, *served, *own]


def alertmanager_config(config: OpsmonConfig, stack: StackConfig) -> dict:
    """The user's receivers and inhibitions; the grouping and maintenance window exactly as shipped."""
    shipped = _shipped_alertmanager()
    smtp = stack.receivers.smtp
    mail = {"resolve_timeout": shipped["global"]["resolve_timeout"], "smtp_smarthost": smtp.smarthost,
            "smtp_from": smtp.from_address, "smtp_require_tls": smtp.require_tls}
    if smtp.username:
        mail["smtp_auth_username"] = smtp.username
    if smtp.password_file:
        mail["smtp_auth_password_file"] = str(smtp.password_file)
    route = {key: value for key, value in shipped["route"].items() if key != "routes"}
    return {"global": mail, "templates": shipped["templates"], "route": {**route, "routes": _routes(stack, shipped)},
            "inhibit_rules": _inhibitions(config, stack), "time_intervals": shipped["time_intervals"],
            "receivers": _receivers(stack)}


def grafana_datasources(stack: StackConfig) -> dict:
    """Fixed uids: the boards name these, so nothing depends on Grafana filling in ${DS_...}."""
    prometheus = {"name": "Prometheus", "uid": PROMETHEUS_UID, "type": "prometheus", "access": "proxy",
                  "url": f"http://{stack.prometheus.address}", "isDefault": True, "editable": False,
                  "jsonData": {"timeInterval": stack.prometheus.scrape_interval, "manageAlerts": True}}
    long_term = {"name": "VictoriaMetrics", "uid": LONG_TERM_UID, "type": "prometheus", "access": "proxy",
                 "url": f"http://{stack.long_term.address}", "isDefault": False, "editable": False,
                 "jsonData": {"timeInterval": stack.prometheus.scrape_interval}}
    alertmanager = {"name": "Alertmanager", "uid": ALERTMANAGER_UID, "type": "alertmanager", "access": "proxy",
                    "url": f"http://{stack.alertmanager.address}", "editable": False,
                    "jsonData": {"implementation": "prometheus"}}
    return {"apiVersion": 1, "datasources": [prometheus, long_term, alertmanager]}


def grafana_dashboards(stack: StackConfig, out: Path) -> dict:
    """The kit's boards, and those rendered for this config (the business board, one's own) under the output."""
    def provider(name: str, path: Path) -> dict:
        return {"name": name, "folder": "opsmon", "type": "file", "disableDeletion": True, "allowUiUpdates": False,
                "options": {"path": str(path), "foldersFromFilesStructure": False}}

    return {"apiVersion": 1, "providers": [provider("opsmon", stack.grafana.dashboards_directory or BOARDS),
                                           provider("opsmon-app", stack.grafana.app_dashboards_directory
                                                    or out / APP_BOARDS)]}


def _unit(description: str, exec_start: str, user: str | None) -> str:
    lines = ["[Unit]", f"Description={description}", "Wants=network-online.target", "After=network-online.target",
             "", "[Service]", f"ExecStart={exec_start}", "Restart=on-failure"]
    if user:
        lines.append(f"User={user}")
    return "\n".join([*lines, "", "[Install]", "WantedBy=multi-user.target", ""])


def _argument(value: object) -> str:
    """One word of an ExecStart line as systemd reads it back: a literal % and $ doubled (a specifier and a
    variable otherwise), and the word in double quotes, its own quotes and backslashes escaped, when it holds any."""
    text = str(value).replace("%", "%%").replace("$", "$$")
    if not any(c.isspace() or c in "\"'\\" for c in text):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _drop_in(exec_start: str) -> str:
    # An empty ExecStart= first: a drop-in adds to the package's own otherwise.
    return f"[Service]\nExecStart=\nExecStart={exec_start}\n"


def systemd_units(stack: StackConfig, config_file: Path, out: Path) -> dict[str, str]:
    """Units for the exporter and the backup service, and drop-ins pointing Debian's own at the rendered files."""
    bin_directory = stack.systemd.bin_directory or Path(sys.executable).parent
    config = f"--config.file {_argument(config_file)}"
    exporter = f"{_argument(bin_directory / 'opsmon-exporter')} {config}"
    backup = f"{_argument(bin_directory / 'opsmon-backup')} {config} serve"
    prometheus, alertmanager = stack.prometheus, stack.alertmanager
    return {
        "opsmon-exporter.service": _unit("opsmon exporter: the database, host, logs and app metrics", exporter,
                                         stack.systemd.user),
        "opsmon-backup.service": _unit("opsmon backups: schedules, verification, drills and the console", backup,
                                       stack.systemd.user),
        "prometheus.service.d/opsmon.conf": _drop_in(
            f"/usr/bin/prometheus --config.file={_argument(out / 'prometheus.yml')} "
            f"--storage.tsdb.path=/var/lib/prometheus/metrics2/ --storage.tsdb.retention.time={prometheus.retention} "
            f"--web.listen-address={prometheus.address} --web.external-url={_argument(prometheus.external_url)} "
            "--web.route-prefix=/"),
        "prometheus-alertmanager.service.d/opsmon.conf": _drop_in(
            f"/usr/bin/prometheus-alertmanager --config.file={_argument(out / 'alertmanager.yml')} "
            f"--storage.path=/var/lib/prometheus/alertmanager/ --web.listen-address={alertmanager.address} "
            f"--web.external-url={_argument(alertmanager.external_url)} --web.route-prefix=/ --cluster.listen-address="),
    }


def _error_budget(text: str, objective: float) -> str:
    """slo.rules.yml with the budget of the objective in place of the shipped 1 %: thresholds and words."""
    budget = round(1 - objective, 10)
    if budget == SHIPPED_ERROR_BUDGET:
        return text
    if f"* {SHIPPED_ERROR_BUDGET})" not in text:
        raise CannotRender(f"{RULES / 'slo.rules.yml'}: no burn-rate threshold '* {SHIPPED_ERROR_BUDGET})' in it: "
                           "stack.slo.objective cannot be rendered into it")
    percent = f"{budget * 100:g} %"
    for shipped, wanted in ((f"* {SHIPPED_ERROR_BUDGET})", f"* {budget})"),
                            (f"/ {SHIPPED_ERROR_BUDGET}\n", f"/ {budget}\n"),
                            ("budget of 1 % errors", f"budget of {percent} errors"),
                            ("fewer than 1 % of requests fail", f"fewer than {percent} of requests fail")):
        text = text.replace(shipped, wanted)
    return text


def _own_file(key: str, path: Path, parse, holds: str) -> tuple[str, dict]:
    """One of the config's own files (stack.prometheus.rule_files...), checked to be what it must be: one bad file
    would stop Prometheus loading any rules, or leave a board out with a line in Grafana's log. Its text, and
    what it parses to."""
    try:
        text = path.read_text(encoding="utf-8")
        document = parse(text)
    except (OSError, UnicodeDecodeError) as err:
        raise CannotRender(f"stack.{key}: {path}: {getattr(err, 'strerror', None) or err}") from None
    except (ValueError, yaml.YAMLError) as err:
        raise CannotRender(f"stack.{key}: {path}: cannot be parsed: {err}") from None
    if not isinstance(document, dict) or holds not in document:
        raise CannotRender(f"stack.{key}: {path}: no {holds!r} in it")
    return text, document


def _rule_groups(groups: object) -> bool:
    """Whether a rules file's groups have the shape Prometheus loads: it refuses every file for one that has not."""
    return isinstance(groups, list) and all(
        isinstance(group, dict) and isinstance(group.get("name"), str) and isinstance(group.get("rules", []), list)
        for group in groups)


def _promtool_objection(path: Path) -> str | None:
    """What `promtool check rules` says against a rules file (a PromQL expression Prometheus cannot parse would
    stop it loading every rule), where promtool is installed, as with Debian's prometheus."""
    promtool = shutil.which("promtool")
    if promtool is None:
        return None
    result = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    if result.returncode == 0:
        return None
    return " ".join((result.stderr or result.stdout).split())


def _rules(stack: StackConfig) -> dict[str, str]:
    """The kit's rules, and the config's own rule files beside them (the same folder: prometheus.yml reads one)."""
    rules = sorted(RULES.glob("*.rules.yml"))
    if not rules:
        raise CannotRender(f"{RULES}: no *.rules.yml to render ({INCOMPLETE})")
    texts = {path.name: path.read_text(encoding="utf-8") for path in rules}
    if "slo.rules.yml" in texts:
        texts["slo.rules.yml"] = _error_budget(texts["slo.rules.yml"], stack.slo.objective)
    for number, path in enumerate(stack.prometheus.rule_files):
        key = f"prometheus.rule_files[{number}]"
        if not path.name.endswith(".rules.yml"):
            raise CannotRender(f"stack.{key}: {path}: name it *.rules.yml, the files prometheus.yml loads")
        if path.name in texts:
            raise CannotRender(f"stack.{key}: {path}: a rules file named {path.name} is rendered already")
        texts[path.name], document = _own_file(key, path, yaml.safe_load, "groups")
        if not _rule_groups(document["groups"]):
            raise CannotRender(f"stack.{key}: {path}: groups must be a list of groups, each with a name and a list "
                               "of rules")
        objection = _promtool_objection(path)
        if objection:
            raise CannotRender(f"stack.{key}: {path}: promtool check rules: {objection}")
    return {f"rules/{name}": text.replace(SHIPPED_GRAFANA_URL, stack.grafana.url) for name, text in texts.items()}


def _provisioned_uids(stack: StackConfig) -> dict[str, str]:
    """The uid of each board provisioned beside one's own, and what has it."""
    uids = {BUSINESS_UID: "the business board"}
    for path in sorted((stack.grafana.dashboards_directory or BOARDS).glob("*.json")):
        try:
            board = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue  # a board Grafana cannot read either takes no uid
        if isinstance(board, dict) and isinstance(board.get("uid"), str):
            uids[board["uid"]] = str(path)
    return uids


def _boards(config: OpsmonConfig, stack: StackConfig) -> dict[str, str]:
    """The business board of the config's business metrics, and the config's own boards beside it."""
    boards = {BUSINESS_BOARD: business_board(config.business)}
    # Grafana provisions one board per uid and leaves the other out with a line in its log.
    uids = _provisioned_uids(stack)
    for number, path in enumerate(stack.grafana.dashboard_files):
        key = f"grafana.dashboard_files[{number}]"
        if path.name in boards:
            raise CannotRender(f"stack.{key}: {path}: a board file named {path.name} is provisioned already")
        boards[path.name], document = _own_file(key, path, json.loads, "uid")
        uid = document["uid"]
        if not isinstance(uid, str) or not uid:
            raise CannotRender(f"stack.{key}: {path}: uid {uid!r}: Grafana needs a string")
        if uid in uids:
            raise CannotRender(f"stack.{key}: {path}: uid {uid!r} is {uids[uid]}'s: give the board a uid of its own")
        uids[uid] = str(path)
    return {f"{APP_BOARDS}/{name}": text for name, text in boards.items()}


class _PlainDumper(yaml.SafeDumper):
    """Shared values written out in full: a rendered file reads without anchors to follow."""

    def ignore_aliases(self, data) -> bool:
        return True


def _yaml(document: object, header: str) -> str:
    return f"# {header}\n" + yaml.dump(document, Dumper=_PlainDumper, sort_keys=False, width=120)


def hosts_where_config_listens(config: OpsmonConfig) -> StackConfig:
    """The stack with each host's left-out service addresses taken from this file: its listen addresses,
    or none where it runs no such service (no backups section, Litestream off), so Prometheus scrapes
    the ports the services use and never one nothing listens on."""
    backups = config.backups
    own = {"exporter": config.exporter.listen_address,
           "backup": backups.listen_address if backups else None,
           "litestream": backups.litestream.metrics_address if backups and backups.litestream.enabled else None}
    hosts = [host.model_copy(update={service: address for service, address in own.items()
                                     if service not in host.model_fields_set})
             for host in config.stack.hosts]
    return config.stack.model_copy(update={"hosts": hosts})


def _one_host_per_address(stack: StackConfig) -> None:
    """Two hosts at one address would be one service scraped twice, its figures under both hosts' names, and the
    other's never scraped: a second machine that names none of its own gets this file's listen address."""
    for job, service in FLEET_JOBS:
        first_at: dict[str, str] = {}
        for host in stack.hosts:
            address = getattr(host, service)
            if address is not None and first_at.setdefault(address, host.name) != host.name:
                raise CannotRender(f"stack.hosts: {first_at[address]} and {host.name} both have {service} at "
                                   f"{address}: give each host the address Prometheus reaches its {job} at "
                                   "(null: none runs there)")


def rendered_files(config: OpsmonConfig, config_file: Path, out: Path, environ: dict) -> dict[str, str]:
    """Every file `render` writes, by its path under the output folder."""
    stack = with_environment(hosts_where_config_listens(config), environ)
    _one_host_per_address(stack)
    header = f"Rendered by `opsmon render` from {config_file}: change its stack: section and render again."
    files = {
        "prometheus.yml": _yaml(prometheus_config(stack), header),
        # Hosts added as files of their own in targets/ are read too, live.
        "targets/local.yml": _yaml(fleet_targets(stack), header),
        **_rules(stack),
        "alertmanager.yml": _yaml(alertmanager_config(config, stack), header),
        **{f"templates/{path.name}": path.read_text(encoding="utf-8")
           for path in sorted((ALERTMANAGER / "templates").glob("*.tmpl"))},
        "grafana/provisioning/datasources/datasources.yml": _yaml(grafana_datasources(stack), header),
        "grafana/provisioning/dashboards/dashboards.yml": _yaml(grafana_dashboards(stack, out), header),
        **_boards(config, stack),
    }
    files.update({f"systemd/{name}": text for name, text in systemd_units(stack, config_file, out).items()})
    return files


def _refuse_writing_over_sources(stack: StackConfig, out: Path, names: Iterable[str]) -> None:
    """An output folder inside the kit (a clone's prometheus/) or holding one's own rules and boards would have
    the shipped files rewritten by the render (the next render reads them) and others left out deleted."""
    folders = [folder.resolve() for folder in (RULES, ALERTMANAGER, BOARDS)]
    own = {path.resolve() for path in (*stack.prometheus.rule_files, *stack.grafana.dashboard_files)}
    for name in names:
        real = (out / name).resolve()
        if real in own:
            raise CannotRender(f"--out {out}: it would write over {real}, one of the config's own files: render "
                               "into a folder of its own")
        kit = next((folder for folder in folders if real.is_relative_to(folder)), None)
        if kit:
            raise CannotRender(f"--out {out}: it would write {real} into the kit's {kit}: render into a folder of "
                               "its own")


def render(config: OpsmonConfig, config_file: Path, out: Path, environ: dict | None = None) -> list[Path]:
    """Write the stack's files under `out`; files of one's own there (more hosts in targets/) are left alone."""
    out = out.resolve()
    if any(c in GLOB_CHARACTERS for c in str(out)):
        raise CannotRender(f"--out {out}: Prometheus reads rules/*.rules.yml and targets/*.yml under it as patterns, "
                           f"which its {', '.join(c for c in GLOB_CHARACTERS if c in str(out))} would change: render "
                           "into a folder whose path has none")
    files = rendered_files(config, config_file.resolve(), out, os.environ if environ is None else environ)
    _refuse_writing_over_sources(config.stack, out, files)
    # Rules and boards no longer rendered would still be loaded by rules/*.rules.yml and Grafana's provider.
    for stale in {*(out / "rules").glob("*.rules.yml"), *(out / APP_BOARDS).glob("*.json")} - {
            out / name for name in files}:
        stale.unlink()
    written = []
    for name, text in files.items():
        path = out / name
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(path, text.encode("utf-8"))
        written.append(path)
    return written

