"""Business SQL: cached per refresh interval, aborted when it runs too long, read-only."""

from __future__ import annotations

import sqlite3
import time

import pytest

from exporter.collectors.business import BusinessCollector, QueryTimeout, run_query
from opsmon.config import BusinessQueryConfig
from tests.fakes import FakeClock

RUNAWAY = ("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) "
           "SELECT count(*) AS value FROM n")


@pytest.fixture
def db(tmp_path):
    path = tmp_path / "app.db"
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE videos (id INTEGER PRIMARY KEY)")
        connection.execute("INSERT INTO videos DEFAULT VALUES")
    return path


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


def test_runaway_query_leaves_the_others_alone(db):
    queries = [BusinessQueryConfig(name="business_runaway", help="h", query=RUNAWAY, timeout_seconds=0.2),
               BusinessQueryConfig(name="business_videos", help="h", query="SELECT count(*) AS value FROM videos")]
    collector = BusinessCollector(queries, db)
    assert value(collector, "business_videos") == 1
    assert value(collector, "business_runaway") is None


def test_cached_until_the_refresh_interval_passes(db):
    clock = FakeClock()
    collector = BusinessCollector([BusinessQueryConfig(
        name="business_videos_total", help="h", type="counter", refresh_seconds=3600,
        query="SELECT count(*) AS value FROM videos")], db, clock=clock)
    assert value(collector, "business_videos_total") == 1
    with sqlite3.connect(db) as connection:
        connection.execute("INSERT INTO videos DEFAULT VALUES")
    clock.advance(3599)
    assert value(collector, "business_videos_total") == 1
    clock.advance(1)
    assert value(collector, "business_videos_total") == 2


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
