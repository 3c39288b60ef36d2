"""The one opsmon.yml: loaded once, validated strictly, every problem reported with file and key."""

from __future__ import annotations

import os
import re
import urllib.parse
import zoneinfo
from pathlib import Path
from typing import Annotated, Literal

import yaml
from croniter import croniter
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    HttpUrl,
    PositiveFloat,
    PositiveInt,
    ValidationError,
    ValidationInfo,
    model_validator,
)

DEFAULT_CONFIG_FILE = "opsmon.yml"
METRIC_NAME = r"^[a-zA-Z_][a-zA-Z0-9_]*$"
LABEL_NAME = r"^[a-zA-Z_][a-zA-Z0-9_]*$"


class InvalidConfig(Exception):
    """The config file cannot be used; `problems` lists every reason, each naming file and key."""

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


def _resolve(path: Path, info: ValidationInfo) -> Path:
    """Relative paths are relative to the config file, so the file means the same from any directory."""
    base = (info.context or {}).get("base", Path.cwd())
    return path if path.is_absolute() else (base / path)


def _usable_location(path: Path) -> Path:
    """A path we may create or read later: whatever exists of it must be readable, its parent a folder."""
    try:
        if path.exists() and not os.access(path, os.R_OK):
            raise ValueError(f"{path} is not readable")
        if path.parent.exists() and not path.parent.is_dir():
            raise ValueError(f"{path.parent} is not a directory")
    except OSError as err:  # a name too long for the filesystem, say
        raise ValueError(f"{path} cannot be used: {err.strerror}") from None
    return path


def _readable_file(path: Path) -> Path:
    """A path we must read at start (certificates, password files): it has to be there now."""
    if not path.is_file():
        raise ValueError(f"{path} does not exist or is not a file")
    if not os.access(path, os.R_OK):
        raise ValueError(f"{path} is not readable")
    return path


def _host_port(value: str) -> str:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536 or " " in host:
        raise ValueError(f"must be host:port (':9877' for every interface), got {value!r}")
    return value


def _cron(value: str) -> str:
    if not croniter.is_valid(value):
        raise ValueError(f"not a cron expression (minute hour day month weekday): {value!r}")
    return value


def _timezone(value: str) -> str:
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {value!r} (use an IANA name such as Europe/Berlin)") from None
    return value


def _regex(value: str) -> str:
    try:
        re.compile(value)
    except (re.error, OverflowError, RecursionError) as err:  # a{99999999999} overflows, not re.error
        raise ValueError(f"not a valid regular expression: {err}") from None
    return value


def _http_url(value: str) -> str:
    """Kept as written (pydantic's HttpUrl adds a slash), since it is rendered into links and flags."""
    parts = urllib.parse.urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc or " " in value:
        raise ValueError(f"must be an http:// or https:// URL, got {value!r}")
    return value


Location = Annotated[Path, AfterValidator(_resolve), AfterValidator(_usable_location)]
ReadableFile = Annotated[Path, AfterValidator(_resolve), AfterValidator(_readable_file)]
Resolved = Annotated[Path, AfterValidator(_resolve)]
Regex = Annotated[str, AfterValidator(_regex)]
Cron = Annotated[str, AfterValidator(_cron)]
HostPort = Annotated[str, AfterValidator(_host_port)]
Url = Annotated[str, AfterValidator(_http_url)]
Email = Annotated[str, Field(pattern=r"^[^@\s]+@[^@\s]+$")]
Duration = Annotated[str, Field(pattern=r"^([0-9]+(y|w|d|h|m|s|ms))+$")]
Name = Annotated[str, Field(min_length=1)]
# An Alertmanager matcher, its value quoted: alertname="OpsmonProcessDown", service=~"a|b".
Matcher = Annotated[str, Field(pattern=r'^[A-Za-z_][A-Za-z0-9_]*(=|!=|=~|!~)"([^"\\]|\\.)*"$')]


def _both_or_neither(model, first: str, second: str) -> None:
    if (getattr(model, first) is None) != (getattr(model, second) is None):
        raise ValueError(f"{first} and {second} go together")


class Strict(BaseModel):
    # validate_default: defaults go through the same checks, so default paths resolve against the file too.
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


class DatabaseConfig(Strict):
    path: Location
    name: Name | None = None

    @property
    def label(self) -> str:
        """The value of the `database` label: the configured name, else the file's stem."""
        return self.name or self.path.stem


class ProcessConfig(Strict):
    name: Name
    pidfile: Location | None = None
    match: Regex | None = None
    serves: list[Name] = Field([], description=(
        "The services of exporter.probes this process answers: while it is down, `opsmon render`'s Alertmanager "
        "holds back their checks failing (not another service's)."))

    @model_validator(mode="after")
    def _one_selector(self) -> ProcessConfig:
        if (self.pidfile is None) == (self.match is None):
            raise ValueError("give exactly one of pidfile or match")
        return self


class ProbeConfig(Strict):
    service: Name
    url: HttpUrl
    method: Literal["GET", "HEAD", "POST", "PUT", "OPTIONS"] = "GET"
    expected_status: list[Annotated[int, Field(ge=100, le=599)]] = [200]
    timeout_seconds: PositiveFloat = 5.0
    body_regex: Regex | None = None


class LogSourceConfig(Strict):
    source: Name
    path: Location
    format: Literal["json", "text"] = "text"
    # Drain patterns published for this source (the rest count under pattern="other"); 0 counts levels only.
    max_patterns: Annotated[int, Field(ge=0, le=1000)] = 50
    # Longer lines are cut to this many bytes (and counted) before they are parsed and mined.
    max_line_bytes: Annotated[int, Field(ge=1024, le=1024 * 1024)] = 64 * 1024


class BusinessQueryConfig(Strict):
    """A state read with SQL and published as a gauge. Events are counters the app increments."""

    name: Annotated[str, Field(pattern=METRIC_NAME)]
    help: Name
    # Only "gauge" is valid; "counter" is named so that its refusal can say why (below).
    type: Literal["counter", "gauge"] = "gauge"
    query: Name
    labels: list[Annotated[str, Field(pattern=LABEL_NAME)]] = []
    value_column: Name = "value"
    refresh_seconds: PositiveFloat = 60.0
    timeout_seconds: PositiveFloat = 5.0

    @model_validator(mode="after")
    def _gauges_only(self) -> BusinessQueryConfig:
        if self.type == "counter":
            raise ValueError(
                f"{self.name}: type counter is refused: a count of rows is a gauge. A restore or a delete "
                "lowers it, Prometheus reads the drop as a counter reset, and increase() counts the whole "
                "table again. Count events where they happen, in the app (opsmon.instrument), and publish "
                "states such as a backlog here as gauges")
        return self


class Thresholds(Strict):
    """Warning and critical levels of one health check."""

    warning: float
    critical: float


class HealthConfig(Strict):
    disk_free_ratio: Thresholds = {"warning": 0.10, "critical": 0.03}
    memory_available_ratio: Thresholds = {"warning": 0.10, "critical": 0.03}
    cpu_load_per_core: Thresholds = {"warning": 2.0, "critical": 4.0}
    # The newest backup of a tier older than this makes the backups check degraded.
    backup_max_age_seconds: dict[Literal["daily", "weekly", "monthly"], PositiveFloat] = {
        "daily": 26 * 3600,
        "weekly": 8 * 86400,
        "monthly": 32 * 86400,
    }


class WebConfig(Strict):
    tls_cert_file: ReadableFile | None = None
    tls_key_file: ReadableFile | None = None
    basic_auth_username: Name | None = None
    basic_auth_password_file: ReadableFile | None = None

    @model_validator(mode="after")
    def _pairs(self) -> WebConfig:
        _both_or_neither(self, "tls_cert_file", "tls_key_file")
        _both_or_neither(self, "basic_auth_username", "basic_auth_password_file")
        return self


class ExporterConfig(Strict):
    listen_address: HostPort = "127.0.0.1:9877"
    # Used when Prometheus sends no X-Prometheus-Scrape-Timeout-Seconds header.
    scrape_timeout_seconds: PositiveFloat = 10.0
    state_directory: Location = Path(".opsmon-state")
    app_metrics_directory: Location | None = None
    processes: list[ProcessConfig] = []
    probes: list[ProbeConfig] = []
    logs: list[LogSourceConfig] = []
    health: HealthConfig = {}
    web: WebConfig = {}


class TierSchedule(Strict):
    """Cron expressions, read in backups.timezone; the requirement's times by default."""

    daily: Cron = "0 2 * * *"
    weekly: Cron = "0 3 * * 0"
    monthly: Cron = "0 4 1 * *"


class Retention(Strict):
    """How many backups of each tier to keep; safety backups, taken before a restore or fix, are kept by age:
    restores in a row never push out the state from before the first."""

    daily: PositiveInt = 7
    weekly: PositiveInt = 4
    monthly: PositiveInt = 12
    safety_days: PositiveInt = 7


class OffsiteConfig(Strict):
    """An S3-compatible bucket. Credentials come from the files named here, else boto3's usual
    environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY), never from this file."""

    bucket: Name
    prefix: str = "opsmon"
    endpoint_url: HttpUrl | None = None
    region: Name = "us-east-1"
    access_key_id_file: ReadableFile | None = None
    secret_access_key_file: ReadableFile | None = None


class LitestreamConfig(Strict):
    enabled: bool = False
    binary: Name = "litestream"
    # Where the WAL is replicated to: a folder (another disk), and/or the offsite bucket.
    replica_directory: Location | None = None
    replicate_offsite: bool = False
    sync_interval_seconds: PositiveFloat = 1.0
    metrics_address: HostPort = "127.0.0.1:9879"

    @model_validator(mode="after")
    def _somewhere(self) -> LitestreamConfig:
        if self.enabled and self.replica_directory is None and not self.replicate_offsite:
            raise ValueError("enabled Litestream needs replica_directory or replicate_offsite")
        return self


class ConsoleConfig(Strict):
    """The backup console on the backup service's port: off unless enabled."""

    enabled: bool = False
    # Users and password hashes (opsmon-backup user add); created with one generated admin when missing.
    users_file: Location = Path(".opsmon-console-users.json")
    session_seconds: PositiveInt = 3600
    tls_cert_file: ReadableFile | None = None
    tls_key_file: ReadableFile | None = None

    @model_validator(mode="after")
    def _tls_pair(self) -> ConsoleConfig:
        _both_or_neither(self, "tls_cert_file", "tls_key_file")
        return self


class DrillConfig(Strict):
    # Write a marker row into opsmon's own table of the live database before each drill, and measure
    # each location's RPO by the newest marker its restored copy holds (end to end, not by file times).
    canary: bool = False
    # How long the drill waits for the marker to reach the Litestream replica.
    replica_wait_seconds: PositiveFloat = 30.0


class Objectives(Strict):
    """What a disaster may cost: data lost (RPO, from the best location) and time to restore (RTO, each)."""

    rpo_seconds: PositiveFloat = 26 * 3600
    rto_seconds: PositiveFloat = 3600


class BackupsConfig(Strict):
    directory: Location
    timezone: Annotated[str, AfterValidator(_timezone)] = "UTC"
    schedule: TierSchedule = {}
    retention: Retention = {}
    verify_schedule: Cron = "30 5 * * *"
    drill_schedule: Cron = "0 6 * * *"
    check_schedule: Cron = "15 * * * *"
    # python-isal's levels: 0 (fastest) to 3 (smallest); the output is standard gzip either way.
    compression_level: Annotated[int, Field(ge=0, le=3)] = 1
    secondary_directory: Location | None = None
    offsite: OffsiteConfig | None = None
    # true: the backup folder is the only copy, on purpose (one disk, no bucket). `status` then reads
    # "single copy (intended)" and is all well for that alone; opsmon_backup_rule_321_satisfied stays 0,
    # and the 3-2-1 alert is silenced by opsmon_backup_single_copy_intended.
    single_copy_intended: bool = False
    litestream: LitestreamConfig = {}
    drill: DrillConfig = {}
    objectives: Objectives = {}
    listen_address: HostPort = "127.0.0.1:9878"
    console: ConsoleConfig = {}

    @model_validator(mode="after")
    def _single_copy_has_no_copies(self) -> BackupsConfig:
        copies = [name for name in ("secondary_directory", "offsite") if getattr(self, name) is not None]
        if self.single_copy_intended and copies:
            raise ValueError(f"single_copy_intended is true, but {' and '.join(copies)} "
                             f"{'is' if len(copies) == 1 else 'are'} set: copies are made; keep one or the other")
        return self

    @model_validator(mode="after")
    def _offsite_for_litestream(self) -> BackupsConfig:
        if self.litestream.replicate_offsite and self.offsite is None:
            raise ValueError("litestream.replicate_offsite needs an offsite section")
        return self


class IntegrityRule(Strict):
    """A business rule: `query` returns the rows that break it; `fix` repairs them when `fixable`."""

    name: Annotated[str, Field(pattern=LABEL_NAME)]
    description: Name
    query: Name
    fix: str | None = None
    fixable: bool = False

    @model_validator(mode="after")
    def _fix_given(self) -> IntegrityRule:
        if self.fixable and not self.fix:
            raise ValueError("a fixable rule needs a fix statement")
        return self


class IntegrityConfig(Strict):
    # quick_check skips the index cross-checks: much faster on a big database, a little less thorough.
    quick: bool = False
    rules: list[IntegrityRule] = []


class StackHost(Strict):
    """One machine of the fleet, as Prometheus reaches it; a service it does not run is null."""

    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")]
    exporter: HostPort | None = "127.0.0.1:9877"
    backup: HostPort | None = "127.0.0.1:9878"
    litestream: HostPort | None = "127.0.0.1:9879"
    # On every series scraped from the host (env, role...), for one's own queries.
    labels: dict[Annotated[str, Field(pattern=LABEL_NAME)], str] = {}


class StackPrometheus(Strict):
    # Where Grafana reaches Prometheus; Prometheus scrapes itself on localhost at this port.
    address: HostPort = "127.0.0.1:9090"
    external_url: Url = "http://localhost:9090"
    retention: Duration = "35d"  # the error budget is counted over 30 days
    scrape_interval: Duration = "15s"
    scrape_timeout: Duration = "10s"  # no longer than scrape_interval
    # The app's own /metrics, when it serves them (host:port); scraped as job "app".
    app_address: HostPort | None = None


class StackInhibitRule(Strict):
    """An inhibition of one's own, in Alertmanager's terms, rendered after the kit's."""

    source_matchers: Annotated[list[Matcher], Field(min_length=1, description=(
        'The alert that explains, as Alertmanager matchers with quoted values: alertname="OpsmonProcessDown".'))]
    target_matchers: Annotated[list[Matcher], Field(min_length=1, description="The alerts it holds back.")]
    equal: list[Annotated[str, Field(pattern=LABEL_NAME)]] = Field([], description=(
        "Labels both must share (host: on the same machine only)."))


class StackAlertmanager(Strict):
    address: HostPort = "127.0.0.1:9093"  # where Prometheus and Grafana reach it
    external_url: Url = "http://localhost:9093"
    data_mounts: list[Annotated[str, Field(pattern=r"^/")]] | None = Field(None, description=(
        "The mount points holding the database and the backups, as the exporter labels them: a full one holds "
        "back the backup warnings. Default: those of database.path and backups.directory where `opsmon render` "
        "runs; name them when the services see other paths (a container's volumes)."))
    inhibit_rules: list[StackInhibitRule] = Field([], description=(
        "Inhibitions of one's own, rendered after the kit's and those made from the config."))


class StackGrafana(Strict):
    url: Url = "http://localhost:3000"  # the dashboard links in every alert
    dashboards_directory: Resolved | None = None  # the kit's own boards


class StackLongTerm(Strict):
    """VictoriaMetrics, which keeps every sample 13 months; Prometheus remote-writes to it when enabled."""

    enabled: bool = False
    address: HostPort = "127.0.0.1:8428"


class StackSmtp(Strict):
    smarthost: HostPort = "127.0.0.1:25"
    from_address: Email = "opsmon@localhost"
    require_tls: bool = False
    username: Name | None = None
    # Read by Alertmanager: the password never is in this file.
    password_file: Resolved | None = None


class SeverityEmails(Strict):
    critical: Email = "root@localhost"
    warning: Email = "root@localhost"


class StackTeam(Strict):
    """Alerts labelled team=<name> go to the team's addresses instead of the default ones."""

    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]+$")]
    email: SeverityEmails


class StackReceivers(Strict):
    smtp: StackSmtp = {}
    email: SeverityEmails = {}  # everything no team claims
    teams: list[StackTeam] = []
    pager_url: Url | None = None  # a paging service's webhook: critical alerts go there too
    heartbeat_url: Url | None = None  # a dead man's switch, pinged every minute while alerting works


class StackSlo(Strict):
    # The share of requests that must not fail (server errors) over 30 days; the burn-rate alerts follow it.
    # Below 95 % the fast burn rate (14.4 times the budget) nears 100 % of requests and could hardly page.
    objective: Annotated[float, Field(ge=0.95, lt=1)] = 0.99


class StackSystemd(Strict):
    user: Name | None = None  # the user that can read the database and write the backups
    # Where opsmon-exporter and opsmon-backup are installed; default: beside the Python that renders.
    bin_directory: Resolved | None = None


class StackConfig(Strict):
    """What `opsmon render` writes: Prometheus, Alertmanager, Grafana provisioning and systemd units."""

    hosts: list[StackHost] = [{"name": "localhost"}]
    prometheus: StackPrometheus = {}
    alertmanager: StackAlertmanager = {}
    grafana: StackGrafana = {}
    long_term: StackLongTerm = {}
    receivers: StackReceivers = {}
    slo: StackSlo = {}
    systemd: StackSystemd = {}

    @model_validator(mode="after")
    def _unique(self) -> StackConfig:
        for what, names in (("hosts name", [h.name for h in self.hosts]),
                            ("receivers.teams name", [t.name for t in self.receivers.teams])):
            repeated = sorted({n for n in names if names.count(n) > 1})
            if repeated:
                raise ValueError(f"{what} must be unique, repeated: {', '.join(repeated)}")
        if "ops" in [team.name for team in self.receivers.teams]:
            raise ValueError("receivers.teams name ops is taken: it is receivers.email, what no team claims")
        return self


class OpsmonConfig(Strict):
    database: DatabaseConfig
    exporter: ExporterConfig = {}
    backups: BackupsConfig | None = None
    business: list[BusinessQueryConfig] = []
    integrity: IntegrityConfig = {}
    stack: StackConfig = {}

    @model_validator(mode="after")
    def _unique_names(self) -> OpsmonConfig:
        for what, names in (
            ("exporter.probes service", [p.service for p in self.exporter.probes]),
            ("exporter.processes name", [p.name for p in self.exporter.processes]),
            ("exporter.logs source", [s.source for s in self.exporter.logs]),
            ("business name", [q.name for q in self.business]),
            ("integrity.rules name", [r.name for r in self.integrity.rules]),
        ):
            repeated = sorted({n for n in names if names.count(n) > 1})
            if repeated:
                raise ValueError(f"{what} must be unique, repeated: {', '.join(repeated)}")
        return self

    @model_validator(mode="after")
    def _served_services_are_probed(self) -> OpsmonConfig:
        probed = {probe.service for probe in self.exporter.probes}
        for number, process in enumerate(self.exporter.processes):
            unknown = [service for service in process.serves if service not in probed]
            if unknown:
                raise ValueError(f"exporter.processes[{number}].serves: {', '.join(unknown)}: no such service "
                                 "in exporter.probes")
        return self


def _key(loc: tuple) -> str:
    key = ""
    for part in loc:
        if isinstance(part, int):
            key += f"[{part}]"
        else:
            key += f".{part}" if key else str(part)
    return key


# Keys an earlier release accepted, with what replaced them: an upgrade is told what to write instead.
RENAMED_KEYS = {("backups", "retention", "safety"): "replaced by safety_days: safety backups are kept by age (days), "
                                                     "not by count"}


def _message(error: dict) -> str:
    if error["type"] == "extra_forbidden":
        return RENAMED_KEYS.get(tuple(error["loc"]), "unknown key")
    if error["type"] == "missing":
        return "required key is missing"
    return error["msg"].removeprefix("Value error, ")


def parse_config(data: object, source: str, base: Path) -> OpsmonConfig:
    """Validate already-parsed YAML; InvalidConfig lists every problem as 'source: key: message'."""
    if not isinstance(data, dict):
        raise InvalidConfig([f"{source}: the file must hold a mapping of sections"])
    try:
        return OpsmonConfig.model_validate(data, context={"base": base})
    except ValidationError as err:
        problems = []
        for error in err.errors():
            key = _key(error["loc"])
            problems.append(f"{source}: {key}: {_message(error)}" if key else f"{source}: {_message(error)}")
        raise InvalidConfig(problems) from None


def load_config(path: str | os.PathLike) -> OpsmonConfig:
    """Read and validate a config file, or raise InvalidConfig naming the file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise InvalidConfig([f"{path}: cannot read config file: {err.strerror}"]) from None
    except UnicodeDecodeError as err:
        raise InvalidConfig([f"{path}: not UTF-8 text (byte {err.start}): save it as UTF-8"]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise InvalidConfig([f"{path}: {where}not valid YAML: {getattr(err, 'problem', err)}"]) from None
    except RecursionError:
        raise InvalidConfig([f"{path}: not valid YAML: nested too deep"]) from None
    return parse_config(data, str(path), path.resolve().parent)
