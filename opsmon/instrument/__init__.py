"""What an application imports to be monitored by opsmon: timing, counting, errors and JSON logs.

    from opsmon import instrument

    @instrument.track("process_video")
    def process(video): ...

    with instrument.track("upload"):
        ...

Metrics go to prometheus_client's multiprocess files, so worker processes and short jobs add up:
set PROMETHEUS_MULTIPROC_DIR (or call prepare_multiprocess_dir) before the app imports this
module, and point the exporter's `app_metrics_directory` at the same folder.
"""

from __future__ import annotations

from opsmon.instrument.errors import (
    BackupError,
    ConfigError,
    DataIntegrityError,
    ExternalServiceError,
    OpsmonError,
    ResourceExhaustedError,
    Severity,
    ValidationError,
    classify,
    reference_of,
)
from opsmon.instrument.jsonlog import JsonFormatter, setup_logging
from opsmon.instrument.metrics import AppMetrics, Track, prepare_multiprocess_dir, process_exited
from opsmon.instrument.metrics import process_metrics as metrics

__all__ = [
    "AppMetrics", "BackupError", "ConfigError", "DataIntegrityError", "ExternalServiceError", "JsonFormatter",
    "OpsmonError", "ResourceExhaustedError", "Severity", "Track", "ValidationError", "classify", "metrics",
    "prepare_multiprocess_dir", "process_exited", "record_error", "reference_of", "setup_logging", "track",
]

def track(handler: str, **fields) -> Track:
    """Time, count and name one request or job; `fields` (method, path, video_id...) go on its log records."""
    return Track(None, handler, fields)


def record_error(error: BaseException) -> None:
    """Count an error handled without letting it escape a tracked block."""
    metrics().record_error(error)
