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

from opsmon.exits import EXIT_USAGE, Failure

DEFAULT_CONFIG_FILE = "opsmon.yml"
METRIC_NAME = r"^[a-zA-Z_][a-zA-Z0-9_]*$"
LABEL_NAME = r"^[a-zA-Z_][a-zA-Z0-9_]*$"
# The namespaces of the kit's metrics (the exporter's and the instrumentation library's), and the labels
# Prometheus puts on every target (host: the kit's relabeling).
KIT_NAMESPACES = ("opsmon_", "app_")
TARGET_LABELS = ("host", "job", "instance")


class InvalidConfig(Failure):
    """The config file cannot be used; `problems` lists every reason, each naming file and key."""

    exit_status = EXIT_USAGE

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


def _same_socket(first: str, second: str) -> bool:
    """Whether two listen addresses take one port: the same host, or either on every interface."""
    (host_a, _, port_a), (host_b, _, port_b) = first.rpartition(":"), second.rpartition(":")
    everywhere = ("", "0.0.0.0", "[::]")
    return port_a == port_b and (host_a == host_b or host_a in everywhere or host_b in everywhere)


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
REGEX_MATCHER = re.compile(r'^[A-Za-z0-9_]+[=!]~"(.*)"$')


def _matcher_regex_compiles(value: str) -> str:
    """A regex matcher's value must compile: Alertmanager refuses the whole file otherwise."""
    quoted = REGEX_MATCHER.match(value)
    if quoted:
        _regex(re.sub(r"\\(.)", r"\1", quoted[1]))
    return value


# A mount point as the exporter labels it: /data/ would match no alert's mountpoint="/data".
MountPoint = Annotated[str, Field(pattern=r"^/"), AfterValidator(os.path.normpath)]
# An Alertmanager matcher, its value quoted: alertname="OpsmonProcessDown", service=~"a|b".
Matcher = Annotated[str, Field(pattern=r'^[A-Za-z_][A-Za-z0-9_]*(=|!=|=~|!~)"([^"\\]|\\.)*"$'),
                    AfterValidator(_matcher_regex_compiles)]


def _both_or_neither(model, first: str, second: str) -> None:
    if (getattr(model, first) is None) != (getattr(model, second) is None):
        raise ValueError(f"{first} and {second} go together")


class Strict(BaseModel):
    # validate_default: defaults go through the same checks, so default paths resolve against the file too.
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


class DatabaseConfig(Strict):
    path: Location = Field(
        description=(
            "The app's SQLite database. Opened read-only by the exporter; backed up and restored by the backup "
            "service."))
    name: Name | None = Field(
        None, description="The value of the `database` label; default: the file's name without its suffix.")

    @property
    def label(self) -> str:
        """The value of the `database` label: the configured name, else the file's stem."""
        return self.name or self.path.stem


class ProcessConfig(Strict):
    name: Name = Field(description="The `process` label of this watched process.")
    pidfile: Location | None = Field(
        None, description="A file holding the process's pid. Give exactly one of `pidfile` or `match`.")
    match: Regex | None = Field(
        None, description=(
            "A regular expression matched against each process's command line. Give exactly one of `pidfile` or "
            "`match`."))
    serves: list[Name] = Field([], description=(
        "The services of exporter.probes this process answers: while it is down, `opsmon render`'s Alertmanager "
        "holds back their checks failing (not another service's)."))

    @model_validator(mode="after")
    def _one_selector(self) -> ProcessConfig:
        if (self.pidfile is None) == (self.match is None):
            raise ValueError("give exactly one of pidfile or match")
        return self


class ProbeConfig(Strict):
    service: Name = Field(description="The `service` label of this HTTP check.")
    url: HttpUrl = Field(description="The URL checked at every scrape.")
    method: Literal["GET", "HEAD", "POST", "PUT", "OPTIONS"] = Field("GET", description="The HTTP method of the check.")
    expected_status: list[Annotated[int, Field(ge=100, le=599)]] = Field(
        [200], description="The status codes that count as a success.")
    timeout_seconds: PositiveFloat = Field(
        5.0, description="How long the check waits for an answer; the scrape's own deadline cuts it shorter.")
    body_regex: Regex | None = Field(None, description="When given, the answer's body must match it for a success.")


class LogSourceConfig(Strict):
    source: Name = Field(description="The `source` label of this log file.")
    path: Location = Field(description="The log file, tailed across rotation and truncation.")
    format: Literal["json", "text"] = Field(
        "text", description=(
            "`json` (JSON lines: level and message from their fields) or `text` (the level is a word of the "
            "line)."))
    max_patterns: Annotated[int, Field(ge=0, le=1000)] = Field(
        50, description=(
            'Drain patterns published for this source (the rest count under `pattern="other"`); 0 counts levels '
            "only."))
    max_line_bytes: Annotated[int, Field(ge=1024, le=1024 * 1024)] = Field(
        64 * 1024, description=(
            "Longer lines are cut to this many bytes (and counted) before they are parsed and mined."))


class BusinessQueryConfig(Strict):
    """A business metric: a state read with SQL and published as a gauge, or an event counter the app increments
    (no query: listed here so that the business board shows it with its help)."""

    name: Annotated[str, Field(pattern=METRIC_NAME)] = Field(
        description="The metric name: the query's value is published under it, or the app's counter has it.")
    help: Name = Field(description="The metric's HELP text, and its panel's description on the business board.")
    type: Literal["counter", "gauge"] = Field(
        "gauge", description=(
            "`gauge`: a state read with `query`. `counter`: an event the app increments itself (opsmon.instrument), "
            "listed without a query so the business board shows it (its name as the app gives it: `orders_placed` "
            "is read as `orders_placed_total`); a counter with a query is refused with the reason."))
    query: Name | None = Field(
        None, description="SQL run on the app's database, opened read-only; each row is one sample. Gauges only.")
    labels: list[Annotated[str, Field(pattern=LABEL_NAME)]] = Field(
        [], description="Columns of the result published as labels.")
    value_column: Name = Field("value", description="The column holding the sample's value.")
    refresh_seconds: PositiveFloat = Field(
        60.0, description="How long a result is cached: the query runs at most this often, on its own thread.")
    timeout_seconds: PositiveFloat = Field(
        5.0, description=(
            "The query is aborted after this long (0.5 s on a rollback-journal database, where a read holds back "
            "the app's writes)."))

    @model_validator(mode="after")
    def _gauges_from_sql_only(self) -> BusinessQueryConfig:
        if self.type == "counter" and self.query is not None:
            raise ValueError(
                f"{self.name}: type counter is refused: a count of rows is a gauge. A restore or a delete "
                "lowers it, Prometheus reads the drop as a counter reset, and increase() counts the whole "
                "table again. Count events where they happen, in the app (opsmon.instrument), and publish "
                "states such as a backlog here as gauges")
        if self.type == "gauge" and self.query is None:
            raise ValueError(f"{self.name}: a gauge needs a query (a counter the app increments is type counter)")
        return self

    @property
    def series(self) -> str:
        """The name Prometheus reads: prometheus_client publishes Counter("orders_placed") as orders_placed_total."""
        return self.name if self.type == "gauge" or self.name.endswith("_total") else f"{self.name}_total"

    @model_validator(mode="after")
    def _names_of_its_own(self) -> BusinessQueryConfig:
        # A name in the kit's namespaces publishes a second family of a kit metric, and Prometheus refuses the
        # exporter's whole scrape; a target label is renamed exported_<label> by Prometheus, out of the board's sight.
        if self.name.startswith(KIT_NAMESPACES):
            raise ValueError(f"{self.name}: the prefixes {', '.join(KIT_NAMESPACES)} are the kit's own metrics: "
                             "give the business metric a prefix of its own (shop_orders_pending)")
        taken = [label for label in self.labels if label in TARGET_LABELS]
        if taken:
            raise ValueError(f"{self.name}: labels {', '.join(taken)}: Prometheus sets these on every series it "
                             "scrapes and would rename the query's; name the column otherwise")
        return self


class Thresholds(Strict):
    """Warning and critical levels of one health check."""

    warning: float = Field(description="The level at which the check turns `degraded`.")
    critical: float = Field(
        description="The level at which the check turns `down` (disk and memory) or `degraded` (CPU).")


class HealthConfig(Strict):
    disk_free_ratio: Thresholds = Field(
        {"warning": 0.10, "critical": 0.03}, description="Free space, 0 to 1, on the filesystem of the database.")
    memory_available_ratio: Thresholds = Field(
        {"warning": 0.10, "critical": 0.03}, description="Available memory, 0 to 1.")
    cpu_load_per_core: Thresholds = Field(
        {"warning": 2.0, "critical": 4.0}, description="The 1-minute load average divided by the logical CPUs.")
    backup_max_age_seconds: dict[Literal["daily", "weekly", "monthly"], PositiveFloat] = Field(
        {"daily": 26 * 3600, "weekly": 8 * 86400, "monthly": 32 * 86400}, description=(
            "The newest backup of a tier older than this makes the backups check degraded."))


class WebConfig(Strict):
    tls_cert_file: ReadableFile | None = Field(
        None, description="Serve HTTPS with this certificate (with `tls_key_file`; a change needs a restart).")
    tls_key_file: ReadableFile | None = Field(None, description="The certificate's private key (with `tls_cert_file`).")
    basic_auth_username: Name | None = Field(
        None, description="Ask for basic auth with this user (with `basic_auth_password_file`).")
    basic_auth_password_file: ReadableFile | None = Field(
        None, description="A file holding the basic auth password: never the password itself in this file.")

    @model_validator(mode="after")
    def _pairs(self) -> WebConfig:
        _both_or_neither(self, "tls_cert_file", "tls_key_file")
        _both_or_neither(self, "basic_auth_username", "basic_auth_password_file")
        return self


class ExporterConfig(Strict):
    listen_address: HostPort = Field(
        "127.0.0.1:9877", description=(
            "Where the exporter serves /metrics and /health (`:9877` for every interface); `--web.listen-address` "
            "overrides it."))
    scrape_timeout_seconds: PositiveFloat = Field(
        10.0, description="The scrape's deadline when Prometheus sends no X-Prometheus-Scrape-Timeout-Seconds header.")
    state_directory: Location = Field(
        Path(".opsmon-state"), description=(
            "Where the exporter keeps what survives a restart: the log offsets and mined patterns."))
    app_metrics_directory: Location | None = Field(
        None, description=(
            "The app's multiprocess metric files (its `PROMETHEUS_MULTIPROC_DIR`), served as the `app_*` metrics."))
    processes: list[ProcessConfig] = Field(
        [], description="Processes to watch: up, CPU, memory, open files, start time.")
    probes: list[ProbeConfig] = Field(
        [], description="HTTP checks of the services the app depends on, all at once at every scrape.")
    logs: list[LogSourceConfig] = Field([], description="Log files to tail: lines by level and by Drain pattern.")
    health: HealthConfig = Field({}, description="The thresholds of /health's checks.")
    web: WebConfig = Field({}, description="Optional TLS and basic auth of the exporter's HTTP server, off by default.")


class TierSchedule(Strict):
    """Cron expressions, read in backups.timezone; the requirement's times by default."""

    daily: Cron = Field("0 2 * * *", description="When the daily backup runs.")
    weekly: Cron = Field("0 3 * * 0", description="When the weekly backup runs.")
    monthly: Cron = Field("0 4 1 * *", description="When the monthly backup runs.")


class Retention(Strict):
    """How many backups of each tier to keep; safety backups, taken before a restore or fix, are kept by age:
    restores in a row never push out the state from before the first."""

    daily: PositiveInt = Field(7, description="Daily backups kept.")
    weekly: PositiveInt = Field(4, description="Weekly backups kept.")
    monthly: PositiveInt = Field(12, description="Monthly backups kept.")
    safety_days: PositiveInt = Field(
        7, description="Days a safety backup (taken before a restore or a fix) is kept, however many restores follow.")


class OffsiteConfig(Strict):
    """An S3-compatible bucket. Credentials come from the files named here, else boto3's usual
    environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY), never from this file."""

    bucket: Name = Field(description="The bucket every verified backup is copied to.")
    prefix: str = Field("opsmon", description="The folder of the bucket the copies go under.")
    endpoint_url: HttpUrl | None = Field(None, description="The S3-compatible service's URL; none: AWS S3.")
    region: Name = Field("us-east-1", description="The bucket's region.")
    access_key_id_file: ReadableFile | None = Field(
        None, description="A file holding the access key id; none: boto3's environment (AWS_ACCESS_KEY_ID).")
    secret_access_key_file: ReadableFile | None = Field(
        None, description="A file holding the secret access key; none: boto3's environment (AWS_SECRET_ACCESS_KEY).")


class LitestreamConfig(Strict):
    enabled: bool = Field(
        False, description=(
            "Replicate the WAL continuously with Litestream, supervised by `opsmon-backup serve`: the "
            "point-in-time restores."))
    binary: Name = Field("litestream", description="The Litestream program, by name on PATH or by path.")
    replica_directory: Location | None = Field(None, description="A folder (another disk) the WAL is replicated to.")
    replicate_offsite: bool = Field(False, description="Replicate to the `offsite` bucket too.")
    sync_interval_seconds: PositiveFloat = Field(1.0, description="How often Litestream copies new WAL frames.")
    metrics_address: HostPort = Field("127.0.0.1:9879", description="Where Litestream serves its own metrics.")

    @model_validator(mode="after")
    def _somewhere(self) -> LitestreamConfig:
        if self.enabled and self.replica_directory is None and not self.replicate_offsite:
            raise ValueError("enabled Litestream needs replica_directory or replicate_offsite")
        return self


class ConsoleConfig(Strict):
    """The backup console on the backup service's port: off unless enabled."""

    enabled: bool = Field(False, description="Serve the backup console on the backup service's port.")
    users_file: Location = Field(
        Path(".opsmon-console-users.json"), description=(
            "Users and password hashes (`opsmon-backup user add`); created with one generated admin when missing."))
    session_seconds: PositiveInt = Field(3600, description="How long a login lasts.")
    tls_cert_file: ReadableFile | None = Field(
        None, description="Serve the console over HTTPS with this certificate (with `tls_key_file`).")
    tls_key_file: ReadableFile | None = Field(None, description="The certificate's private key (with `tls_cert_file`).")

    @model_validator(mode="after")
    def _tls_pair(self) -> ConsoleConfig:
        _both_or_neither(self, "tls_cert_file", "tls_key_file")
        return self


class DrillConfig(Strict):
    canary: bool = Field(
        False, description=(
            "Write a marker row into opsmon's own table of the live database before each drill, and measure each "
            "location's RPO by the newest marker its restored copy holds (end to end, not by file times)."))
    replica_wait_seconds: PositiveFloat = Field(
        30.0, description="How long the drill waits for the marker to reach the Litestream replica.")


class Objectives(Strict):
    """What a disaster may cost: data lost (RPO, from the best location) and time to restore (RTO, each)."""

    rpo_seconds: PositiveFloat = Field(
        26 * 3600, description=(
            "The data a disaster may lose: the best location's drill must give back data at most this old."))
    rto_seconds: PositiveFloat = Field(
        3600, description="The time a restore may take: each location's drill must restore and check within it.")


class BackupsConfig(Strict):
    directory: Location = Field(
        description="The backup folder: backups, their manifests (the catalog) and status.json.")
    timezone: Annotated[str, AfterValidator(_timezone)] = Field(
        "UTC", description="The time zone the schedules are read in.")
    schedule: TierSchedule = Field(
        {}, description="When each tier's backup runs (cron expressions); the requirement's times by default.")
    retention: Retention = Field({}, description="How many backups of each tier to keep.")
    verify_schedule: Cron = Field("30 5 * * *", description="When every retained backup is verified again.")
    drill_schedule: Cron = Field("0 6 * * *", description="When every location's copy is restored and checked.")
    check_schedule: Cron = Field(
        "15 * * * *", description="When the database's integrity, foreign keys and rules are checked.")
    compression_level: Annotated[int, Field(ge=0, le=3)] = Field(
        1, description="python-isal's levels: 0 (fastest) to 3 (smallest); the output is standard gzip either way.")
    secondary_directory: Location | None = Field(
        None, description="A folder on another disk every verified backup is copied to (3-2-1).")
    offsite: OffsiteConfig | None = Field(
        None, description=(
            "An S3-compatible bucket every verified backup is copied to (3-2-1). Credentials come from the files "
            "named here, else boto3's usual environment, never from this file."))
    single_copy_intended: bool = Field(
        False, description=(
            "true: the backup folder is the only copy, on purpose (one disk, no bucket). `status` then reads "
            '"single copy (intended)" and is all well for that alone; `opsmon_backup_rule_321_satisfied` stays 0, '
            "and the 3-2-1 alert is silenced by `opsmon_backup_single_copy_intended`."))
    litestream: LitestreamConfig = Field({}, description="Continuous WAL replication with Litestream.")
    drill: DrillConfig = Field({}, description="The restore drills.")
    objectives: Objectives = Field(
        {}, description=(
            "What a disaster may cost: data lost (RPO, from the best location) and time to restore (RTO, each)."))
    listen_address: HostPort = Field(
        "127.0.0.1:9878", description="Where `opsmon-backup serve` serves its /metrics and the console.")
    console: ConsoleConfig = Field({}, description="The backup console: off unless enabled.")

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

    name: Annotated[str, Field(pattern=LABEL_NAME)] = Field(description="The `rule` label of the rule's violations.")
    description: Name = Field(description="What the rule asks of the data, in words.")
    query: Name = Field(description="SQL returning the rows that break the rule.")
    fix: str | None = Field(
        None, description="SQL that repairs them, run by `opsmon-backup check --fix` when `fixable`.")
    fixable: bool = Field(False, description="`check --fix` applies `fix`, in one transaction, after a safety backup.")

    @model_validator(mode="after")
    def _fix_given(self) -> IntegrityRule:
        if self.fixable and not self.fix:
            raise ValueError("a fixable rule needs a fix statement")
        return self


class IntegrityConfig(Strict):
    quick: bool = Field(
        False, description=(
            "Run quick_check instead of integrity_check: it skips the index cross-checks, much faster on a big "
            "database, a little less thorough."))
    rules: list[IntegrityRule] = Field([], description="Business rules, checked with the integrity checks.")


class StackHost(Strict):
    """One machine of the fleet, as Prometheus reaches it; a service it does not run is null."""

    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")] = Field(
        description="The `host` label of everything scraped from this machine.")
    exporter: HostPort | None = Field(
        "127.0.0.1:9877", description="The exporter, as Prometheus reaches it; null: not run here.")
    backup: HostPort | None = Field(
        "127.0.0.1:9878", description="The backup service, as Prometheus reaches it; null: not run here.")
    litestream: HostPort | None = Field(
        "127.0.0.1:9879", description="Litestream's metrics, as Prometheus reaches them; null: not run here.")
    labels: dict[Annotated[str, Field(pattern=LABEL_NAME)], str] = Field(
        {}, description="Labels on every series scraped from the host (env, role...), for one's own queries.")

    @model_validator(mode="after")
    def _labels_of_its_own(self) -> StackHost:
        # The target file carries them beside job and host: job would have the target dropped by its job's keep,
        # and Prometheus reads __ names as settings (__address__ is where it scrapes).
        taken = [label for label in self.labels if label in TARGET_LABELS or label.startswith("__")]
        if taken:
            raise ValueError(f"labels {', '.join(taken)}: set by Prometheus and the kit for every target; name the "
                             "label otherwise")
        return self


class StackPrometheus(Strict):
    address: HostPort = Field(
        "127.0.0.1:9090", description=(
            "Where Grafana reaches Prometheus; Prometheus scrapes itself on localhost at this port."))
    external_url: Url = Field(
        "http://localhost:9090", description="Prometheus's `--web.external-url`: the \"Graph\" links in e-mails.")
    retention: Duration = Field(
        "35d", description="How long Prometheus keeps samples; the error budget is counted over 30 days.")
    scrape_interval: Duration = Field("15s", description="How often every target is scraped.")
    scrape_timeout: Duration = Field("10s", description="A scrape's deadline; no longer than `scrape_interval`.")
    app_address: HostPort | None = Field(
        None, description="The app's own /metrics, when it serves them (host:port); scraped as job `app`.")
    rule_files: list[Resolved] = Field(
        [], description=(
            "Rules files of one's own (the demo's alerts), rendered beside the kit's; checked when rendering, as "
            "the services that read this config elsewhere (a container) need not have them."))


class StackInhibitRule(Strict):
    """An inhibition of one's own, in Alertmanager's terms, rendered after the kit's."""

    source_matchers: Annotated[list[Matcher], Field(min_length=1, description=(
        'The alert that explains, as Alertmanager matchers with quoted values: alertname="OpsmonProcessDown".'))]
    target_matchers: Annotated[list[Matcher], Field(min_length=1, description="The alerts it holds back.")]
    equal: list[Annotated[str, Field(pattern=LABEL_NAME)]] = Field([], description=(
        "Labels both must share (host: on the same machine only)."))


class StackAlertmanager(Strict):
    address: HostPort = Field("127.0.0.1:9093", description="Where Prometheus and Grafana reach Alertmanager.")
    external_url: Url = Field(
        "http://localhost:9093", description=(
            "Alertmanager's `--web.external-url`: the \"Silence\" links and the footer of e-mails."))
    data_mounts: list[MountPoint] | None = Field(None, description=(
        "The mount points holding the database and the backups, as the exporter labels them: a full one holds "
        "back the backup warnings. Default: those of database.path and backups.directory where `opsmon render` "
        "runs; name them when the services see other paths (a container's volumes)."))
    inhibit_rules: list[StackInhibitRule] = Field([], description=(
        "Inhibitions of one's own, rendered after the kit's and those made from the config."))


class StackGrafana(Strict):
    url: Url = Field("http://localhost:3000", description="Grafana's address in the dashboard links of every alert.")
    dashboards_directory: Resolved | None = Field(
        None, description="The dashboards Grafana provisions; none: the kit's own boards.")
    dashboard_files: list[Resolved] = Field(
        [], description=(
            "Boards of one's own (JSON, the demo's board), provisioned beside the business board rendered from the "
            "config's business metrics; both are written under the render's grafana/app-dashboards/."))
    app_dashboards_directory: Resolved | None = Field(
        None, description=(
            "Where Grafana reads the rendered business board and one's own boards, when it sees them elsewhere "
            "(a container's mount); none: grafana/app-dashboards/ under the render's --out."))


class StackLongTerm(Strict):
    """VictoriaMetrics, which keeps every sample 13 months; Prometheus remote-writes to it when enabled."""

    enabled: bool = Field(
        False, description="Prometheus remote-writes every sample to VictoriaMetrics, which keeps them 13 months.")
    address: HostPort = Field("127.0.0.1:8428", description="Where VictoriaMetrics listens.")


class StackSmtp(Strict):
    smarthost: HostPort = Field("127.0.0.1:25", description="The mail server Alertmanager sends through.")
    from_address: Email = Field("opsmon@localhost", description="The sender of alert e-mails.")
    require_tls: bool = Field(False, description="Refuse to send without STARTTLS.")
    username: Name | None = Field(None, description="The mail server's user, when it asks for one.")
    password_file: Resolved | None = Field(
        None, description=(
            "A file holding the mail server's password, read by Alertmanager: the password never is in this file."))


class SeverityEmails(Strict):
    critical: Email = Field("root@localhost", description="Where critical alerts are mailed.")
    warning: Email = Field("root@localhost", description="Where warnings are mailed.")


class StackTeam(Strict):
    """Alerts labelled team=<name> go to the team's addresses instead of the default ones."""

    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]+$")] = Field(
        description="Alerts labelled `team=<name>` go to this team.")
    email: SeverityEmails = Field(description="The team's addresses, by severity.")


class StackReceivers(Strict):
    smtp: StackSmtp = Field({}, description="How Alertmanager sends mail.")
    email: SeverityEmails = Field({}, description="The addresses of everything no team claims.")
    teams: list[StackTeam] = Field([], description="Teams with addresses of their own.")
    pager_url: Url | None = Field(None, description="A paging service's webhook: critical alerts go there too.")
    heartbeat_url: Url | None = Field(
        None, description="A dead man's switch, pinged every minute while alerting works.")


class StackSlo(Strict):
    objective: Annotated[float, Field(ge=0.95, lt=1)] = Field(
        0.99, description=(
            "The share of requests that must not fail (server errors) over 30 days; the burn-rate alerts follow "
            "it. Below 95 % the fast burn rate (14.4 times the budget) nears 100 % of requests and could hardly "
            "page."))


class StackSystemd(Strict):
    user: Name | None = Field(
        None, description="The user the units run as: one that can read the database and write the backups.")
    bin_directory: Resolved | None = Field(
        None, description=(
            "Where `opsmon-exporter` and `opsmon-backup` are installed; none: beside the Python that renders."))


class StackConfig(Strict):
    """What `opsmon render` writes: Prometheus, Alertmanager, Grafana provisioning and systemd units."""

    hosts: list[StackHost] = Field(
        [{"name": "localhost"}], description="The machines of the fleet, one target file each.")
    prometheus: StackPrometheus = Field({}, description="Prometheus's addresses, retention and intervals.")
    alertmanager: StackAlertmanager = Field({}, description="Alertmanager's addresses.")
    grafana: StackGrafana = Field({}, description="Grafana's address and dashboards.")
    long_term: StackLongTerm = Field({}, description="The long-term store (VictoriaMetrics).")
    receivers: StackReceivers = Field({}, description="Where alerts go: e-mail, teams, the pager and the heartbeat.")
    slo: StackSlo = Field({}, description="The error SLO the burn-rate alerts follow.")
    systemd: StackSystemd = Field({}, description="The systemd units of the exporter and the backup service.")

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
    database: DatabaseConfig = Field(description="The app's SQLite database.")
    exporter: ExporterConfig = Field(
        {}, description="The exporter (`opsmon-exporter`): what it watches and where it listens.")
    backups: BackupsConfig | None = Field(
        None, description="Backups, copies, drills and the backup service (`opsmon-backup`); none: no backups.")
    business: list[BusinessQueryConfig] = Field(
        [], description=(
            "Business metrics: states read with SQL and published as gauges, each cached for its own "
            "`refresh_seconds`, and the counters the app increments, shown on the business board."))
    integrity: IntegrityConfig = Field({}, description="The integrity checks of `opsmon-backup check`.")
    stack: StackConfig = Field(
        {}, description=(
            "What `opsmon render` writes: Prometheus, Alertmanager, Grafana provisioning and systemd units."))

    @property
    def business_queries(self) -> list[BusinessQueryConfig]:
        """The business gauges the exporter reads with SQL; the counters are the app's."""
        return [metric for metric in self.business if metric.query is not None]

    @model_validator(mode="after")
    def _unique_names(self) -> OpsmonConfig:
        for what, names in (
            ("exporter.probes service", [p.service for p in self.exporter.probes]),
            ("exporter.processes name", [p.name for p in self.exporter.processes]),
            ("exporter.logs source", [s.source for s in self.exporter.logs]),
            # The exporter serves the app's counters beside the gauges: one series name twice fails its scrape.
            ("business name (as Prometheus reads it: a counter's with _total)", [q.series for q in self.business]),
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

    @model_validator(mode="after")
    def _one_port_per_service(self) -> OpsmonConfig:
        backups = self.backups
        addresses = [("exporter.listen_address", self.exporter.listen_address),
                     *([("backups.listen_address", backups.listen_address)] if backups else []),
                     *([("backups.litestream.metrics_address", backups.litestream.metrics_address)]
                       if backups and backups.litestream.enabled else [])]
        for number, (key, address) in enumerate(addresses):
            for earlier, other in addresses[:number]:
                if _same_socket(address, other):
                    raise ValueError(f"{key} {address}: {earlier} {other} listens there: give each service its port")
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
