"""Property tests: the config loader, the catalog reader and the parsers of what a person asks for take ANY
input and give a value or the one error that names the problem, never another exception.

The examples are derived from each test's name, so `make test` sees the same ones every time; set
OPSMON_PROPERTY_EXPLORE=1 to draw new ones, ten times as many. Each fault they found is kept as a plain
example beside them.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import sqlite3
import string
import tempfile
import time
from contextlib import closing, contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import generate_latest

from backup_jobs.inputs import UsageError, parse_backup_id, parse_moment, parse_tables, restore_request
from exporter.collectors.backup import BackupCollector
from exporter.collectors.database import DatabaseCollector
from exporter.health import backup_check
from opsmon import catalog
from opsmon.catalog import ID_PATTERN, CatalogError, read_catalog, read_manifest, read_status, to_iso, update_status
from opsmon.config import InvalidConfig, OpsmonConfig, load_config, parse_config
from opsmon.http import Families

EXPLORE = os.environ.get("OPSMON_PROPERTY_EXPLORE") == "1"


def examples(count: int):
    return settings(max_examples=count * (10 if EXPLORE else 1), deadline=None, database=None,
                    derandomize=not EXPLORE, suppress_health_check=[HealthCheck.too_slow])


NOW = datetime(2026, 11, 26, 10, 0, tzinfo=timezone.utc).timestamp()


@contextmanager
def fresh_folder(root: Path):
    folder = Path(tempfile.mkdtemp(dir=root))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# ---- values YAML and JSON can hold ----------------------------------------------------------

scalars = (st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30)
           | st.dates() | st.binary(max_size=8))
yaml_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=12) | st.integers() | st.none(), inner, max_size=4),
                           max_leaves=16)
json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner,
                                                                                       max_size=4),
                           max_leaves=16)

# Moments as they are written: with and without a zone, ordinary and far out (year 1 at +01:00 is
# before year 1 in UTC).
moments = (st.datetimes(timezones=st.none() | st.timezones() | st.builds(
                            lambda m: timezone(timedelta(minutes=m)), st.integers(-1439, 1439)))
           .map(lambda d: d.isoformat()) | st.sampled_from(["2026-11-26T10:00:00Z", "2026-11-26", "2026-11-26T10:00z",
                                                            "yesterday", "", " ", "2026-13-01T00:00:00Z", "2099"]))

# ---- the config ----------------------------------------------------------------------------

paths = st.sampled_from(["app.db", "backups", "secret", "missing/app.db", "app.db/inside", "/dev/null", "/tmp",
                         "", ".", "..", "~/x"]) | st.text(string.printable, max_size=20)
names = st.sampled_from(["demo", "", "a b", "ünïcödé", "x" * 200]) | st.text(max_size=12)
numbers = st.integers(-3, 100_000) | st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from(["5", "1e3"])
crons = st.sampled_from(["0 2 * * *", "*/5 * * * *", "61 * * * *", "* * * * * * *", "@daily", "", "bad"])
addresses = st.sampled_from(["127.0.0.1:9877", ":9877", "[::1]:9877", "localhost", "h:0", "h:70000", "a b:1",
                             "h:\u0663", "h:"]) | st.text(max_size=12)
regexes = st.sampled_from(["a+", "(", "[", "a{2,1}", r"\d+", "(?P<x>a)(?P<x>b)", "*"]) | st.text(max_size=10)
urls = st.sampled_from(["http://127.0.0.1:8080/health", "https://example.invalid/x", "ftp://x", "http://",
                        "not a url", "http://[::1"])
zones = st.sampled_from(["UTC", "Europe/Berlin", "Mars/Base", "America", "", "../../etc/passwd", "UTC\0"])


def maybe(strategy):
    """Mostly what a person meant to write, now and then anything YAML can hold instead."""
    return st.one_of(strategy, strategy, strategy, yaml_values)


def section(fields: dict, required: tuple = ()):
    """A mapping of these keys (each optional but `required`), now and then with a key nobody knows."""
    strategy = st.fixed_dictionaries({k: maybe(v) for k, v in fields.items() if k in required},
                                     optional={k: maybe(v) for k, v in fields.items() if k not in required})
    unknown = st.one_of(st.just({}), st.just({}), st.just({}), st.dictionaries(st.text(max_size=8), yaml_values,
                                                                               min_size=1, max_size=1))
    return st.tuples(strategy, unknown).map(lambda pair: {**pair[1], **pair[0]})


thresholds = section({"warning": numbers, "critical": numbers})
config_documents = section({
    "database": section({"path": paths, "name": names}, required=("path",)),
    "exporter": section({
        "listen_address": addresses, "scrape_timeout_seconds": numbers, "state_directory": paths,
        "app_metrics_directory": paths,
        "processes": st.lists(maybe(section({"name": names, "pidfile": paths, "match": regexes})), max_size=3),
        "probes": st.lists(maybe(section({"service": names, "url": urls, "method": st.sampled_from(["GET", "get"]),
                                          "expected_status": st.lists(numbers, max_size=2),
                                          "timeout_seconds": numbers, "body_regex": regexes})), max_size=3),
        "logs": st.lists(maybe(section({"source": names, "path": paths, "format": st.sampled_from(["json", "xml"]),
                                        "max_patterns": numbers, "max_line_bytes": numbers})), max_size=3),
        "health": section({"disk_free_ratio": thresholds, "memory_available_ratio": thresholds,
                           "cpu_load_per_core": thresholds,
                           "backup_max_age_seconds": st.dictionaries(st.sampled_from(["daily", "hourly"]), numbers)}),
        "web": section({"tls_cert_file": paths, "tls_key_file": paths, "basic_auth_username": names,
                        "basic_auth_password_file": paths}),
    }),
    "backups": section({
        "directory": paths, "timezone": zones, "schedule": section({"daily": crons, "weekly": crons}),
        "retention": section({"daily": numbers, "safety_days": numbers}), "verify_schedule": crons,
        "drill_schedule": crons, "check_schedule": crons, "compression_level": numbers, "secondary_directory": paths,
        "offsite": section({"bucket": names, "prefix": names, "endpoint_url": urls, "region": names,
                            "access_key_id_file": paths, "secret_access_key_file": paths}),
        "litestream": section({"enabled": st.booleans(), "binary": names, "replica_directory": paths,
                               "replicate_offsite": st.booleans(), "sync_interval_seconds": numbers,
                               "metrics_address": addresses}),
        "listen_address": addresses,
        "console": section({"enabled": st.booleans(), "users_file": paths, "session_seconds": numbers,
                            "tls_cert_file": paths, "tls_key_file": paths}),
    }, required=("directory",)),
    "business": st.lists(maybe(section({
        "name": st.sampled_from(["business_videos_queued", "9bad", "a:b"]), "help": names,
        "type": st.sampled_from(["gauge", "counter", "histogram"]), "query": names,
        "labels": st.lists(names, max_size=2), "value_column": names, "refresh_seconds": numbers,
        "timeout_seconds": numbers})), max_size=2),
    "integrity": section({"quick": st.booleans(), "rules": st.lists(maybe(section({
        "name": st.sampled_from(["stuck", "stuck", "bad name"]), "description": names, "query": names,
        "fix": names, "fixable": st.booleans()})), max_size=3)}),
}, required=("database",))
any_document = config_documents | yaml_values


def assert_named(problems: list[str], source: str, document: object) -> None:
    """Each problem starts with the file, and its key (when it names one) is a key of the document."""
    assert problems
    for problem in problems:
        assert problem.startswith(f"{source}: ") and problem[len(source) + 2:].strip(), problem
        if isinstance(document, dict) and problem.count(": ") >= 2:
            key = problem[len(source) + 2:].split(": ", 1)[0]
            named = [str(k) for k in document] + ["database"]  # a key that is not a string is written [0]
            assert " " in key or any(key in (k, f"[{k}]") or key.startswith((f"{k}.", f"{k}[", f"[{k}]"))
                                     for k in named), (problem, document)


@examples(300)
@given(any_document)
def test_any_parsed_yaml_is_a_config_or_invalid_config_naming_file_and_key(workdir, document):
    try:
        config = parse_config(document, "opsmon.yml", workdir)
    except InvalidConfig as err:
        assert_named(err.problems, "opsmon.yml", document)
    else:
        assert isinstance(config, OpsmonConfig)


yaml_texts = (config_documents.map(lambda d: yaml.safe_dump(d, allow_unicode=True))
              | yaml_values.map(lambda v: yaml.safe_dump(v, allow_unicode=True))
              | st.text(max_size=200)
              | st.sampled_from(["", "---\n...\n", "database: [", "database: {path: app.db}\nkey: *nowhere",
                                 "a: &x [*x]", "!!python/object/apply:os.system ['true']", "\t\tdatabase:",
                                 "database:\n  path: app.db\ndatabase:\n  path: other.db\n", "\ufeffdatabase: 1",
                                 "? [a, b]\n: c\n", "{[1]: 2}"]))


@examples(150)
@given(yaml_texts)
def test_any_utf8_file_loads_as_a_config_or_invalid_config_naming_the_file(workdir, text):
    path = workdir / "opsmon.yml"
    path.write_text(text, encoding="utf-8")
    try:
        load_config(path)
    except InvalidConfig as err:
        assert_named(err.problems, str(path), None)


# Faults the properties above found, kept as plain examples.

def test_a_path_too_long_for_the_filesystem_is_invalid_config(workdir):
    with pytest.raises(InvalidConfig, match="database.path"):
        parse_config({"database": {"path": "a" * 300}}, "opsmon.yml", workdir)


def test_a_regex_with_a_huge_repetition_is_invalid_config(workdir):
    document = {"database": {"path": "app.db"}, "exporter": {"processes": [{"name": "p", "match": "a{99999999999}"}]}}
    with pytest.raises(InvalidConfig, match=r"exporter.processes\[0\].match"):
        parse_config(document, "opsmon.yml", workdir)


def test_a_config_file_that_is_not_utf8_is_invalid_config(workdir):
    path = workdir / "latin1.yml"
    path.write_bytes("database: {path: caf\xe9.db}\n".encode("latin-1"))
    with pytest.raises(InvalidConfig, match="latin1.yml"):
        load_config(path)


def test_a_config_nested_too_deep_is_invalid_config(workdir):
    path = workdir / "deep.yml"
    path.write_text("[" * 5000)
    with pytest.raises(InvalidConfig, match="deep.yml"):
        load_config(path)


# ---- the catalog ---------------------------------------------------------------------------

BACKUP_ID = "20261126T020000Z-daily"
MANIFEST = {
    "version": 1, "id": BACKUP_ID, "tier": "daily",
    "database": {"path": "/srv/app.db", "sha256": "ab" * 32, "size_bytes": 4096, "page_size": 4096, "page_count": 1,
                 "tables": {"videos": 3}, "foreign_key_violations": 0, "integrity_checked": True},
    "backup": {"file": f"{BACKUP_ID}.db.gz", "sha256": "cd" * 32, "size_bytes": 100, "compression": "gzip"},
    "sqlite_version": "3.45.0", "started_at": "2026-11-26T02:00:00Z", "finished_at": "2026-11-26T02:00:01Z",
    "verification": {"ok": True, "at": "2026-11-26T02:00:02Z", "error": None},
}
STATUS = {
    "version": 1, "tiers": {"daily": {"last_failure_at": 1.0, "last_error": "disk full"}},
    "verify": {"last_run_at": 2.0, "last_success_at": 2.0},
    "copies": {"offsite": {"last_success_at": 3.0, "last_error": None}},
    "restore": {"last_success_at": 4.0, "source": "backup x", "tables": ["videos"], "safety_backup": None},
    "drill": {"last_run_at": 5.0, "last_success_at": 5.0, "last_failure_at": None, "last_error": None,
              "backup": BACKUP_ID},
    "integrity": {"checked_at": 6.0, "ok": True, "integrity_problems": [], "foreign_key_violations": 0,
                  "rule_violations": {"stuck": 0}},
    "pitr": {"earliest_at": 1.0, "last_replicated_at": 7.0},
}
DELETE = object()


def _leaves(document, prefix=()):
    """Every path into a document, sections and values alike."""
    if isinstance(document, dict):
        for key, value in document.items():
            yield (*prefix, key)
            yield from _leaves(value, (*prefix, key))


def _changed(document: dict, changes) -> dict:
    document = copy.deepcopy(document)
    for path, value in changes:
        parent = document
        for key in path[:-1]:
            parent = parent.get(key) if isinstance(parent, dict) else None
        if isinstance(parent, dict):
            if value is DELETE:
                parent.pop(path[-1], None)
            else:
                parent[path[-1]] = value
    return document


def near(document: dict):
    """The document with a few values replaced by anything JSON holds, or taken away."""
    values = st.just(DELETE) | json_values | moments | st.integers(-1, 3)
    return st.lists(st.tuples(st.sampled_from(list(_leaves(document))), values), max_size=4).map(
        lambda changes: _changed(document, changes))


def as_bytes(documents):
    return documents.map(lambda d: json.dumps(d).encode())


manifest_bytes = (as_bytes(near(MANIFEST)) | as_bytes(json_values) | st.binary(max_size=300)
                  | as_bytes(near(MANIFEST)).flatmap(lambda b: st.integers(0, len(b)).map(lambda n: b[:n])))
status_bytes = (as_bytes(near(STATUS)) | as_bytes(json_values) | st.binary(max_size=300)
                | as_bytes(near(STATUS)).flatmap(lambda b: st.integers(0, len(b)).map(lambda n: b[:n])))


def place(folder: Path, manifest: bytes | None = None, status: bytes | None = None) -> Path:
    (folder / "daily").mkdir(exist_ok=True)
    path = folder / "daily" / f"{BACKUP_ID}.json"
    if manifest is not None:
        path.write_bytes(manifest)
        (folder / "daily" / f"{BACKUP_ID}.db.gz").write_bytes(b"")
    if status is not None:
        (folder / catalog.STATUS_FILE).write_bytes(status)
    return path


@examples(300)
@given(manifest_bytes)
def test_any_bytes_in_a_manifest_read_as_a_backup_or_a_catalog_error_naming_it(workdir, data):
    with fresh_folder(workdir) as folder:
        path = place(folder, manifest=data)
        try:
            record = read_manifest(path)
        except CatalogError as err:
            assert str(err).startswith(str(path)), err
            current = read_catalog(folder)
            assert current.backups == [] and current.unreadable == [path] and current.problems == [str(err)]
        else:
            assert (record.id, record.tier) == (BACKUP_ID, "daily")
            json.dumps(record.as_json())  # what list --json and the console show of it
            assert [b.id for b in read_catalog(folder).backups] == [BACKUP_ID]


@examples(300)
@given(status_bytes)
def test_any_bytes_in_status_json_are_read_with_problems_named_and_healed_by_the_next_write(workdir, data):
    with fresh_folder(workdir) as folder:
        place(folder, status=data)
        status = read_status(folder)
        for problem in status.problems():
            assert problem.startswith(str(folder / catalog.STATUS_FILE)), problem
        update_status(folder, lambda s: None)  # any job's next write
        healed = read_status(folder)
        assert healed.problems() == [] or healed.newer


def exposition_or_failure(collector) -> None:
    """What the scrape does with a collector: its families must encode, or it raises and the scrape's
    guard publishes its success as 0. A family that breaks the encoding would fail every metric."""
    try:
        families = list(collector.collect())
    except Exception:  # noqa: BLE001 - caught by the scrape's guard, reported as this collector's failure
        return
    generate_latest(Families(families))


@examples(150)
@given(manifest_bytes, status_bytes)
def test_the_exporter_reads_any_catalog_into_an_exposition_or_a_failed_collector(workdir, manifest, status):
    with fresh_folder(workdir) as folder:
        place(folder, manifest=manifest, status=status)
        database = folder / "app.db"
        with closing(sqlite3.connect(database)) as connection:
            connection.execute("CREATE TABLE t (x)")
        exposition_or_failure(BackupCollector(folder, "demo"))
        exposition_or_failure(DatabaseCollector(database, "demo", folder))
        report = backup_check(folder, {"daily": 86400.0, "weekly": 86400.0, "monthly": 86400.0}, NOW)  # /health
        assert report["status"] in ("ok", "degraded", "down")


def test_a_manifest_nested_too_deep_is_a_catalog_error(workdir):
    with fresh_folder(workdir) as folder:
        path = place(folder, manifest=b"[" * 100_000)
        assert read_catalog(folder).unreadable == [path]


def test_a_status_nested_too_deep_is_a_status_problem(workdir):
    with fresh_folder(workdir) as folder:
        place(folder, status=b"[" * 100_000)
        assert read_status(folder).problems()


def test_a_manifest_moment_outside_the_calendar_in_utc_is_a_catalog_error(workdir):
    with fresh_folder(workdir) as folder:
        path = place(folder, manifest=json.dumps({**MANIFEST, "started_at": "0001-01-01T00:00:00+01:00"}).encode())
        with pytest.raises(CatalogError, match="started_at"):
            read_manifest(path)


# ---- what a person asks for ----------------------------------------------------------------

any_input = json_values | moments | st.lists(st.text(max_size=10), max_size=4)


@examples(400)
@given(moments | any_input)
def test_a_moment_is_a_past_timestamp_or_a_usage_error(value):
    try:
        moment = parse_moment(value, clock=lambda: NOW)
    except UsageError as err:
        assert str(err).startswith("--at"), err
        return
    assert moment <= NOW
    to_iso(moment)  # restore messages show it back


# From 2 January of year 1: on the 1st a zone east of UTC is before the calendar (the case below).
@examples(200)
@given(st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(2026, 11, 25), timezones=st.timezones()))
def test_a_past_moment_with_its_zone_is_that_moment(moment):
    assert parse_moment(moment.isoformat(), clock=lambda: NOW) == moment.timestamp()
    with pytest.raises(UsageError, match="time zone"):
        parse_moment(moment.replace(tzinfo=None).isoformat(), clock=lambda: NOW)


def test_a_moment_before_the_calendar_in_utc_is_a_usage_error():
    with pytest.raises(UsageError, match="0001-01-01T00:00:00"):
        parse_moment("0001-01-01T00:00:00+01:00", clock=lambda: NOW)


table_lists = (st.lists(st.sampled_from(["videos", "approvals", " videos ", "", "a b", "x;DROP", "_t1", "1t"])
                        | st.text(max_size=8), max_size=4)
               | st.text(max_size=30))
known_tables = st.none() | st.lists(st.sampled_from(["videos", "approvals", "monetizations", "_t1"]), unique=True)


@examples(400)
@given(table_lists | json_values | st.lists(json_values, max_size=3), known_tables)
def test_a_table_list_is_unique_known_names_or_a_usage_error(value, known):
    try:
        tables = parse_tables(value, known=known)
    except UsageError as err:
        assert str(err).startswith("--tables"), err
        return
    if tables is None:
        return
    assert tables and len(tables) == len(set(tables))
    assert all(t and t == t.strip() for t in tables)
    assert known is None or set(tables) <= set(known)


backup_ids = st.from_regex(r"\A\d{8}T\d{6}Z-(daily|weekly|monthly|safety)(-\d+)?\Z") | st.sampled_from(
    [BACKUP_ID, f"{BACKUP_ID}-2", "../../etc/passwd", f"{BACKUP_ID}.json", f"{BACKUP_ID}\n", ""])


@examples(300)
@given(backup_ids | json_values)
def test_a_backup_id_is_one_by_its_shape_or_a_usage_error(value):
    try:
        backup_id = parse_backup_id(value)
    except UsageError:
        return
    assert ID_PATTERN.fullmatch(backup_id) and "/" not in backup_id and "\n" not in backup_id


def test_a_backup_id_has_ascii_digits_only():
    with pytest.raises(UsageError):
        parse_backup_id("\u0662\u0660\u0662\u0666\u0661\u0661\u0662\u0666T\u0660\u0662\u0660\u0660\u0660\u0660Z-daily")


@examples(400)
@given(st.dictionaries(st.sampled_from(["backup", "at", "tables", "dry_run", "other"]),
                       backup_ids | moments | table_lists | json_values, max_size=4),
       known_tables, st.booleans() | json_values)
def test_a_restore_request_is_one_source_or_a_usage_error(values, known, dry_run):
    # The console's clock is the real one: keep moments in the past of it as in the past of NOW.
    try:
        request = restore_request(values, known_tables=known, dry_run=dry_run)
    except UsageError:
        return
    assert (request.backup is None) != (request.at is None)
    assert request.at is None or request.at <= time.time()
    assert request.dry_run is (dry_run is True)
    request.describe()
