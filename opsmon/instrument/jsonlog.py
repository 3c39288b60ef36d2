"""JSON-lines logging through a queue, so the app's threads never wait on log I/O."""

from __future__ import annotations

import atexit
import copy
import json
import logging
import logging.handlers
import queue
import sys
from datetime import datetime, timezone

from opsmon.instrument.context import annotate

# Attributes every LogRecord has; anything else came in through `extra=` and is kept as a field.
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    """One JSON object a line; a record of an error carries its reference, category and severity,
    and a record inside a tracked block its request_id and handler."""

    def format(self, record: logging.LogRecord) -> str:
        annotate(record)
        entry = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "process": record.process,
        }
        entry.update({k: v for k, v in vars(record).items() if k not in _STANDARD})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class _QueueHandler(logging.handlers.QueueHandler):
    """Queue a record with its message and traceback as plain fields (the stock one folds them together)."""

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        record = annotate(copy.copy(record))  # here, in the thread that logs: the request is known here
        record.msg, record.args = record.getMessage(), None
        if record.exc_info:
            record.exception = logging.Formatter().formatException(record.exc_info)
            record.exc_info = record.exc_text = None
        return record


class _Listener(logging.handlers.QueueListener):
    def stop(self) -> None:
        """Stop once: at exit, or earlier by the app; a second call does nothing."""
        if self._thread is not None:
            super().stop()


def setup_logging(path: str | None = None, level: str = "INFO") -> logging.handlers.QueueListener:
    """Send the root logger's records through a queue to one writer thread (a file, or stderr).

    The file handler reopens the file when logrotate moves it. The listener is stopped at exit,
    after it wrote out what was queued.
    """
    target = logging.handlers.WatchedFileHandler(path) if path else logging.StreamHandler(sys.stderr)
    target.setFormatter(JsonFormatter())
    records: queue.Queue = queue.Queue(-1)
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.addHandler(_QueueHandler(records))
    root.setLevel(level.upper())
    listener = _Listener(records, target, respect_handler_level=True)
    listener.start()
    atexit.register(listener.stop)
    return listener
