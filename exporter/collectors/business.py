"""Business states as SQL from the config, published as gauges, each query cached for its own refresh
interval, e.g. `business_videos_queued 12`. The app's database is opened read-only.

Only gauges: a count of rows drops when a restore or a delete removes rows, which Prometheus would
read as a counter reset. Events are counters the app increments itself (opsmon.instrument).
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor, wait
from pathlib import Path

from prometheus_client.core import GaugeMetricFamily

from exporter import deadline
from opsmon.journal import uses_rollback_journal
from opsmon.files import sqlite_uri

log = logging.getLogger(__name__)

# A failed query is tried again sooner than a daily refresh, but not at every scrape.
RETRY_AFTER_FAILURE_SECONDS = 60.0
# In a rollback-journal mode a read holds back the app's commits until it ends: each query there is cut
# at this many seconds, well under the busy timeout of an app that sets one (Python's default is 5 s).
ROLLBACK_JOURNAL_QUERY_SECONDS = 0.5


class QueryTimeout(Exception):
    pass


class QueryStopped(Exception):
    """The exporter is shutting down."""


def connect_read_only(path: Path, timeout: float) -> sqlite3.Connection:
    # Used from the query's thread and interrupted from the one shutting down.
    return sqlite3.connect(sqlite_uri(path, "ro"), uri=True, timeout=timeout, check_same_thread=False)


def read(connection: sqlite3.Connection, sql: str, timeout: float) -> tuple[list[str], list[tuple]]:
    """Run one query, aborted by SQLite itself once `timeout` has passed."""
    deadline = time.monotonic() + timeout
    # The progress handler is SQLite's own way to stop a runaway statement; non-zero aborts it.
    connection.set_progress_handler(lambda: time.monotonic() > deadline, 10_000)
    try:
        cursor = connection.execute(sql)
        rows = cursor.fetchall()
        return [column[0] for column in cursor.description or []], rows
    except sqlite3.OperationalError as err:
        if "interrupted" in str(err):
            raise QueryTimeout(f"took longer than {timeout:g}s") from None
        raise


def run_query(path: Path, sql: str, timeout: float) -> tuple[list[str], list[tuple]]:
    """Run one read-only query on a connection of its own, within `timeout`."""
    connection = connect_read_only(path, timeout)
    try:
        return read(connection, sql, timeout)
    finally:
        connection.close()


class CachedQuery:
    """One query, its last good result published until the next refresh, run on a thread of its own so
    that a slow query delays nothing but itself."""

    def __init__(self, config, database: Path, clock=time.monotonic, wall=time.time):
        self.config = config
        self._database = database
        self._clock = clock
        self._wall = wall
        self._next_refresh = 0.0
        # (family or None, 1 when the last refresh worked, when it last worked), replaced whole.
        self.published: tuple = (None, 0, 0.0)
        self._lock = threading.Lock()
        self._connection: sqlite3.Connection | None = None
        self._stopped = False

    def due(self) -> bool:
        return self._clock() >= self._next_refresh

    def refresh(self, limit: float) -> None:
        """Run the query, cut after `limit` seconds, and publish its result or, on failure, nothing."""
        config = self.config
        try:
            columns, rows = self._run(limit)
            family = self._to_family(columns, rows)
        except QueryStopped:
            return
        except Exception as err:  # noqa: BLE001 - one bad query must not hide the others
            log.warning("business query %s failed: %s", config.name, err)
            self.published = (None, 0, self.published[2])
            self._next_refresh = self._clock() + min(config.refresh_seconds, RETRY_AFTER_FAILURE_SECONDS)
            return
        self.published = (family, 1, self._wall())
        self._next_refresh = self._clock() + config.refresh_seconds

    def _run(self, limit: float) -> tuple[list[str], list[tuple]]:
        """The query on a read-only connection of its own, closed at once so no read stays open."""
        connection = connect_read_only(self._database, limit)
        try:
            with self._lock:
                if self._stopped:
                    raise QueryStopped
                self._connection = connection
            return read(connection, self.config.query, limit)
        except QueryTimeout:
            if self._stopped:
                raise QueryStopped from None
            raise
        finally:
            with self._lock:
                self._connection = None
            connection.close()

    def stop(self) -> None:
        """Interrupt a running query and start no other: the exporter is shutting down."""
        with self._lock:
            self._stopped = True
            if self._connection is not None:
                self._connection.interrupt()

    def _to_family(self, columns, rows):
        config = self.config
        missing = [c for c in (*config.labels, config.value_column) if c not in columns]
        if missing:
            raise ValueError(f"the query returns no column {', '.join(missing)} (it returns {', '.join(columns)})")
        documentation = f"{config.help} (cached: refreshed every {config.refresh_seconds:g}s)"
        family = GaugeMetricFamily(config.name, documentation, labels=config.labels)
        positions = [columns.index(c) for c in config.labels]
        value_at = columns.index(config.value_column)
        seen = set()
        for number, row in enumerate(rows, 1):
            labels, value = [row[i] for i in positions], row[value_at]
            # One bad row rejects the set (success 0, the reason logged): a NULL read as 0, or two rows
            # with the same labels, would publish a wrong figure or an invalid exposition.
            if any(label is None for label in labels):
                raise ValueError(f"row {number}: a label column is NULL ({dict(zip(config.labels, labels))})")
            if not isinstance(value, (int, float)):
                raise ValueError(f"row {number}: {config.value_column} is {value!r:.40}, not a number")
            key = tuple(str(label) for label in labels)
            if key in seen:
                raise ValueError(f"row {number}: labels {dict(zip(config.labels, key))} repeat an earlier row's")
            seen.add(key)
            family.add_metric(list(key), float(value))
        return family


class BusinessCollector:
    name = "business"

    def __init__(self, queries, database: Path, clock=time.monotonic, wall=time.time):
        self._database = Path(database)
        self._queries = [CachedQuery(q, self._database, clock, wall) for q in queries]
        self._pool = ThreadPoolExecutor(max_workers=max(1, len(queries)), thread_name_prefix="business")
        self._running: dict[str, Future] = {}
        self._warned_rollback_journal = False

    def describe(self):
        return []

    def collect(self):
        limit_of = self._limit()
        started = [self._start(query, limit_of(query)) for query in self._queries
                   if query.due() and not self._is_running(query)]
        # Wait for the queries started now, never for one still running from an earlier scrape, and never
        # past the scrape's deadline: whatever has not finished is published from its cache.
        longest = max((query.config.timeout_seconds for query in self._queries), default=0.0)
        wait(started, timeout=max(0.0, deadline.remaining(longest) - 0.1))
        success = GaugeMetricFamily("opsmon_business_query_success", "1 when the query's last refresh worked.",
                                    labels=["query"])
        refreshed = GaugeMetricFamily("opsmon_business_query_last_refresh_timestamp_seconds",
                                      "When the query last refreshed, in Unix seconds; 0 never.", labels=["query"])
        for query in self._queries:
            family, worked, at = query.published
            if family is not None:
                yield family
            success.add_metric([query.config.name], worked)
            refreshed.add_metric([query.config.name], at)
        yield from (success, refreshed)

    def _limit(self):
        """Each query's time limit: its own timeout, and a short one on a rollback-journal database."""
        try:
            rollback = uses_rollback_journal(self._database)
        except (OSError, ValueError):  # the query itself will fail and say why
            rollback = False
        if rollback and not self._warned_rollback_journal:
            self._warned_rollback_journal = True
            log.warning("%s is in rollback-journal mode, where each business query holds back the app's "
                        "writes while it reads: queries are cut at %gs there. Switch the database to WAL "
                        "(PRAGMA journal_mode=WAL) so that reads never block writes",
                        self._database, ROLLBACK_JOURNAL_QUERY_SECONDS)
        if rollback:
            return lambda query: min(query.config.timeout_seconds, ROLLBACK_JOURNAL_QUERY_SECONDS)
        return lambda query: query.config.timeout_seconds

    def _is_running(self, query: CachedQuery) -> bool:
        running = self._running.get(query.config.name)
        return running is not None and not running.done()

    def _start(self, query: CachedQuery, limit: float) -> Future:
        future = self._pool.submit(query.refresh, limit)
        self._running[query.config.name] = future
        return future

    def close(self) -> None:
        for query in self._queries:
            query.stop()
        self._pool.shutdown(wait=False, cancel_futures=True)


def build(config):
    if not config.business_queries:
        return None
    return BusinessCollector(config.business_queries, config.database.path)
