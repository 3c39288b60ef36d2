"""Business states as SQL from the config, published as gauges, each query cached for its own refresh
interval, e.g. `business_videos_queued 12`. The app's database is opened read-only.

Only gauges: a count of rows drops when a restore or a delete removes rows, which Prometheus would
read as a counter reset. Events are counters the app increments itself (opsmon.instrument).
"""

from __future__ import annotations

import logging
import sqlite3
import time
from pathlib import Path

from prometheus_client.core import GaugeMetricFamily

from opsmon.files import sqlite_uri

log = logging.getLogger(__name__)

# A failed query is tried again sooner than a daily refresh, but not at every scrape.
RETRY_AFTER_FAILURE_SECONDS = 60.0


class QueryTimeout(Exception):
    pass


def run_query(path: Path, sql: str, timeout: float) -> tuple[list[str], list[tuple]]:
    """Run one read-only query, aborted by SQLite itself once `timeout` has passed."""
    connection = sqlite3.connect(sqlite_uri(path, "ro"), uri=True, timeout=timeout)
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
    finally:
        connection.close()


class CachedQuery:
    def __init__(self, config, database: Path, clock=time.monotonic, wall=time.time):
        self.config = config
        self._database = database
        self._clock = clock
        self._wall = wall
        self._family = None
        self._next_refresh = 0.0
        self.last_success = 0  # 1 when the last refresh worked
        self.last_refresh_timestamp = 0.0

    def family(self):
        if self._clock() >= self._next_refresh:
            self._refresh()
        return self._family

    def _refresh(self) -> None:
        config = self.config
        try:
            columns, rows = run_query(self._database, config.query, config.timeout_seconds)
            self._family = self._to_family(columns, rows)
        except Exception as err:  # noqa: BLE001 - one bad query must not hide the others
            log.warning("business query %s failed: %s", config.name, err)
            self._family = None
            self.last_success = 0
            self._next_refresh = self._clock() + min(config.refresh_seconds, RETRY_AFTER_FAILURE_SECONDS)
            return
        self.last_success = 1
        self.last_refresh_timestamp = self._wall()
        self._next_refresh = self._clock() + config.refresh_seconds

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
        self._queries = [CachedQuery(q, Path(database), clock, wall) for q in queries]

    def describe(self):
        return []

    def collect(self):
        success = GaugeMetricFamily("opsmon_business_query_success", "1 when the query's last refresh worked.",
                                    labels=["query"])
        refreshed = GaugeMetricFamily("opsmon_business_query_last_refresh_timestamp_seconds",
                                      "When the query last refreshed, in Unix seconds; 0 never.", labels=["query"])
        for query in self._queries:
            family = query.family()
            if family is not None:
                yield family
            success.add_metric([query.config.name], query.last_success)
            refreshed.add_metric([query.config.name], query.last_refresh_timestamp)
        yield from (success, refreshed)


def build(config):
    if not config.business:
        return None
    return BusinessCollector(config.business, config.database.path)
