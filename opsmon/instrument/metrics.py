"""Request and error metrics recorded in the app's processes, in prometheus_client's multiprocess mode."""

from __future__ import annotations

import functools
import logging
import os
import re
import shutil
import time
from pathlib import Path

from prometheus_client import REGISTRY, Counter, Gauge, Histogram, multiprocess, values

from opsmon.instrument import context
from opsmon.instrument.errors import ConfigError, OpsmonError, Severity, classify, kind_of, known_kinds

log = logging.getLogger("opsmon.instrument")

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# The files prometheus_client's multiprocess mode writes (counter_123.db, gauge_livesum_123.db...): the only
# ones prepare_multiprocess_dir() removes.
METRIC_FILE = re.compile(r"(counter|gauge_[a-z]+|histogram|summary)_\d+\.db")
# Names a LogRecord has already: track()'s fields must not shadow them.
_RECORD_ATTRIBUTES = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}
# Finer at the low end, where a healthy handler lives, and up to a minute for pipeline stages.
ERROR_KINDS = ("client", "server")
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class AppMetrics:
    """The app_* metrics (docs/metrics.md) under one namespace; create once per process."""

    def __init__(self, namespace: str = "app", registry=REGISTRY):
        self.registry = registry
        kwargs = {"namespace": namespace, "registry": registry}
        self.requests = Counter("requests_total", "Requests or jobs handled.", ["handler"], **kwargs)
        self.request_errors = Counter("request_errors_total", "Requests or jobs that ended in an error, by kind: "
                                      "server (the app failed) or client (the caller's mistake, such as a 404).",
                                      ["handler", "kind"], **kwargs)
        self.duration = Histogram("request_duration_seconds", "Time to handle a request or job.", ["handler"],
                                  buckets=BUCKETS, **kwargs)
        # livesum: in-progress counts of processes that have exited drop out of the sum.
        self.in_progress = Gauge("requests_in_progress", "Requests or jobs being handled now.", ["handler"],
                                 multiprocess_mode="livesum", **kwargs)
        self.errors = Counter("errors_total", "Errors by category and severity.", ["category", "severity"],
                              **kwargs)
        # Series that exist at 0 from the start, so error ratios read 0 rather than "no data".
        for category, severity in known_kinds():
            self.errors.labels(category, severity.value)

    def record_error(self, error: BaseException) -> None:
        """Count an error once, however many tracked blocks it passes through."""
        if getattr(error, "_opsmon_counted", False):
            return
        category, severity = classify(error)
        self.errors.labels(category, severity.value).inc()
        try:
            error._opsmon_counted = True
        except AttributeError:
            pass  # an exception type with __slots__: it may be counted again, which is the lesser harm


class Track:
    """Time and count one handler; use as `with track("h"):` or as `@track("h")`.

    The block is a request (or job) of its own: log records inside it carry its `request_id`,
    `handler` and the given fields. An error that escapes it is logged once, with its reference,
    category and severity, at the level its severity asks for, unless it was logged already.
    """

    def __init__(self, metrics: AppMetrics | None, handler: str, fields: dict | None = None):
        clash = sorted(set(fields or {}) & (_RECORD_ATTRIBUTES | {"request_id", "handler"}))
        if clash:
            raise ValueError(f"track() fields clash with log record attributes: {', '.join(clash)}")
        # None: the process's own metrics, looked up at first use, because `@track` on a function runs
        # at import, before the app has called prepare_multiprocess_dir() and the folder exists.
        self._given = metrics
        self._handler = handler
        self._fields = dict(fields or {})
        # Stacks, so one Track may be entered again while in use.
        self._started: list[float] = []
        self._tokens: list = []

    @property
    def _metrics(self) -> AppMetrics:
        return self._given or process_metrics()

    def __enter__(self):
        for kind in ERROR_KINDS:  # present at 0 before the first error
            self._metrics.request_errors.labels(self._handler, kind)
        self._metrics.in_progress.labels(self._handler).inc()
        self._tokens.append(context.enter(self._handler, self._fields))
        self._started.append(time.perf_counter())
        return self

    def __exit__(self, exc_type, exc, tb):
        elapsed = time.perf_counter() - self._started.pop()
        metrics, handler = self._metrics, self._handler
        try:
            metrics.in_progress.labels(handler).dec()
            metrics.requests.labels(handler).inc()
            metrics.duration.labels(handler).observe(elapsed)
            if exc is not None:
                metrics.request_errors.labels(handler, kind_of(exc)).inc()
                metrics.record_error(exc)
                context.remember_request(exc)
                if not context.was_logged(exc):
                    self._log(exc)
        finally:
            context.leave(self._tokens.pop())
        return False

    def _log(self, error: BaseException) -> None:
        category, severity = classify(error)
        text = str(error) if isinstance(error, OpsmonError) else f"{type(error).__name__}: {error}"
        # A traceback where it helps: a bug, or an error bad enough that someone will read the code.
        traceback = not isinstance(error, OpsmonError) or severity in (Severity.HIGH, Severity.CRITICAL)
        extra = {**(context.current_request() or {}), **context.error_fields(error)}
        if getattr(error, "context", None):
            extra["context"] = error.context
        log.log(context.LOG_LEVELS[severity], "%s failed: %s", self._handler, text, extra=extra,
                exc_info=(type(error), error, error.__traceback__) if traceback else None)
        context.mark_logged(error)

    def __call__(self, func):
        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            with Track(self._given, self._handler, self._fields):
                return func(*args, **kwargs)

        return wrapper


_process_metrics: AppMetrics | None = None


def process_metrics() -> AppMetrics:
    """The process's app_* metrics, created at first use."""
    global _process_metrics
    if _process_metrics is None:
        _process_metrics = AppMetrics()
    return _process_metrics


def prepare_multiprocess_dir() -> Path:
    """Empty the folder named by PROMETHEUS_MULTIPROC_DIR before the app's processes start, as
    prometheus_client asks. The variable must be set before prometheus_client is imported."""
    directory = os.environ.get(MULTIPROC_ENV)
    if not directory or values.ValueClass is values.MutexValue:
        raise ConfigError(f"set {MULTIPROC_ENV} before the app imports opsmon.instrument, or the app's "
                          "metrics stay inside each process and the exporter never sees them")
    path = Path(directory)
    if path.is_dir():
        others = sorted(p.name for p in path.iterdir() if not (p.is_file() and METRIC_FILE.fullmatch(p.name)))
        if others:  # the variable named the app's data folder, say: emptying it would delete the app's data
            raise ConfigError(f"{MULTIPROC_ENV}={directory} holds files that are not prometheus_client's "
                              f"({', '.join(others[:3])}{', ...' if len(others) > 3 else ''}): give the app's "
                              "metrics a folder of their own")
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path


def process_exited(pid: int) -> None:
    """Tell the multiprocess files that a worker has gone, so its live gauges stop counting."""
    if os.environ.get(MULTIPROC_ENV):
        multiprocess.mark_process_dead(pid)
