"""The pipeline's business events, counted where they happen, e.g. `business_videos_processed_total 1042`.

Counters in prometheus_client's multiprocess mode, as opsmon.instrument sets it up: each worker
process writes its own file and the exporter sums them. A count of rows would drop when a restore
or a delete removes rows (Prometheus would read a counter reset); an event counted once is never
taken back.
"""

from __future__ import annotations

from prometheus_client import REGISTRY, Counter


class BusinessEvents:
    def __init__(self, registry=REGISTRY):
        self.processed = Counter("business_videos_processed_total", "Videos the pipeline finished processing.",
                                 registry=registry)
        self.approved = Counter("business_videos_approved_total", "Processed videos that were approved.",
                                registry=registry)
        self.monetized = Counter("business_videos_monetized_total", "Approved videos that were monetized.",
                                 registry=registry)


_events: BusinessEvents | None = None


def events() -> BusinessEvents:
    """The process's business counters; created in the parent before the workers fork, so that each
    series is there at 0 from the start (a stall is nothing processed, not nothing published)."""
    global _events
    if _events is None:
        _events = BusinessEvents()
    return _events
