"""Business SQL: gauges only, cached per refresh interval, aborted when it runs too long, read-only; and the
business counters, the app's, untouched by a restore."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from contextlib import closing

import pytest
import requests
import yaml

from exporter.collectors.business import BusinessCollector, QueryTimeout, run_query
from exporter.scrape import Scraper
from opsmon.config import BusinessQueryConfig
from opsmon.journal import uses_rollback_journal
from tests.conftest import REPO, exporter_with, wait_for
from tests.fakes import FakeClock

RUNAWAY = ("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) "
           "SELECT count(*) AS value FROM n")
# Runs as long as it is let, reading the app's table all the while (holding its read lock).
RUNAWAY_READ = ("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) "
                "SELECT count(*) AS value FROM n, videos")
COUNT = "SELECT count(*) AS value FROM videos"


def make_database(path, journal_mode: str):
    with sqlite3.connect(path) as connection:
        connection.execute(f"PRAGMA journal_mode={journal_mode}")
        connection.execute("CREATE TABLE videos (id INTEGER PRIMARY KEY)")
        connection.execute("INSERT INTO videos DEFAULT VALUES")
    connection.close()
    return path


@pytest.fixture
def db(tmp_path):
    """A database in SQLite's default rollback-journal mode."""
    return make_database(tmp_path / "app.db", "DELETE")


@pytest.fixture
def wal_db(tmp_path):
    return make_database(tmp_path / "app-wal.db", "WAL")


def add_video(path) -> None:
    with sqlite3.connect(path) as connection:
        connection.execute("INSERT INTO videos DEFAULT VALUES")
    connection.close()


def value(collector, name):
    for family in collector.collect():
        for sample in family.samples:
            if sample.name == name:
                return sample.value
    return None


def test_runaway_query_is_aborted_in_time(db):
    started = time.monotonic()
    with pytest.raises(QueryTimeout):
        run_query(db, RUNAWAY, timeout=0.3)
    assert time.monotonic() - started < 2


def published(families) -> dict:
    return {(s.name, s.labels.get("query") or s.labels.get("collector")): s.value
            for family in families for s in family.samples}


def test_a_slow_query_never_holds_back_the_fast_one(wal_db, caplog):
    """The fast query is published fresh at every scrape while the slow one runs on, each scrape ends by
    its deadline, and closing the collector interrupts the slow query."""
    clock = FakeClock()
    queries = [BusinessQueryConfig(name="business_slow", help="h", query=RUNAWAY_READ, timeout_seconds=60),
               BusinessQueryConfig(name="business_videos", help="h", query=COUNT, refresh_seconds=15)]
    scraper = Scraper([BusinessCollector(queries, wal_db, clock=clock)])
    for videos in range(2, 5):
        add_video(wal_db)
        clock.advance(15)
        started = time.monotonic()
        got = published(scraper.scrape(timeout=0.5))
        assert time.monotonic() - started < 1.0
        assert got[("business_videos", None)] == videos
        assert got[("opsmon_business_query_success", "business_videos")] == 1
        assert got[("opsmon_business_query_last_refresh_timestamp_seconds", "business_slow")] == 0
        assert got[("opsmon_scrape_collector_success", "business")] == 1
    scraper.close()
    wait_for(lambda: not any(t.name.startswith("business") for t in threading.enumerate()), timeout=2,
             what="the slow query to be interrupted")
    assert "rollback-journal" not in caplog.text


def test_sigterm_interrupts_a_running_query_and_the_exporter_exits_at_once(wal_db, tmp_path, python_env):
    document = {"database": {"path": str(wal_db)},
                "business": [{"name": "business_slow", "help": "h", "query": RUNAWAY_READ, "timeout_seconds": 60},
                             {"name": "business_videos", "help": "h", "query": COUNT}]}
    with exporter_with(tmp_path, python_env, document, "business") as (url, exporter):
        answer = requests.get(f"{url}/metrics", headers={"X-Prometheus-Scrape-Timeout-Seconds": "2"}, timeout=10)
        assert "\nbusiness_videos 1.0\n" in answer.text
        exporter.send_signal(signal.SIGTERM)
        started = time.monotonic()
        assert exporter.wait(timeout=10) == 0
        assert time.monotonic() - started < 3


# The app: commits one row at a time, waiting for locks at most its busy timeout, for a few seconds.
WRITER = """
import sqlite3, sys, time
connection = sqlite3.connect(sys.argv[1], timeout=2, isolation_level=None)
end, commits = time.monotonic() + 4, 0
while time.monotonic() < end:
    connection.execute("INSERT INTO videos DEFAULT VALUES")
    commits += 1
print(commits)
"""


def test_queries_on_a_rollback_journal_database_never_lock_out_the_apps_writes(db, caplog):
    """There a read holds back every commit until it ends: a query that reads for 10 s would outlast the
    app's 2 s busy timeout and fail its write with "database is locked"."""
    clock = FakeClock()
    queries = [BusinessQueryConfig(name="business_slow", help="h", query=RUNAWAY_READ, timeout_seconds=10,
                                   refresh_seconds=15),
               BusinessQueryConfig(name="business_videos", help="h", query=COUNT, refresh_seconds=15)]
    scraper = Scraper([BusinessCollector(queries, db, clock=clock)])
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(db)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    collector_success = []
    while writer.poll() is None:
        clock.advance(15)  # every query is due again: each scrape reads as long as it is let
        collector_success.append(published(scraper.scrape(timeout=1))[("opsmon_scrape_collector_success",
                                                                          "business")])
    out, err = writer.communicate()
    scraper.close()
    assert writer.returncode == 0, err
    assert int(out) > 0
    assert len(collector_success) >= 3 and set(collector_success) == {1}
    warnings = [r.getMessage() for r in caplog.records if "rollback-journal" in r.getMessage()]
    assert len(warnings) == 1
    assert str(db) in warnings[0] and "PRAGMA journal_mode=WAL" in warnings[0]


def test_the_journal_mode_is_read_from_the_file_header(db, wal_db, tmp_path):
    assert uses_rollback_journal(db)
    assert not uses_rollback_journal(wal_db)
    (tmp_path / "empty.db").touch()
    assert uses_rollback_journal(tmp_path / "empty.db")
    (tmp_path / "notes.txt").write_text("not a database, but long enough to have a header\n")
    with pytest.raises(ValueError, match="notes.txt is not a SQLite database"):
        uses_rollback_journal(tmp_path / "notes.txt")
    os.mkfifo(tmp_path / "fifo.db")  # never opened by a writer: reading it would wait forever
    with pytest.raises(ValueError, match="fifo.db is not a regular file"):
        uses_rollback_journal(tmp_path / "fifo.db")


def test_runaway_query_leaves_the_others_alone(db):
    queries = [BusinessQueryConfig(name="business_runaway", help="h", query=RUNAWAY, timeout_seconds=0.2),
               BusinessQueryConfig(name="business_videos", help="h", query="SELECT count(*) AS value FROM videos")]
    collector = BusinessCollector(queries, db)
    assert value(collector, "business_videos") == 1
    assert value(collector, "business_runaway") is None


def test_cached_until_the_refresh_interval_passes(db):
    clock = FakeClock()
    collector = BusinessCollector([BusinessQueryConfig(
        name="business_videos", help="h", refresh_seconds=3600,
        query="SELECT count(*) AS value FROM videos")], db, clock=clock)
    assert value(collector, "business_videos") == 1
    with sqlite3.connect(db) as connection:
        connection.execute("INSERT INTO videos DEFAULT VALUES")
    clock.advance(3599)
    assert value(collector, "business_videos") == 1
    clock.advance(1)
    assert value(collector, "business_videos") == 2


def test_the_database_is_opened_read_only(db):
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        run_query(db, "DELETE FROM videos", timeout=1)
    with sqlite3.connect(db) as connection:
        assert connection.execute("SELECT count(*) FROM videos").fetchone()[0] == 1


def test_missing_value_column_is_a_failed_query_that_names_it(db, caplog):
    collector = BusinessCollector([BusinessQueryConfig(name="business_x", help="h",
                                                       query="SELECT count(*) AS n FROM videos")], db)
    assert value(collector, "opsmon_business_query_success") == 0
    assert "the query returns no column value (it returns n)" in caplog.text


@pytest.mark.parametrize("query, reason", [
    ("SELECT 'a' AS kind, 1 AS value UNION ALL SELECT 'a', 2", "labels {'kind': 'a'} repeat an earlier row's"),
    ("SELECT 'a' AS kind, NULL AS value", "value is None, not a number"),
    ("SELECT NULL AS kind, 3 AS value", "a label column is NULL"),
    ("SELECT 'a' AS kind, 'many' AS value", "value is 'many', not a number"),
    ("SELECT 'a' AS kind, x'00' AS value", "not a number"),
])
def test_a_sample_set_with_a_bad_row_is_refused_whole(db, caplog, query, reason):
    """Found by an adversarial sweep: duplicates emitted twice, NULL read as 0, NULL label as "None", success 1."""
    collector = BusinessCollector([BusinessQueryConfig(name="business_x", help="h", labels=["kind"],
                                                       query=query)], db)
    assert value(collector, "opsmon_business_query_success") == 0
    assert value(collector, "business_x") is None
    assert reason in caplog.text


def test_a_counter_query_is_refused_with_the_reason():
    from opsmon.config import InvalidConfig, parse_config

    document = {"database": {"path": "app.db"},
                "business": [{"name": "business_videos_processed_total", "help": "h", "type": "counter",
                              "query": "SELECT count(*) AS value FROM processed_videos"}]}
    with pytest.raises(InvalidConfig) as refused:
        parse_config(document, "opsmon.yml", REPO)
    assert refused.value.problems == [
        "opsmon.yml: business[0]: business_videos_processed_total: type counter is refused: a count of rows is "
        "a gauge. A restore or a delete lowers it, Prometheus reads the drop as a counter reset, and increase() "
        "counts the whole table again. Count events where they happen, in the app (opsmon.instrument), and "
        "publish states such as a backlog here as gauges"]


def test_a_counter_the_app_increments_is_listed_without_a_query_and_never_read_with_sql(tmp_path):
    """Listed for the business board (its help); a gauge without its query is named, not published empty."""
    from exporter.collectors import business
    from opsmon.checks import check_database
    from opsmon.config import InvalidConfig, parse_config

    db = tmp_path / "app.db"
    with closing(sqlite3.connect(db)) as connection:
        connection.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY)")
    counter = {"name": "shop_orders_placed_total", "help": "Orders placed.", "type": "counter"}
    config = parse_config({"database": {"path": str(db)}, "business": [counter]}, "opsmon.yml", tmp_path)
    assert [(m.name, m.type, m.query) for m in config.business] == [("shop_orders_placed_total", "counter", None)]
    assert config.business_queries == [] and business.build(config) is None
    assert [finding for finding in check_database(config) if not finding.warning] == []
    with pytest.raises(InvalidConfig) as refused:
        parse_config({"database": {"path": "app.db"}, "business": [{"name": "shop_orders_open", "help": "h"}]},
                     "opsmon.yml", REPO)
    assert refused.value.problems == ["opsmon.yml: business[0]: shop_orders_open: a gauge needs a query (a counter "
                                      "the app increments is type counter)"]


@pytest.mark.parametrize("config", ["opsmon.yml", "opsmon.compose.yml"])
def test_the_shipped_config_reads_only_states_with_sql(config):
    from opsmon.config import load_config

    queries = load_config(REPO / config).business_queries
    assert [(q.name, q.type) for q in queries] == [("business_videos_queued", "gauge")]


# Processes videos with the demo's own pipeline code in a process of its own (prometheus_client picks
# multiprocess mode at import), keeping a copy of the database before the last ten.
PIPELINE = """
import multiprocessing, os, random, sqlite3, sys
os.environ["PROMETHEUS_MULTIPROC_DIR"] = sys.argv[2]
from opsmon import instrument
instrument.prepare_multiprocess_dir()
from demo import app, business
from demo.db import connect, create_schema

class Answer:
    status_code = 200

class Session:
    def get(self, url, timeout):
        return Answer()

business.events()
create_schema(sys.argv[1])
connection = connect(sys.argv[1])
faults = app.Faults(multiprocessing.get_context("fork"))
faults.update({"latency_seconds": 0})
rng = random.Random(7)
for number in range(30):
    if number == 20:
        with sqlite3.connect(sys.argv[3]) as copy:
            connection.backup(copy)
    video = connection.execute("INSERT INTO videos (title, status, created_at, updated_at) "
                               "VALUES ('v', 'processing', 0, 0) RETURNING id").fetchone()[0]
    app.process_video(connection, Session(), video, faults, "http://unused/", rng)
"""


def business_totals(config, metrics_dir) -> dict[str, float]:
    """What the exporter publishes as business_*_total: the app's counters and the config's SQL."""
    from exporter.collectors.app import AppCollector

    collectors = [AppCollector(metrics_dir), BusinessCollector(config.business_queries, config.database.path)]
    return {sample.name: sample.value for collector in collectors for family in collector.collect()
            for sample in family.samples if sample.name.startswith("business_") and sample.name.endswith("_total")}


def test_a_restore_that_removes_rows_lowers_no_business_counter(tmp_path, python_env):
    """The day's figures come from increase() over these counters: a counter that drops by 10 reads as a
    reset, and the whole table is counted again. The shipped config with the demo's pipeline must not drop."""
    import subprocess
    import sys

    from opsmon.config import load_config

    database, snapshot, metrics_dir = tmp_path / "demo.db", tmp_path / "before.db", tmp_path / "metrics"
    subprocess.run([sys.executable, "-c", PIPELINE, str(database), str(metrics_dir), str(snapshot)], cwd=REPO,
                   env=python_env, check=True, timeout=60)
    document = yaml.safe_load((REPO / "opsmon.yml").read_text())
    document["database"]["path"] = str(database)
    config_path = tmp_path / "opsmon.yml"
    config_path.write_text(yaml.safe_dump(document))
    config = load_config(config_path)
    before = business_totals(config, metrics_dir)
    assert before["business_videos_processed_total"] == 30
    with sqlite3.connect(snapshot) as copy, sqlite3.connect(database) as live:
        copy.backup(live)  # the restore: the last ten videos' rows are gone
        assert live.execute("SELECT count(*) FROM processed_videos").fetchone()[0] == 20
    after = business_totals(config, metrics_dir)
    assert set(after) == {"business_videos_processed_total", "business_videos_approved_total",
                          "business_videos_monetized_total"}
    assert after == before
